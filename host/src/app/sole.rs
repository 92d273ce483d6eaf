//! Without `[ha]`: one daemon per `controller-id`. Each daemon keeps a heartbeat mark in the
//! offline message of its first template's anchor node in Jenkins (a node the engine reads
//! every cycle anyway); a second daemon finds the mark fresh and refuses to start, naming the
//! first.
//!
//! A mark from this host whose process is gone is a predecessor that died (a crash, SIGKILL):
//! it is taken over at once, so restarts are not delayed. A mark from another host counts as
//! alive while it is younger than [`FRESH_BEATS`] heartbeats.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::adapters::jenkins::JenkinsAdapter;
use crate::app::LiveEngine;
use crate::config::Config;
use crate::jenkins::demand::anchor_name;

/// Where the mark starts in the anchor's offline message.
const MARK: &str = " | held by ecs-provisioner ";
/// A mark older than this many heartbeats is a dead daemon's.
const FRESH_BEATS: u32 = 3;

/// One daemon's heartbeat mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `controller-id`.
    pub controller: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When written, ms since the Unix epoch.
    pub at_ms: u64,
}

impl Mark {
    fn mine(controller: &str, at_ms: u64) -> Mark {
        Mark { controller: controller.to_owned(), host: host_name(), pid: std::process::id(), at_ms }
    }

    fn render(&self) -> String {
        format!("{MARK}controller={} host={} pid={} at={}", self.controller, self.host, self.pid, self.at_ms)
    }

    /// The mark in an offline message, if there is one.
    pub fn parse(message: &str) -> Option<Mark> {
        let rest = &message[message.find(MARK)? + MARK.len()..];
        let field = |k: &str| rest.split(' ').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
        Some(Mark { controller: field("controller")?, host: field("host")?, pid: field("pid")?.parse().ok()?, at_ms: field("at")?.parse().ok()? })
    }

    fn is_me(&self) -> bool {
        self.host == host_name() && self.pid == std::process::id()
    }

    /// Whether the daemon that wrote the mark looks alive at `now_ms`.
    fn alive(&self, now_ms: u64, beat: Duration) -> bool {
        if self.host == host_name() {
            // SAFETY: kill(2) with signal 0 only checks that the process exists.
            return unsafe { libc::kill(self.pid as i32, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        }
        now_ms.saturating_sub(self.at_ms) < beat.as_millis() as u64 * u64::from(FRESH_BEATS)
    }

    fn describe(&self, now_ms: u64) -> String {
        format!("pid {} on host {}, heartbeat {:.1} s ago", self.pid, self.host, now_ms.saturating_sub(self.at_ms) as f64 / 1e3)
    }
}

fn host_name() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if h.trim().is_empty() { "localhost".into() } else { h.trim().to_owned() }
}

/// The heartbeat: every `beat`, checks that no other live daemon holds the mark and renews ours.
pub struct SoleReplica {
    jenkins: JenkinsAdapter,
    anchor: String,
    controller: String,
    /// Time between heartbeats.
    pub beat: Duration,
}

impl SoleReplica {
    /// The guard for `config` (its first template's anchor), beating once per poll interval,
    /// between 1 s and 10 s.
    pub fn new(config: &Config) -> anyhow::Result<SoleReplica> {
        let jenkins = JenkinsAdapter::from_config(config)?;
        let first = config.templates.first().context("no template")?;
        Ok(SoleReplica {
            jenkins,
            anchor: anchor_name(first.name()),
            controller: config.controller_id.clone(),
            beat: config.poll_interval.clamp(Duration::from_secs(1), Duration::from_secs(10)),
        })
    }

