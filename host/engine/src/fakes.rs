//! Fake ports for the engine's own tests: each records every call and answers as the test
//! scripts it, so a test can state what the engine must do to the cloud and to Jenkins without
//! either. The end-to-end tests run the real adapters against the emulators; these keep the
//! engine's own tests (and a mutation run over them) fast.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ecsp_config::{Config, OnPolicyError, TemplateConfig};

use crate::Engine;
use crate::decide::{Decider, Observation, Placement, PolicyPort};
use crate::model::{Node, Offering, Plan};
use crate::ports::{
    ActivityRecord, BootstrapPort, BootstrapTarget, CloudOffering, CloudPort, JenkinsPort, JenkinsView, LaunchError,
    LaunchRequest, NodeRegistration,
};

/// The cloud: launches get fresh ids unless their zone is set to refuse.
#[derive(Default)]
pub struct FakeCloud {
    /// Every launch request, in order.
    pub launches: Mutex<Vec<LaunchRequest>>,
    /// Zones whose launches fail with this error.
    pub refuse: Mutex<BTreeMap<String, LaunchError>>,
    /// Each launch returns this many ids fewer than asked (a partial success).
    pub short_by: AtomicU32,
    /// Every terminate call's ids.
    pub terminated: Mutex<Vec<Vec<String>>>,
    /// Terminate calls fail while this is set.
    pub fail_terminate: Mutex<bool>,
    /// Every stop call's ids.
    pub stopped: Mutex<Vec<Vec<String>>>,
    /// Every instance started, in order.
    pub started: Mutex<Vec<String>>,
    next_id: AtomicU32,
}

