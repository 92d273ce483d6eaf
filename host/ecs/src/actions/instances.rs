//! Instance actions: RunInstances, DescribeInstances, DeleteInstances, Stop/StartInstances,
//! GetInstanceConsoleOutput.
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Tag, Wrapped, json_list, lenient_f64, put_list, put_opt, put_tags};
use crate::error::{CapacityDetail, EcsError, ErrorKind};
use crate::signer::Params;
use crate::{Api, EcsClient};

/// Spot bidding strategy (`SpotStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SpotStrategy {
    /// On-demand (default).
    #[default]
    NoSpot,
    /// Spot with a maximum hourly price (`SpotPriceLimit`).
    SpotWithPriceLimit,
    /// Spot at the market price, capped at the on-demand price.
    SpotAsPriceGo,
}

impl SpotStrategy {
    /// The wire value (`NoSpot`, `SpotWithPriceLimit` or `SpotAsPriceGo`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSpot => "NoSpot",
            Self::SpotWithPriceLimit => "SpotWithPriceLimit",
            Self::SpotAsPriceGo => "SpotAsPriceGo",
        }
    }
    /// Whether this is a spot strategy (anything but `NoSpot`).
    pub fn is_spot(self) -> bool {
        self != Self::NoSpot
    }
}

/// What a stopped instance is billed for (`StoppedMode` of StopInstances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppedMode {
    /// Economical mode: compute billing stops, only disks are charged; the compute resources
    /// are released, so a later StartInstances may fail for lack of stock.
    StopCharging,
    /// Billing goes on and the resources stay reserved: a start never lacks stock.
    KeepCharging,
}

impl StoppedMode {
    /// The wire value (`StopCharging` or `KeepCharging`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopCharging => "StopCharging",
            Self::KeepCharging => "KeepCharging",
        }
    }
}

/// System disk settings (`SystemDisk.Category`, `SystemDisk.Size` in GiB,
/// `SystemDisk.PerformanceLevel` for ESSDs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemDisk {
    /// Disk category (`SystemDisk.Category`), e.g. `cloud_essd`, `cloud_efficiency`; the cloud's default when unset.
    pub category: Option<String>,
    /// Size in GiB (`SystemDisk.Size`); the cloud's default (at least the image size) when unset.
    pub size_gib: Option<u32>,
    /// ESSD performance level (`SystemDisk.PerformanceLevel`), e.g. `PL0`.
    pub performance_level: Option<String>,
}

/// One data disk (`DataDisk.N.Category`, `.Size` in GiB, `.PerformanceLevel`,
/// `.DeleteWithInstance`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataDisk {
    /// Disk category (`DataDisk.N.Category`), e.g. `cloud_essd`.
    pub category: String,
    /// Size in GiB (`DataDisk.N.Size`).
    pub size_gib: u32,
    /// ESSD performance level (`DataDisk.N.PerformanceLevel`), e.g. `PL1`; omitted when unset.
    pub performance_level: Option<String>,
    /// Whether the disk is released with the instance (`DataDisk.N.DeleteWithInstance`).
    pub delete_with_instance: bool,
}

