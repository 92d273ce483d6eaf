//! RunInstances parameters beyond placement: which names exist, and the checks ECS applies to
//! disks, RAM role, host names, metadata options and the auto-release time, with its error
//! codes. An unknown name is refused (`InvalidParameter`) rather than ignored, so a misspelt
//! parameter in the provisioner fails a test instead of silently launching without it.


use super::get;
use ecsp_ecs::signer::Params;
use crate::ecs::disk::SimDisk;
use crate::ecs::state::PROTOCOL_PARAMS;
use crate::ecs::failure::ApiFailure;

/// Account parameters SDKs may add to any RPC call, beside the protocol's own
/// ([`PROTOCOL_PARAMS`]).
const ACCOUNT_PARAMS: &[&str] = &["BearerToken", "OwnerId", "OwnerAccount", "ResourceOwnerId", "ResourceOwnerAccount"];

/// RunInstances' own scalar parameters: the names aliyun-python-sdk-ecs's RunInstancesRequest
/// model sends (tests/tests/ecs.rs checks the list against it).
const SCALARS: &[&str] = &[
    "ZoneId",
    "ImageId",
    "ImageFamily",
    "InstanceType",
    "SecurityGroupId",
    "VSwitchId",
    "Amount",
    "MinAmount",
    "ClientToken",
    "KeyPairName",
    "Password",
    "PasswordInherit",
    "UserData",
    "InstanceName",
    "HostName",
    "UniqueSuffix",
    "InstanceChargeType",
    "SpotStrategy",
    "SpotPriceLimit",
    "SpotDuration",
    "SpotInterruptionBehavior",
    "InternetChargeType",
    "InternetMaxBandwidthIn",
    "InternetMaxBandwidthOut",
    "SystemDisk.Category",
    "SystemDisk.Size",
    "SystemDisk.PerformanceLevel",
    "SystemDisk.DiskName",
    "SystemDisk.Description",
    "SystemDisk.AutoSnapshotPolicyId",
    "SystemDisk.BurstingEnabled",
    "SystemDisk.ProvisionedIops",
    "SystemDisk.Encrypted",
    "SystemDisk.KMSKeyId",
    "DryRun",
    "Description",
    "PrivateIpAddress",
    "AutoReleaseTime",
    "RamRoleName",
    "ResourceGroupId",
    "HttpEndpoint",
    "HttpTokens",
    "HttpPutResponseHopLimit",
    "DeletionProtection",
    "Period",
    "PeriodUnit",
    "AutoRenew",
    "AutoRenewPeriod",
    "LaunchTemplateId",
    "LaunchTemplateName",
    "LaunchTemplateVersion",
    "DeploymentSetId",
    "DeploymentSetGroupNo",
    "DedicatedHostId",
    "Affinity",
    "Tenancy",
    "HpcClusterId",
    "IoOptimized",
    "CreditSpecification",
    "SecurityEnhancementStrategy",
    "StorageSetId",
    "StorageSetPartitionNumber",
    "NetworkInterfaceQueueNumber",
    "Ipv6AddressCount",
    "CpuOptions.Core",
    "CpuOptions.ThreadsPerCore",
    "CpuOptions.Numa",
    "CpuOptions.TopologyType",
    "SchedulerOptions.DedicatedHostClusterId",
    "PrivatePoolOptions.MatchCriteria",
    "PrivatePoolOptions.Id",
    "Isp",
    "ImageOptions.LoginAsNonRoot",
    "AutoPay",
    "ClockOptions.PtpStatus",
    "CpuOptions.EnableVISST",
    "CpuOptions.EnableVRDT",
    "CpuOptions.NestedVirtualization",
    "CpuOptions.TurboMode",
    "HibernationOptions.Configured",
    "NetworkOptions.BandwidthWeighting",
    "NetworkOptions.EnableJumboFrame",
    "NetworkOptions.EnableNetworkEncryption",
    "PrivateDnsNameOptions.EnableInstanceIdDnsAAAARecord",
    "PrivateDnsNameOptions.EnableInstanceIdDnsARecord",
    "PrivateDnsNameOptions.EnableIpDnsARecord",
    "PrivateDnsNameOptions.EnableIpDnsPtrRecord",
    "PrivateDnsNameOptions.HostnameType",
    "SecurityOptions.ConfidentialComputingMode",
    "SecurityOptions.TrustedSystemMode",
    "SystemDisk.EncryptAlgorithm",
    "SystemDisk.StorageClusterId",
];

