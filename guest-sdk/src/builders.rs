//! Typed builders for test inputs: snapshots, templates, nodes, offerings, place requests.
//!
//! Every builder starts from small, valid defaults, so a test names only what it is about.
//!
//! ```
//! use ecs_policy_sdk::builders::*;
//! use ecs_policy_sdk::SpotMode;
//!
//! let snapshot = SnapshotBuilder::new(1_700_000_000_000)
//!     .template(TemplateBuilder::new("linux").labels(["linux", "docker"]).executors(2).max(10))
//!     .queued("linux", 5, 60_000)
//!     .node(NodeBuilder::online("i-1", "linux").idle_ms(30_000))
//!     .node(NodeBuilder::new("i-2", "linux", ecs_policy_sdk::NodeState::Pending))
//!     .offering(OfferingBuilder::new("cn-hangzhou-h", "vsw-1", "ecs.c7.large").price(0.2))
//!     .build();
//! assert_eq!(snapshot.queued_for("linux"), 5);
//! assert_eq!(snapshot.templates[0].spot, SpotMode::OnDemand);
//! ```

use crate::types::{
    Demand, Failure, Node, NodeState, Offering, PlaceRequest, QueuedItem, Snapshot, SpotMode,
    Template,
};

/// Builds a [`Snapshot`]. Defaults: no templates, demand, nodes or offerings;
/// `max_total_nodes` 1000.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    next_item_id: u64,
}

impl SnapshotBuilder {
    /// An empty snapshot taken at `now_ms` (milliseconds since the Unix epoch).
    pub fn new(now_ms: u64) -> Self {
        SnapshotBuilder {
            snapshot: Snapshot {
                now_ms,
                templates: Vec::new(),
                demand: Vec::new(),
                unmatched_queued: 0,
                nodes: Vec::new(),
                offerings: Vec::new(),
                max_total_nodes: 1000,
            },
            next_item_id: 1,
        }
    }

    /// Add a template (after those already added: configuration order).
    pub fn template(mut self, template: impl Into<Template>) -> Self {
        self.snapshot.templates.push(template.into());
        self
    }

    /// Add `count` queued builds for `template`, the oldest having waited `oldest_wait_ms`
    /// and the others spread evenly down towards 0. Adds to earlier demand for the template.
    pub fn queued(mut self, template: &str, count: u32, oldest_wait_ms: u64) -> Self {
        let step = oldest_wait_ms / u64::from(count.max(1));
        let first_id = self.next_item_id;
        let items = (0..u64::from(count)).map(|k| QueuedItem {
            id: first_id + k,
            wait_ms: oldest_wait_ms - k * step,
        });
        self.next_item_id += u64::from(count);
        match self
            .snapshot
            .demand
            .iter_mut()
            .find(|d| d.template == template)
        {
            Some(d) => {
                d.items.extend(items);
                d.items.sort_by_key(|i| std::cmp::Reverse(i.wait_ms));
                d.queued += count;
                d.oldest_wait_ms = d.oldest_wait_ms.max(oldest_wait_ms);
            }
            None => self.snapshot.demand.push(Demand {
                template: template.to_owned(),
                queued: count,
                oldest_wait_ms: if count == 0 { 0 } else { oldest_wait_ms },
                items: items.collect(),
            }),
        }
        self
    }

    /// Add a raw demand entry as is.
    pub fn demand(mut self, demand: Demand) -> Self {
        self.snapshot.demand.push(demand);
        self
    }

    /// Set the number of queued builds no template can serve.
    pub fn unmatched(mut self, queued: u32) -> Self {
        self.snapshot.unmatched_queued = queued;
        self
    }

    /// Add a node.
    pub fn node(mut self, node: impl Into<Node>) -> Self {
        self.snapshot.nodes.push(node.into());
        self
    }

    /// Add an offering.
    pub fn offering(mut self, offering: impl Into<Offering>) -> Self {
        self.snapshot.offerings.push(offering.into());
        self
    }

    /// Set the cloud-wide node cap.
    pub fn max_total_nodes(mut self, max: u32) -> Self {
        self.snapshot.max_total_nodes = max;
        self
    }

    /// The snapshot.
    pub fn build(self) -> Snapshot {
        self.snapshot
    }
}

impl From<SnapshotBuilder> for Snapshot {
    fn from(b: SnapshotBuilder) -> Self {
        b.build()
    }
}

/// Builds a [`Template`]. Defaults: labels `[name]`, 1 executor, min 0, max 10,
/// idle timeout 600 s, unlimited uses, on-demand.
#[derive(Debug, Clone)]
pub struct TemplateBuilder(Template);

impl TemplateBuilder {
    /// A template called `name`.
    pub fn new(name: &str) -> Self {
        TemplateBuilder(Template {
            name: name.to_owned(),
            labels: vec![name.to_owned()],
            executors: 1,
            min_nodes: 0,
            max_nodes: 10,
            idle_timeout_secs: 600,
            max_uses: 0,
            spot: SpotMode::OnDemand,
        })
    }
    /// Jenkins labels.
    pub fn labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.0.labels = labels.into_iter().map(Into::into).collect();
        self
    }
    /// Executors per node.
    pub fn executors(mut self, n: u32) -> Self {
        self.0.executors = n;
        self
    }
    /// `min-nodes`.
    pub fn min(mut self, n: u32) -> Self {
        self.0.min_nodes = n;
        self
    }
    /// `max-nodes`.
    pub fn max(mut self, n: u32) -> Self {
        self.0.max_nodes = n;
        self
    }
    /// `idle-timeout-secs` (0 = never idle out).
    pub fn idle_timeout_secs(mut self, secs: u64) -> Self {
        self.0.idle_timeout_secs = secs;
        self
    }
    /// `max-uses` (0 = unlimited).
    pub fn max_uses(mut self, n: u32) -> Self {
        self.0.max_uses = n;
        self
    }
    /// Spot mode.
    pub fn spot(mut self, mode: SpotMode) -> Self {
        self.0.spot = mode;
        self
    }
    /// The template.
    pub fn build(self) -> Template {
        self.0
    }
}

