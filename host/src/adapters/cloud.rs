//! `CloudPort` over the signed ECS client.
//!
//! Every instance is tagged in the RunInstances call itself with the controller id, its
//! template and its launch id, so a crash between the call and its answer leaves nothing
//! untagged; the fleet is listed by the controller tag, 100 per page.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context;

use crate::config::launch::LaunchPlacement;
use crate::config::{Config, CredentialsConfig, StoppedModeConfig};
use crate::ecs::credentials::{self, ChainOptions, Credentials, DefaultChain, SharedProvider, StaticProvider};
use crate::ecs::code_label;
use crate::ecs::{
    AvailableResourceRequest, ClientConfig, EcsClient, EcsError, ErrorKind, Instance, InstanceFilter, InstanceStatus,
    SpotStrategy, StoppedMode, Tag, VSwitchFilter,
};
use crate::engine::model::{CloudInstance, CloudStatus, is_instance_id, is_launch_key, split_node_name};
use crate::engine::now_ms;
use crate::engine::ports::{CloudOffering, CloudPort, LaunchError, LaunchRequest};

/// Tag naming the provisioner that owns an instance.
pub const TAG_CONTROLLER: &str = "ecs-provisioner:controller";
/// Tag naming the instance's template.
pub const TAG_TEMPLATE: &str = "ecs-provisioner:template";
/// Tag naming the launch batch.
pub const TAG_LAUNCH: &str = "ecs-provisioner:launch-id";
/// Tag holding the template's fingerprint at launch: a stopped instance launched from an older
/// version of its template is deleted, not started.
pub const TAG_FINGERPRINT: &str = "ecs-provisioner:template-fingerprint";
/// Tag naming the Jenkins node of a user-data launch (created before the instance).
pub const TAG_NODE: &str = "ecs-provisioner:node";

/// The ECS side of the engine.
#[derive(Clone)]
pub struct EcsCloud {
    client: EcsClient,
    config: Arc<Config>,
}

impl EcsCloud {
    pub fn new(client: EcsClient, config: Arc<Config>) -> Self {
        EcsCloud { client, config }
    }

    /// Builds the client from `[cloud]`: region, endpoints, credentials source.
    pub fn from_config(config: Arc<Config>) -> anyhow::Result<Self> {
        let client = client_from_config(&config)?;
        Ok(EcsCloud::new(client, config))
    }

    /// The underlying client (for `check` and per-action statistics).
    pub fn client(&self) -> &EcsClient {
        &self.client
    }

    /// Our instances among those the cloud described. The tag filter is the server's; checking
    /// again costs nothing and makes "never touch an instance without our controller tag"
    /// independent of it (and lookups by id carry no tag filter).
    fn ours(&self, instances: &[Instance]) -> Vec<CloudInstance> {
        instances
            .iter()
            .filter(|i| i.tag(TAG_CONTROLLER) == Some(self.config.controller_id.as_str()))
            .filter(|i| {
                // Ids go into node names, known_hosts lines and file paths: a malformed one is
                // never acted on.
                let ok = is_instance_id(&i.instance_id);
                if !ok {
                    tracing::warn!(instance = ?i.instance_id.chars().take(80).collect::<String>(), "the cloud listed a malformed instance id: ignored");
                }
                ok
            })
            .map(|i| self.to_cloud_instance(i))
            .collect()
    }

    fn to_cloud_instance(&self, i: &Instance) -> CloudInstance {
        let template = i.tag(TAG_TEMPLATE).unwrap_or_default().to_owned();
        // Only a name of this template's user-data form: anything else is never acted on.
        let node = i
            .tag(TAG_NODE)
            .filter(|n| split_node_name(n, [template.as_str()]).is_some_and(|(_, key)| is_launch_key(key)))
            .map(str::to_owned);
        CloudInstance {
            node,
            instance_id: i.instance_id.clone(),
            template,
            zone: i.zone_id.clone(),
            vswitch: i.vpc_attributes.vswitch_id.clone(),
            instance_type: i.instance_type.clone(),
            spot: i.is_spot(),
            status: match &i.status {
                InstanceStatus::Pending => CloudStatus::Pending,
                InstanceStatus::Starting => CloudStatus::Starting,
                InstanceStatus::Running => CloudStatus::Running,
                InstanceStatus::Stopping => CloudStatus::Stopping,
                InstanceStatus::Stopped => CloudStatus::Stopped,
                InstanceStatus::Other(_) => CloudStatus::Other,
            },
            private_ip: i.private_ip().and_then(|ip| ip.parse().ok()),
            // Unreadable: unknown, never 0 (which would be decades old on first sight).
            created_ms: parse_creation_time(&i.creation_time),
            // Bounded: the text comes from the network and ends up in logs.
            locks: i
                .operation_locks
                .0
                .iter()
                .map(|l| l.lock_reason.chars().take(64).collect())
                .filter(|l: &String| !l.is_empty())
                .collect(),
            fingerprint: i.tag(TAG_FINGERPRINT).map(|f| f.chars().take(64).collect()),
        }
    }
}