/// Fields of the repeated struct parameters (`DataDisk.N.Field`...).
const DATA_DISK_FIELDS: &[&str] = &[
    "Category",
    "Size",
    "PerformanceLevel",
    "DeleteWithInstance",
    "Encrypted",
    "KMSKeyId",
    "SnapshotId",
    "DiskName",
    "Description",
    "Device",
    "AutoSnapshotPolicyId",
    "BurstingEnabled",
    "ProvisionedIops",
    "EncryptAlgorithm",
    "StorageClusterId",
];

/// Refuses names RunInstances does not have.
pub(crate) fn check_names(p: &Params) -> Result<(), ApiFailure> {
    for name in p.keys() {
        if PROTOCOL_PARAMS.contains(&name.as_str()) || ACCOUNT_PARAMS.contains(&name.as_str())
            || SCALARS.contains(&name.as_str())
            || repeated_known(name)
        {
            continue;
        }
        return Err(ApiFailure::new(
            400,
            "InvalidParameter",
            format!("The specified parameter {name:?} is not valid."),
        ));
    }
    Ok(())
}

fn repeated_known(name: &str) -> bool {
    let mut parts = name.split('.');
    let (Some(head), Some(n)) = (parts.next(), parts.next()) else {
        return false;
    };
    if n.parse::<u32>().is_err() {
        return false;
    }
    let field = parts.next();
    let rest = parts.next();
    match (head, field, rest) {
        ("SecurityGroupIds" | "HostNames" | "Ipv6Address", None, _) => true,
        ("Tag", Some("Key" | "Value"), None) => true,
        ("DataDisk", Some(f), None) => DATA_DISK_FIELDS.contains(&f),
        ("NetworkInterface" | "Arn", Some(_), _) => true,
        _ => false,
    }
}

const CATEGORIES: &[&str] = &[
    "cloud_essd",
    "cloud_auto",
    "cloud_essd_entry",
    "cloud_ssd",
    "cloud_efficiency",
    "cloud",
];

/// The system disk: `SystemDisk.*`, defaulting to a `cloud_efficiency` disk of
/// max(40, image size) GiB; refused below the image size.
pub(crate) fn system_disk(p: &Params, image_size_gib: u32) -> Result<SimDisk, ApiFailure> {
    let category = get(p, "SystemDisk.Category").unwrap_or("cloud_efficiency");
    if !CATEGORIES.contains(&category) {
        return Err(ApiFailure::new(
            400,
            "InvalidSystemDiskCategory.ValueNotSupported",
            format!("The specified SystemDisk.Category {category:?} is not supported."),
        ));
    }
    let level = level(p, "SystemDisk.PerformanceLevel", category)?;
    let size = match get(p, "SystemDisk.Size") {
        None => image_size_gib.max(40),
        Some(v) => v.parse::<u32>().map_err(|_| {
            size_error(
                "InvalidSystemDiskSize.ValueNotSupported",
                "SystemDisk.Size",
                v,
            )
        })?,
    };
    let (min, max) = ecsp_config::launch::system_disk_sizes(category, level.as_deref());
    if !(min..=max).contains(&size) {
        return Err(ApiFailure::new(
            400,
            "InvalidSystemDiskSize.ValueNotSupported",
            format!(
                "The specified SystemDisk.Size {size} is out of the range {min}-{max} of {category}."
            ),
        ));
    }
    if size < image_size_gib {
        return Err(ApiFailure::new(
            404,
            "InvalidSystemDiskSize.LessThanImageSize",
            "The specified parameter SystemDisk.Size is less than the image size.",
        ));
    }
    Ok(SimDisk {
        kind: "system".into(),
        category: category.into(),
        size_gib: size,
        performance_level: level.unwrap_or_default(),
        delete_with_instance: true,
    })
}