/// RunInstances parameters (reference §3.1). Build with [`RunInstancesRequest::new`] and set
/// the optional fields directly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunInstancesRequest {
    /// Image to boot (`ImageId`).
    pub image_id: String,
    /// Instance type (`InstanceType`), e.g. `ecs.g7.large`.
    pub instance_type: String,
    /// Security group (`SecurityGroupId`); must be in the vswitch's VPC.
    pub security_group_id: String,
    /// More security groups: with any, all groups (`security_group_id` first) go as
    /// `SecurityGroupIds.N` instead of `SecurityGroupId` (ECS refuses both at once).
    pub extra_security_group_ids: Vec<String>,
    /// VSwitch to place the instance in (`VSwitchId`); it fixes the VPC and zone.
    pub vswitch_id: String,
    /// Must be the vswitch's zone if set.
    pub zone_id: Option<String>,
    /// 1..=100.
    pub amount: u32,
    /// Accept partial success down to this many.
    pub min_amount: Option<u32>,
    /// Idempotency token (≤64 ASCII). One is generated if empty, so retries never launch twice.
    pub client_token: Option<String>,
    /// SSH key pair to install (`KeyPairName`).
    pub key_pair_name: Option<String>,
    /// Raw user data; base64-encoded on the wire.
    pub user_data: Option<String>,
    /// Tags for the instance (`Tag.N.Key`/`Tag.N.Value`, up to 20).
    pub tags: Vec<Tag>,
    /// Spot bidding strategy; `SpotStrategy` is sent only when it is not `NoSpot`.
    pub spot_strategy: SpotStrategy,
    /// Maximum hourly price for [`SpotStrategy::SpotWithPriceLimit`] (`SpotPriceLimit`).
    pub spot_price_limit: Option<f64>,
    /// `PostPaid` (default) or `PrePaid`.
    pub instance_charge_type: Option<String>,
    /// Instance name (`InstanceName`); the cloud uses the instance id when unset.
    pub instance_name: Option<String>,
    /// Supports the `${instance_id}` placeholder.
    pub host_name: Option<String>,
    /// System disk settings; the cloud's defaults when `None`.
    pub system_disk: Option<SystemDisk>,
    /// Up to 16.
    pub data_disks: Vec<DataDisk>,
    /// Outbound public bandwidth in Mbit/s (`InternetMaxBandwidthOut`, 0..=100); above 0 gives the instance a public IP.
    pub internet_max_bandwidth_out: Option<u32>,
    /// Instance RAM role (`RamRoleName`).
    pub ram_role_name: Option<String>,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<String>,
    /// Instance metadata access: `optional` or `required` (tokens, "security hardening mode").
    pub http_tokens: Option<String>,
    /// UTC release time, `yyyy-MM-ddTHH:mm:ssZ` (`AutoReleaseTime`).
    pub auto_release_time: Option<String>,
    /// Validate only: success is reported as [`ErrorKind::DryRunPassed`].
    pub dry_run: bool,
}

impl RunInstancesRequest {
    /// The required parameters; `amount` defaults to 1.
    pub fn new(
        image_id: impl Into<String>,
        instance_type: impl Into<String>,
        security_group_id: impl Into<String>,
        vswitch_id: impl Into<String>,
    ) -> Self {
        Self {
            image_id: image_id.into(),
            instance_type: instance_type.into(),
            security_group_id: security_group_id.into(),
            vswitch_id: vswitch_id.into(),
            amount: 1,
            ..Default::default()
        }
    }

    /// The wire parameters (without the common/signature ones).
    pub fn to_params(&self) -> Params {
        let mut p = Params::new();
        p.insert("ImageId".into(), self.image_id.clone());
        p.insert("InstanceType".into(), self.instance_type.clone());
        if self.extra_security_group_ids.is_empty() {
            p.insert("SecurityGroupId".into(), self.security_group_id.clone());
        } else {
            let all: Vec<String> = std::iter::once(self.security_group_id.clone())
                .chain(self.extra_security_group_ids.iter().cloned())
                .collect();
            put_list(&mut p, "SecurityGroupIds", &all);
        }
        p.insert("VSwitchId".into(), self.vswitch_id.clone());
        p.insert("Amount".into(), self.amount.to_string());
        put_opt(&mut p, "ZoneId", self.zone_id.as_ref());
        put_opt(&mut p, "MinAmount", self.min_amount);
        put_opt(&mut p, "ClientToken", self.client_token.as_ref());
        put_opt(&mut p, "KeyPairName", self.key_pair_name.as_ref());
        put_opt(
            &mut p,
            "UserData",
            self.user_data
                .as_ref()
                .map(|u| base64::engine::general_purpose::STANDARD.encode(u)),
        );
        put_tags(&mut p, &self.tags);
        if self.spot_strategy != SpotStrategy::NoSpot {
            p.insert("SpotStrategy".into(), self.spot_strategy.as_str().into());
        }
        put_opt(&mut p, "SpotPriceLimit", self.spot_price_limit);
        put_opt(
            &mut p,
            "InstanceChargeType",
            self.instance_charge_type.as_ref(),
        );
        put_opt(&mut p, "InstanceName", self.instance_name.as_ref());
        put_opt(&mut p, "HostName", self.host_name.as_ref());
        if let Some(d) = &self.system_disk {
            put_opt(&mut p, "SystemDisk.Category", d.category.as_ref());
            put_opt(&mut p, "SystemDisk.Size", d.size_gib);
            put_opt(
                &mut p,
                "SystemDisk.PerformanceLevel",
                d.performance_level.as_ref(),
            );
        }
        for (i, d) in self.data_disks.iter().enumerate() {
            let n = i + 1;
            p.insert(format!("DataDisk.{n}.Category"), d.category.clone());
            p.insert(format!("DataDisk.{n}.Size"), d.size_gib.to_string());
            put_opt(
                &mut p,
                &format!("DataDisk.{n}.PerformanceLevel"),
                d.performance_level.as_ref(),
            );
            p.insert(
                format!("DataDisk.{n}.DeleteWithInstance"),
                d.delete_with_instance.to_string(),
            );
        }
        put_opt(&mut p, "RamRoleName", self.ram_role_name.as_ref());
        put_opt(&mut p, "ResourceGroupId", self.resource_group_id.as_ref());
        put_opt(&mut p, "HttpTokens", self.http_tokens.as_ref());
        put_opt(&mut p, "AutoReleaseTime", self.auto_release_time.as_ref());
        put_opt(
            &mut p,
            "InternetMaxBandwidthOut",
            self.internet_max_bandwidth_out,
        );
        if self.dry_run {
            p.insert("DryRun".into(), "true".into());
        }
        p
    }
}

