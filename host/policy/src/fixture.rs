//! Fixture files: run a compiled policy against inputs and expected outcomes
//! (`ecs-provisioner policy test <policy> <fixtures...>`).
//!
//! # Format
//!
//! A fixture file is TOML (`.toml`) or JSON (`.json`). Keys are kebab-case, exactly as in
//! `wit/policy.wit` (`min-nodes`, `instance-id`, `spot = "spot-first"`,
//! `state = "online"`). Every field has a default, so a case names only what matters to it;
//! unknown keys are errors, so a typo never silently turns into a default.
//!
//! A file holds one case, or several under `[[case]]`. Top-level keys other than `case` are
//! defaults for every case: each case is deep-merged over them (tables merge key by key,
//! arrays and values replace). A directory argument runs every `.toml`/`.json` file in it.
//!
//! ```toml
//! settings = { spare-nodes = 0 }        # the policy's settings (any table; default {})
//!
//! [snapshot]                            # shared by the cases below
//! templates = [{ name = "linux", executors = 2, max-nodes = 10 }]
//!
//! [[case]]
//! name = "launches for queued builds"
//! function = "scale"                    # "scale" (default), "place" or "configure"
//! snapshot.demand = [{ template = "linux", queued = 5 }]
//! expect.launch = { linux = 3 }         # exactly 3 for linux (0 = none)
//!
//! [[case]]
//! name = "removes the long-idle node"
//! snapshot.nodes = [{ instance-id = "i-1", idle-ms = 3_600_000 }]
//! expect.remove-includes = ["i-1"]
//!
//! [[case]]
//! name = "spreads over zones"
//! function = "place"
//! request = { template = "linux", count = 4 }
//! offerings = [{ zone = "cn-hangzhou-h" }, { zone = "cn-hangzhou-i" }]
//! expect = { placed = 4, per-zone = { cn-hangzhou-h = 2, cn-hangzhou-i = 2 } }
//!
//! [[case]]
//! name = "rejects a bad setting"
//! function = "configure"
//! settings = { spare-nodes = "many" }
//! expect.error = "spare-nodes"
//! ```
//!
//! ## Inputs and their defaults
//! - `snapshot`: `now-ms` (1 700 000 000 000), `templates` (one template named `default`),
//!   `demand`, `unmatched-queued` (0), `nodes`, `offerings`, `max-total-nodes` (100).
//! - template: `name` (`default`), `labels` ([]), `executors` (1), `min-nodes` (0),
//!   `max-nodes` (10), `idle-timeout-secs` (600), `max-uses` (0), `spot` (`on-demand`;
//!   or `spot-first`, `spot-only`).
//! - demand: `template` (the first template), `queued` (the number of `items`),
//!   `oldest-wait-ms` (the longest item wait), `items` (`[{ id, wait-ms }]`; when absent,
//!   `queued` items are made up, ids 1.., each waiting `oldest-wait-ms`).
//! - node: `instance-id` (`i-<n>`, n counting from 1), `template` (the first template),
//!   `zone` (`cn-hangzhou-h`), `instance-type` (`ecs.c7.large`), `spot` (false), `state`
//!   (`online`; or `requested`, `pending`, `running`, `bootstrapping`, `connecting`,
//!   `offline`, `disconnected`, `interrupted`, `draining`, `terminating`),
//!   `busy-executors`, `idle-ms`, `age-ms`, `uses` (0), `failure`, `offline-reason` (none).
//! - offering: `zone` (`cn-hangzhou-h`), `vswitch` (`vsw-<zone>`), `instance-type`
//!   (`ecs.c7.large`), `spot` (false), `vcpus` (2), `memory-mib` (4096), `free-ips` (100),
//!   `price-per-hour` (none), `in-stock` (true), `last-failure` (`{ code, at-ms }`, none).
//! - `place` only: `request` = `{ now-ms (the snapshot's), template, count (1) }` where
//!   `template` is a template's name (looked up in `snapshot.templates`; a default template
//!   of that name otherwise) or a full template table; `offerings` (default: the
//!   snapshot's) and `fleet` (default: the snapshot's nodes of the request's template).
//!
//! ## Expectations (`expect`; every key given is checked, none is required)
//! - any function: `error = "substring"`: the call must fail and the error message contain
//!   it; `error-kind = "rejected"` (also `trap`, `timeout`, `memory-cap`,
//!   `invalid-output`, ...). Without either, the call must succeed.
//! - `scale`: `launch = { <template> = N }` (exactly N each, listed templates only),
//!   `launch-at-least`, `launch-at-most` (same shape), `launch-total = N`,
//!   `remove = [ids]` (exactly this set), `remove-includes`, `remove-excludes`,
//!   `remove-count = N`, `plan = { launches = [{ template, count, reason? }],
//!   removals = [{ instance-id, reason? }] }` (the exact plan, order ignored, reasons
//!   compared only where given).
//! - `place`: `placed`, `placed-at-least`, `placed-at-most` (total nodes),
//!   `per-zone`, `per-type`, `per-vswitch` (`{ <name> = N }`, listed keys only),
//!   `spot`, `on-demand` (node counts), `placements = [{ offering, count }]` (exact, order
//!   ignored), `unused-offerings = [indices]` (must get nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::bindings::*;
use super::wit_case::WitCase;
use super::{Function, Policy, PolicyError};

