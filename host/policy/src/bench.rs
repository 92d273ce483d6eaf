//! `policy bench`: how long a policy takes on a synthetic snapshot of a given size.
//!
//! Reports the Cranelift compile time, the time to load the compiled component from the
//! cache, pooled instantiation, and p50/p99 of whole evaluations (fresh instance + configure +
//! scale + validation, and the same for place), plus the guest's peak linear memory and the
//! fuel each call used out of its budget (the deterministic CPU budget, so authors see their
//! headroom).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::*;
use super::{Limits, LoadedFrom, PolicyError, PolicyRuntime, PolicySource};

/// Size of the synthetic input.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Shape {
    pub nodes: u32,
    pub queued: u32,
    pub offerings: u32,
}

/// Percentiles of a set of timings, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    fn of(mut v: Vec<Duration>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Percentiles {
            p50_us: us(at(0.50)),
            p99_us: us(at(0.99)),
            max_us: us(*v.last().unwrap()),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:>9.1} us   p99 {:>9.1} us   max {:>9.1} us",
            self.p50_us, self.p99_us, self.max_us
        )
    }
}

/// What `policy bench` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub policy: String,
    pub shape: Shape,
    pub iterations: u32,
    pub component_bytes: usize,
    /// Cranelift compilation of the component.
    pub compile_ms: f64,
    /// Deserializing the compiled component from the on-disk cache.
    pub cached_load_ms: f64,
    /// Store creation (sandbox context, limiter) before instantiation.
    pub store_new: Percentiles,
    /// Instantiation from the pre-instantiated component with the pooling allocator.
    pub instantiate: Percentiles,
    /// Fresh instance + configure + scale + validation.
    pub scale: Percentiles,
    /// Fresh instance + configure + place + validation.
    pub place: Percentiles,
    /// Largest guest linear memory seen, in bytes.
    pub peak_memory_bytes: usize,
    /// The fuel budget of each call.
    pub fuel_budget: u64,
    /// Fuel `configure` used (with the benchmark's settings).
    pub configure_fuel: u64,
    /// Fuel one `scale` call used on the synthetic snapshot (the same every time).
    pub scale_fuel: u64,
    /// Fuel one `place` call used.
    pub place_fuel: u64,
    /// Nodes launched and removed by the plan for the synthetic snapshot (a sanity check).
    pub plan_launches: u64,
    pub plan_removals: usize,
    /// Nodes placed out of the `place` request.
    pub placed: u64,
    pub place_requested: u32,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shape;
        writeln!(f, "policy {} ({} bytes)", self.policy, self.component_bytes)?;
        writeln!(
            f,
            "snapshot: {} nodes, {} queued, {} offerings; {} iterations",
            s.nodes, s.queued, s.offerings, self.iterations
        )?;
        writeln!(f, "compile (Cranelift)     {:>9.2} ms", self.compile_ms)?;
        writeln!(f, "load from cache         {:>9.2} ms", self.cached_load_ms)?;
        writeln!(f, "store creation          {}", self.store_new)?;
        writeln!(f, "pooled instantiation    {}", self.instantiate)?;
        writeln!(f, "scale (fresh instance)  {}", self.scale)?;
        writeln!(f, "place (fresh instance)  {}", self.place)?;
        writeln!(
            f,
            "peak guest memory       {:>9.2} MiB",
            self.peak_memory_bytes as f64 / (1u64 << 20) as f64
        )?;
        let share = |used: u64| used as f64 * 100.0 / self.fuel_budget.max(1) as f64;
        writeln!(f, "fuel budget per call    {:>13}", self.fuel_budget)?;
        for (call, used) in [
            ("configure", self.configure_fuel),
            ("scale", self.scale_fuel),
            ("place", self.place_fuel),
        ] {
            writeln!(
                f,
                "fuel used by {call:<10} {used:>13}  ({:.3}% of the budget)",
                share(used)
            )?;
        }
        write!(
            f,
            "plan: {} launches, {} removals; place: {} of {} placed",
            self.plan_launches, self.plan_removals, self.placed, self.place_requested
        )
    }
}