/// RunInstances answer: the new instance ids (fewer than `Amount` only with `MinAmount`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunInstancesResponse {
    /// The request id the API returned (`RequestId`).
    pub request_id: String,
    /// Ids of the instances created (`InstanceIdSets.InstanceIdSet`).
    #[serde(rename = "InstanceIdSets", default)]
    pub instance_ids: Wrapped<String>,
    /// Price of the order (`TradePrice`), read from a number or a string; absent if not returned.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub trade_price: Option<f64>,
    /// Order id (`OrderId`); returned only for `PrePaid` instances.
    #[serde(default)]
    pub order_id: Option<String>,
}

/// Instance status (reference §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// Being created; lasts a few seconds before `Starting`.
    Pending,
    /// Booting.
    Starting,
    /// Running.
    Running,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
    /// A status this client does not know.
    #[serde(untagged)]
    Other(String),
}

/// VPC attributes of an instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VpcAttributes {
    /// VPC the instance is in (`VpcId`).
    pub vpc_id: String,
    /// VSwitch the instance is in (`VSwitchId`).
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
    /// Private IP addresses (`PrivateIpAddress.IpAddress`), primary first; empty until assigned.
    pub private_ip_address: Wrapped<String>,
}

/// One instance as DescribeInstances reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    /// Instance id (`InstanceId`), e.g. `i-bp67acfmxazb4p****`.
    pub instance_id: String,
    /// Instance name (`InstanceName`); empty if absent.
    #[serde(default)]
    pub instance_name: String,
    /// Guest host name (`HostName`); empty if absent.
    #[serde(default)]
    pub host_name: String,
    /// Lifecycle status (`Status`).
    pub status: InstanceStatus,
    /// Zone (`ZoneId`), e.g. `cn-hangzhou-g`; empty if absent.
    #[serde(default)]
    pub zone_id: String,
    /// Instance type (`InstanceType`); empty if absent.
    #[serde(default)]
    pub instance_type: String,
    /// Image the instance runs (`ImageId`); empty if absent.
    #[serde(default)]
    pub image_id: String,
    /// SSH key pair installed (`KeyPairName`); empty if none or absent.
    #[serde(default)]
    pub key_pair_name: String,
    /// Number of vCPUs (`Cpu`); 0 if absent.
    #[serde(default)]
    pub cpu: u32,
    /// MiB.
    #[serde(default)]
    pub memory: u64,
    /// Spot strategy (`SpotStrategy`); `None` if absent.
    #[serde(default)]
    pub spot_strategy: Option<SpotStrategy>,
    /// Billing method (`InstanceChargeType`): `PostPaid` or `PrePaid`; empty if absent.
    #[serde(default)]
    pub instance_charge_type: String,
    /// Creation time as the API renders it (`CreationTime`, UTC, e.g. `2017-12-10T04:04Z`); empty if absent.
    #[serde(default)]
    pub creation_time: String,
    /// VPC placement and private IPs (`VpcAttributes`).
    #[serde(default)]
    pub vpc_attributes: VpcAttributes,
    /// Public IP addresses (`PublicIpAddress.IpAddress`); empty without one.
    #[serde(default)]
    pub public_ip_address: Wrapped<String>,
    /// Security groups the instance is in (`SecurityGroupIds.SecurityGroupId`).
    #[serde(default)]
    pub security_group_ids: Wrapped<String>,
    /// Tags on the instance (`Tags.Tag`).
    #[serde(default)]
    pub tags: Wrapped<Tag>,
    /// Why the instance is locked, if it is (`Recycling`: a spot instance about to be
    /// reclaimed; `financial`, `security`...).
    #[serde(default)]
    pub operation_locks: Wrapped<OperationLock>,
}

