//! `PolicyPort` over the wasmtime policy runtime: converts the engine's view into the WIT
//! snapshot and the policy's answer back into engine terms.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{PolicyConfig, SpotModeConfig, TemplateConfig};
use crate::engine::board::PolicyInfo;
use crate::engine::decide::{Observation, Placement, PolicyPort};
use crate::engine::model::{self, Node, NodeState, Offering, Plan, PlannedLaunch, PlannedRemoval};
use crate::policy::{self as wit, Function, Limits, Policy, PolicyRuntime, PolicySource};

/// A loaded WebAssembly policy.
#[derive(Clone)]
pub struct WasmPolicy {
    policy: Policy,
}

impl WasmPolicy {
    pub fn new(policy: Policy) -> Self {
        WasmPolicy { policy }
    }

    /// Loads `[policy] source` with its settings under the configured limits, and the built-in
    /// default (same limits, no settings) as the fallback.
    pub fn load_with_fallback(config: &PolicyConfig) -> anyhow::Result<(WasmPolicy, WasmPolicy)> {
        Self::load_with(config, true)
    }

    /// [`WasmPolicy::load_with_fallback`] for an offline replay: evaluations run on the
    /// caller's thread, without the watchdog's hand-off ([`Limits::watchdog_thread`]).
    pub fn load_for_replay(config: &PolicyConfig) -> anyhow::Result<(WasmPolicy, WasmPolicy)> {
        Self::load_with(config, false)
    }

    fn load_with(config: &PolicyConfig, watchdog_thread: bool) -> anyhow::Result<(WasmPolicy, WasmPolicy)> {
        let limits = Limits {
            memory_bytes: u64::from(config.memory_limit_mib) << 20,
            fuel: *config.fuel.get_ref(),
            deadline: config.timeout,
            log_lines_per_minute: *config.log_lines_per_minute.get_ref(),
            log_burst: *config.log_burst.get_ref(),
            watchdog_thread,
            ..Limits::default()
        };
        // The compiled-policy cache that `policy build` warms: a 10-20 MB Python or JavaScript
        // component would otherwise cost a Cranelift compile of tens of seconds at each start.
        let mut runtime = PolicyRuntime::new(limits)?;
        if let Some(dir) = PolicyRuntime::default_cache_dir() {
            runtime = runtime.with_cache_dir(dir);
        }
        let runtime = Arc::new(runtime);
        // `configure` runs at load time: under the watchdog too, so start-up cannot hang.
        let load = |source: &str, settings: String| -> anyhow::Result<Policy> {
            let prepared = runtime.prepare(&PolicySource::parse(source))?;
            Ok(prepared.guarded(Function::Configure, move |p| p.with_settings(&settings))?)
        };
        let policy = load(&config.source, config.settings_json())?;
        let fallback = load("builtin:default", "{}".into())?;
        Ok((WasmPolicy::new(policy), WasmPolicy::new(fallback)))
    }

    /// What the console shows of the policy loaded from `source`: the source, the SHA-256 of
    /// the component's bytes and the contract version it exports.
    pub fn info(&self, source: &str) -> anyhow::Result<PolicyInfo> {
        let bytes = PolicySource::parse(source).bytes()?;
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(PolicyInfo { source: source.to_owned(), sha256, contract: self.policy.contract_version().to_owned() })
    }
}

impl PolicyPort for WasmPolicy {
    fn name(&self) -> &str {
        self.policy.name()
    }

    fn scale(&self, obs: &Observation<'_>) -> anyhow::Result<Plan> {
        let snapshot = snapshot(obs);
        let plan = self.policy.guarded(Function::Scale, move |p| p.scale(&snapshot))?;
        Ok(Plan {
            launches: plan
                .launches
                .into_iter()
                .map(|l| PlannedLaunch { template: l.template, count: l.count, reason: l.reason })
                .collect(),
            removals: plan
                .removals
                .into_iter()
                .map(|r| PlannedRemoval { instance_id: r.instance_id, reason: r.reason })
                .collect(),
        })
    }

