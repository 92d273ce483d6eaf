//! `[ha]`: several replicas, one acting, coordinated through etcd.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[ha]`: leader election among replicas that share a `controller-id`. Absent: one replica,
/// which refuses to start while another one runs on the same `controller-id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HaConfig {
    /// Where the election is held: only `etcd`.
    pub backend: HaBackend,
    /// etcd client endpoints, `host:port` or `http(s)://host:port`.
    pub endpoints: Vec<String>,
    /// Prefix of every key this provisioner writes in etcd: starts with `/`, no trailing `/`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The leader's lease: a dead leader is replaced after at most this long, and a leader
    /// stops acting when it has not confirmed a renewal for half of it. Whole seconds, >= 2 s.
    #[serde(with = "humantime_serde", default = "default_lease_ttl")]
    pub lease_ttl: Duration,
    /// This replica's name on `/status` and in etcd; default `<hostname>-<pid>`.
    pub replica_id: Option<String>,
    /// TLS to etcd; plain TCP when absent.
    pub tls: Option<HaTlsConfig>,
    /// etcd user (etcd's own authentication); needs `password-env` or `password-file`.
    pub username: Option<String>,
    /// Environment variable holding the etcd password.
    pub password_env: Option<String>,
    /// File holding the etcd password.
    pub password_file: Option<PathBuf>,
}

/// `ha.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaBackend {
    /// etcd v3: leases and the election API.
    Etcd,
}

/// `[ha.tls]`: server verification and, optionally, a client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HaTlsConfig {
    /// PEM file of the CA that signed etcd's server certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// PEM key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry, when it is not the endpoint's host.
    pub domain: Option<String>,
}

fn default_key_prefix() -> String {
    "/ecs-provisioner".to_owned()
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

impl HaConfig {
    /// What the types cannot express, each problem naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.endpoints.is_empty() {
            problems.push("ha.endpoints: list at least one etcd endpoint, e.g. [\"127.0.0.1:2379\"]".to_owned());
        }
        for e in &self.endpoints {
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://")).unwrap_or(e);
            let port_ok = rest.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || rest.contains('/') {
                problems.push(format!("ha.endpoints: {e:?} is not host:port (optionally with http:// or https://)"));
            }
            if e.starts_with("https://") && self.tls.is_none() {
                problems.push(format!("ha.endpoints: {e:?} is https but [ha.tls] is not set (ca-file is needed)"));
            }
        }
        if let Some(p) = key_prefix_problem(&self.key_prefix) {
            problems.push(format!("ha.key-prefix: {:?} {p}", self.key_prefix));
        }
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl.subsec_nanos() != 0 {
            problems.push(format!(
                "ha.lease-ttl: {} must be whole seconds, at least 2s (etcd grants leases in seconds)",
                humantime::format_duration(self.lease_ttl)
            ));
        }
        if let Some(id) = &self.replica_id
            && (id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()))
        {
            problems.push(format!("ha.replica-id: {id:?} must be 1 to 128 visible ASCII characters"));
        }
        match (&self.username, &self.password_env, &self.password_file) {
            (Some(_), None, None) => problems.push("ha.username: set password-env or password-file too".to_owned()),
            (None, Some(_), _) | (None, _, Some(_)) => problems.push("ha: a password is set without username".to_owned()),
            (_, Some(_), Some(_)) => problems.push("ha: set password-env or password-file, not both".to_owned()),
            _ => {}
        }
        if let Some(tls) = &self.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            problems.push("ha.tls: set cert-file and key-file together (a client certificate needs its key)".to_owned());
        }
        problems
    }
}

/// Why a key prefix cannot be used, if it cannot.
fn key_prefix_problem(prefix: &str) -> Option<&'static str> {
    if !prefix.starts_with('/') {
        Some("must start with '/'")
    } else if prefix.len() > 1 && prefix.ends_with('/') {
        Some("must not end with '/' (the controller id is appended after one)")
    } else if prefix.contains("//") {
        Some("must not contain an empty segment ('//')")
    } else if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)) {
        Some("may contain only letters, digits, '/', '-', '_' and '.'")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ha(extra: &str) -> HaConfig {
        toml::from_str(&format!("backend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_are_a_ten_second_lease_under_ecs_provisioner() {
        let c = ha("");
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.key_prefix, "/ecs-provisioner");
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn a_wrong_prefix_is_named() {
        for (prefix, why) in [("ecsp", "start with '/'"), ("/ecsp/", "end with '/'"), ("/a//b", "empty segment"), ("/a b", "only letters")] {
            let p = ha(&format!("key-prefix = {prefix:?}")).problems();
            assert!(p.len() == 1 && p[0].starts_with("ha.key-prefix:") && p[0].contains(why), "{prefix}: {p:?}");
        }
    }

    #[test]
    fn bad_endpoints_ttl_and_auth_are_named() {
        let p = ha("lease-ttl = \"1500ms\"\nusername = \"root\"").problems();
        assert!(p.iter().any(|m| m.starts_with("ha.lease-ttl: 1s 500ms")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("ha.username:")), "{p:?}");
        let c: HaConfig = toml::from_str("backend = \"etcd\"\nendpoints = [\"etcd\", \"https://e:2379\"]").unwrap();
        let p = c.problems();
        assert!(p.iter().any(|m| m.contains("\"etcd\" is not host:port")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("[ha.tls] is not set")), "{p:?}");
        let e = toml::from_str::<HaConfig>("backend = \"consul\"\nendpoints = []").unwrap_err().to_string();
        assert!(e.contains("consul") && e.contains("etcd"), "{e}");
    }
}
