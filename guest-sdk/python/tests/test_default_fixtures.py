"""The Python defaults decide exactly as the Rust SDK's: the `default` policy's own fixture
files (exact plans and reasons) pass against the same policy written with this SDK."""

import os

import pytest

from ecs_policy import Policy, defaults, settings, testing

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CASES = testing.cases(os.path.join(ROOT, "policies", "default", "fixtures"))


class DefaultPolicy(Policy):
    """policies/default in Python: the defaults, with `cooldown-secs` for `place`."""

    def configure(self, settings_json):
        s = settings.parse(settings_json)
        self.cooldown_secs = s.int("cooldown-secs", default=300, min=0)
        s.done()

    def place(self, request, offerings, fleet):
        return defaults.place(request, offerings, fleet, self.cooldown_secs * 1000)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_default_policy_fixture(case):
    testing.check(DefaultPolicy, case)


def test_the_base_class_takes_no_settings():
    p = Policy()
    p.configure("  ")
    with pytest.raises(Exception, match="unknown setting `x`: this policy takes no settings"):
        p.configure('{"x": 1}')
