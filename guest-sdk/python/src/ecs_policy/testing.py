"""Run a policy natively against fixture files, the same files `ecs-provisioner policy test`
runs against the component (format: host/policy/src/fixture.rs, docs/policy-authoring.md).

    CASES = testing.cases("fixtures")
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_fixture(case):
        testing.check(MyPolicy, case)

Every case gets a fresh policy: `configure(settings)`, then the case's call. Answers are also
checked against the rules the host enforces (`scale_violations`, `place_violations`).
"""

import copy
import json
import os
import tomllib
from dataclasses import dataclass, field

from . import reads
from .errors import PolicyError
from .types import (
    Demand, Failure, Node, NodeState, Offering, PlaceRequest, QueuedItem, Snapshot, SpotMode,
    Template, is_leaving, is_live, occupies, state_name,
)

DEFAULT_ZONE = "cn-hangzhou-h"
DEFAULT_TYPE = "ecs.c7.large"


class FixtureError(Exception):
    """A fixture file or case that cannot be read; names the file and case."""


@dataclass
class Case:
    """One case with every default filled in."""
    file: str
    name: str
    settings: str
    function: str  # "configure", "scale" or "place"
    snapshot: Snapshot = None
    request: PlaceRequest = None
    offerings: list = field(default_factory=list)
    fleet: list = field(default_factory=list)
    expect: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{os.path.basename(self.file)}: {self.name}"


# ---- reading ----

def expand(paths):
    """Directories become the `.toml`/`.json` files inside them, sorted."""
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            files.extend(sorted(os.path.join(p, f) for f in os.listdir(p)
                                if f.endswith((".toml", ".json"))))
        else:
            files.append(p)
    return files


def cases(*paths):
    """Every case of every fixture file (directories expanded); a bad file or case raises
    `FixtureError`, so a typo never silently drops a case."""
    files = expand(paths)
    if not files:
        raise FixtureError(f"no fixture files in {', '.join(map(os.fspath, paths))}")
    return [c for f in files for c in load_file(f)]