/// One entry of `OperationLocks.LockReason`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct OperationLock {
    /// `Recycling`, `financial`, `security`, ...
    pub lock_reason: String,
    /// Free text the cloud may add.
    pub lock_msg: String,
}

impl Instance {
    /// The primary private IP, once assigned.
    pub fn private_ip(&self) -> Option<&str> {
        self.vpc_attributes
            .private_ip_address
            .0
            .first()
            .map(String::as_str)
    }
    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .0
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
    /// Whether the instance was launched as spot (its `SpotStrategy` is present and not `NoSpot`).
    pub fn is_spot(&self) -> bool {
        self.spot_strategy.is_some_and(SpotStrategy::is_spot)
    }
}

/// DescribeInstances filters. Tags must all match; an empty tag value matches any value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFilter {
    /// Any number: sent 100 per request.
    pub instance_ids: Vec<String>,
    /// Tags that must all match (`Tag.N.Key`/`Tag.N.Value`); an empty value matches any value.
    pub tags: Vec<Tag>,
    /// Only instances in this zone (`ZoneId`).
    pub zone_id: Option<String>,
    /// Only instances in this vswitch (`VSwitchId`).
    pub vswitch_id: Option<String>,
    /// Only instances in this status (`Status`), e.g. `Running`.
    pub status: Option<String>,
    /// Only instances of this type (`InstanceType`).
    pub instance_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstancesPage {
    #[serde(default)]
    instances: Wrapped<Instance>,
    #[serde(default)]
    next_token: String,
}

/// GetInstanceConsoleOutput answer, decoded.
#[derive(Debug, Clone)]
pub struct ConsoleOutput {
    /// The instance the output belongs to (`InstanceId`).
    pub instance_id: String,
    /// The console text (decoded from base64).
    pub text: String,
    /// When the console output was last updated (`LastUpdateTime`), as the API renders it; empty if absent.
    pub last_update_time: String,
}

impl ConsoleOutput {
    /// The SSH host public keys cloud-init printed (OpenSSH one-line form), from the block
    /// between `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`.
    /// Empty until the instance has booted far enough.
    pub fn host_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut inside = false;
        for line in self.text.lines().map(str::trim) {
            match line {
                "-----BEGIN SSH HOST KEY KEYS-----" => inside = true,
                "-----END SSH HOST KEY KEYS-----" => inside = false,
                l if inside && !l.is_empty() => keys.push(l.to_string()),
                _ => {}
            }
        }
        keys
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsoleOutputResponse {
    #[serde(default)]
    request_id: String,
    instance_id: String,
    #[serde(default)]
    console_output: String,
    #[serde(default)]
    last_update_time: String,
}

/// One disk as DescribeDisks reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disk {
    /// Disk id (`DiskId`).
    pub disk_id: String,
    /// Instance the disk is attached to (`InstanceId`); empty if unattached.
    #[serde(default)]
    pub instance_id: String,
    /// `system` or `data`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Disk category (`Category`), e.g. `cloud_essd`.
    pub category: String,
    /// GiB.
    pub size: u32,
    /// ESSD performance level (`PerformanceLevel`), e.g. `PL0`; empty if absent.
    #[serde(default)]
    pub performance_level: String,
    /// Whether the disk is released with its instance (`DeleteWithInstance`); false if absent.
    #[serde(default)]
    pub delete_with_instance: bool,
    /// Where the disk is attached (`/dev/xvdb`...): data disks get devices in `DataDisk.N`
    /// order. Empty when ECS does not say.
    #[serde(default)]
    pub device: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeDisksResponse {
    #[serde(default)]
    disks: Wrapped<Disk>,
}

/// The largest id list one request may carry.
pub const MAX_IDS_PER_CALL: usize = 100;

/// At most 64 characters of `s`, for an error message about server text.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Pages read for one DescribeInstances listing: 100,000 instances, far beyond any fleet; an
/// endpoint that keeps sending new tokens past it is broken or hostile.
pub const MAX_PAGES: usize = 1000;

impl EcsClient {
    /// Launches instances. Capacity errors come back as [`ErrorKind::Capacity`] naming the
    /// zone, type, vswitch and spot flag of this request.
    pub async fn run_instances(
        &self,
        req: &RunInstancesRequest,
    ) -> Result<RunInstancesResponse, EcsError> {
        let mut params = req.to_params();
        if req.client_token.is_none() {
            params.insert("ClientToken".into(), uuid::Uuid::new_v4().to_string());
        }
        let offering = CapacityDetail {
            zone_id: req.zone_id.clone(),
            instance_type: Some(req.instance_type.clone()),
            vswitch_id: Some(req.vswitch_id.clone()),
            spot: req.spot_strategy.is_spot(),
        };
        self.call_for(Api::Ecs, "RunInstances", params, offering)
            .await
    }

