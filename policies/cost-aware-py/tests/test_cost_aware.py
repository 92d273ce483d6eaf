"""cost-aware in Python, natively: its unit tests and the Rust twin's fixture files."""

import os

import pytest

from ecs_policy import PolicyError, SpotMode, log, testing
from cost_aware import CostAware

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
CASES = testing.cases(FIXTURES)
NOW = 1_763_900_000_000


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture(case):
    testing.check(CostAware, case)


def offerings():
    """0 on-demand 0.10/vCPU, 1 on-demand 0.075/vCPU (other zone), 2 spot 0.03/vCPU with 2 IPs,
    3 spot 0.02/vCPU out of stock, 4 spot with no price."""
    return [testing.offering(o) for o in [
        {"zone": "cn-hangzhou-h", "vswitch": "vsw-h", "price-per-hour": 0.20},
        {"zone": "cn-hangzhou-i", "vswitch": "vsw-i", "instance-type": "ecs.c7.xlarge", "vcpus": 4,
         "price-per-hour": 0.30},
        {"zone": "cn-hangzhou-j", "vswitch": "vsw-j", "spot": True, "price-per-hour": 0.06, "free-ips": 2},
        {"zone": "cn-hangzhou-k", "vswitch": "vsw-k", "spot": True, "price-per-hour": 0.04, "in-stock": False},
        {"zone": "cn-hangzhou-h", "vswitch": "vsw-h2", "instance-type": "ecs.g7.large", "spot": True},
    ]]


def place(settings_json, mode, count):
    p = CostAware()
    p.configure(settings_json)
    req = testing.PlaceRequest(now_ms=NOW, template=testing.template({"name": "linux", "spot": mode}), count=count)
    out = p.place(req, offerings(), [])
    assert testing.place_violations(req, offerings(), out) == []
    return [(x.offering, x.count) for x in out]


def test_settings_are_checked():
    for bad, key in [('{"max-price-per-vcpu": -1}', "max-price-per-vcpu"),
                     ('{"unpriced": "first"}', "setting `unpriced`"),
                     ('{"max-nodes-per-offering": 0}', "max-nodes-per-offering")]:
        with pytest.raises(PolicyError, match=key):
            CostAware().configure(bad)


def test_cheapest_per_vcpu_first_without_spreading():
    assert place("{}", "on-demand", 5) == [(1, 5)]


def test_spot_before_on_demand_when_the_template_allows_it():
    assert sorted(place("{}", "spot-first", 4)) == [(2, 2), (4, 2)]
    assert sorted(place('{"unpriced": "skip"}', "spot-first", 4)) == [(1, 2), (2, 2)]
    assert place('{"unpriced": "skip", "on-demand-fallback": false}', "spot-first", 4) == [(2, 2)]
    assert place('{"unpriced": "skip"}', "spot-only", 4) == [(2, 2)]


def test_logs_each_placement():
    log.take_captured()
    place("{}", "on-demand", 1)
    assert [m for _, m in log.take_captured()] == ["1 x ecs.c7.xlarge on-demand in cn-hangzhou-i at 0.0750/vCPU/h"]
