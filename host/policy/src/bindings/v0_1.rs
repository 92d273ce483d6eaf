//! Contract 0.1.0, generated from its frozen text (`wit/v0.1.0/policy.wit`), and the
//! conversions that let a 0.1.x policy run on the newest snapshot.
//!
//! 0.2.0 added node states (`offline`, `disconnected`, `interrupted`) and the node's
//! `offline-reason`. A 0.1.x policy sees each new state as the nearest 0.1.0 state that is not
//! capacity, so it never counts such a node as able to run builds: `offline` as `draining`,
//! `disconnected` and `interrupted` as `terminating`, with the reason in `failure`.

use crate::bindings as latest;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "policy-module",
});

use exports::ecs_provisioner::policy::policy as old;

impl From<latest::Level> for self::ecs_provisioner::policy::host::Level {
    fn from(l: latest::Level) -> Self {
        use self::ecs_provisioner::policy::host::Level as Old;
        match l {
            latest::Level::Trace => Old::Trace,
            latest::Level::Debug => Old::Debug,
            latest::Level::Info => Old::Info,
            latest::Level::Warn => Old::Warn,
            latest::Level::Error => Old::Error,
        }
    }
}

/// The newest level of a 0.1.0 log line.
pub fn level(l: self::ecs_provisioner::policy::host::Level) -> latest::Level {
    use self::ecs_provisioner::policy::host::Level as Old;
    match l {
        Old::Trace => latest::Level::Trace,
        Old::Debug => latest::Level::Debug,
        Old::Info => latest::Level::Info,
        Old::Warn => latest::Level::Warn,
        Old::Error => latest::Level::Error,
    }
}

/// The snapshot as a 0.1.0 policy sees it.
pub fn snapshot(s: &latest::Snapshot) -> old::Snapshot {
    old::Snapshot {
        now_ms: s.now_ms,
        templates: s.templates.iter().map(template).collect(),
        demand: s
            .demand
            .iter()
            .map(|d| old::Demand {
                template: d.template.clone(),
                queued: d.queued,
                oldest_wait_ms: d.oldest_wait_ms,
                items: d
                    .items
                    .iter()
                    .map(|i| old::QueuedItem {
                        id: i.id,
                        wait_ms: i.wait_ms,
                    })
                    .collect(),
            })
            .collect(),
        unmatched_queued: s.unmatched_queued,
        nodes: s.nodes.iter().map(node).collect(),
        offerings: s.offerings.iter().map(offering).collect(),
        max_total_nodes: s.max_total_nodes,
    }
}

/// The place request as a 0.1.0 policy sees it.
pub fn place_request(r: &latest::PlaceRequest) -> old::PlaceRequest {
    old::PlaceRequest {
        now_ms: r.now_ms,
        template: template(&r.template),
        count: r.count,
    }
}

/// A 0.1.0 scale plan in the newest shape.
pub fn scale_plan(p: old::ScalePlan) -> latest::ScalePlan {
    latest::ScalePlan {
        launches: p
            .launches
            .into_iter()
            .map(|l| latest::Launch {
                template: l.template,
                count: l.count,
                reason: l.reason,
            })
            .collect(),
        removals: p
            .removals
            .into_iter()
            .map(|r| latest::Removal {
                instance_id: r.instance_id,
                reason: r.reason,
            })
            .collect(),
    }
}

/// 0.1.0 placements in the newest shape.
pub fn placements(p: Vec<old::Placement>) -> Vec<latest::Placement> {
    p.into_iter()
        .map(|p| latest::Placement {
            offering: p.offering,
            count: p.count,
        })
        .collect()
}

fn template(t: &latest::Template) -> old::Template {
    old::Template {
        name: t.name.clone(),
        labels: t.labels.clone(),
        executors: t.executors,
        min_nodes: t.min_nodes,
        max_nodes: t.max_nodes,
        idle_timeout_secs: t.idle_timeout_secs,
        max_uses: t.max_uses,
        spot: match t.spot {
            latest::SpotMode::OnDemand => old::SpotMode::OnDemand,
            latest::SpotMode::SpotFirst => old::SpotMode::SpotFirst,
            latest::SpotMode::SpotOnly => old::SpotMode::SpotOnly,
        },
    }
}

/// A node in 0.1.0 terms: the states 0.2.0 added map to states that are not capacity.
pub fn node(n: &latest::Node) -> old::Node {
    use latest::NodeState as S;
    let (state, why) = match n.state {
        S::Requested => (old::NodeState::Requested, None),
        S::Pending => (old::NodeState::Pending, None),
        S::Running => (old::NodeState::Running, None),
        S::Bootstrapping => (old::NodeState::Bootstrapping, None),
        S::Connecting => (old::NodeState::Connecting, None),
        S::Online => (old::NodeState::Online, None),
        S::Offline => (
            old::NodeState::Draining,
            Some(format!(
                "offline: {}",
                n.offline_reason.as_deref().unwrap_or("marked offline in Jenkins")
            )),
        ),
        S::Disconnected => (
            old::NodeState::Terminating,
            Some("disconnected: the agent dropped".to_owned()),
        ),
        S::Interrupted => (
            old::NodeState::Terminating,
            Some("interrupted: the cloud is reclaiming the spot instance".to_owned()),
        ),
        S::Draining => (old::NodeState::Draining, None),
        S::Stopped => (
            old::NodeState::Terminating,
            Some("stopped: kept in the warm pool, not capacity".to_owned()),
        ),
        S::Terminating => (old::NodeState::Terminating, None),
    };
    old::Node {
        instance_id: n.instance_id.clone(),
        template: n.template.clone(),
        zone: n.zone.clone(),
        instance_type: n.instance_type.clone(),
        spot: n.spot,
        state,
        busy_executors: n.busy_executors,
        idle_ms: n.idle_ms,
        age_ms: n.age_ms,
        uses: n.uses,
        failure: n.failure.clone().or(why),
    }
}

/// An offering in 0.1.0 terms (unchanged in 0.2.0).
pub fn offering(o: &latest::Offering) -> old::Offering {
    old::Offering {
        zone: o.zone.clone(),
        vswitch: o.vswitch.clone(),
        instance_type: o.instance_type.clone(),
        spot: o.spot,
        vcpus: o.vcpus,
        memory_mib: o.memory_mib,
        free_ips: o.free_ips,
        price_per_hour: o.price_per_hour,
        in_stock: o.in_stock,
        last_failure: o.last_failure.as_ref().map(|f| old::Failure {
            code: f.code.clone(),
            at_ms: f.at_ms,
        }),
    }
}