    /// The disks attached to an instance (one page: an instance has at most 17).
    pub async fn describe_disks(&self, instance_id: &str) -> Result<Vec<Disk>, EcsError> {
        let mut p = Params::new();
        p.insert("InstanceId".into(), instance_id.into());
        p.insert("PageSize".into(), "100".into());
        let r: DescribeDisksResponse = self.call(Api::Ecs, "DescribeDisks", p).await?;
        Ok(r.disks.0)
    }

    /// Lists instances matching `filter`, 100 per request (id lists in chunks of 100), following
    /// `NextToken` until the end.
    pub async fn describe_instances(
        &self,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, EcsError> {
        let mut base = Params::new();
        put_tags(&mut base, &filter.tags);
        put_opt(&mut base, "ZoneId", filter.zone_id.as_ref());
        put_opt(&mut base, "VSwitchId", filter.vswitch_id.as_ref());
        put_opt(&mut base, "Status", filter.status.as_ref());
        put_opt(&mut base, "InstanceType", filter.instance_type.as_ref());
        let id_chunks: Vec<Option<&[String]>> = if filter.instance_ids.is_empty() {
            vec![None]
        } else {
            filter
                .instance_ids
                .chunks(MAX_IDS_PER_CALL)
                .map(Some)
                .collect()
        };
        let mut out = Vec::new();
        for ids in id_chunks {
            let mut params = base.clone();
            if let Some(ids) = ids {
                params.insert("InstanceIds".into(), json_list(ids));
            }
            params.insert("MaxResults".into(), MAX_IDS_PER_CALL.to_string());
            // A token seen before would loop for ever; so would an endless run of new ones.
            let mut tokens = std::collections::HashSet::new();
            loop {
                let page: DescribeInstancesPage = self
                    .call(Api::Ecs, "DescribeInstances", params.clone())
                    .await?;
                let done = page.next_token.is_empty() || page.instances.0.is_empty();
                out.extend(page.instances.0);
                if done {
                    break;
                }
                if tokens.len() + 1 >= MAX_PAGES {
                    return Err(EcsError::local(
                        "DescribeInstances",
                        "Decode",
                        format!("the listing goes on past {MAX_PAGES} pages; refused (a broken or hostile endpoint)"),
                        ErrorKind::Decode,
                    ));
                }
                if !tokens.insert(page.next_token.clone()) {
                    return Err(EcsError::local(
                        "DescribeInstances",
                        "Decode",
                        format!("NextToken {:?} came back a second time: the listing would never end", truncated(&page.next_token)),
                        ErrorKind::Decode,
                    ));
                }
                params.insert("NextToken".into(), page.next_token);
            }
        }
        Ok(out)
    }

    /// Releases instances (`Force=true` releases running ones), 100 ids per request. Ids that
    /// no longer exist are not an error: if a batch fails with `InvalidInstanceId.NotFound`, the
    /// ids that still exist are looked up and released (removal stays idempotent after a crash).
    pub async fn delete_instances(
        &self,
        instance_ids: &[String],
        force: bool,
    ) -> Result<(), EcsError> {
        for chunk in instance_ids.chunks(MAX_IDS_PER_CALL) {
            match self.delete_batch(chunk, force).await {
                Err(e) if e.kind == ErrorKind::NotFound => {
                    let filter = InstanceFilter {
                        instance_ids: chunk.to_vec(),
                        ..Default::default()
                    };
                    let alive: Vec<String> = self
                        .describe_instances(&filter)
                        .await?
                        .into_iter()
                        .map(|i| i.instance_id)
                        .collect();
                    tracing::info!(
                        gone = chunk.len() - alive.len(),
                        "some instances were already released"
                    );
                    if !alive.is_empty() {
                        self.delete_batch(&alive, force).await?;
                    }
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn delete_batch(&self, ids: &[String], force: bool) -> Result<(), EcsError> {
        let mut params = Params::new();
        put_list(&mut params, "InstanceId", ids);
        params.insert("Force".into(), force.to_string());
        let _: serde_json::Value = self.call(Api::Ecs, "DeleteInstances", params).await?;
        Ok(())
    }

    /// Stops running instances (`ForceStop` = power off), 100 ids per request. `mode` is
    /// `StoppedMode`; `None` leaves it to the cloud (economical mode when enabled).
    pub async fn stop_instances(
        &self,
        instance_ids: &[String],
        force_stop: bool,
        mode: Option<StoppedMode>,
    ) -> Result<(), EcsError> {
        for chunk in instance_ids.chunks(MAX_IDS_PER_CALL) {
            let mut params = Params::new();
            put_list(&mut params, "InstanceId", chunk);
            params.insert("ForceStop".into(), force_stop.to_string());
            if let Some(mode) = mode {
                params.insert("StoppedMode".into(), mode.as_str().into());
            }
            let _: serde_json::Value = self.call(Api::Ecs, "StopInstances", params).await?;
        }
        Ok(())
    }

    /// Starts stopped instances, 100 ids per request.
    pub async fn start_instances(&self, instance_ids: &[String]) -> Result<(), EcsError> {
        for chunk in instance_ids.chunks(MAX_IDS_PER_CALL) {
            let mut params = Params::new();
            put_list(&mut params, "InstanceId", chunk);
            let _: serde_json::Value = self.call(Api::Ecs, "StartInstances", params).await?;
        }
        Ok(())
    }

    /// The instance's serial console output (cloud-init prints the SSH host keys there).
    pub async fn get_instance_console_output(
        &self,
        instance_id: &str,
    ) -> Result<ConsoleOutput, EcsError> {
        let mut params = Params::new();
        params.insert("InstanceId".into(), instance_id.into());
        let r: ConsoleOutputResponse = self
            .call(Api::Ecs, "GetInstanceConsoleOutput", params)
            .await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r.console_output.trim())
            .map_err(|e| EcsError {
                request_id: Some(r.request_id.clone()),
                ..EcsError::local(
                    "GetInstanceConsoleOutput",
                    "Decode",
                    format!("ConsoleOutput is not base64: {e}"),
                    ErrorKind::Decode,
                )
            })?;
        Ok(ConsoleOutput {
            instance_id: r.instance_id,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            last_update_time: r.last_update_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_instances_params() {
        let mut r = RunInstancesRequest::new("img", "ecs.g7.large", "sg-1", "vsw-1");
        r.amount = 5;
        r.min_amount = Some(2);
        r.tags = vec![Tag::new("a", "1"), Tag::new("b", "")];
        r.spot_strategy = SpotStrategy::SpotWithPriceLimit;
        r.spot_price_limit = Some(0.5);
        r.user_data = Some("#!/bin/sh\necho hi\n".into());
        r.system_disk = Some(SystemDisk {
            category: Some("cloud_essd".into()),
            size_gib: Some(40),
            performance_level: Some("PL0".into()),
        });
        r.data_disks = vec![
            DataDisk {
                category: "cloud_essd".into(),
                size_gib: 100,
                performance_level: Some("PL1".into()),
                delete_with_instance: true,
            },
            DataDisk {
                category: "cloud_efficiency".into(),
                size_gib: 500,
                performance_level: None,
                delete_with_instance: false,
            },
        ];
        r.ram_role_name = Some("ci-agent".into());
        r.http_tokens = Some("required".into());
        r.auto_release_time = Some("2026-12-01T00:00:00Z".into());
        r.dry_run = true;
        let p = r.to_params();
        assert_eq!(p["Amount"], "5");
        assert_eq!(p["MinAmount"], "2");
        assert_eq!(p["Tag.2.Key"], "b");
        assert_eq!(p["Tag.2.Value"], "");
        assert_eq!(p["SpotStrategy"], "SpotWithPriceLimit");
        assert_eq!(p["SpotPriceLimit"], "0.5");
        assert_eq!(p["UserData"], "IyEvYmluL3NoCmVjaG8gaGkK");
        assert_eq!(p["SystemDisk.Size"], "40");
        assert_eq!(p["DryRun"], "true");
        assert!(!p.contains_key("ZoneId"));
        assert_eq!(p["SecurityGroupId"], "sg-1");
        assert_eq!(p["SystemDisk.PerformanceLevel"], "PL0");
        assert_eq!(
            (
                p["DataDisk.1.Category"].as_str(),
                p["DataDisk.1.Size"].as_str(),
                p["DataDisk.1.PerformanceLevel"].as_str(),
                p["DataDisk.1.DeleteWithInstance"].as_str()
            ),
            ("cloud_essd", "100", "PL1", "true")
        );
        assert_eq!(p["DataDisk.2.DeleteWithInstance"], "false");
        assert!(!p.contains_key("DataDisk.2.PerformanceLevel"));
        assert_eq!(
            (p["RamRoleName"].as_str(), p["HttpTokens"].as_str()),
            ("ci-agent", "required")
        );
        assert_eq!(p["AutoReleaseTime"], "2026-12-01T00:00:00Z");
        // Several groups: the list form only, ECS refuses both forms at once.
        r.extra_security_group_ids = vec!["sg-2".into()];
        let p = r.to_params();
        assert_eq!(
            (
                p["SecurityGroupIds.1"].as_str(),
                p["SecurityGroupIds.2"].as_str()
            ),
            ("sg-1", "sg-2")
        );
        assert!(!p.contains_key("SecurityGroupId"));
    }

    #[test]
    fn instance_decodes_documented_shape() {
        let json = r#"{"InstanceId":"i-1","Status":"Running","ZoneId":"z","InstanceType":"t","Cpu":2,"Memory":4096,
            "SpotStrategy":"SpotAsPriceGo","VpcAttributes":{"PrivateIpAddress":{"IpAddress":["127.1.0.1"]},"VpcId":"v","VSwitchId":"s"},
            "Tags":{"Tag":[{"TagKey":"k","TagValue":"v"}]},"SecurityGroupIds":{"SecurityGroupId":["sg"]},"NewField":1}"#;
        let i: Instance = serde_json::from_str(json).unwrap();
        assert_eq!(i.private_ip(), Some("127.1.0.1"));
        assert_eq!(i.tag("k"), Some("v"));
        assert!(i.is_spot());
        let odd: Instance =
            serde_json::from_str(r#"{"InstanceId":"i","Status":"Hibernating"}"#).unwrap();
        assert_eq!(odd.status, InstanceStatus::Other("Hibernating".into()));
    }

    #[test]
    fn host_keys_from_console_output() {
        let c = ConsoleOutput {
            instance_id: "i".into(),
            text: "boot\n-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAA root@h\r\necdsa-sha2-nistp256 BBBB root@h\n-----END SSH HOST KEY KEYS-----\nssh-rsa CCCC not-a-host-key\n".into(),
            last_update_time: String::new(),
        };
        assert_eq!(
            c.host_keys(),
            vec!["ssh-ed25519 AAAA root@h", "ecdsa-sha2-nistp256 BBBB root@h"]
        );
    }

    #[test]
    fn trade_price_as_string_or_number() {
        let a: RunInstancesResponse = serde_json::from_str(
            r#"{"RequestId":"r","InstanceIdSets":{"InstanceIdSet":["i-1"]},"TradePrice":"0.165"}"#,
        )
        .unwrap();
        assert_eq!(a.trade_price, Some(0.165));
        assert_eq!(a.instance_ids.0, vec!["i-1"]);
        let b: RunInstancesResponse =
            serde_json::from_str(r#"{"RequestId":"r","TradePrice":0.2}"#).unwrap();
        assert_eq!(b.trade_price, Some(0.2));
    }
}