/// The ECS client `[cloud]` describes.
pub fn client_from_config(config: &Config) -> anyhow::Result<EcsClient> {
    let cloud = &config.cloud;
    let mut cc = ClientConfig::new(&cloud.region);
    cc.connect_timeout_secs = cloud.connect_timeout.as_secs().max(1);
    cc.read_timeout_ms = cloud.read_timeout.as_millis() as u64;
    cc.retry.budget_ms = cloud.retry_budget.as_millis() as u64;
    if let Some(e) = &cloud.endpoint {
        cc = cc.with_endpoint(e.clone());
    }
    if let Some(e) = &cloud.vpc_endpoint {
        cc.vpc_endpoint = Some(e.clone());
    }
    let chain = ChainOptions { sts_endpoint: cloud.sts_endpoint.clone(), ..ChainOptions::default() };
    let provider: SharedProvider = match &cloud.credentials {
        CredentialsConfig::Chain => Arc::new(DefaultChain::new(None, chain)),
        CredentialsConfig::Profile { name } => {
            Arc::new(DefaultChain::new(None, ChainOptions { profile: Some(name.clone()), ..chain }))
        }
        CredentialsConfig::RamRole { role_name } => Arc::new(credentials::EcsRamRoleProvider::new(
            credentials::DEFAULT_METADATA_BASE_URL,
            role_name.clone(),
        )),
        CredentialsConfig::Static { access_key_id, secret_env, secret_file, security_token_env } => {
            let secret = match (secret_env, secret_file) {
                (Some(var), _) => std::env::var(var)
                    .with_context(|| format!("cloud.credentials.secret-env: environment variable {var} is not set"))?,
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("cloud.credentials.secret-file: cannot read {}", path.display()))?
                    .trim()
                    .to_owned(),
                (None, None) => anyhow::bail!("cloud.credentials: set secret-env or secret-file"),
            };
            let mut creds = Credentials::access_key(access_key_id, secret);
            if let Some(var) = security_token_env {
                let token = std::env::var(var).with_context(|| {
                    format!("cloud.credentials.security-token-env: environment variable {var} is not set")
                })?;
                creds = creds.with_security_token(token);
            }
            Arc::new(StaticProvider(creds))
        }
    };
    EcsClient::new(cc, provider).map_err(|e| anyhow::anyhow!("cannot build the ECS client: {e}"))
}

/// ECS renders times as `2017-12-10T04:04Z` (minutes) or with seconds.
///
/// A time given in minutes is read as the *last* millisecond of that minute: ages (launch
/// timeout, bootstrap deadline) then come out up to a minute short rather than up to a minute
/// long. Read as the minute's start, an instance created at 04:04:50 was 50 s old at birth,
/// so a launch timeout under a minute terminated fresh instances and bootstraps got deadlines
/// already (nearly) past.
fn parse_creation_time(s: &str) -> Option<u64> {
    use time::format_description::well_known::Rfc3339;
    let minutes = s.len() == 17 && s.ends_with('Z');
    let with_seconds = if minutes { format!("{}:00Z", &s[..16]) } else { s.to_owned() };
    let ms = time::OffsetDateTime::parse(&with_seconds, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as u64)?;
    Some(if minutes { ms + 59_999 } else { ms })
}

impl CloudPort for EcsCloud {
    async fn list_fleet(&self) -> anyhow::Result<Vec<CloudInstance>> {
        let filter = InstanceFilter {
            tags: vec![Tag::new(TAG_CONTROLLER, &self.config.controller_id)],
            ..Default::default()
        };
        let instances = self.client.describe_instances(&filter).await.context("listing our instances")?;
        Ok(self.ours(&instances))
    }