/// Runs the benchmark.
pub fn run(
    policy: &str,
    settings: &str,
    shape: Shape,
    iterations: u32,
    limits: &Limits,
) -> Result<Report, PolicyError> {
    let source = PolicySource::parse(policy);
    let name = source.name();
    let bytes = source.bytes()?;
    let iterations = iterations.max(1);

    // Compile time without a cache, then load time from a fresh cache directory.
    let cache_dir = std::env::temp_dir().join(format!("ecsp-policy-bench-{}", std::process::id()));
    let runtime = Arc::new(PolicyRuntime::new(limits.clone())?.with_cache_dir(&cache_dir));
    let compile = runtime.component(&name, &bytes)?.1;
    let cached = runtime.component(&name, &bytes)?.1;
    let _ = std::fs::remove_dir_all(&cache_dir);
    if cached.from != LoadedFrom::Cache {
        tracing::warn!(
            "the compiled-component cache was not used; the cached load time is a compile time"
        );
    }

    let policy = runtime.load_bytes(&name, &bytes, settings)?;
    let snapshot = synthetic_snapshot(shape);
    let template = snapshot.templates[0].clone();
    let fleet: Vec<Node> = snapshot
        .nodes
        .iter()
        .filter(|n| n.template == template.name)
        .cloned()
        .collect();
    let request = PlaceRequest {
        now_ms: snapshot.now_ms,
        template,
        count: 50,
    };

    // One guarded evaluation of each kind first: a policy that never returns is reported as
    // such (after the watchdog's deadline) instead of hanging the benchmark.
    use super::Function;
    let configure_fuel = policy.guarded(Function::Configure, |p| {
        measured(p.check_settings_measured())
    })?;
    let probe = snapshot.clone();
    let scale_fuel =
        policy.guarded(Function::Scale, move |p| measured(p.scale_measured(&probe)))?;
    let (probe_request, probe_offerings, probe_fleet) =
        (request.clone(), snapshot.offerings.clone(), fleet.clone());
    let place_fuel = policy.guarded(Function::Place, move |p| {
        measured(p.place_measured(&probe_request, &probe_offerings, &probe_fleet))
    })?;

    let warmup = (iterations / 10).clamp(1, 100);
    let mut store_new = Vec::new();
    let mut instantiate = Vec::new();
    for i in 0..warmup + iterations {
        let (s, t) = policy.measure_instantiate()?;
        if i >= warmup {
            store_new.push(s);
            instantiate.push(t);
        }
    }
    let mut peak = 0;
    let mut scale = Vec::new();
    let mut plan = None;
    for i in 0..warmup + iterations {
        let (r, stats) = policy.scale_measured(&snapshot);
        plan = Some(r?);
        peak = peak.max(stats.peak_memory);
        if i >= warmup {
            scale.push(stats.total);
        }
    }
    let mut place = Vec::new();
    let mut placed = Vec::new();
    for i in 0..warmup + iterations {
        let started = Instant::now();
        let (r, stats) = policy.place_measured(&request, &snapshot.offerings, &fleet);
        placed = r?;
        peak = peak.max(stats.peak_memory);
        if i >= warmup {
            place.push(started.elapsed());
        }
    }
    let plan = plan.expect("at least one iteration");
    Ok(Report {
        policy: name,
        shape,
        iterations,
        component_bytes: bytes.len(),
        compile_ms: compile.component_time.as_secs_f64() * 1e3,
        cached_load_ms: cached.component_time.as_secs_f64() * 1e3,
        store_new: Percentiles::of(store_new),
        instantiate: Percentiles::of(instantiate),
        scale: Percentiles::of(scale),
        place: Percentiles::of(place),
        peak_memory_bytes: peak,
        fuel_budget: limits.fuel,
        configure_fuel,
        scale_fuel,
        place_fuel,
        plan_launches: plan.launches.iter().map(|l| u64::from(l.count)).sum(),
        plan_removals: plan.removals.len(),
        placed: placed.iter().map(|p| u64::from(p.count)).sum(),
        place_requested: request.count,
    })
}

/// The fuel an evaluation used, or its error.
fn measured<T>(
    (result, stats): (Result<T, PolicyError>, super::EvalStats),
) -> Result<u64, PolicyError> {
    result.map(|_| stats.fuel_used)
}