    /// One heartbeat: an error names the other daemon when one holds the mark. Without the
    /// anchor (the first cycle creates it) or Jenkins, nothing can be checked: `Ok`.
    pub async fn beat_once(&self) -> anyhow::Result<()> {
        let now = crate::engine::now_ms();
        let computer = match self.jenkins.client().computer(&self.anchor).await {
            Ok(Some(c)) if c.temporarily_offline => c,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "single-replica heartbeat: cannot read the anchor node");
                return Ok(());
            }
        };
        let message = computer.offline_cause_reason.unwrap_or_default();
        if let Some(other) = Mark::parse(&message)
            && other.controller == self.controller
            && !other.is_me()
            && other.alive(now, self.beat)
        {
            anyhow::bail!(
                "another ecs-provisioner already runs for controller-id {:?}: {} (its mark is on Jenkins node {:?}). \
                 Stop it, or run both with an [ha] section so that only one acts",
                self.controller,
                other.describe(now),
                self.anchor
            );
        }
        let base = message.split(MARK).next().unwrap_or("").to_owned();
        let base = if base.is_empty() { crate::jenkins::anchor::ANCHOR_OFFLINE_REASON.to_owned() } else { base };
        if let Err(e) = self.jenkins.client().change_offline_cause(&self.anchor, &format!("{base}{}", Mark::mine(&self.controller, now).render())).await {
            tracing::debug!(error = %e, "single-replica heartbeat: cannot write the mark");
        }
        Ok(())
    }

    /// At start: refuses if another daemon holds the mark; otherwise writes ours, waits a
    /// moment and checks that it stayed ours (two daemons started together: the last writer
    /// stays, the other refuses).
    pub async fn claim(config: &Config) -> anyhow::Result<SoleReplica> {
        let sole = SoleReplica::new(config)?;
        // A slow Jenkins must not hold the start: the heartbeat goes on checking.
        for pause in [Duration::from_millis(500), Duration::ZERO] {
            match tokio::time::timeout(Duration::from_secs(5), sole.beat_once()).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("single-replica check: Jenkins did not answer within 5 s; checking again at the next heartbeat"),
            }
            tokio::time::sleep(pause).await;
        }
        Ok(sole)
    }

    /// Beats in the background; another daemon's live mark stops `engine` (see [`Heartbeat::stop`]).
    pub fn keep_beating(self, engine: Arc<LiveEngine>) -> Heartbeat {
        let refused = Arc::new(Mutex::new(None));
        let out = refused.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(self.beat).await;
                if let Err(e) = self.beat_once().await {
                    let why = format!("{e:#}");
                    tracing::error!(error = %why, "stopping: another daemon runs for this controller-id");
                    *out.lock().unwrap() = Some(why);
                    engine.shutdown();
                    return;
                }
            }
        });
        Heartbeat { task, refused }
    }
}

/// The background heartbeat of [`SoleReplica::keep_beating`].
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    refused: Arc<Mutex<Option<String>>>,
}

impl Heartbeat {
    /// Stops beating; the error says why the engine was stopped, if the heartbeat stopped it.
    pub fn stop(self) -> anyhow::Result<()> {
        self.task.abort();
        match self.refused.lock().unwrap().take() {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_survives_the_anchor_message_around_it() {
        let m = Mark { controller: "ci-prod".into(), host: "builder-1".into(), pid: 4242, at_ms: 1_700_000_000_000 };
        let message = format!("ecs-provisioner anchor node: never launched{}", m.render());
        assert_eq!(Mark::parse(&message), Some(m));
        assert_eq!(Mark::parse("ecs-provisioner anchor node: never launched"), None);
    }

    #[test]
    fn a_dead_local_process_is_a_predecessor_and_a_live_one_is_not() {
        let beat = Duration::from_secs(1);
        let me = Mark::mine("x", 0);
        assert!(me.alive(u64::MAX, beat), "this process is alive, however old its mark");
        // Pid 0x7fff_fff0 exists on no Linux system (pid_max is at most 2^22).
        let gone = Mark { pid: 0x7fff_fff0, ..me.clone() };
        assert!(!gone.alive(0, beat));
        let remote = Mark { host: "elsewhere".into(), at_ms: 10_000, ..me };
        assert!(remote.alive(12_000, beat) && !remote.alive(13_000, beat));
    }
}