def load_file(path):
    """The cases of one fixture file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        doc = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (OSError, ValueError) as e:
        raise FixtureError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise FixtureError(f"{path}: a fixture file is a table")
    raw_cases = doc.pop("case", [{}])
    if not isinstance(raw_cases, list):
        raise FixtureError(f"{path}: `case` must be an array of tables ([[case]])")
    out = []
    for i, raw_case in enumerate(raw_cases):
        merged = _merge(copy.deepcopy(doc), raw_case)
        name = merged.get("name")
        what = f"{path}: case {i + 1}" + (f" (`{name}`)" if isinstance(name, str) else "")
        try:
            out.append(_build_case(path, i, merged))
        except (KeyError, TypeError, ValueError) as e:
            raise FixtureError(f"{what}: {e}") from None
    return out


def _merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        for k, v in over.items():
            base[k] = _merge(base.get(k), v)
        return base
    return over


def _fields(table, allowed, what):
    if not isinstance(table, dict):
        raise TypeError(f"{what}: expected a table, got {table!r}")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}` in {what}, expected one of "
                         f"{', '.join(sorted(allowed))}")
    return table


def _enum(enum, text, what):
    try:
        return enum[text.upper().replace("-", "_")]
    except (KeyError, AttributeError):
        raise ValueError(f"{what}: unknown variant `{text}`") from None


_TEMPLATE = {"name", "labels", "executors", "min-nodes", "max-nodes", "idle-timeout-secs",
             "max-uses", "spot"}
_NODE = {"instance-id", "template", "zone", "instance-type", "spot", "state", "busy-executors",
         "idle-ms", "age-ms", "uses", "failure", "offline-reason"}
_OFFERING = {"zone", "vswitch", "instance-type", "spot", "vcpus", "memory-mib", "free-ips",
             "price-per-hour", "in-stock", "last-failure"}
_SNAPSHOT = {"now-ms", "templates", "demand", "unmatched-queued", "nodes", "offerings",
             "max-total-nodes"}
_CASE = {"name", "function", "settings", "snapshot", "request", "offerings", "fleet", "expect"}
_EXPECT = {"error", "error-kind", "launch", "launch-at-least", "launch-at-most", "launch-total",
           "remove", "remove-includes", "remove-excludes", "remove-count", "plan", "placed",
           "placed-at-least", "placed-at-most", "per-zone", "per-type", "per-vswitch", "spot",
           "on-demand", "placements", "unused-offerings"}


def template(t=None) -> Template:
    """A template from a fixture table (kebab-case keys), defaults filled in."""
    t = _fields(t or {}, _TEMPLATE, "template")
    return Template(
        name=t.get("name", "default"), labels=list(t.get("labels", [])),
        executors=t.get("executors", 1), min_nodes=t.get("min-nodes", 0),
        max_nodes=t.get("max-nodes", 10), idle_timeout_secs=t.get("idle-timeout-secs", 600),
        max_uses=t.get("max-uses", 0),
        spot=_enum(SpotMode, t.get("spot", "on-demand"), "template.spot"))


def node(n=None, index=0, default_template="default") -> Node:
    """A node from a fixture table, defaults filled in (`i-<index+1>`, online, ...)."""
    n = _fields(n or {}, _NODE, "node")
    return Node(
        instance_id=n.get("instance-id", f"i-{index + 1}"),
        template=n.get("template", default_template), zone=n.get("zone", DEFAULT_ZONE),
        instance_type=n.get("instance-type", DEFAULT_TYPE), spot=n.get("spot", False),
        state=_enum(NodeState, n.get("state", "online"), "node.state"),
        busy_executors=n.get("busy-executors", 0), idle_ms=n.get("idle-ms", 0),
        age_ms=n.get("age-ms", 0), uses=n.get("uses", 0), failure=n.get("failure"),
        offline_reason=n.get("offline-reason"))


def offering(o=None) -> Offering:
    """An offering from a fixture table, defaults filled in."""
    o = _fields(o or {}, _OFFERING, "offering")
    zone = o.get("zone", DEFAULT_ZONE)
    f = o.get("last-failure")
    if f is not None:
        f = _fields(f, {"code", "at-ms"}, "last-failure")
        f = Failure(code=f.get("code", ""), at_ms=f.get("at-ms", 0))
    price = o.get("price-per-hour")
    return Offering(
        zone=zone, vswitch=o.get("vswitch", f"vsw-{zone}"),
        instance_type=o.get("instance-type", DEFAULT_TYPE), spot=o.get("spot", False),
        vcpus=o.get("vcpus", 2), memory_mib=o.get("memory-mib", 4096),
        free_ips=o.get("free-ips", 100),
        price_per_hour=None if price is None else float(price),
        in_stock=o.get("in-stock", True), last_failure=f)


def snapshot(s=None) -> Snapshot:
    """A snapshot from a fixture table, defaults filled in."""
    s = _fields(s or {}, _SNAPSHOT, "snapshot")
    templates = [template(t) for t in s.get("templates") or [{}]]
    first = templates[0].name
    demand = []
    for d in s.get("demand", []):
        d = _fields(d, {"template", "queued", "oldest-wait-ms", "items"}, "demand")
        if "items" in d:
            items = [QueuedItem(id=_fields(i, {"id", "wait-ms"}, "item").get("id", 0),
                                wait_ms=i.get("wait-ms", 0)) for i in d["items"]]
        else:
            items = [QueuedItem(id=k, wait_ms=d.get("oldest-wait-ms", 0))
                     for k in range(1, d.get("queued", 0) + 1)]
        demand.append(Demand(
            template=d.get("template", first), queued=d.get("queued", len(items)),
            oldest_wait_ms=d.get("oldest-wait-ms", max((i.wait_ms for i in items), default=0)),
            items=items))
    return Snapshot(
        now_ms=s.get("now-ms", 1_700_000_000_000), templates=templates, demand=demand,
        unmatched_queued=s.get("unmatched-queued", 0),
        nodes=[node(n, i, first) for i, n in enumerate(s.get("nodes", []))],
        offerings=[offering(o) for o in s.get("offerings", [])],
        max_total_nodes=s.get("max-total-nodes", 100))


def _build_case(path, index, c):
    _fields(c, _CASE, "case")
    expect = _fields(c.get("expect", {}), _EXPECT, "expect")
    settings = json.dumps(c.get("settings", {}))
    function = c.get("function", "place" if "request" in c else "scale")
    if function not in ("configure", "scale", "place"):
        raise ValueError(f"function: unknown variant `{function}`")
    snap = snapshot(c.get("snapshot"))
    case = Case(file=path, name=c.get("name", f"case {index + 1}"), settings=settings,
                function=function, snapshot=snap, expect=expect)
    if function == "place":
        r = _fields(c.get("request", {}), {"now-ms", "template", "count"}, "request")
        t = r.get("template")
        if t is None:
            tmpl = snap.templates[0]
        elif isinstance(t, str):
            tmpl = next((x for x in snap.templates if x.name == t), None) or template({"name": t})
        else:
            tmpl = template(t)
        case.offerings = ([offering(o) for o in c["offerings"]] if "offerings" in c
                          else list(snap.offerings))
        case.fleet = ([node(n, i, tmpl.name) for i, n in enumerate(c["fleet"])] if "fleet" in c
                      else [n for n in snap.nodes if n.template == tmpl.name])
        case.request = PlaceRequest(now_ms=r.get("now-ms", snap.now_ms), template=tmpl,
                                    count=r.get("count", 1))
    return case


# ---- running and checking ----

def run_case(policy_class, case: Case):
    """Runs one case on a fresh `policy_class()`; the list of broken expectations (empty when
    the case passed)."""
    e = case.expect
    policy = policy_class()
    answer, error, kind = None, None, None
    try:
        policy.configure(case.settings)
        sent = reads.checked(policy.reads)
        if case.function == "scale":
            # What the host sends: only the parts the policy declared.
            answer = policy.scale(reads.trimmed(case.snapshot, sent))
            bad = scale_violations(case.snapshot, answer)
        elif case.function == "place":
            answer = policy.place(case.request, case.offerings, case.fleet)
            bad = place_violations(case.request, case.offerings, answer)
        else:
            bad = []
        if bad:
            error, kind = "invalid output: " + "; ".join(bad), "invalid-output"
    except PolicyError as err:
        error, kind = err.message, "rejected"
    wants_error = "error" in e or "error-kind" in e
    if error is not None:
        if not wants_error:
            return [f"unexpected error: {error}"]
        f = []
        if "error" in e and e["error"] not in error:
            f.append(f"error: expected a message containing `{e['error']}`\n- got: {error}")
        if "error-kind" in e and e["error-kind"] != kind:
            f.append(f"error-kind: expected `{e['error-kind']}`, got `{kind}` ({error})")
        return f
    if wants_error:
        return [f"expected an error, but the call succeeded: {answer!r}"]
    if case.function == "scale":
        return _check_plan(e, answer)
    if case.function == "place":
        return _check_placements(e, case.offerings, answer)
    return []


def check(policy_class, case: Case):
    """`run_case`, raising AssertionError with every broken expectation (for pytest)."""
    failures = run_case(policy_class, case)
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


def run(policy_class, *paths):
    """Every case of `paths`: (passed, failed, report lines), like `policy test`."""
    passed, failed, lines = 0, 0, []
    for c in cases(*paths):
        f = run_case(policy_class, c)
        lines.append(("PASS " if not f else "FAIL ") + f"{c.file}: {c.name}")
        lines.extend("    " + x for x in f)
        passed, failed = passed + (not f), failed + bool(f)
    return passed, failed, lines


def _launched(plan, t):
    return sum(l.count for l in plan.launches if l.template == t)


def _describe_plan(plan):
    ls = ", ".join(f"{l.template}={l.count}" for l in plan.launches)
    return f"launches [{ls}], removals [{', '.join(r.instance_id for r in plan.removals)}]"


def _check_plan(e, plan):
    f = []
    got = _describe_plan(plan)
    for key, ok, rel in (("launch", lambda h, w: h == w, ""),
                         ("launch-at-least", lambda h, w: h >= w, ">= "),
                         ("launch-at-most", lambda h, w: h <= w, "<= ")):
        for t, want in e.get(key, {}).items():
            have = _launched(plan, t)
            if not ok(have, want):
                f.append(f"{key}.{t}: expected {rel}{want}, got {have}  (plan: {got})")
    if "launch-total" in e:
        have = sum(l.count for l in plan.launches)
        if have != e["launch-total"]:
            f.append(f"launch-total: expected {e['launch-total']}, got {have}  (plan: {got})")
    removed = {r.instance_id for r in plan.removals}
    if "remove" in e and set(e["remove"]) != removed:
        want = set(e["remove"])
        f.append(f"remove: expected exactly [{', '.join(sorted(want))}]\n"
                 f"- missing: [{', '.join(sorted(want - removed))}]\n"
                 f"+ unexpected: [{', '.join(sorted(removed - want))}]")
    f += [f"remove-includes: `{i}` is not removed  (plan: {got})"
          for i in e.get("remove-includes", []) if i not in removed]
    f += [f"remove-excludes: `{i}` is removed  (plan: {got})"
          for i in e.get("remove-excludes", []) if i in removed]
    if "remove-count" in e and len(plan.removals) != e["remove-count"]:
        f.append(f"remove-count: expected {e['remove-count']}, got {len(plan.removals)}  "
                 f"(plan: {got})")
    if "plan" in e:
        f += _check_exact_plan(e["plan"], plan)
    return f


def _check_exact_plan(want, plan):
    diff = []
    have_l = list(plan.launches)
    for w in want.get("launches", []):
        hit = next((h for h in have_l if h.template == w["template"] and h.count == w["count"]
                    and w.get("reason", h.reason) == h.reason), None)
        if hit is None:
            r = f" ({w['reason']})" if "reason" in w else ""
            diff.append(f"- launch {w['template']} x{w['count']}{r}")
        else:
            have_l.remove(hit)
    diff += [f"+ launch {h.template} x{h.count} ({h.reason})" for h in have_l]
    have_r = list(plan.removals)
    for w in want.get("removals", []):
        hit = next((h for h in have_r if h.instance_id == w["instance-id"]
                    and w.get("reason", h.reason) == h.reason), None)
        if hit is None:
            r = f" ({w['reason']})" if "reason" in w else ""
            diff.append(f"- remove {w['instance-id']}{r}")
        else:
            have_r.remove(hit)
    diff += [f"+ remove {h.instance_id} ({h.reason})" for h in have_r]
    return ["plan differs (- expected, + got):\n" + "\n".join(diff)] if diff else []


def _check_placements(e, offerings, placements):
    f = []
    got = ", ".join(f"#{p.offering} x{p.count}" for p in placements)
    total = sum(p.count for p in placements)

    def sum_by(pred):
        return sum(p.count for p in placements
                   if p.offering < len(offerings) and pred(offerings[p.offering]))
    for key, ok, rel in (("placed", lambda h, w: h == w, ""),
                         ("placed-at-least", lambda h, w: h >= w, ">= "),
                         ("placed-at-most", lambda h, w: h <= w, "<= ")):
        if key in e and not ok(total, e[key]):
            f.append(f"{key}: expected {rel}{e[key]}, got {total}  (placements: [{got}])")
    for key, attr in (("per-zone", "zone"), ("per-type", "instance_type"),
                      ("per-vswitch", "vswitch")):
        for k, want in e.get(key, {}).items():
            have = sum_by(lambda o: getattr(o, attr) == k)
            if have != want:
                f.append(f"{key}.{k}: expected {want}, got {have}  (placements: [{got}])")
    for key, spot in (("spot", True), ("on-demand", False)):
        if key in e:
            have = sum_by(lambda o: o.spot == spot)
            if have != e[key]:
                f.append(f"{key}: expected {e[key]}, got {have}  (placements: [{got}])")
    if "placements" in e:
        want = sorted((p["offering"], p["count"]) for p in e["placements"])
        have = sorted((p.offering, p.count) for p in placements)
        if want != have:
            fmt = lambda v: ", ".join(f"#{o} x{c}" for o, c in v)  # noqa: E731
            f.append(f"placements differ:\n- expected: [{fmt(want)}]\n+ got:      [{fmt(have)}]")
    f += [f"unused-offerings: offering #{i} got nodes  (placements: [{got}])"
          for i in e.get("unused-offerings", [])
          if any(p.offering == i and p.count > 0 for p in placements)]
    return f


def scale_violations(snap, plan):
    """Rules of the host a plan breaks (the host would reject or clamp it), as messages."""
    out = []
    names = {t.name for t in snap.templates}
    seen = set()
    for l in plan.launches:
        if l.template not in names:
            out.append(f"launch for unknown template `{l.template}`")
        if l.template in seen:
            out.append(f"template `{l.template}` launched more than once (one launch per template)")
        seen.add(l.template)
    by_id = {n.instance_id: n for n in snap.nodes}
    removed = set()
    for r in plan.removals:
        n = by_id.get(r.instance_id)
        if n is None:
            out.append(f"removal of unknown node `{r.instance_id}`")
        elif n.busy_executors > 0:
            out.append(f"removal of busy node `{r.instance_id}`")
        elif is_leaving(n.state):
            out.append(f"removal of {state_name(n.state)} node `{r.instance_id}`")
        if r.instance_id in removed:
            out.append(f"node `{r.instance_id}` removed twice")
        removed.add(r.instance_id)
    total = sum(1 for n in snap.nodes if occupies(n.state))
    for t in snap.templates:
        launched = _launched(plan, t.name)
        total += launched
        occupying = sum(1 for n in snap.nodes
                        if n.template == t.name and occupies(n.state))
        if occupying + launched > t.max_nodes:
            out.append(f"template `{t.name}`: {occupying} nodes + {launched} launched > "
                       f"max-nodes {t.max_nodes}")
        live = sum(1 for n in snap.nodes if n.template == t.name and is_live(n))
        gone = sum(1 for n in snap.nodes
                   if n.template == t.name and is_live(n) and n.instance_id in removed)
        if gone > 0 and live - gone + launched < t.min_nodes:
            out.append(f"template `{t.name}`: removing {gone} of {live} live nodes "
                       f"(+{launched} launched) goes below min-nodes {t.min_nodes}")
    if total > snap.max_total_nodes:
        out.append(f"{total} nodes after launches > max-total-nodes {snap.max_total_nodes}")
    return out


def place_violations(request, offerings, placements):
    """Rules of the host a placement answer breaks, as messages."""
    out = []
    seen = set()
    per_vswitch = {}
    total = 0
    spot_ok = request.template.spot != SpotMode.ON_DEMAND
    on_demand_ok = request.template.spot != SpotMode.SPOT_ONLY
    for p in placements:
        if p.offering in seen:
            out.append(f"offering {p.offering} placed on more than once (one placement per offering)")
        seen.add(p.offering)
        if not 0 <= p.offering < len(offerings):
            out.append(f"offering index {p.offering} out of range ({len(offerings)} offered)")
            continue
        o = offerings[p.offering]
        if p.count == 0:
            out.append(f"empty placement on offering {p.offering}")
        if o.spot and not spot_ok:
            out.append(f"spot offering {p.offering} for on-demand template")
        if not o.spot and not on_demand_ok:
            out.append(f"on-demand offering {p.offering} for spot-only template")
        used, free = per_vswitch.get(o.vswitch, (0, o.free_ips))
        per_vswitch[o.vswitch] = (used + p.count, min(free, o.free_ips))
        total += p.count
    for vsw, (used, free) in per_vswitch.items():
        if used > free:
            out.append(f"{used} nodes in vswitch `{vsw}` with {free} free IPs")
    if total > request.count:
        out.append(f"{total} nodes placed, {request.count} asked")
    return out