impl From<TemplateBuilder> for Template {
    fn from(b: TemplateBuilder) -> Self {
        b.0
    }
}

/// Builds a [`Node`]. Defaults: zone `cn-hangzhou-h`, type `ecs.c7.large`, on-demand,
/// not busy, idle 0 ms, age 10 minutes, 0 uses, no failure.
#[derive(Debug, Clone)]
pub struct NodeBuilder(Node);

impl NodeBuilder {
    /// A node of `template` in `state`.
    pub fn new(instance_id: &str, template: &str, state: NodeState) -> Self {
        NodeBuilder(Node {
            instance_id: instance_id.to_owned(),
            template: template.to_owned(),
            zone: "cn-hangzhou-h".to_owned(),
            instance_type: "ecs.c7.large".to_owned(),
            spot: false,
            state,
            busy_executors: 0,
            idle_ms: 0,
            age_ms: 600_000,
            uses: 0,
            failure: None,
            offline_reason: None,
        })
    }
    /// An online, idle node of `template`.
    pub fn online(instance_id: &str, template: &str) -> Self {
        Self::new(instance_id, template, NodeState::Online)
    }
    /// Executors running a build (also resets `idle_ms` to 0 when non-zero).
    pub fn busy(mut self, executors: u32) -> Self {
        self.0.busy_executors = executors;
        if executors > 0 {
            self.0.idle_ms = 0;
        }
        self
    }
    /// Milliseconds since the node last became idle.
    pub fn idle_ms(mut self, ms: u64) -> Self {
        self.0.idle_ms = ms;
        self
    }
    /// Milliseconds since launch was requested.
    pub fn age_ms(mut self, ms: u64) -> Self {
        self.0.age_ms = ms;
        self
    }
    /// Builds started so far.
    pub fn uses(mut self, n: u32) -> Self {
        self.0.uses = n;
        self
    }
    /// Zone.
    pub fn zone(mut self, zone: &str) -> Self {
        self.0.zone = zone.to_owned();
        self
    }
    /// Instance type.
    pub fn instance_type(mut self, t: &str) -> Self {
        self.0.instance_type = t.to_owned();
        self
    }
    /// Whether it is a spot instance.
    pub fn spot(mut self, spot: bool) -> Self {
        self.0.spot = spot;
        self
    }
    /// Lifecycle state.
    pub fn state(mut self, state: NodeState) -> Self {
        self.0.state = state;
        self
    }
    /// Marked offline in Jenkins by someone else (an administrator, a monitor) with `reason`.
    pub fn offline(mut self, reason: &str) -> Self {
        self.0.state = NodeState::Offline;
        self.0.offline_reason = Some(reason.to_owned());
        self
    }
    /// Terminating because of `reason` (e.g. `launch-timeout`).
    pub fn failed(mut self, reason: &str) -> Self {
        self.0.state = NodeState::Terminating;
        self.0.failure = Some(reason.to_owned());
        self
    }
    /// The node.
    pub fn build(self) -> Node {
        self.0
    }
}

impl From<NodeBuilder> for Node {
    fn from(b: NodeBuilder) -> Self {
        b.0
    }
}

/// Builds an [`Offering`]. Defaults: on-demand, 2 vCPUs, 4 GiB, 100 free IPs, price unknown,
/// in stock, no recent failure.
#[derive(Debug, Clone)]
pub struct OfferingBuilder(Offering);

impl OfferingBuilder {
    /// An offering of `instance_type` in `zone`, attached to `vswitch`.
    pub fn new(zone: &str, vswitch: &str, instance_type: &str) -> Self {
        OfferingBuilder(Offering {
            zone: zone.to_owned(),
            vswitch: vswitch.to_owned(),
            instance_type: instance_type.to_owned(),
            spot: false,
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 100,
            price_per_hour: None,
            in_stock: true,
            last_failure: None,
        })
    }
    /// Spot capacity (true) or on-demand (false).
    pub fn spot(mut self, spot: bool) -> Self {
        self.0.spot = spot;
        self
    }
    /// vCPUs of the instance type.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.0.vcpus = n;
        self
    }
    /// Memory of the instance type, MiB.
    pub fn memory_mib(mut self, n: u32) -> Self {
        self.0.memory_mib = n;
        self
    }
    /// Free IPs left in the vswitch.
    pub fn free_ips(mut self, n: u32) -> Self {
        self.0.free_ips = n;
        self
    }
    /// Hourly price.
    pub fn price(mut self, per_hour: f64) -> Self {
        self.0.price_per_hour = Some(per_hour);
        self
    }
    /// No stock for this type in this zone.
    pub fn out_of_stock(mut self) -> Self {
        self.0.in_stock = false;
        self
    }
    /// A capacity error `code` at `at_ms`.
    pub fn failed(mut self, code: &str, at_ms: u64) -> Self {
        self.0.last_failure = Some(Failure {
            code: code.to_owned(),
            at_ms,
        });
        self
    }
    /// The offering.
    pub fn build(self) -> Offering {
        self.0
    }
}

impl From<OfferingBuilder> for Offering {
    fn from(b: OfferingBuilder) -> Self {
        b.0
    }
}

/// A [`PlaceRequest`] for `count` nodes of `template` at `now_ms`.
pub fn place_request(now_ms: u64, template: impl Into<Template>, count: u32) -> PlaceRequest {
    PlaceRequest {
        now_ms,
        template: template.into(),
        count,
    }
}
