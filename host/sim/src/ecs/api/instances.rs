//! RunInstances, DescribeInstances, DeleteInstances, Stop/StartInstances, GetInstanceConsoleOutput.
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{
    boolean, get, id_list, int, invalid, launch_params, page, repeat_list, require, tags, wildcard,
    wrap,
};
use ecsp_ecs::signer::Params;
use crate::ecs::state::{Cloud, PROTOCOL_PARAMS, SimInstance, TokenRecord, new_host_key};
use crate::now_ms;
use crate::ecs::failure::ApiFailure;

/// The request's operation parameters, for ClientToken idempotency: the protocol's own
/// parameters and the token itself differ between retries of the same request.
fn fingerprint(p: &Params) -> String {
    p.iter()
        .filter(|(k, _)| !PROTOCOL_PARAMS.contains(&k.as_str()) && k.as_str() != "ClientToken")
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// RunInstances, recorded in full with its outcome (see `Cloud::run_instances_log`).
pub(crate) fn run_instances(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let result = run_instances_checked(cloud, p);
    let code = match &result {
        Ok(_) => String::new(),
        Err(e) => e.code.clone(),
    };
    cloud.record_run_instances(p, code);
    result
}

fn run_instances_checked(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let cfg = &cloud.config;
    launch_params::check_names(p)?;
    let image_id = require(p, "ImageId")?;
    let type_name = require(p, "InstanceType")?;
    let vswitch_id = require(p, "VSwitchId")?;
    // One group (`SecurityGroupId`) or several (`SecurityGroupIds.N`), never both.
    let listed = repeat_list(p, "SecurityGroupIds");
    let sg_ids: Vec<String> = match (get(p, "SecurityGroupId"), listed.is_empty()) {
        (Some(_), false) => {
            return Err(ApiFailure::new(
                400,
                "InvalidParameter.Conflict",
                "SecurityGroupId and SecurityGroupIds cannot be specified at the same time.",
            ));
        }
        (Some(one), true) => vec![one.to_string()],
        (None, false) => listed,
        (None, true) => vec![require(p, "SecurityGroupId")?.to_string()],
    };
    let sg_id = sg_ids[0].as_str();
    let amount = int(p, "Amount", 1, 1..=100).map_err(|_| {
        ApiFailure::new(
            403,
            "InvalidParam.Amount",
            "The specified parameter Amount is not valid (1 to 100).",
        )
    })? as u32;
    let min_amount = match get(p, "MinAmount") {
        None => amount,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=amount).contains(m))
            .ok_or_else(|| {
                ApiFailure::new(
                    400,
                    "InvalidMinAmount.Malformed",
                    "MinAmount must be between 1 and Amount.",
                )
            })?,
    };
    let client_token = get(p, "ClientToken");
    if client_token.is_some_and(|t| t.len() > 64 || !t.is_ascii()) {
        return Err(invalid("ClientToken", client_token.unwrap_or_default()));
    }
    let vsw = cfg
        .vswitches
        .iter()
        .find(|v| v.vswitch_id == vswitch_id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidVSwitchId.NotFound",
                "The specified VSwitchId does not exist.",
            )
        })?;
    if let Some(zone) = get(p, "ZoneId") {
        if !cfg.zones.iter().any(|z| z.zone_id == zone) {
            return Err(ApiFailure::new(
                404,
                "InvalidZoneId.NotFound",
                "The specified zone does not exist.",
            ));
        }
        if zone != vsw.zone_id {
            return Err(ApiFailure::new(
                400,
                "InvalidParameter.Mismatch",
                "Specified virtual switch is not in the specified zone.",
            ));
        }
    }
    let zone = vsw.zone_id.clone();
    let image = cfg
        .images
        .iter()
        .find(|i| i.image_id == image_id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidImageId.NotFound",
                "The specified ImageId does not exist.",
            )
        })?;
    for sg_id in &sg_ids {
        let sg = cfg
            .security_groups
            .iter()
            .find(|g| &g.security_group_id == sg_id)
            .ok_or_else(|| {
                ApiFailure::new(
                    404,
                    "InvalidSecurityGroupId.NotFound",
                    format!("The specified SecurityGroupId {sg_id} does not exist."),
                )
            })?;
        if sg.vpc_id != vsw.vpc_id {
            return Err(ApiFailure::new(
                400,
                "InvalidParameter.Mismatch",
                "Specified security group and virtual switch are not in the same VPC.",
            ));
        }
    }
    let system_disk = launch_params::system_disk(p, image.size_gib)?;
    let data_disks = launch_params::data_disks(p)?;
    let http_tokens = launch_params::http_tokens(p)?;
    let auto_release_time = launch_params::auto_release_time(p, now_ms())?;
    let ram_role = get(p, "RamRoleName").unwrap_or_default().to_string();
    let resource_group_id = get(p, "ResourceGroupId").unwrap_or_default().to_string();
    if let Some(h) = get(p, "HostName") {
        launch_params::check_host_name(&h.replace("${instance_id}", "i-bp1abcdefghijklmnopq"))?;
    }
    let itype = cfg.instance_type(type_name).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidInstanceType.ValueNotSupported",
            "The specified InstanceType does not exist or beyond the permitted range.",
        )
    })?;
    if !itype.offered_in(&zone) {
        return Err(ApiFailure::new(
            403,
            "InvalidInstanceType.ZoneNotSupported",
            "The specified zone does not support this instancetype.",
        ));
    }
    if !launch_params::architecture_fits(&image.architecture, &itype.cpu_architecture) {
        return Err(ApiFailure::new(
            403,
            "ImageNotSupportInstanceType",
            "The specified image does not support the specified InstanceType.",
        ));
    }
    // Only categories the request names: without one, ECS picks a default the zone sells.
    let on_sale = cfg
        .zones
        .iter()
        .find(|z| z.zone_id == zone)
        .map(|z| z.disk_categories.as_slice())
        .unwrap_or_default();
    let named = get(p, "SystemDisk.Category")
        .map(|_| &system_disk)
        .into_iter()
        .chain(data_disks.iter().enumerate().filter(|(i, _)| get(p, &format!("DataDisk.{}.Category", i + 1)).is_some()).map(|(_, d)| d));
    if let Some(d) = named.into_iter().find(|d| !on_sale.contains(&d.category)) {
        return Err(ApiFailure::new(
            403,
            "CategoryNotSupported",
            format!("The specified zone does not offer the specified disk category. ({} disk {} in {zone})", d.kind, d.category),
        ));
    }
    let spot_strategy = get(p, "SpotStrategy").unwrap_or("NoSpot");
    if !["NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"].contains(&spot_strategy) {
        return Err(ApiFailure::new(
            400,
            "InvalidSpotStrategy",
            "The specified SpotStrategy is not valid.",
        ));
    }
    let spot = spot_strategy != "NoSpot";
    let spot_price_limit = match get(p, "SpotPriceLimit") {
        None => None,
        Some(v) => Some(v.parse::<f64>().map_err(|_| invalid("SpotPriceLimit", v))?),
    };
    if spot_strategy == "SpotWithPriceLimit"
        && spot_price_limit.is_some_and(|l| l < itype.spot_price)
    {
        return Err(ApiFailure::new(
            400,
            "InvalidSpotPriceLimit.LowerThanPublicPrice",
            "The specified SpotPriceLimit is lower than the current spot price.",
        ));
    }
    let key_pair_name = get(p, "KeyPairName").unwrap_or_default().to_string();
    let user_data = match get(p, "UserData") {
        None => None,
        Some(u) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(u)
                .map_err(|_| {
                    ApiFailure::new(
                        400,
                        "InvalidUserData.Base64FormatInvalid",
                        "The specified UserData is not valid Base64.",
                    )
                })?;
            if raw.len() > 32 * 1024 {
                return Err(ApiFailure::new(
                    400,
                    "InvalidUserData.SizeExceeded",
                    "The specified UserData exceeds 32 KB.",
                ));
            }
            Some(String::from_utf8_lossy(&raw).into_owned())
        }
    };
    let tag_list: Vec<(String, String)> = tags(p)
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    if tag_list.len() > 20 {
        return Err(ApiFailure::new(
            403,
            "QuotaExceed.Tags",
            "The maximum number of tags is 20.",
        ));
    }
    if let Some((k, _)) = tag_list
        .iter()
        .find(|(k, _)| k.is_empty() || k.starts_with("acs:") || k.starts_with("aliyun"))
    {
        return Err(ApiFailure::new(
            400,
            "InvalidTagKey.Malformed",
            format!("The specified tag key {k:?} is not valid."),
        ));
    }
    let bandwidth = int(p, "InternetMaxBandwidthOut", 0, 0..=100)? as u32;
    let charge_type = get(p, "InstanceChargeType")
        .unwrap_or("PostPaid")
        .to_string();

    let now = now_ms();
    let mut inner = cloud.lock();
    cloud.purge(&mut inner, now);
    if !key_pair_name.is_empty() && !inner.p.key_pairs.contains_key(&key_pair_name) {
        return Err(ApiFailure::new(
            404,
            "InvalidKeyPairName.NotFound",
            "The specified KeyPairName does not exist.",
        ));
    }
    if boolean(p, "DryRun") {
        return Err(ApiFailure::new(
            400,
            "DryRunOperation",
            "Request validation has been passed with DryRun flag set.",
        ));
    }
    // Idempotency: same token + same parameters replays the first answer.
    let fp = fingerprint(p);
    if let Some(token) = client_token
        && let Some(rec) = inner.p.tokens.get(token)
    {
        if rec.fingerprint != fp {
            return Err(ApiFailure::new(
                400,
                "IdempotentParameterMismatch",
                "The request is retried with updated parameters.",
            ));
        }
        return Ok(run_answer(&rec.instance_ids, itype.price, amount));
    }
    if inner.faults.zones_not_on_sale.contains(&zone) {
        return Err(ApiFailure::new(
            403,
            "Zone.NotOnSale",
            "The resource in the specified zone is no longer available for sale. Please try other regions and zones.",
        ));
    }
    if inner.faults.no_stock(&zone, type_name, spot) {
        return Err(ApiFailure::new(
            403,
            "OperationDenied.NoStock",
            "The requested resource is sold out in the specified zone; try other types of resources or other regions and zones.",
        ));
    }
    let mut count = amount.min(cloud.stock(&inner, &zone, type_name));
    if count < min_amount {
        return Err(ApiFailure::new(
            403,
            "OperationDenied.NoStock",
            "The requested resource is sold out in the specified zone; try other types of resources or other regions and zones.",
        ));
    }
    count = count.min(u32::try_from(cloud.free_ips(&inner, vswitch_id)).unwrap_or(u32::MAX));
    if count < min_amount {
        return Err(ApiFailure::new(
            403,
            "InvalidVSwitchId.IpNotEnough",
            format!("The specified VSwitch \"{vswitch_id}\" has not enough IpAddress."),
        ));
    }
    if let Some(max) = cfg.max_instances {
        let live = inner
            .p
            .instances
            .iter()
            .filter(|i| i.deleted_ms.is_none())
            .count() as u32;
        count = count.min(max.saturating_sub(live));
        if count < min_amount {
            return Err(ApiFailure::new(
                403,
                "QuotaExceed.ElasticQuota",
                "No additional quota is available for the specified ECS instance type.",
            ));
        }
    }
    let authorized_key = inner
        .p
        .key_pairs
        .get(&key_pair_name)
        .map(|k| k.public_key.clone())
        .unwrap_or_default();
    let mut ids = Vec::with_capacity(count as usize);
    for n in 0..count {
        let instance_id = format!("i-bp1{}", random_suffix(17));
        let ip = cloud.allocate_ip(&mut inner)?;
        let host_name = match get(p, "HostName") {
            Some(h) => h.replace("${instance_id}", &instance_id),
            None => format!("iZ{}Z", &instance_id[2..]),
        };
        let instance_name = match get(p, "InstanceName") {
            Some(name) if count > 1 && get(p, "UniqueSuffix").is_some_and(|v| v == "true") => {
                format!("{name}{:03}", n + 1)
            }
            Some(name) => name.to_string(),
            None => instance_id.clone(),
        };
        let (host_key_pem, host_key_public) = new_host_key(&format!("root@{host_name}"));
        let mut disks = vec![system_disk.clone()];
        disks.extend(data_disks.iter().cloned());
        // A public address when bandwidth is bought: a loopback address of its own
        // (127.128.0.0/9, beside the private 127.x), so that the SSH emulator answers on it
        // as a real instance answers on its public IP.
        let public_ip = (bandwidth > 0).then(|| {
            let o = ip.octets();
            std::net::Ipv4Addr::new(127, 128 | o[1], o[2], o[3])
        });
        inner.p.next_seq += 1;
        let seq = inner.p.next_seq;
        inner.p.instances.push(SimInstance {
            seq,
            instance_id: instance_id.clone(),
            instance_name,
            host_name,
            zone_id: zone.clone(),
            vswitch_id: vswitch_id.to_string(),
            vpc_id: vsw.vpc_id.clone(),
            security_group_id: sg_id.to_string(),
            extra_security_group_ids: sg_ids[1..].to_vec(),
            disks,
            public_ip,
            ram_role: ram_role.clone(),
            resource_group_id: resource_group_id.clone(),
            http_tokens: http_tokens.clone(),
            auto_release_time: auto_release_time.clone(),
            instance_type: type_name.to_string(),
            image_id: image.image_id.clone(),
            key_pair_name: key_pair_name.clone(),
            ip,
            tags: tag_list.clone(),
            spot_strategy: spot_strategy.to_string(),
            spot_price_limit,
            charge_type: charge_type.clone(),
            internet_max_bandwidth_out: bandwidth,
            user_data: user_data.clone(),
            user_data_started: false,
            console: String::new(),
            created_ms: now,
            deleted_ms: None,
            stopped_ms: None,
            restarted_ms: None,
            stopped_mode: String::new(),
            reclaim: None,
            host_key_pem,
            host_key_public,
            authorized_key: authorized_key.clone(),
        });
        ids.push(instance_id);
    }
    cloud.take_stock(&mut inner, &zone, type_name, count);
    if let Some(token) = client_token {
        inner.p.tokens.insert(
            token.to_string(),
            TokenRecord {
                fingerprint: fp,
                instance_ids: ids.clone(),
            },
        );
    }
    cloud.persist(&inner);
    let price = if spot { itype.spot_price } else { itype.price };
    Ok(run_answer(&ids, price, count))
}