impl CloudPort for FakeCloud {
    async fn list_fleet(&self) -> anyhow::Result<Vec<crate::model::CloudInstance>> {
        Ok(Vec::new())
    }
    async fn describe_instances(&self, _instance_ids: &[String]) -> anyhow::Result<Vec<crate::model::CloudInstance>> {
        Ok(Vec::new())
    }
    async fn discover_offerings(&self) -> anyhow::Result<Vec<CloudOffering>> {
        Ok(Vec::new())
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<String>, LaunchError> {
        self.launches.lock().unwrap().push(request.clone());
        if let Some(e) = self.refuse.lock().unwrap().get(&request.zone) {
            return Err(e.clone());
        }
        let n = request.count.saturating_sub(self.short_by.load(Ordering::Relaxed));
        Ok((0..n).map(|_| format!("i-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1)).collect())
    }
    async fn stop(&self, instance_ids: &[String], _mode: ecsp_config::StoppedModeConfig) -> anyhow::Result<()> {
        self.stopped.lock().unwrap().push(instance_ids.to_vec());
        Ok(())
    }
    async fn start(&self, instance_id: &str) -> Result<(), LaunchError> {
        self.started.lock().unwrap().push(instance_id.to_owned());
        Ok(())
    }
    async fn console_output(&self, _instance_id: &str) -> anyhow::Result<String> {
        Ok(String::new())
    }
    async fn terminate(&self, instance_ids: &[String]) -> anyhow::Result<()> {
        self.terminated.lock().unwrap().push(instance_ids.to_vec());
        if *self.fail_terminate.lock().unwrap() {
            anyhow::bail!("DeleteInstances refused");
        }
        Ok(())
    }
}

/// Jenkins: every call is logged as one line (`offline <node> <reason>`, `online <node>`,
/// `idle? <node>`, `delete <node>`, `create <node>`, `record <node>`, `secret <node>`).
#[derive(Default)]
pub struct FakeJenkins {
    /// The calls, in order.
    pub calls: Mutex<Vec<String>>,
    /// Every node registration asked for.
    pub registrations: Mutex<Vec<NodeRegistration>>,
    /// Every activity record written, by node.
    pub records: Mutex<Vec<(String, ActivityRecord)>>,
    /// Nodes that run a build right now (not idle on a fresh read).
    pub busy: Mutex<BTreeSet<String>>,
    /// Operations that fail: `create`, `offline`, `online`, `idle?`, `delete`, `record`, `secret`.
    pub failing: Mutex<BTreeSet<&'static str>>,
    /// The buildable queue items the queue watcher reads.
    pub queue: Mutex<Vec<u64>>,
}

impl FakeJenkins {
    fn call(&self, op: &'static str, line: String) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push(line);
        if self.failing.lock().unwrap().contains(op) {
            anyhow::bail!("Jenkins answered 500 to {op}");
        }
        Ok(())
    }
    /// The calls made so far.
    pub fn log(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl JenkinsPort for FakeJenkins {
    async fn observe(&self, _now_ms: u64) -> anyhow::Result<JenkinsView> {
        Ok(JenkinsView::default())
    }
    async fn queued_ids(&self, _now_ms: u64) -> anyhow::Result<Vec<u64>> {
        Ok(self.queue.lock().unwrap().clone())
    }
    async fn create_node(&self, node: &NodeRegistration) -> anyhow::Result<()> {
        self.registrations.lock().unwrap().push(node.clone());
        self.call("create", format!("create {}", node.name))
    }
    async fn agent_secret(&self, name: &str) -> anyhow::Result<String> {
        self.call("secret", format!("secret {name}"))?;
        Ok(format!("secret-of-{name}"))
    }
    async fn set_offline(&self, name: &str, offline: bool, reason: &str) -> anyhow::Result<()> {
        if offline {
            self.call("offline", format!("offline {name} {reason}"))
        } else {
            self.call("online", format!("online {name}"))
        }
    }
    async fn is_idle(&self, name: &str) -> anyhow::Result<bool> {
        self.call("idle?", format!("idle? {name}"))?;
        Ok(!self.busy.lock().unwrap().contains(name))
    }
    async fn delete_node(&self, name: &str) -> anyhow::Result<()> {
        self.call("delete", format!("delete {name}"))
    }
    async fn record_activity(&self, name: &str, record: &ActivityRecord) -> anyhow::Result<()> {
        self.records.lock().unwrap().push((name.to_owned(), record.clone()));
        self.call("record", format!("record {name}"))
    }
}

/// SSH: records each bootstrap; fails them all with `fail` when set. A bootstrap that finds a
/// gate in `gates` (first in, first served) waits for it to open and ends as it says.
#[derive(Default)]
pub struct FakeBootstrap {
    /// Gates the next bootstraps wait at: opened with `notify_one`, then fail with the message
    /// or succeed.
    pub gates: Mutex<std::collections::VecDeque<(Arc<tokio::sync::Notify>, Option<String>)>>,
    /// Every bootstrap asked for.
    pub targets: Mutex<Vec<BootstrapTarget>>,
    /// When set, every bootstrap fails with this message.
    pub fail: Mutex<Option<String>>,
    /// Instances reported gone.
    pub gone: Mutex<Vec<String>>,
}

impl BootstrapPort for FakeBootstrap {
    async fn bootstrap(&self, target: BootstrapTarget) -> anyhow::Result<()> {
        self.targets.lock().unwrap().push(target);
        let gate = self.gates.lock().unwrap().pop_front();
        if let Some((open, outcome)) = gate {
            open.notified().await;
            return outcome.map_or(Ok(()), |e| Err(anyhow::anyhow!(e)));
        }
        match self.fail.lock().unwrap().clone() {
            Some(e) => anyhow::bail!(e),
            None => Ok(()),
        }
    }
    fn instance_gone(&self, instance_id: &str) {
        self.gone.lock().unwrap().push(instance_id.to_owned());
    }
    fn failure_cause(&self, _error: &anyhow::Error) -> &'static str {
        "unreachable"
    }
}

/// A policy that plans nothing and places every node on the first offering it is given.
/// Each `place` call is logged as (count, zones offered), and the fleet it was shown.
#[derive(Default)]
pub struct FirstOffering {
    /// The `place` calls: (count asked, zone of each offering offered).
    pub places: Mutex<Vec<(u32, Vec<String>)>>,
    /// The fleet each `place` call was given: its instance ids, in order.
    pub fleets: Mutex<Vec<Vec<String>>>,
}

impl PolicyPort for FirstOffering {
    fn name(&self) -> &str {
        "test:first-offering"
    }
    fn scale(&self, _: &Observation<'_>) -> anyhow::Result<Plan> {
        Ok(Plan::default())
    }
    fn place(&self, _: u64, _: &TemplateConfig, count: u32, offerings: &[&Offering], fleet: &[&Node]) -> anyhow::Result<Vec<Placement>> {
        self.places.lock().unwrap().push((count, offerings.iter().map(|o| o.zone.clone()).collect()));
        self.fleets.lock().unwrap().push(fleet.iter().map(|n| n.instance_id().to_owned()).collect());
        Ok(vec![(0, count)])
    }
}

/// The engine over the fakes.
pub type TestEngine = Engine<FakeCloud, FakeJenkins, FakeBootstrap, FirstOffering, FirstOffering>;

/// An engine with controller id `ctl` and the given `[[template]]` tables appended.
pub fn engine(templates: &str) -> Arc<TestEngine> {
    let text = format!(
        "controller-id = \"ctl\"\n[cloud]\nregion = \"r\"\nvpc-id = \"v\"\nsecurity-group-id = \"s\"\nimage-id = \"m\"\n\
         key-pair-name = \"k\"\n[jenkins]\nurl = \"https://jenkins.example/\"\nuser = \"u\"\n{templates}"
    );
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("test config: {e}"));
    let decider = Decider { policy: FirstOffering::default(), fallback: FirstOffering::default(), on_error: OnPolicyError::Hold };
    Engine::new(Arc::new(config), FakeCloud::default(), FakeJenkins::default(), FakeBootstrap::default(), decider)
}