    async fn describe_instances(&self, instance_ids: &[String]) -> anyhow::Result<Vec<CloudInstance>> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        // By id only, without the tag filter: the tag index is what lags behind launches.
        let filter = InstanceFilter { instance_ids: instance_ids.to_vec(), ..Default::default() };
        let instances = self
            .client
            .describe_instances(&filter)
            .await
            .with_context(|| format!("describing {} instances by id", instance_ids.len()))?;
        Ok(self.ours(&instances))
    }

    async fn discover_offerings(&self) -> anyhow::Result<Vec<CloudOffering>> {
        let templates = &self.config.templates;
        let vswitch_filter = VSwitchFilter { vpc_id: Some(self.config.cloud.vpc_id.clone()), ..Default::default() };
        let on_demand_request = AvailableResourceRequest::instance_types();
        let (vswitches, on_demand, spot) = tokio::try_join!(
            self.client.describe_vswitches(&vswitch_filter),
            self.client.describe_available_resource(&on_demand_request),
            async {
                if templates.iter().any(|t| t.spot != crate::config::SpotModeConfig::OnDemand) {
                    let req = AvailableResourceRequest { spot_strategy: SpotStrategy::SpotAsPriceGo, ..AvailableResourceRequest::instance_types() };
                    self.client.describe_available_resource(&req).await.map(Some)
                } else {
                    Ok(None)
                }
            }
        )
        .context("discovering offerings")?;

        let stock = |zones: &[crate::ecs::AvailableZone]| -> BTreeMap<(String, String), bool> {
            let mut m = BTreeMap::new();
            for z in zones {
                for r in &z.available_resources.0 {
                    for s in &r.supported_resources.0 {
                        m.insert((z.zone_id.clone(), s.value.clone()), s.in_stock());
                    }
                }
            }
            m
        };
        let on_demand = stock(&on_demand);
        let spot = spot.map(|s| stock(&s));

        // Only types some template may use (all listed types when a template says `auto`).
        let wanted: BTreeSet<String> = on_demand
            .keys()
            .map(|(_, t)| t.clone())
            .filter(|t| templates.iter().any(|tpl| tpl.instance_types.allows(t)))
            .collect();
        let shapes: BTreeMap<String, (u32, u32)> = self
            .client
            .describe_instance_types(&wanted.iter().cloned().collect::<Vec<_>>())
            .await
            .context("describing instance types")?
            .into_iter()
            .map(|t| (t.instance_type_id, (t.cpu_core_count, (t.memory_size * 1024.0) as u32)))
            .collect();

        let mut out = Vec::new();
        for vsw in vswitches.iter().filter(|v| v.status.is_empty() || v.status == "Available") {
            for ((zone, itype), in_stock) in on_demand.iter().filter(|((z, _), _)| *z == vsw.zone_id) {
                let Some((vcpus, memory_mib)) = shapes.get(itype) else { continue };
                out.push(CloudOffering {
                    zone: zone.clone(),
                    vswitch: vsw.vswitch_id.clone(),
                    instance_type: itype.clone(),
                    vcpus: *vcpus,
                    memory_mib: *memory_mib,
                    free_ips: vsw.available_ip_address_count.min(u64::from(u32::MAX)) as u32,
                    in_stock: *in_stock,
                    spot_in_stock: spot.as_ref().and_then(|s| s.get(&(zone.clone(), itype.clone())).copied()).unwrap_or(false),
                });
            }
        }
        Ok(out)
    }

    async fn launch(&self, r: &LaunchRequest) -> Result<Vec<String>, LaunchError> {
        let t = self
            .config
            .template(&r.template)
            .ok_or_else(|| LaunchError::Other { code: "UnknownTemplate".into(), label: code_label("UnknownTemplate"), message: format!("unknown template {}", r.template) })?;
        // Image, security groups, key pair, disks, names, RAM role...: the template's launch
        // profile (its own keys, else the cloud's).
        let profile = self.config.launch_profile(t);
        let placement = LaunchPlacement {
            template: &r.template,
            instance_type: &r.instance_type,
            vswitch: &r.vswitch,
            zone: Some(&r.zone),
            launch_id: &r.launch_id,
        };
        let mut req = profile.run_instances_request(&placement, (now_ms() / 1000) as i64);
        req.amount = r.count;
        // All or nothing per call: a partial batch is placed again next cycle anyway.
        req.min_amount = Some(r.count);
        req.client_token = Some(r.client_token.clone());
        req.spot_strategy = match (r.spot, t.spot_price_limit) {
            (false, _) => SpotStrategy::NoSpot,
            (true, Some(_)) => SpotStrategy::SpotWithPriceLimit,
            (true, None) => SpotStrategy::SpotAsPriceGo,
        };
        req.spot_price_limit = if r.spot { t.spot_price_limit } else { None };
        req.tags = vec![
            Tag::new(TAG_CONTROLLER, &self.config.controller_id),
            Tag::new(TAG_TEMPLATE, &r.template),
            Tag::new(TAG_LAUNCH, &r.launch_id),
            Tag::new(TAG_FINGERPRINT, self.config.template_fingerprint(t)),
        ];
        req.tags.extend(t.tags.iter().map(|(k, v)| Tag::new(k, v)));
        if let Some(node) = &r.user_data_node {
            let url = self.config.jenkins.agent_url.as_deref().unwrap_or(&self.config.jenkins.url);
            let script = crate::config::user_data::render_user_data(t, url, &node.name, &node.secret).map_err(|e| LaunchError::Other {
                code: "UserDataScript".into(),
                label: code_label("UserDataScript"),
                message: format!("template {}: {e}", r.template),
            })?;
            req.user_data = Some(script);
            req.tags.push(Tag::new(TAG_NODE, &node.name));
            // The user data holds a secret: metadata hardened by default (tokens only), unless
            // the template says otherwise for an image whose cloud-init cannot use tokens.
            req.http_tokens.get_or_insert_with(|| "required".to_owned());
        }
        match self.client.run_instances(&req).await {
            Ok(resp) => {
                let (ids, bad): (Vec<String>, Vec<String>) = resp.instance_ids.0.into_iter().partition(|id| is_instance_id(id));
                if !bad.is_empty() {
                    tracing::warn!(count = bad.len(), "RunInstances returned malformed instance ids: ignored");
                }
                if ids.is_empty() && !bad.is_empty() {
                    return Err(LaunchError::Other {
                        code: "InvalidInstanceId".into(),
                        label: code_label("InvalidInstanceId"),
                        message: format!("RunInstances returned only malformed instance ids ({} of them); refused", bad.len()),
                    });
                }
                Ok(ids)
            }
            Err(e) => Err(launch_error(e)),
        }
    }

    async fn stop(&self, ids: &[String], mode: StoppedModeConfig) -> anyhow::Result<()> {
        self.stop_instances(ids, mode).await
    }

    async fn start(&self, id: &str) -> Result<(), LaunchError> {
        self.client.start_instances(&[id.to_owned()]).await.map_err(launch_error)
    }

    async fn console_output(&self, instance_id: &str) -> anyhow::Result<String> {
        let out = self.client.get_instance_console_output(instance_id).await?;
        Ok(out.text)
    }

    async fn terminate(&self, ids: &[String]) -> anyhow::Result<()> {
        for chunk in ids.chunks(100) {
            match self.client.delete_instances(chunk, true).await {
                Ok(()) => {}
                // Already gone: what we wanted.
                Err(e) if matches!(e.kind, ErrorKind::NotFound) => {}
                Err(e) => return Err(anyhow::anyhow!(e).context(format!("deleting {} instance(s)", chunk.len()))),
            }
        }
        Ok(())
    }
}