const DEFAULT_ZONE: &str = "cn-hangzhou-h";
const DEFAULT_TYPE: &str = "ecs.c7.large";

/// One fixture case, with every default filled in.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file it came from.
    pub file: PathBuf,
    /// The case's name (`case <n>` when unnamed).
    pub name: String,
    /// The policy's settings, as JSON text.
    pub settings: String,
    /// What to call.
    pub input: Input,
    /// What to check.
    pub expect: Expect,
}

/// The call a case makes.
#[derive(Debug, Clone)]
pub enum Input {
    /// Only `configure(settings)`.
    Configure,
    /// `scale(snapshot)`.
    Scale(Snapshot),
    /// `place(request, offerings, fleet)`.
    Place {
        request: PlaceRequest,
        offerings: Vec<Offering>,
        fleet: Vec<Node>,
    },
}

/// Expectations of a case; see the module docs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expect {
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub launch: Option<BTreeMap<String, u32>>,
    pub launch_at_least: Option<BTreeMap<String, u32>>,
    pub launch_at_most: Option<BTreeMap<String, u32>>,
    pub launch_total: Option<u64>,
    pub remove: Option<Vec<String>>,
    pub remove_includes: Option<Vec<String>>,
    pub remove_excludes: Option<Vec<String>>,
    pub remove_count: Option<usize>,
    pub plan: Option<PlanIn>,
    pub placed: Option<u64>,
    pub placed_at_least: Option<u64>,
    pub placed_at_most: Option<u64>,
    pub per_zone: Option<BTreeMap<String, u64>>,
    pub per_type: Option<BTreeMap<String, u64>>,
    pub per_vswitch: Option<BTreeMap<String, u64>>,
    pub spot: Option<u64>,
    pub on_demand: Option<u64>,
    pub placements: Option<Vec<PlacementIn>>,
    pub unused_offerings: Option<Vec<u32>>,
}

/// An expected exact plan.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanIn {
    pub launches: Vec<LaunchIn>,
    pub removals: Vec<RemovalIn>,
}