/// `DataDisk.N.*`, N from 1 without gaps, at most 16.
pub(crate) fn data_disks(p: &Params) -> Result<Vec<SimDisk>, ApiFailure> {
    let mut disks = Vec::new();
    for n in 1.. {
        let key = |f: &str| format!("DataDisk.{n}.{f}");
        if !p.keys().any(|k| k.starts_with(&format!("DataDisk.{n}."))) {
            break;
        }
        if n > 16 {
            return Err(ApiFailure::new(
                400,
                "InvalidDataDiskCount.ExceedLimit",
                "At most 16 data disks can be attached to an instance.",
            ));
        }
        let category = get(p, &key("Category")).unwrap_or("cloud_efficiency");
        if !CATEGORIES.contains(&category) {
            return Err(ApiFailure::new(
                400,
                "InvalidDataDiskCategory.ValueNotSupported",
                format!("The specified DataDisk.{n}.Category {category:?} is not supported."),
            ));
        }
        let level = level(p, &key("PerformanceLevel"), category)?;
        let size_text = get(p, &key("Size")).ok_or_else(|| {
            ApiFailure::new(400, "MissingParameter", format!("The input parameter \"DataDisk.{n}.Size\" that is mandatory for processing this request is not supplied."))
        })?;
        let size = size_text.parse::<u32>().map_err(|_| {
            size_error(
                "InvalidDataDiskSize.ValueNotSupported",
                &key("Size"),
                size_text,
            )
        })?;
        let (min, max) = ecsp_config::launch::data_disk_sizes(category, level.as_deref());
        if !(min..=max).contains(&size) {
            return Err(ApiFailure::new(
                400,
                "InvalidDataDiskSize.ValueNotSupported",
                format!(
                    "The specified DataDisk.{n}.Size {size} is out of the range {min}-{max} of {category}."
                ),
            ));
        }
        // Booleans case-blind, as the SDKs send them ("true", or Python's "True").
        let delete_with_instance = match get(p, &key("DeleteWithInstance")) {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(ApiFailure::new(
                    400,
                    "InvalidParameter",
                    format!(
                        "The specified DataDisk.{n}.DeleteWithInstance {v:?} is not a boolean."
                    ),
                ));
            }
        };
        disks.push(SimDisk {
            kind: "data".into(),
            category: category.into(),
            size_gib: size,
            performance_level: level.unwrap_or_default(),
            delete_with_instance,
        });
    }
    Ok(disks)
}

/// A performance level: only for `cloud_essd` (default `PL1`).
fn level(p: &Params, name: &str, category: &str) -> Result<Option<String>, ApiFailure> {
    match (get(p, name), category) {
        (None, "cloud_essd") => Ok(Some("PL1".into())),
        (None, _) => Ok(None),
        (Some(l @ ("PL0" | "PL1" | "PL2" | "PL3")), "cloud_essd") => Ok(Some(l.into())),
        (Some(l), _) => Err(ApiFailure::new(
            400,
            "InvalidPerformanceLevel.Malformed",
            format!("The specified {name} {l:?} is not valid for the disk category {category}."),
        )),
    }
}

fn size_error(code: &str, name: &str, value: &str) -> ApiFailure {
    ApiFailure::new(
        400,
        code,
        format!("The specified {name} {value:?} is not a size in GiB."),
    )
}

/// `HttpTokens`: `optional` (default) or `required`.
pub(crate) fn http_tokens(p: &Params) -> Result<String, ApiFailure> {
    match get(p, "HttpTokens").unwrap_or("optional") {
        t @ ("optional" | "required") => Ok(t.into()),
        other => Err(ApiFailure::new(
            400,
            "InvalidHttpTokens.Malformed",
            format!("The specified HttpTokens {other:?} is not valid."),
        )),
    }
}

