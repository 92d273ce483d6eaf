//! Settings from `[ha]` and the connection to etcd.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use ecsp_config::{Config, HaTlsConfig};

/// How to reach etcd and what to campaign for; read from `[ha]` by [`EtcdSettings::from_config`].
#[derive(Clone)]
pub struct EtcdSettings {
    /// Client endpoints.
    pub endpoints: Vec<String>,
    /// `key-prefix`/`controller-id`: every key this replica writes is below it.
    pub base: String,
    /// This replica's name.
    pub replica_id: String,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// PEM contents: CA, optional client certificate and key, optional server name.
    tls: Option<TlsMaterial>,
    /// etcd user and password.
    user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("base", &self.base)
            .field("replica_id", &self.replica_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("tls", &self.tls.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl EtcdSettings {
    /// The settings of `config.ha`, reading the files and variable it names; `None` without
    /// `[ha]`. `default_replica_id` is used when `replica-id` is not set.
    pub fn from_config(config: &Config, default_replica_id: &str) -> anyhow::Result<Option<EtcdSettings>> {
        let Some(ha) = &config.ha else { return Ok(None) };
        let tls = ha.tls.as_ref().map(read_tls).transpose()?;
        let password = match (&ha.password_env, &ha.password_file) {
            (Some(var), _) => Some(std::env::var(var).with_context(|| format!("ha.password-env: variable {var} is not set"))?),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("ha.password-file: cannot read {}", path.display()))?
                    .trim_end()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        let endpoints = ha
            .endpoints
            .iter()
            .map(|e| if e.contains("://") { e.clone() } else { format!("{scheme}{e}") })
            .collect();
        Ok(Some(EtcdSettings {
            endpoints,
            base: format!("{}/{}", ha.key_prefix.trim_end_matches('/'), config.controller_id),
            replica_id: ha.replica_id.clone().unwrap_or_else(|| default_replica_id.to_owned()),
            lease_ttl: ha.lease_ttl,
            tls,
            user: ha.username.clone().zip(password),
        }))
    }

    /// The election's name (etcd keeps one key per candidate below it).
    pub fn election(&self) -> String {
        format!("{}/leader", self.base)
    }

    /// The key of a launch record (with `""`: the prefix of all of them).
    pub fn launch_key(&self, launch_id: &str) -> String {
        format!("{}/launches/{launch_id}", self.base)
    }

    /// Connects and proves the connection with one request (the client itself connects
    /// lazily): the error says whether etcd was unreachable, refused TLS or the credentials.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some((ca, identity, domain)) = &self.tls {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(d) = domain {
                tls = tls.domain_name(d.clone());
            }
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &self.user {
            options = options.with_user(user.clone(), password.clone());
        }
        let endpoints = self.endpoints.join(", ");
        let what = if self.tls.is_some() { "etcd (TLS)" } else { "etcd" };
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            let mut client = Client::connect(&self.endpoints, Some(options)).await?;
            client.status().await?;
            Ok::<_, etcd_client::Error>(client)
        })
        .await;
        match connected {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(anyhow::anyhow!("cannot use {what} at {endpoints}: {}", describe(&e, self.tls.is_some()))),
            Err(_) => Err(anyhow::anyhow!("cannot use {what} at {endpoints}: no answer within 5 s")),
        }
    }
}

/// An etcd client error with its sources, and a hint when TLS is the likely cause.
fn describe(e: &etcd_client::Error, tls: bool) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    let lower = text.to_lowercase();
    if tls && (lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") || lower.contains("transport error")) {
        text.push_str(" (TLS: check ha.tls.ca-file matches the server's certificate, and that etcd serves TLS)");
    } else if lower.contains("authentication") || lower.contains("invalid auth") || lower.contains("permission denied") {
        text.push_str(" (check ha.username and its password)");
    }
    text
}

/// The CA certificate, the client certificate and key if any, and the server name to check.
type TlsMaterial = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>, Option<String>);

fn read_tls(t: &HaTlsConfig) -> anyhow::Result<TlsMaterial> {
    let read = |key: &str, path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
        let bytes = std::fs::read(path).with_context(|| format!("ha.tls.{key}: cannot read {}", path.display()))?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            anyhow::bail!("ha.tls.{key}: {} is not a PEM file (no -----BEGIN line)", path.display());
        }
        Ok(bytes)
    };
    let ca = read("ca-file", &t.ca_file)?;
    let identity = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some((read("cert-file", c)?, read("key-file", k)?)),
        _ => None,
    };
    Ok((ca, identity, t.domain.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ha: &str) -> Config {
        let text = format!(
            r#"controller-id = "ci-prod"
[cloud]
region = "cn-hangzhou"
vpc-id = "vpc-1"
security-group-id = "sg-1"
image-id = "m-1"
key-pair-name = "jenkins"
[jenkins]
url = "http://127.0.0.1:8080/"
user = "admin"
token-env = "JENKINS_TOKEN"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 10
{ha}"#
        );
        Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn keys_are_below_the_prefix_and_the_controller_id() {
        let s = EtcdSettings::from_config(&config("[ha]\nbackend = \"etcd\"\nendpoints = [\"10.0.0.1:2379\"]"), "host-1").unwrap().unwrap();
        assert_eq!(s.election(), "/ecs-provisioner/ci-prod/leader");
        assert_eq!(s.launch_key("ci-prod-1-0"), "/ecs-provisioner/ci-prod/launches/ci-prod-1-0");
        assert_eq!(s.endpoints, ["http://10.0.0.1:2379"]);
        assert_eq!((s.replica_id.as_str(), s.lease_ttl), ("host-1", Duration::from_secs(10)));
        assert!(EtcdSettings::from_config(&config(""), "x").unwrap().is_none(), "no [ha], no settings");
    }

    #[test]
    fn unreadable_or_non_pem_tls_files_are_named() {
        let dir = std::env::temp_dir().join(format!("ecsp-ha-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let ha = |ca: &std::path::Path| format!("[ha]\nbackend = \"etcd\"\nendpoints = [\"e:2379\"]\n[ha.tls]\nca-file = {:?}", ca.to_str().unwrap());
        let e = EtcdSettings::from_config(&config(&ha(&junk)), "x").unwrap_err().to_string();
        assert!(e.starts_with("ha.tls.ca-file:") && e.contains("not a PEM file"), "{e}");
        let e = format!("{:#}", EtcdSettings::from_config(&config(&ha(&dir.join("missing.pem"))), "x").unwrap_err());
        assert!(e.starts_with("ha.tls.ca-file: cannot read") && e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