impl EcsCloud {
    async fn stop_instances(&self, ids: &[String], mode: StoppedModeConfig) -> anyhow::Result<()> {
        let mode = match mode {
            StoppedModeConfig::StopCharging => StoppedMode::StopCharging,
            StoppedModeConfig::KeepCharging => StoppedMode::KeepCharging,
        };
        // A graceful stop: the agent's disks are kept and the OS shuts down cleanly.
        self.client.stop_instances(ids, false, Some(mode)).await.with_context(|| format!("stopping {} instance(s)", ids.len()))
    }
}

fn launch_error(e: EcsError) -> LaunchError {
    match e.kind {
        ErrorKind::Capacity(_) => LaunchError::Capacity { code: e.code.clone(), label: code_label(&e.code), message: e.to_string() },
        _ => LaunchError::Other { code: e.code.clone(), label: code_label(&e.code), message: e.to_string() },
    }
}

/// Strict host-key checking reads the instance's console output through the same client.
impl crate::ssh::ConsoleOutputSource for EcsCloud {
    fn console_output<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 'a>> {
        Box::pin(async move {
            let out = self.client.get_instance_console_output(instance_id).await?;
            Ok(out.text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_times_in_both_precisions() {
        assert_eq!(parse_creation_time("1970-01-01T00:01Z"), Some(119_999), "the end of the minute");
        assert_eq!(parse_creation_time("1970-01-01T00:01:30Z"), Some(90_000));
        assert_eq!(parse_creation_time("garbage"), None);
    }
}