    fn place(
        &self,
        now_ms: u64,
        template: &TemplateConfig,
        count: u32,
        offerings: &[&Offering],
        fleet: &[&Node],
    ) -> anyhow::Result<Vec<Placement>> {
        let request = wit::PlaceRequest { now_ms, template: wit_template(template), count };
        let offerings: Vec<wit::Offering> = offerings.iter().map(|o| wit_offering(o)).collect();
        let fleet: Vec<wit::Node> = fleet.iter().map(|n| wit_node(n, now_ms)).collect();
        let placements =
            self.policy.guarded(Function::Place, move |p| p.place(&request, &offerings, &fleet))?;
        Ok(placements.into_iter().map(|p| (p.offering as usize, p.count)).collect())
    }
}

/// The WIT snapshot of an observation.
pub fn snapshot(obs: &Observation<'_>) -> wit::Snapshot {
    wit::Snapshot {
        now_ms: obs.now_ms,
        templates: obs.templates.iter().map(wit_template).collect(),
        demand: obs
            .queues
            .iter()
            .map(|q| wit::Demand {
                template: q.template.clone(),
                queued: q.items.len() as u32,
                oldest_wait_ms: q.items.iter().map(|(_, w)| *w).max().unwrap_or(0),
                items: q.items.iter().map(|(id, wait_ms)| wit::QueuedItem { id: *id, wait_ms: *wait_ms }).collect(),
            })
            .collect(),
        unmatched_queued: obs.unmatched,
        nodes: obs.nodes.iter().map(|n| wit_node(n, obs.now_ms)).collect(),
        offerings: obs.offerings.iter().map(wit_offering).collect(),
        max_total_nodes: obs.max_total_nodes,
    }
}

fn wit_template(t: &TemplateConfig) -> wit::Template {
    wit::Template {
        name: t.name().to_owned(),
        labels: t.labels.clone(),
        executors: t.executors,
        min_nodes: t.min_nodes,
        max_nodes: t.max_nodes,
        idle_timeout_secs: t.idle_timeout.as_secs(),
        max_uses: t.max_uses,
        spot: match t.spot {
            SpotModeConfig::OnDemand => wit::SpotMode::OnDemand,
            SpotModeConfig::SpotFirst => wit::SpotMode::SpotFirst,
            SpotModeConfig::SpotOnly => wit::SpotMode::SpotOnly,
        },
    }
}

fn wit_node(n: &Node, now_ms: u64) -> wit::Node {
    let agent = n.agent.as_ref();
    wit::Node {
        instance_id: n.instance.instance_id.clone(),
        template: n.instance.template.clone(),
        zone: n.instance.zone.clone(),
        instance_type: n.instance.instance_type.clone(),
        spot: n.instance.spot,
        state: match n.state {
            NodeState::Requested => wit::NodeState::Requested,
            NodeState::Pending => wit::NodeState::Pending,
            NodeState::Running => wit::NodeState::Running,
            NodeState::Bootstrapping => wit::NodeState::Bootstrapping,
            NodeState::Connecting => wit::NodeState::Connecting,
            NodeState::Online => wit::NodeState::Online,
            NodeState::Offline => wit::NodeState::Offline,
            NodeState::Disconnected => wit::NodeState::Disconnected,
            NodeState::Interrupted => wit::NodeState::Interrupted,
            NodeState::Draining => wit::NodeState::Draining,
            NodeState::Stopped => wit::NodeState::Stopped,
            NodeState::Terminating => wit::NodeState::Terminating,
        },
        busy_executors: agent.map_or(0, |a| a.busy_executors),
        idle_ms: agent.filter(|_| matches!(n.state, NodeState::Online | NodeState::Offline)).map_or(0, |a| a.idle_ms),
        age_ms: n.instance.created_ms.map_or(0, |t| now_ms.saturating_sub(t)),
        uses: agent.map_or(0, |a| a.uses),
        failure: n.failure.clone(),
        offline_reason: agent.and_then(|a| a.offline_reason.clone()),
    }
}

fn wit_offering(o: &Offering) -> wit::Offering {
    wit::Offering {
        zone: o.zone.clone(),
        vswitch: o.vswitch.clone(),
        instance_type: o.instance_type.clone(),
        spot: o.spot,
        vcpus: o.vcpus,
        memory_mib: o.memory_mib,
        free_ips: o.free_ips,
        price_per_hour: o.price_per_hour,
        in_stock: o.in_stock,
        last_failure: o.last_failure.as_ref().map(|f: &model::OfferingFailure| wit::Failure { code: f.code.clone(), at_ms: f.at_ms }),
    }
}
