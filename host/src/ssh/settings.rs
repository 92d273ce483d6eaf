//! The SSH part of a template's configuration, ready to embed in the config file's types:
//! serde names, defaults, validation that names the key, and conversion into what
//! [`bootstrap`](super::bootstrap()) needs.
//!
//! ```toml
//! [templates.linux.ssh]
//! user = "root"                      # template: {instance_id} {node_name} {ip}
//! port = 22                          # number or template string
//! work_dir = "/home/jenkins/agent"   # template: + {user}
//! agent_command = "..."              # template: + {jenkins_url} {work_dir} {secret_file}
//! init_script = "apt-get install -y openjdk-21-jre-headless"
//! private_key_file = "/etc/ecs-provisioner/id_ed25519"
//! private_key_passphrase_env = "ECSP_SSH_KEY_PASSPHRASE"   # or private_key_passphrase_file
//! host_key_policy = "accept-new"     # accept-new | strict | off
//! step_timeout_secs = 30
//! init_script_timeout_secs = 900
//! agent_confirm_delay_ms = 1000
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use super::bootstrap::{
    BootstrapSpec, DEFAULT_AGENT_COMMAND, DEFAULT_PORT, DEFAULT_USER, DEFAULT_WORK_DIR,
    check_templates,
};
use super::client::SshClientConfig;
use super::error::SshError;
use super::host_keys::{HostKeyPolicy, HostKeyVerifier};
use super::keys::{ClientKey, PassphraseSource};

/// SSH settings of one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshSettings {
    pub user: String,
    #[serde(deserialize_with = "port_template")]
    pub port: String,
    pub work_dir: String,
    pub agent_command: String,
    pub init_script: Option<String>,
    pub private_key_file: PathBuf,
    pub private_key_passphrase_env: Option<String>,
    pub private_key_passphrase_file: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub step_timeout_secs: u64,
    pub init_script_timeout_secs: u64,
    pub agent_confirm_delay_ms: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            user: DEFAULT_USER.into(),
            port: DEFAULT_PORT.into(),
            work_dir: DEFAULT_WORK_DIR.into(),
            agent_command: DEFAULT_AGENT_COMMAND.into(),
            init_script: None,
            private_key_file: PathBuf::new(),
            private_key_passphrase_env: None,
            private_key_passphrase_file: None,
            host_key_policy: HostKeyPolicy::AcceptNew,
            step_timeout_secs: 30,
            init_script_timeout_secs: 15 * 60,
            agent_confirm_delay_ms: 1000,
        }
    }
}

/// `port = 22` and `port = "{...}"` both work.
fn port_template<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Template(String),
    }
    Ok(match Port::deserialize(d)? {
        Port::Number(n) => n.to_string(),
        Port::Template(s) => s,
    })
}

impl SshSettings {
    /// Checks what can be checked without an instance; errors name the key (`ssh.<key>`).
    pub fn validate(&self) -> Result<(), String> {
        check_templates(&self.user, &self.port, &self.work_dir, &self.agent_command).map_err(
            |e| match e {
                super::BootstrapError::Template { field, reason, .. } => {
                    format!("ssh.{field}: {reason}")
                }
                other => other.to_string(),
            },
        )?;
        if self.private_key_file.as_os_str().is_empty() {
            return Err(
                "ssh.private_key_file: required (the launch key pair's private key)".into(),
            );
        }
        if self.private_key_passphrase_env.is_some() && self.private_key_passphrase_file.is_some() {
            return Err("ssh.private_key_passphrase_env and ssh.private_key_passphrase_file: set at most one".into());
        }
        for (key, value) in [
            ("step_timeout_secs", self.step_timeout_secs),
            ("init_script_timeout_secs", self.init_script_timeout_secs),
        ] {
            if value == 0 {
                return Err(format!("ssh.{key}: must be at least 1"));
            }
        }
        Ok(())
    }

    /// Where the key's passphrase comes from, if configured.
    pub fn passphrase_source(&self) -> Option<PassphraseSource> {
        match (
            &self.private_key_passphrase_env,
            &self.private_key_passphrase_file,
        ) {
            (Some(var), _) => Some(PassphraseSource::Env(var.clone())),
            (None, Some(file)) => Some(PassphraseSource::File(file.clone())),
            (None, None) => None,
        }
    }

    /// Loads the key (the `check` command calls this too) and builds the client config with
    /// `host_keys` (built by the caller from `host_key_policy`, since the known-hosts store and
    /// the console source are shared host-wide).
    pub fn client_config(&self, host_keys: HostKeyVerifier) -> Result<SshClientConfig, SshError> {
        let key = ClientKey::load(&self.private_key_file, self.passphrase_source().as_ref())?;
        let mut config = SshClientConfig::new(key, host_keys);
        config.step_timeout = Duration::from_secs(self.step_timeout_secs);
        Ok(config)
    }

    /// The bootstrap of one instance with these settings.
    pub fn bootstrap_spec(
        &self,
        instance_id: &str,
        ip: IpAddr,
        node_name: &str,
        jenkins_url: &str,
        agent_secret: &str,
        deadline: Instant,
    ) -> BootstrapSpec {
        let mut spec = BootstrapSpec::new(
            instance_id,
            ip,
            node_name,
            jenkins_url,
            agent_secret,
            deadline,
        );
        spec.user = self.user.clone();
        spec.port = self.port.clone();
        spec.work_dir = self.work_dir.clone();
        spec.agent_command = self.agent_command.clone();
        spec.init_script = self.init_script.clone();
        spec.init_script_timeout = Duration::from_secs(self.init_script_timeout_secs);
        spec.agent_confirm_delay = Duration::from_millis(self.agent_confirm_delay_ms);
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_numeric_port_and_policy_name() {
        let s: SshSettings = toml::from_str(
            "user = \"ci\"\nport = 2222\nprivate_key_file = \"/k\"\nhost_key_policy = \"strict\"\n",
        )
        .unwrap();
        assert_eq!(s.port, "2222");
        assert_eq!(s.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(s.work_dir, DEFAULT_WORK_DIR);
        s.validate().unwrap();
        let spec = s.bootstrap_spec(
            "i-1",
            IpAddr::from([10, 0, 0, 2]),
            "n",
            "http://j/",
            "x",
            Instant::now(),
        );
        assert_eq!(spec.resolve().unwrap().port, 2222);
    }

    #[test]
    fn errors_name_the_key() {
        let err = toml::from_str::<SshSettings>("host_key_policy = \"yes\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("host_key_policy") || err.contains("accept-new"),
            "{err}"
        );
        let err = toml::from_str::<SshSettings>("usr = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("usr"), "{err}");
        let s = SshSettings {
            port: "0".into(),
            private_key_file: "/k".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().starts_with("ssh.port:"));
        let s = SshSettings {
            agent_command: "run {nope}".into(),
            private_key_file: "/k".into(),
            ..Default::default()
        };
        let err = s.validate().unwrap_err();
        assert!(
            err.starts_with("ssh.agent_command:") && err.contains("{nope}"),
            "{err}"
        );
        let s = SshSettings::default();
        assert!(
            s.validate()
                .unwrap_err()
                .starts_with("ssh.private_key_file:")
        );
    }
}