/// `AutoReleaseTime`: `yyyy-MM-ddTHH:mm:ssZ` (seconds optional), 30 minutes to 3 years ahead.
pub(crate) fn auto_release_time(p: &Params, now_ms: u64) -> Result<String, ApiFailure> {
    let Some(text) = get(p, "AutoReleaseTime") else {
        return Ok(String::new());
    };
    let bad = |why: &str| {
        ApiFailure::new(
            400,
            "InvalidAutoReleaseTime.Malformed",
            format!("The specified AutoReleaseTime {text:?} {why}."),
        )
    };
    let with_secs =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let without = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]Z");
    let at = time::PrimitiveDateTime::parse(text, &with_secs)
        .or_else(|_| time::PrimitiveDateTime::parse(text, &without))
        .map_err(|_| bad("is not yyyy-MM-ddTHH:mm:ssZ in UTC"))?
        .assume_utc()
        .unix_timestamp();
    let ahead = at - (now_ms / 1000) as i64;
    if !(30 * 60..=3 * 365 * 24 * 3600).contains(&ahead) {
        return Err(bad("must be at least 30 minutes and at most 3 years ahead"));
    }
    Ok(text.to_string())
}

/// `HostName` for Linux: 2-64 characters, letters, digits, `-` and `.`, no `.`/`-` at the ends
/// or doubled (after `${instance_id}` is filled in).
pub(crate) fn check_host_name(h: &str) -> Result<(), ApiFailure> {
    let ok = (2..=64).contains(&h.len())
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with(['.', '-'])
        && !h.ends_with(['.', '-'])
        && !["..", "--", ".-", "-."].iter().any(|d| h.contains(d));
    if ok {
        Ok(())
    } else {
        Err(ApiFailure::new(
            400,
            "InvalidHostName.Malformed",
            format!("The specified HostName {h:?} is not valid."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> Params {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_names_are_refused_known_families_pass() {
        check_names(&params(&[
            ("Action", "RunInstances"),
            ("DataDisk.3.PerformanceLevel", "PL1"),
            ("Tag.2.Key", "k"),
            ("SecurityGroupIds.2", "sg"),
        ]))
        .unwrap();
        let e = check_names(&params(&[("DataDisk.1.Sise", "40")])).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert!(check_names(&params(&[("SystemDiskCategory", "x")])).is_err());
    }

    #[test]
    fn disks_are_checked_like_ecs() {
        let d = data_disks(&params(&[
            ("DataDisk.1.Category", "cloud_essd"),
            ("DataDisk.1.Size", "100"),
            ("DataDisk.2.Category", "cloud"),
            ("DataDisk.2.Size", "5"),
            ("DataDisk.2.DeleteWithInstance", "false"),
        ]))
        .unwrap();
        assert_eq!(
            (d[0].performance_level.as_str(), d[1].delete_with_instance),
            ("PL1", false)
        );
        let e = data_disks(&params(&[
            ("DataDisk.1.Category", "cloud_essd"),
            ("DataDisk.1.PerformanceLevel", "PL3"),
            ("DataDisk.1.Size", "100"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, "InvalidDataDiskSize.ValueNotSupported");
        let e = data_disks(&params(&[
            ("DataDisk.1.Category", "ssd"),
            ("DataDisk.1.Size", "100"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, "InvalidDataDiskCategory.ValueNotSupported");
        let e = system_disk(&params(&[("SystemDisk.Category", "gp2")]), 20).unwrap_err();
        assert_eq!(e.code, "InvalidSystemDiskCategory.ValueNotSupported");
        assert_eq!(system_disk(&params(&[]), 20).unwrap().size_gib, 40);
        assert_eq!(
            system_disk(&params(&[("SystemDisk.Size", "30")]), 50)
                .unwrap_err()
                .code,
            "InvalidSystemDiskSize.LessThanImageSize"
        );
    }
}