/// An expected launch; `reason` is compared only when given.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LaunchIn {
    pub template: String,
    pub count: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An expected removal; `reason` is compared only when given.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RemovalIn {
    pub instance_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An expected placement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlacementIn {
    pub offering: u32,
    pub count: u32,
}

// ---- lenient input types: defaults everywhere, converted into the WIT types ----

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct CaseIn {
    name: Option<String>,
    function: Option<FunctionIn>,
    settings: Option<Value>,
    snapshot: SnapshotIn,
    request: Option<RequestIn>,
    offerings: Option<Vec<OfferingIn>>,
    fleet: Option<Vec<NodeIn>>,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum FunctionIn {
    Configure,
    Scale,
    Place,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct SnapshotIn {
    now_ms: Option<u64>,
    templates: Option<Vec<TemplateIn>>,
    demand: Vec<DemandIn>,
    unmatched_queued: u32,
    nodes: Vec<NodeIn>,
    offerings: Vec<OfferingIn>,
    max_total_nodes: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct TemplateIn {
    name: Option<String>,
    labels: Vec<String>,
    executors: Option<u32>,
    min_nodes: u32,
    max_nodes: Option<u32>,
    idle_timeout_secs: Option<u64>,
    max_uses: u32,
    spot: Option<WitCase<SpotMode>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct DemandIn {
    template: Option<String>,
    queued: Option<u32>,
    oldest_wait_ms: Option<u64>,
    items: Option<Vec<ItemIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct ItemIn {
    id: u64,
    wait_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct NodeIn {
    instance_id: Option<String>,
    template: Option<String>,
    zone: Option<String>,
    instance_type: Option<String>,
    spot: bool,
    state: Option<WitCase<NodeState>>,
    busy_executors: u32,
    idle_ms: u64,
    age_ms: u64,
    uses: u32,
    failure: Option<String>,
    offline_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct OfferingIn {
    zone: Option<String>,
    vswitch: Option<String>,
    instance_type: Option<String>,
    spot: bool,
    vcpus: Option<u32>,
    memory_mib: Option<u32>,
    free_ips: Option<u32>,
    price_per_hour: Option<f64>,
    in_stock: Option<bool>,
    last_failure: Option<FailureIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct FailureIn {
    code: String,
    at_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct RequestIn {
    now_ms: Option<u64>,
    template: Option<TemplateRef>,
    count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TemplateRef {
    Name(String),
    Full(TemplateIn),
}

impl TemplateIn {
    fn build(self) -> Template {
        Template {
            name: self.name.unwrap_or_else(|| "default".into()),
            labels: self.labels,
            executors: self.executors.unwrap_or(1),
            min_nodes: self.min_nodes,
            max_nodes: self.max_nodes.unwrap_or(10),
            idle_timeout_secs: self.idle_timeout_secs.unwrap_or(600),
            max_uses: self.max_uses,
            spot: self.spot.map_or(SpotMode::OnDemand, |s| s.0),
        }
    }
}

impl NodeIn {
    fn build(self, index: usize, default_template: &str) -> Node {
        Node {
            instance_id: self
                .instance_id
                .unwrap_or_else(|| format!("i-{}", index + 1)),
            template: self.template.unwrap_or_else(|| default_template.into()),
            zone: self.zone.unwrap_or_else(|| DEFAULT_ZONE.into()),
            instance_type: self.instance_type.unwrap_or_else(|| DEFAULT_TYPE.into()),
            spot: self.spot,
            state: self.state.map_or(NodeState::Online, |s| s.0),
            busy_executors: self.busy_executors,
            idle_ms: self.idle_ms,
            age_ms: self.age_ms,
            uses: self.uses,
            failure: self.failure,
            offline_reason: self.offline_reason,
        }
    }
}

impl OfferingIn {
    fn build(self) -> Offering {
        let zone = self.zone.unwrap_or_else(|| DEFAULT_ZONE.into());
        Offering {
            vswitch: self.vswitch.unwrap_or_else(|| format!("vsw-{zone}")),
            zone,
            instance_type: self.instance_type.unwrap_or_else(|| DEFAULT_TYPE.into()),
            spot: self.spot,
            vcpus: self.vcpus.unwrap_or(2),
            memory_mib: self.memory_mib.unwrap_or(4096),
            free_ips: self.free_ips.unwrap_or(100),
            price_per_hour: self.price_per_hour,
            in_stock: self.in_stock.unwrap_or(true),
            last_failure: self.last_failure.map(|f| Failure {
                code: f.code,
                at_ms: f.at_ms,
            }),
        }
    }
}

impl SnapshotIn {
    fn build(self) -> Snapshot {
        let templates: Vec<Template> = match self.templates {
            Some(t) if !t.is_empty() => t.into_iter().map(TemplateIn::build).collect(),
            _ => vec![TemplateIn::default().build()],
        };
        let first = templates[0].name.clone();
        let demand = self
            .demand
            .into_iter()
            .map(|d| {
                let items = match d.items {
                    Some(items) => items
                        .into_iter()
                        .map(|i| QueuedItem {
                            id: i.id,
                            wait_ms: i.wait_ms,
                        })
                        .collect(),
                    None => (1..=u64::from(d.queued.unwrap_or(0)))
                        .map(|id| QueuedItem {
                            id,
                            wait_ms: d.oldest_wait_ms.unwrap_or(0),
                        })
                        .collect::<Vec<_>>(),
                };
                Demand {
                    template: d.template.unwrap_or_else(|| first.clone()),
                    queued: d.queued.unwrap_or(items.len() as u32),
                    oldest_wait_ms: d
                        .oldest_wait_ms
                        .unwrap_or_else(|| items.iter().map(|i| i.wait_ms).max().unwrap_or(0)),
                    items,
                }
            })
            .collect();
        Snapshot {
            now_ms: self.now_ms.unwrap_or(1_700_000_000_000),
            demand,
            unmatched_queued: self.unmatched_queued,
            nodes: self
                .nodes
                .into_iter()
                .enumerate()
                .map(|(i, n)| n.build(i, &first))
                .collect(),
            offerings: self.offerings.into_iter().map(OfferingIn::build).collect(),
            max_total_nodes: self.max_total_nodes.unwrap_or(100),
            templates,
        }
    }
}

impl CaseIn {
    fn build(self, file: &Path, index: usize) -> Result<Case, String> {
        let name = self.name.unwrap_or_else(|| format!("case {}", index + 1));
        let settings = serde_json::to_string(
            &self
                .settings
                .unwrap_or_else(|| Value::Object(Default::default())),
        )
        .map_err(|e| e.to_string())?;
        let function = self.function.unwrap_or(if self.request.is_some() {
            FunctionIn::Place
        } else {
            FunctionIn::Scale
        });
        let snapshot = self.snapshot.build();
        let input = match function {
            FunctionIn::Configure => Input::Configure,
            FunctionIn::Scale => Input::Scale(snapshot),
            FunctionIn::Place => {
                let r = self.request.unwrap_or_default();
                let template = match r.template {
                    Some(TemplateRef::Full(t)) => t.build(),
                    Some(TemplateRef::Name(n)) => snapshot
                        .templates
                        .iter()
                        .find(|t| t.name == n)
                        .cloned()
                        .unwrap_or_else(|| {
                            TemplateIn {
                                name: Some(n),
                                ..Default::default()
                            }
                            .build()
                        }),
                    None => snapshot.templates[0].clone(),
                };
                let offerings = match self.offerings {
                    Some(o) => o.into_iter().map(OfferingIn::build).collect(),
                    None => snapshot.offerings.clone(),
                };
                let fleet = match self.fleet {
                    Some(f) => f
                        .into_iter()
                        .enumerate()
                        .map(|(i, n)| n.build(i, &template.name))
                        .collect(),
                    None => snapshot
                        .nodes
                        .iter()
                        .filter(|n| n.template == template.name)
                        .cloned()
                        .collect(),
                };
                let request = PlaceRequest {
                    now_ms: r.now_ms.unwrap_or(snapshot.now_ms),
                    template,
                    count: r.count.unwrap_or(1),
                };
                Input::Place {
                    request,
                    offerings,
                    fleet,
                }
            }
        };
        Ok(Case {
            file: file.to_owned(),
            name,
            settings,
            input,
            expect: self.expect,
        })
    }
}

/// Reads the cases of one fixture file; the first bad case makes it an error.
pub fn load_file(path: &Path) -> Result<Vec<Case>, String> {
    load_cases(path)?.into_iter().collect()
}

/// Reads one fixture file case by case: the outer error is about the file (unreadable, not
/// TOML/JSON), the inner ones about single cases, so one typo does not hide the other cases.
pub fn load_cases(path: &Path) -> Result<Vec<Result<Case, String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let Value::Object(top) = &mut doc else {
        return Err(format!("{}: a fixture file is a table", path.display()));
    };
    let raw_cases = match top.remove("case") {
        None => vec![Value::Object(Default::default())],
        Some(Value::Array(cases)) => cases,
        Some(_) => {
            return Err(format!(
                "{}: `case` must be an array of tables ([[case]])",
                path.display()
            ));
        }
    };
    let cases = raw_cases
        .into_iter()
        .enumerate()
        .map(|(i, mut raw)| {
            let mut merged = doc.clone();
            merge(&mut merged, std::mem::take(&mut raw));
            let what = || match merged.get("name").and_then(Value::as_str) {
                Some(n) => format!("{}: case {} (`{n}`)", path.display(), i + 1),
                None => format!("{}: case {}", path.display(), i + 1),
            };
            let case: CaseIn =
                serde_json::from_value(merged.clone()).map_err(|e| format!("{}: {e}", what()))?;
            case.build(path, i).map_err(|e| format!("{}: {e}", what()))
        })
        .collect();
    Ok(cases)
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Expands directories into the fixture files inside them (sorted).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "toml" || e == "json"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the case passed; otherwise one line per broken expectation.
    pub failures: Vec<String>,
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Runs every case of every file (directories expanded), printing `PASS`/`FAIL` lines with
/// the reasons to `out`. A fixture file that cannot be read or parsed counts as one failure.
pub fn run(policy: &Policy, paths: &[PathBuf], out: &mut dyn Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let files = match expand(paths) {
        Ok(f) => f,
        Err(e) => {
            writeln!(out, "FAIL {e}")?;
            summary.failed += 1;
            return Ok(summary);
        }
    };
    if files.is_empty() {
        writeln!(
            out,
            "FAIL no fixture files given (or none in the directories)"
        )?;
        summary.failed += 1;
    }
    for file in files {
        let cases = match load_cases(&file) {
            Ok(c) => c,
            Err(e) => {
                writeln!(out, "FAIL {e}")?;
                summary.failed += 1;
                continue;
            }
        };
        for case in cases {
            let case = match case {
                Ok(c) => c,
                Err(e) => {
                    writeln!(out, "FAIL {e}")?;
                    summary.failed += 1;
                    continue;
                }
            };
            let o = run_case(policy, &case);
            if o.failures.is_empty() {
                summary.passed += 1;
                writeln!(out, "PASS {}: {}", o.file.display(), o.name)?;
            } else {
                summary.failed += 1;
                writeln!(out, "FAIL {}: {}", o.file.display(), o.name)?;
                for f in &o.failures {
                    for line in f.lines() {
                        writeln!(out, "    {line}")?;
                    }
                }
            }
        }
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// Runs one case and checks its expectations.
pub fn run_case(policy: &Policy, case: &Case) -> Outcome {
    let mut failures = Vec::new();
    let function = match &case.input {
        Input::Configure => Function::Configure,
        Input::Scale(_) => Function::Scale,
        Input::Place { .. } => Function::Place,
    };
    // Each evaluation under the watchdog, so a case that never returns fails instead of
    // hanging the run: the settings check, then the call.
    let settings = case.settings.clone();
    let configured = policy.guarded(Function::Configure, move |p| p.with_settings(&settings));
    let result: Result<Answer, PolicyError> = configured.and_then(|p| match case.input.clone() {
        Input::Configure => Ok(Answer::Configured),
        Input::Scale(s) => p.guarded(function, move |p| p.scale(&s)).map(Answer::Plan),
        Input::Place {
            request,
            offerings,
            fleet,
        } => p
            .guarded(function, move |p| p.place(&request, &offerings, &fleet))
            .map(Answer::Placements),
    });
    let e = &case.expect;
    match (result, e.error.is_some() || e.error_kind.is_some()) {
        (Err(err), true) => {
            let msg = err.to_string();
            if let Some(sub) = &e.error
                && !msg.contains(sub.as_str())
            {
                failures.push(format!(
                    "error: expected a message containing `{sub}`\n- got: {msg}"
                ));
            }
            if let Some(kind) = &e.error_kind
                && kind != err.kind()
            {
                failures.push(format!(
                    "error-kind: expected `{kind}`, got `{}` ({msg})",
                    err.kind()
                ));
            }
        }
        (Err(err), false) => failures.push(format!("unexpected error: {err}")),
        (Ok(answer), true) => failures.push(format!(
            "expected an error{}, but the call succeeded: {}",
            e.error
                .as_ref()
                .map(|s| format!(" containing `{s}`"))
                .unwrap_or_default(),
            answer.describe(&case.input)
        )),
        (Ok(Answer::Configured), false) => {}
        (Ok(Answer::Plan(plan)), false) => check_plan(e, &plan, &mut failures),
        (Ok(Answer::Placements(p)), false) => {
            if let Input::Place { offerings, .. } = &case.input {
                check_placements(e, offerings, &p, &mut failures)
            }
        }
    }
    Outcome {
        file: case.file.clone(),
        name: case.name.clone(),
        failures,
    }
}

enum Answer {
    Configured,
    Plan(ScalePlan),
    Placements(Vec<Placement>),
}

impl Answer {
    fn describe(&self, input: &Input) -> String {
        match (self, input) {
            (Answer::Configured, _) => "configure accepted the settings".into(),
            (Answer::Plan(p), _) => describe_plan(p),
            (Answer::Placements(p), Input::Place { offerings, .. }) => {
                describe_placements(p, offerings)
            }
            (Answer::Placements(p), _) => format!("{p:?}"),
        }
    }
}

fn describe_plan(p: &ScalePlan) -> String {
    let l: Vec<String> = p
        .launches
        .iter()
        .map(|l| format!("{}={}", l.template, l.count))
        .collect();
    let r: Vec<&str> = p.removals.iter().map(|r| r.instance_id.as_str()).collect();
    format!("launches [{}], removals [{}]", l.join(", "), r.join(", "))
}

fn describe_placements(p: &[Placement], offerings: &[Offering]) -> String {
    let parts: Vec<String> = p
        .iter()
        .map(|p| match offerings.get(p.offering as usize) {
            Some(o) => format!(
                "#{} {}/{}/{}{} x{}",
                p.offering,
                o.zone,
                o.vswitch,
                o.instance_type,
                if o.spot { "/spot" } else { "" },
                p.count
            ),
            None => format!("#{} x{}", p.offering, p.count),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn launched(plan: &ScalePlan, template: &str) -> u32 {
    plan.launches
        .iter()
        .filter(|l| l.template == template)
        .map(|l| l.count)
        .sum()
}

fn check_plan(e: &Expect, plan: &ScalePlan, f: &mut Vec<String>) {
    let got = || describe_plan(plan);
    for (t, &want) in e.launch.iter().flatten() {
        let have = launched(plan, t);
        if have != want {
            f.push(format!(
                "launch.{t}: expected {want}, got {have}  (plan: {})",
                got()
            ));
        }
    }
    for (t, &want) in e.launch_at_least.iter().flatten() {
        let have = launched(plan, t);
        if have < want {
            f.push(format!(
                "launch-at-least.{t}: expected >= {want}, got {have}  (plan: {})",
                got()
            ));
        }
    }
    for (t, &want) in e.launch_at_most.iter().flatten() {
        let have = launched(plan, t);
        if have > want {
            f.push(format!(
                "launch-at-most.{t}: expected <= {want}, got {have}  (plan: {})",
                got()
            ));
        }
    }
    if let Some(want) = e.launch_total {
        let have: u64 = plan.launches.iter().map(|l| u64::from(l.count)).sum();
        if have != want {
            f.push(format!(
                "launch-total: expected {want}, got {have}  (plan: {})",
                got()
            ));
        }
    }
    let removed: BTreeSet<&str> = plan
        .removals
        .iter()
        .map(|r| r.instance_id.as_str())
        .collect();
    if let Some(want) = &e.remove {
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        if want != removed {
            let missing: Vec<&str> = want.difference(&removed).copied().collect();
            let extra: Vec<&str> = removed.difference(&want).copied().collect();
            f.push(format!(
                "remove: expected exactly [{}]\n- missing: [{}]\n+ unexpected: [{}]",
                want.iter().copied().collect::<Vec<_>>().join(", "),
                missing.join(", "),
                extra.join(", ")
            ));
        }
    }
    for id in e.remove_includes.iter().flatten() {
        if !removed.contains(id.as_str()) {
            f.push(format!(
                "remove-includes: `{id}` is not removed  (plan: {})",
                got()
            ));
        }
    }
    for id in e.remove_excludes.iter().flatten() {
        if removed.contains(id.as_str()) {
            f.push(format!(
                "remove-excludes: `{id}` is removed  (plan: {})",
                got()
            ));
        }
    }
    if let Some(want) = e.remove_count
        && plan.removals.len() != want
    {
        f.push(format!(
            "remove-count: expected {want}, got {}  (plan: {})",
            plan.removals.len(),
            got()
        ));
    }
    if let Some(want) = &e.plan {
        check_exact_plan(want, plan, f);
    }
}

fn check_exact_plan(want: &PlanIn, plan: &ScalePlan, f: &mut Vec<String>) {
    let mut diff = Vec::new();
    let mut have_l: Vec<&Launch> = plan.launches.iter().collect();
    for w in &want.launches {
        let pos = have_l.iter().position(|h| {
            h.template == w.template
                && h.count == w.count
                && w.reason.as_ref().is_none_or(|r| *r == h.reason)
        });
        match pos {
            Some(i) => {
                have_l.remove(i);
            }
            None => diff.push(format!(
                "- launch {} x{}{}",
                w.template,
                w.count,
                w.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
        }
    }
    diff.extend(
        have_l
            .iter()
            .map(|h| format!("+ launch {} x{} ({})", h.template, h.count, h.reason)),
    );
    let mut have_r: Vec<&Removal> = plan.removals.iter().collect();
    for w in &want.removals {
        let pos = have_r.iter().position(|h| {
            h.instance_id == w.instance_id && w.reason.as_ref().is_none_or(|r| *r == h.reason)
        });
        match pos {
            Some(i) => {
                have_r.remove(i);
            }
            None => diff.push(format!(
                "- remove {}{}",
                w.instance_id,
                w.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
        }
    }
    diff.extend(
        have_r
            .iter()
            .map(|h| format!("+ remove {} ({})", h.instance_id, h.reason)),
    );
    if !diff.is_empty() {
        f.push(format!(
            "plan differs (- expected, + got):\n{}",
            diff.join("\n")
        ));
    }
}

fn check_placements(e: &Expect, offerings: &[Offering], p: &[Placement], f: &mut Vec<String>) {
    let got = || describe_placements(p, offerings);
    let total: u64 = p.iter().map(|p| u64::from(p.count)).sum();
    let sum_by = |key: &dyn Fn(&Offering) -> bool| -> u64 {
        p.iter()
            .filter(|p| offerings.get(p.offering as usize).is_some_and(key))
            .map(|p| u64::from(p.count))
            .sum()
    };
    if let Some(want) = e.placed
        && total != want
    {
        f.push(format!(
            "placed: expected {want}, got {total}  (placements: {})",
            got()
        ));
    }
    if let Some(want) = e.placed_at_least
        && total < want
    {
        f.push(format!(
            "placed-at-least: expected >= {want}, got {total}  (placements: {})",
            got()
        ));
    }
    if let Some(want) = e.placed_at_most
        && total > want
    {
        f.push(format!(
            "placed-at-most: expected <= {want}, got {total}  (placements: {})",
            got()
        ));
    }
    type Group<'a> = (
        &'a str,
        &'a Option<BTreeMap<String, u64>>,
        fn(&Offering) -> &str,
    );
    let groups: [Group; 3] = [
        ("per-zone", &e.per_zone, |o| o.zone.as_str()),
        ("per-type", &e.per_type, |o| o.instance_type.as_str()),
        ("per-vswitch", &e.per_vswitch, |o| o.vswitch.as_str()),
    ];
    for (what, want, key) in groups {
        for (k, &n) in want.iter().flatten() {
            let have = sum_by(&|o| key(o) == k);
            if have != n {
                f.push(format!(
                    "{what}.{k}: expected {n}, got {have}  (placements: {})",
                    got()
                ));
            }
        }
    }
    if let Some(want) = e.spot {
        let have = sum_by(&|o| o.spot);
        if have != want {
            f.push(format!(
                "spot: expected {want}, got {have}  (placements: {})",
                got()
            ));
        }
    }
    if let Some(want) = e.on_demand {
        let have = sum_by(&|o| !o.spot);
        if have != want {
            f.push(format!(
                "on-demand: expected {want}, got {have}  (placements: {})",
                got()
            ));
        }
    }
    if let Some(want) = &e.placements {
        let mut want = want.clone();
        want.sort();
        let mut have: Vec<PlacementIn> = p
            .iter()
            .map(|p| PlacementIn {
                offering: p.offering,
                count: p.count,
            })
            .collect();
        have.sort();
        if want != have {
            let fmt = |v: &[PlacementIn]| {
                v.iter()
                    .map(|p| format!("#{} x{}", p.offering, p.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            f.push(format!(
                "placements differ:\n- expected: [{}]\n+ got:      [{}]",
                fmt(&want),
                fmt(&have)
            ));
        }
    }
    for &i in e.unused_offerings.iter().flatten() {
        if p.iter().any(|p| p.offering == i && p.count > 0) {
            f.push(format!(
                "unused-offerings: offering #{i} got nodes  (placements: {})",
                got()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Case> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        load_file(&path).unwrap()
    }

    #[test]
    fn defaults_fill_a_short_case() {
        let cases = parse("snapshot.demand = [{ queued = 3 }]\nexpect.launch = { default = 3 }\n");
        assert_eq!(cases.len(), 1);
        let Input::Scale(s) = &cases[0].input else {
            panic!("scale expected")
        };
        assert_eq!(s.templates[0].name, "default");
        assert_eq!(s.demand[0].template, "default");
        assert_eq!(s.demand[0].items.len(), 3);
        assert_eq!(cases[0].settings, "{}");
        assert_eq!(cases[0].expect.launch.as_ref().unwrap()["default"], 3);
    }

    #[test]
    fn cases_merge_over_top_level_defaults() {
        let cases = parse(
            r#"
settings = { a = 1 }
[snapshot]
templates = [{ name = "linux", spot = "spot-first" }]
now-ms = 5
[[case]]
name = "one"
snapshot.nodes = [{ state = "draining" }]
[[case]]
name = "two"
settings = { b = 2 }
request = { template = "linux", count = 3 }
offerings = [{ zone = "z1" }, { zone = "z2", spot = true }]
"#,
        );
        assert_eq!(cases.len(), 2);
        let Input::Scale(s) = &cases[0].input else {
            panic!()
        };
        assert_eq!(s.now_ms, 5);
        assert_eq!(s.nodes[0].template, "linux");
        assert_eq!(s.nodes[0].instance_id, "i-1");
        assert_eq!(s.nodes[0].state, NodeState::Draining);
        assert_eq!(cases[1].settings, r#"{"a":1,"b":2}"#);
        let Input::Place {
            request, offerings, ..
        } = &cases[1].input
        else {
            panic!("place expected")
        };
        assert_eq!(request.template.spot, SpotMode::SpotFirst);
        assert_eq!((request.count, request.now_ms), (3, 5));
        assert_eq!(offerings[1].vswitch, "vsw-z2");
    }

    #[test]
    fn json_fixtures_use_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(
            &path,
            r#"{"case": [{"name": "j", "function": "place", "request": {"count": 2},
                "offerings": [{"zone": "z", "price-per-hour": 0.5, "last-failure": {"code": "NoStock", "at-ms": 9}}],
                "expect": {"placed": 2, "per-zone": {"z": 2}}}]}"#,
        )
        .unwrap();
        let cases = load_file(&path).unwrap();
        let Input::Place {
            offerings, request, ..
        } = &cases[0].input
        else {
            panic!("place expected")
        };
        assert_eq!((request.count, offerings[0].price_per_hour), (2, Some(0.5)));
        assert_eq!(offerings[0].last_failure.as_ref().unwrap().code, "NoStock");
        assert_eq!(cases[0].expect.per_zone.as_ref().unwrap()["z"], 2);
    }

    #[test]
    fn typos_are_errors_naming_the_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            "[[case]]\nname = \"x\"\nsnapshot.templates = [{ min-node = 1 }]\n",
        )
        .unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(
            err.contains("case 1 (`x`)") && err.contains("min-node"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_case_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            "[[case]]\nname = \"good\"\n[[case]]\nname = \"bad\"\nexpect.launchs = 1\n",
        )
        .unwrap();
        let cases = load_cases(&path).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].as_ref().unwrap().name, "good");
        assert!(
            cases[1]
                .as_ref()
                .unwrap_err()
                .contains("unknown field `launchs`")
        );
        assert!(load_file(&path).is_err());
    }

    #[test]
    fn plan_checks_report_what_differs() {
        let plan = ScalePlan {
            launches: vec![Launch {
                template: "linux".into(),
                count: 2,
                reason: "queue".into(),
            }],
            removals: vec![Removal {
                instance_id: "i-2".into(),
                reason: "idle".into(),
            }],
        };
        let expect = Expect {
            launch: Some([("linux".to_owned(), 3)].into()),
            remove: Some(vec!["i-1".into()]),
            remove_excludes: Some(vec!["i-2".into()]),
            ..Default::default()
        };
        let mut f = Vec::new();
        check_plan(&expect, &plan, &mut f);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].starts_with("launch.linux: expected 3, got 2"));
        assert!(f[1].contains("- missing: [i-1]") && f[1].contains("+ unexpected: [i-2]"));
        let ok = Expect {
            launch: Some([("linux".to_owned(), 2)].into()),
            ..Default::default()
        };
        let mut f = Vec::new();
        check_plan(&ok, &plan, &mut f);
        assert!(f.is_empty());
    }
}