/// `InvalidInstanceId.NotFound` for one id of a batch action.
fn instance_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(404, "InvalidInstanceId.NotFound", format!("The specified InstanceId does not exist: {id}."))
}

/// `IncorrectInstanceStatus`: the action does not apply to the instance's current status.
fn no_stock() -> ApiFailure {
    ApiFailure::new(
        403,
        "OperationDenied.NoStock",
        "The requested resource is sold out in the specified zone; try other types of resources or other regions and zones.",
    )
}

fn incorrect_status() -> ApiFailure {
    ApiFailure::new(403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation.")
}

fn run_answer(ids: &[String], unit_price: f64, count: u32) -> Value {
    json!({
        "InstanceIdSets": { "InstanceIdSet": ids },
        "TradePrice": (unit_price * count as f64 * 1000.0).round() / 1000.0,
    })
}

fn minute_time(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn instance_json(cloud: &Cloud, i: &SimInstance, status: &str) -> Value {
    let spec = cloud.config.instance_type(&i.instance_type);
    let image = cloud
        .config
        .images
        .iter()
        .find(|m| m.image_id == i.image_id);
    let ip = i.ip.to_string();
    let mac = {
        let o = i.ip.octets();
        format!("00:16:3e:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
    };
    let network = json!({
        "VpcAttributes": {
            "PrivateIpAddress": { "IpAddress": [ip] },
            "VpcId": i.vpc_id,
            "VSwitchId": i.vswitch_id,
            "NatIpAddress": ""
        },
        "PublicIpAddress": { "IpAddress": i.public_ip.iter().map(|a| a.to_string()).collect::<Vec<_>>() },
        "InnerIpAddress": { "IpAddress": [] },
        "EipAddress": { "AllocationId": "", "IpAddress": "", "InternetChargeType": "" },
        "NetworkInterfaces": { "NetworkInterface": [{
            "Type": "Primary",
            "NetworkInterfaceId": format!("eni-{}", &i.instance_id[2..]),
            "PrimaryIpAddress": ip,
            "MacAddress": mac,
            "PrivateIpSets": { "PrivateIpSet": [{ "PrivateIpAddress": ip, "Primary": true }] }
        }] },
    });
    let mut v = json!({
        "InstanceId": i.instance_id,
        "InstanceName": i.instance_name,
        "HostName": i.host_name,
        "Description": "",
        "Status": status,
        "RegionId": cloud.config.region_id,
        "ZoneId": i.zone_id,
        "InstanceType": i.instance_type,
        "InstanceTypeFamily": spec.map(|s| s.family.as_str()).unwrap_or_default(),
        "Cpu": spec.map(|s| s.vcpus).unwrap_or_default(),
        "Memory": spec.map(|s| (s.memory_gib * 1024.0) as u64).unwrap_or_default(),
        "ImageId": i.image_id,
        "OSType": image.map(|m| m.os_type.as_str()).unwrap_or("linux"),
        "OSName": image.map(|m| m.os_name.as_str()).unwrap_or_default(),
        "InstanceNetworkType": "vpc",
        "InstanceChargeType": i.charge_type,
        "InternetChargeType": "PayByTraffic",
        "InternetMaxBandwidthOut": i.internet_max_bandwidth_out,
        "InternetMaxBandwidthIn": if i.internet_max_bandwidth_out > 0 { 200 } else { 0 },
        "SpotStrategy": i.spot_strategy,
        "SpotPriceLimit": i.spot_price_limit.unwrap_or(0.0),
        "CreationTime": minute_time(i.created_ms),
        "StartTime": minute_time(i.created_ms),
        "ExpiredTime": "2099-12-31T15:59Z",
        "AutoReleaseTime": i.auto_release_time,
        "ResourceGroupId": i.resource_group_id,
        "KeyPairName": i.key_pair_name,
        "SecurityGroupIds": { "SecurityGroupId": std::iter::once(&i.security_group_id).chain(&i.extra_security_group_ids).collect::<Vec<_>>() },
        "Tags": { "Tag": i.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>() },
        "OperationLocks": { "LockReason": i.lock_reasons().iter().map(|r| json!({"LockReason": r, "LockMsg": ""})).collect::<Vec<_>>() },
        "StoppedMode": if i.stopped_ms.is_some() && !i.stopped_mode.is_empty() { i.stopped_mode.as_str() } else { "Not-applicable" },
        "DeletionProtection": false,
        "IoOptimized": true,
        "MetadataOptions": { "HttpTokens": if i.http_tokens.is_empty() { "optional" } else { i.http_tokens.as_str() }, "HttpEndpoint": "enabled" }
    });
    if let (Value::Object(all), Value::Object(net)) = (&mut v, network) {
        all.extend(net);
    }
    v
}

pub(crate) fn describe_instances(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let ids = id_list(p, "InstanceIds")?;
    if ids.len() > 100 {
        return Err(invalid("InstanceIds", "more than 100 ids"));
    }
    let ips = id_list(p, "PrivateIpAddresses")?;
    let tag_filter = tags(p);
    let status_filter = get(p, "Status");
    let now = now_ms();
    let mut inner = cloud.lock();
    cloud.purge(&mut inner, now);
    // ECS's read side lags behind RunInstances, for lookups by id as for tag-filtered listings.
    let lag = inner.faults.listing_lag_ms;
    let matching: Vec<(&SimInstance, &'static str)> = inner
        .p
        .instances
        .iter()
        .filter_map(|i| Some((i, cloud.status(i, now)?)))
        .filter(|(i, status)| {
            now.saturating_sub(i.created_ms) >= lag
                && (ids.is_empty() || ids.contains(&i.instance_id))
                && (ips.is_empty() || ips.contains(&i.ip.to_string()))
                && get(p, "ZoneId").is_none_or(|z| z == i.zone_id)
                && get(p, "VSwitchId").is_none_or(|v| v == i.vswitch_id)
                && get(p, "VpcId").is_none_or(|v| v == i.vpc_id)
                && get(p, "InstanceType").is_none_or(|t| t == i.instance_type)
                && get(p, "ImageId").is_none_or(|m| m == i.image_id)
                && get(p, "KeyPairName").is_none_or(|k| k == i.key_pair_name)
                && get(p, "InstanceName").is_none_or(|n| wildcard(n, &i.instance_name))
                && status_filter.is_none_or(|s| s == *status)
                && tag_filter.iter().all(|(k, v)| {
                    i.tags
                        .iter()
                        .any(|(tk, tv)| tk == k && v.as_ref().is_none_or(|v| v == tv))
                })
        })
        .collect();
    let total = matching.len() as u64;
    // Token paging (NextToken/MaxResults) resumes after the last returned instance, so
    // deletions between pages never skip anyone; PageNumber/PageSize is offset-based.
    let token_mode = p.contains_key("NextToken") || p.contains_key("MaxResults");
    let (items, number, size, next_token) = if token_mode {
        let max = match get(p, "MaxResults")
            .map(|v| v.parse::<u64>().map_err(|_| invalid("MaxResults", v)))
        {
            None => 10,
            Some(n) => n?.clamp(10, 100),
        };
        let after = match get(p, "NextToken") {
            None => 0,
            Some(t) => u64::from_str_radix(t, 16).map_err(|_| invalid("NextToken", t))?,
        };
        let rest: Vec<_> = matching.iter().filter(|(i, _)| i.seq > after).collect();
        let items: Vec<_> = rest.iter().take(max as usize).map(|x| **x).collect();
        let next = if rest.len() > items.len() {
            items
                .last()
                .map(|(i, _)| format!("{:032x}", i.seq))
                .unwrap_or_default()
        } else {
            String::new()
        };
        (items, 1, max, next)
    } else {
        let (items, number, size) = page(p, &matching, 100)?;
        (items, number, size, String::new())
    };
    let list: Vec<Value> = items
        .iter()
        .map(|(i, s)| instance_json(cloud, i, s))
        .collect();
    Ok(json!({
        "Instances": wrap("Instance", list),
        "TotalCount": total,
        "PageNumber": number,
        "PageSize": size,
        "NextToken": next_token,
    }))
}

/// DescribeDisks (by `InstanceId`, optionally `DiskType` = `system` | `data` | `all`): the disks
/// launched with the instance, `Disks.Disk[]` as ECS answers (system disk first).
pub(crate) fn describe_disks(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let instance_id = require(p, "InstanceId")?;
    let kind = get(p, "DiskType").unwrap_or("all");
    if !["all", "system", "data"].contains(&kind) {
        return Err(invalid("DiskType", kind));
    }
    let disks = cloud.disks_of(instance_id).unwrap_or_default();
    let zone = cloud.instances().into_iter().find(|i| i.instance_id == instance_id).map(|i| i.zone_id).unwrap_or_default();
    let list: Vec<Value> = disks
        .iter()
        .enumerate()
        .filter(|(_, d)| kind == "all" || d.kind == kind)
        .map(|(n, d)| {
            json!({
                "DiskId": crate::disks::disk_id(instance_id, n),
                "InstanceId": instance_id,
                "RegionId": cloud.config.region_id,
                "ZoneId": zone,
                "Type": d.kind,
                "Category": d.category,
                "Size": d.size_gib,
                "PerformanceLevel": d.performance_level,
                "DeleteWithInstance": d.delete_with_instance,
                "Device": format!("/dev/xvd{}", (b'a' + n as u8) as char),
                "Status": "In_use",
                "Portable": d.kind == "data",
            })
        })
        .collect();
    Ok(json!({
        "TotalCount": list.len(),
        "PageNumber": 1,
        "PageSize": list.len().max(10),
        "Disks": { "Disk": list },
    }))
}

pub(crate) fn delete_instances(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let ids = repeat_list(p, "InstanceId");
    if ids.is_empty() {
        return Err(ApiFailure::new(
            400,
            "MissingParameter",
            "The input parameter \"InstanceId\" that is mandatory for processing this request is not supplied.",
        ));
    }
    if ids.len() > 100 {
        return Err(invalid("InstanceId", "more than 100 ids"));
    }
    let force = boolean(p, "Force");
    let now = now_ms();
    let mut inner = cloud.lock();
    cloud.purge(&mut inner, now);
    for id in &ids {
        let inst = inner
            .p
            .instances
            .iter()
            .find(|i| &i.instance_id == id)
            .ok_or_else(|| instance_not_found(id))?;
        // Releasing an instance that is already being released is a no-op.
        if inst.deleted_ms.is_none() && !force && cloud.status(inst, now) != Some("Stopped") {
            return Err(incorrect_status());
        }
    }
    if boolean(p, "DryRun") {
        return Err(ApiFailure::new(
            400,
            "DryRunOperation",
            "Request validation has been passed with DryRun flag set.",
        ));
    }
    for inst in inner
        .p
        .instances
        .iter_mut()
        .filter(|i| ids.contains(&i.instance_id) && i.deleted_ms.is_none())
    {
        inst.deleted_ms = Some(now);
    }
    cloud.purge(&mut inner, now);
    cloud.persist(&inner);
    Ok(json!({}))
}

/// StopInstances / StartInstances (batch forms, `BatchOptimization=AllTogether`: every
/// instance must be in the right status or none changes).
pub(crate) fn stop_or_start(cloud: &Cloud, p: &Params, stop: bool) -> Result<Value, ApiFailure> {
    let ids = repeat_list(p, "InstanceId");
    if ids.is_empty() {
        return Err(ApiFailure::new(
            400,
            "MissingParameter",
            "The input parameter \"InstanceId\" that is mandatory for processing this request is not supplied.",
        ));
    }
    if ids.len() > 100 {
        return Err(invalid("InstanceId", "more than 100 ids"));
    }
    let (from, to) = if stop {
        ("Running", "Stopping")
    } else {
        ("Stopped", "Starting")
    };
    // No economical mode is enabled on the emulated account: KeepCharging unless asked.
    let mode = match get(p, "StoppedMode") {
        None => "KeepCharging",
        Some(m @ ("StopCharging" | "KeepCharging")) => m,
        Some(other) => return Err(invalid("StoppedMode", other)),
    };
    let now = now_ms();
    let mut inner = cloud.lock();
    cloud.purge(&mut inner, now);
    // Stock each start must take again: (zone, type) per economical-mode instance.
    let mut restock: BTreeMap<(String, String), u32> = BTreeMap::new();
    for id in &ids {
        let inst = inner
            .p
            .instances
            .iter()
            .find(|i| &i.instance_id == id && i.deleted_ms.is_none())
            .ok_or_else(|| instance_not_found(id))?;
        if cloud.status(inst, now) != Some(from) {
            return Err(incorrect_status());
        }
        if !stop && inst.stopped_mode == "StopCharging" {
            *restock.entry((inst.zone_id.clone(), inst.instance_type.clone())).or_default() += 1;
            if inner.faults.no_stock(&inst.zone_id, &inst.instance_type, inst.spot_strategy != "NoSpot") {
                return Err(no_stock());
            }
        }
    }
    // All together: one type short in one zone fails the whole call.
    if restock.iter().any(|((zone, ty), n)| cloud.stock(&inner, zone, ty) < *n) {
        return Err(no_stock());
    }
    if boolean(p, "DryRun") {
        return Err(ApiFailure::new(
            400,
            "DRYRUN.SUCCESS",
            "This request is a dryrun request with successful result.",
        ));
    }
    for ((zone, ty), n) in &restock {
        cloud.take_stock(&mut inner, zone, ty, *n);
    }
    let mut released = Vec::new();
    for inst in inner
        .p
        .instances
        .iter_mut()
        .filter(|i| ids.contains(&i.instance_id))
    {
        if stop {
            inst.stopped_ms = Some(now);
            inst.restarted_ms = None;
            inst.stopped_mode = mode.to_owned();
            if mode == "StopCharging" {
                released.push((inst.zone_id.clone(), inst.instance_type.clone()));
            }
        } else {
            inst.stopped_ms = None;
            inst.restarted_ms = Some(now);
            inst.stopped_mode.clear();
        }
    }
    for (zone, ty) in released {
        cloud.give_stock(&mut inner, &zone, &ty);
    }
    cloud.persist(&inner);
    let responses: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "InstanceId": id, "Code": "200", "Message": "success", "PreviousStatus": from, "CurrentStatus": to }))
        .collect();
    Ok(json!({ "InstanceResponses": wrap("InstanceResponse", responses) }))
}

pub(crate) fn console_output(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let id = require(p, "InstanceId")?;
    let now = now_ms();
    let inner = cloud.lock();
    let inst = inner
        .p
        .instances
        .iter()
        .find(|i| i.instance_id == id && cloud.status(i, now).is_some())
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidInstanceId.NotFound",
                "The specified InstanceId does not exist.",
            )
        })?;
    let status = cloud.status(inst, now).unwrap_or("Stopping");
    let mut text = format!(
        "[    0.000000] Linux version 5.15.0-emulated (ecs-provisioner sim) #1 SMP\n\
         [    1.204511] systemd[1]: Hostname set to <{}>.\n",
        inst.host_name
    );
    if status == "Running" || status == "Stopping" {
        // cloud-init prints the host keys this way; the SSH client's strict mode reads them.
        let fields: Vec<&str> = inst.host_key_public.split_whitespace().collect();
        let key_line = format!("{} {} root@{}", fields.first().copied().unwrap_or_default(), fields.get(1).copied().unwrap_or_default(), inst.host_name);
        // The same block writer the SSH client's strict mode is tested against.
        let keys_block = ecsp_ssh::console_host_keys_block(&[key_line]);
        let fp = russh::keys::PublicKey::from_openssh(&inst.host_key_public)
            .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
            .unwrap_or_default();
        text.push_str(&format!(
            "Cloud-init v. 23.4 running 'modules:final' at {}.\n\
             ci-info: no authorized SSH keys fingerprints found for user ecs-user.\n\
             -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
             256 {fp} root@{host} (ED25519)\n\
             -----END SSH HOST KEY FINGERPRINTS-----\n\
             {keys_block}\
             Cloud-init v. 23.4 finished. Datasource DataSourceAliYun.\n",
            minute_time(inst.created_ms),
            host = inst.host_name,
        ));
    }
    // What the user-data script printed, as cloud-init copies it to the console.
    text.push_str(&inst.console);
    Ok(json!({
        "InstanceId": inst.instance_id,
        "ConsoleOutput": base64::engine::general_purpose::STANDARD.encode(text),
        "LastUpdateTime": ecsp_ecs::signer::format_timestamp(
            time::OffsetDateTime::from_unix_timestamp((now / 1000) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        ),
    }))
}
