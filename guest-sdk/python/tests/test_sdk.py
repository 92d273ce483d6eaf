"""Settings errors, captured logs, and a harness that fails when a policy is wrong."""

import os

import pytest

from ecs_policy import Policy, PolicyError, ScalePlan, log, reads, settings, testing
from ecs_policy.component import export

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_settings_errors_name_the_path():
    s = settings.parse('{"windows": [{"start": 8}], "n": true}')
    w = s.tables("windows")[0]
    with pytest.raises(PolicyError, match=r"^setting `windows\[0\].start`: expected a string, got 8$"):
        w.str("start")
    with pytest.raises(PolicyError, match="setting `n`: expected an integer, got true"):
        s.int("n")
    with pytest.raises(PolicyError, match=r"setting `windows\[0\]`: missing field `end`"):
        w.str("end")
    s = settings.parse('{"widnows": []}')
    s.tables("windows", default=[])
    with pytest.raises(PolicyError, match="unknown field `widnows`, expected one of `windows`"):
        s.done()
    with pytest.raises(PolicyError, match="settings: expected an object"):
        settings.parse("[1]")
    with pytest.raises(PolicyError, match="^settings: "):
        settings.parse("{")
    assert settings.parse("").int("x", default=3, min=1) == 3
    assert settings.parse('{"m": {"a": 2}}').map("m", settings.integer(min=0)) == {"a": 2}
    with pytest.raises(PolicyError, match="setting `m.a`: must be at least 0, got -1"):
        settings.parse('{"m": {"a": -1}}').map("m", settings.integer(min=0))


def test_native_logs_are_captured_in_order():
    log.take_captured()
    log.info("one")
    log.warn(f"two {2}")
    assert [(l.name, m) for l, m in log.take_captured()] == [("INFO", "one"), ("WARN", "two 2")]
    assert log.take_captured() == []


class LaunchesNothing(Policy):
    def configure(self, settings_json):
        settings.parse(settings_json)

    def scale(self, snapshot):
        return ScalePlan(launches=[], removals=[])


def test_the_harness_reports_a_wrong_policy():
    passed, failed, lines = testing.run(LaunchesNothing, os.path.join(ROOT, "policies", "default", "fixtures", "scale.toml"))
    assert failed > 0 and passed > 0, lines
    assert any("launch.linux: expected" in l or "plan differs" in l for l in lines), lines


def test_the_harness_applies_the_hosts_rules():
    class RemovesBusy(Policy):
        def scale(self, snapshot):
            from ecs_policy import Removal
            return ScalePlan(launches=[], removals=[Removal(instance_id="i-1", reason="x")])
    case = testing.Case(file="inline", name="busy", settings="{}", function="scale",
                        snapshot=testing.snapshot({"nodes": [{"busy-executors": 1}]}))
    assert "removal of busy node `i-1`" in testing.run_case(RemovesBusy, case)[0]


def test_bad_fixtures_are_errors_naming_file_and_case(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[case]]\nname = "typo"\nsnapshot.nodse = []\n')
    with pytest.raises(testing.FixtureError, match=r"bad.toml: case 1 \(`typo`\): unknown field `nodse`"):
        testing.cases(bad)
    with pytest.raises(testing.FixtureError, match="nothing-here: .*No such file"):
        testing.cases(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(testing.FixtureError, match="no fixture files"):
        testing.cases(tmp_path / "empty")


def test_export_keeps_the_configured_policy_and_its_failure():
    from componentize_py_types import Err

    class Strict(Policy):
        def configure(self, settings_json):
            self.n = settings.parse(settings_json).int("n")

        def scale(self, snapshot):
            raise PolicyError(f"configured with {self.n}")

    exported = export(Strict)()
    snap = testing.snapshot()
    with pytest.raises(Err) as e:
        exported.scale(snap)
    assert e.value.value == "settings: missing field `n`"
    exported.configure('{"n": 7}')
    with pytest.raises(Err) as e:
        exported.scale(snap)
    assert e.value.value == "configured with 7"
    with pytest.raises(Err):
        exported.configure('{"n": "x"}')
    with pytest.raises(Err) as e:
        exported.scale(snap)
    assert e.value.value.startswith("the policy's settings were rejected: setting `n`")


def test_parts_not_declared_are_not_sent_and_fail_loudly():
    class Pricey(Policy):
        reads = ("nodes",)

        def scale(self, snapshot):
            return ScalePlan(launches=[], removals=[]) if snapshot.offerings else None

    snap = testing.snapshot({"offerings": [{}], "demand": [{"queued": 2}]})
    exported = export(Pricey)()
    exported.configure("{}")
    with pytest.raises(Exception) as e:
        exported.scale(snap)
    assert "snapshot.offerings was not sent: add \"offerings\" to the policy's `reads`" in str(e.value)
    # The harness sends what the host would: counts without items, declared parts whole.
    snap = testing.snapshot({"offerings": [{}], "demand": [{"queued": 2}]})
    t = reads.trimmed(snap, frozenset({"nodes", "offerings"}))
    assert len(t.offerings) == 1 and t.demand[0].queued == 2
    with pytest.raises(PolicyError, match="demand.items was not sent"):
        len(t.demand[0].items)
    assert len(snap.demand[0].items) == 2, "the original snapshot is left whole"
    with pytest.raises(PolicyError, match="unknown part `offering`; the parts are nodes"):
        reads.checked(["offering"])