/// A deterministic snapshot: 4 templates, `nodes` nodes in a mix of states, `queued` items
/// spread over the templates, `offerings` offerings over 4 zones x types x spot/on-demand.
pub fn synthetic_snapshot(shape: Shape) -> Snapshot {
    let now_ms = 1_700_000_000_000;
    let zones = [
        "cn-hangzhou-g",
        "cn-hangzhou-h",
        "cn-hangzhou-i",
        "cn-hangzhou-j",
    ];
    let templates: Vec<Template> = ["linux", "linux-large", "windows", "gpu"]
        .iter()
        .enumerate()
        .map(|(i, name)| Template {
            name: (*name).into(),
            labels: vec![(*name).into(), "docker".into()],
            executors: 2,
            min_nodes: i as u32,
            max_nodes: shape.nodes.max(1) * 2,
            idle_timeout_secs: 600,
            max_uses: if i == 3 { 1 } else { 0 },
            spot: [
                SpotMode::OnDemand,
                SpotMode::SpotFirst,
                SpotMode::SpotOnly,
                SpotMode::OnDemand,
            ][i],
        })
        .collect();
    let states = [
        NodeState::Online,
        NodeState::Online,
        NodeState::Online,
        NodeState::Online,
        NodeState::Pending,
        NodeState::Bootstrapping,
        NodeState::Draining,
    ];
    let nodes = (0..shape.nodes)
        .map(|i| {
            let state = states[i as usize % states.len()];
            let online = state == NodeState::Online;
            Node {
                instance_id: format!("i-bp1{i:016x}"),
                template: templates[i as usize % templates.len()].name.clone(),
                zone: zones[i as usize % zones.len()].into(),
                instance_type: format!("ecs.c7.{}", ["large", "xlarge", "2xlarge"][i as usize % 3]),
                spot: i % 3 == 0,
                state,
                busy_executors: if online { i % 3 } else { 0 },
                idle_ms: if online && i % 3 == 0 {
                    u64::from(i % 20) * 60_000
                } else {
                    0
                },
                age_ms: u64::from(i) * 1_000 + 60_000,
                uses: i % 5,
                failure: None,
                offline_reason: None,
            }
        })
        .collect();
    let per_template = shape.queued / templates.len() as u32;
    let mut next_id = 0u64;
    let demand = templates
        .iter()
        .enumerate()
        .map(|(t, tpl)| {
            let n = per_template + u32::from((t as u32) < shape.queued % templates.len() as u32);
            let items: Vec<QueuedItem> = (0..n)
                .map(|k| {
                    next_id += 1;
                    QueuedItem {
                        id: next_id,
                        wait_ms: u64::from(n - k) * 250,
                    }
                })
                .collect();
            Demand {
                template: tpl.name.clone(),
                queued: n,
                oldest_wait_ms: items.first().map_or(0, |i| i.wait_ms),
                items,
            }
        })
        .collect();
    let offerings = (0..shape.offerings)
        .map(|i| {
            let zone = zones[i as usize % zones.len()];
            let size = (i as usize / zones.len()) % 6;
            Offering {
                zone: zone.into(),
                vswitch: format!("vsw-{zone}-{}", i % 3),
                instance_type: format!(
                    "ecs.{}.{}",
                    ["c7", "g7", "r7", "c8i"][(i as usize / 24) % 4],
                    [
                        "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"
                    ][size]
                ),
                spot: i % 2 == 1,
                vcpus: 2 << size,
                memory_mib: 4096 << size,
                free_ips: 50 + (i * 37) % 200,
                price_per_hour: (i % 5 != 0)
                    .then(|| f64::from(2 << size) * if i % 2 == 1 { 0.03 } else { 0.1 }),
                in_stock: i % 11 != 0,
                last_failure: (i % 13 == 0).then(|| Failure {
                    code: "OperationDenied.NoStock".into(),
                    at_ms: now_ms - 60_000,
                }),
            }
        })
        .collect();
    Snapshot {
        now_ms,
        templates,
        demand,
        unmatched_queued: 3,
        nodes,
        offerings,
        max_total_nodes: shape.nodes.max(1) * 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_snapshot_has_the_requested_shape() {
        let s = synthetic_snapshot(Shape {
            nodes: 10,
            queued: 7,
            offerings: 5,
        });
        assert_eq!(s.nodes.len(), 10);
        assert_eq!(s.demand.iter().map(|d| d.queued).sum::<u32>(), 7);
        assert_eq!(s.demand.iter().map(|d| d.items.len()).sum::<usize>(), 7);
        assert_eq!(s.offerings.len(), 5);
        let ids: std::collections::HashSet<_> = s.nodes.iter().map(|n| &n.instance_id).collect();
        assert_eq!(ids.len(), 10);
    }

    #[test]
    fn percentiles() {
        let p = Percentiles::of((1..=100).map(Duration::from_micros).collect());
        assert_eq!((p.p50_us, p.p99_us, p.max_us), (50.0, 99.0, 100.0));
    }
}
