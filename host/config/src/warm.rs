//! The warm pool keys of a template (`idle-action`, `stopped-mode`, `max-stopped`) and the
//! fingerprint that tells whether a stopped instance still matches its template.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Config, TemplateConfig};

/// `idle-action` of a template: what removing an idle node does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleAction {
    /// `delete`: drain the node and delete the instance (the default).
    #[default]
    Delete,
    /// `stop`: drain the node, stop the instance and keep both for the next demand.
    Stop,
}

/// `stopped-mode` of a template: what a stopped instance is billed for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoppedModeConfig {
    /// `stop-charging`: ECS economical mode; only the disks are billed, and a start may fail
    /// when the zone is out of stock (the default).
    #[default]
    StopCharging,
    /// `keep-charging`: billed as if running; a start never lacks stock.
    KeepCharging,
}

impl TemplateConfig {
    /// `max-stopped`, or its default: `max-nodes`.
    pub fn max_stopped(&self) -> u32 {
        self.max_stopped_setting.unwrap_or(self.max_nodes)
    }
}

impl Config {
    /// A short digest of what the instances of `t` are made of: image, launch keys, login,
    /// init script, agent command and Jenkins node settings. An instance tagged at launch with
    /// another fingerprint was launched from an older version of the template, and is deleted
    /// rather than started again. Caps, timeouts and the warm pool keys are left out: changing
    /// them changes no machine.
    pub fn template_fingerprint(&self, t: &TemplateConfig) -> String {
        let machine = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.launch_profile(t),
            t.init_script,
            t.agent_command,
            t.java_path,
            t.jvm_options,
            t.remote_fs,
            t.labels,
            t.executors,
            t.mode,
            t.tags,
        );
        Sha256::digest(machine.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}
