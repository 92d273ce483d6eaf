//! Read-mostly catalog actions: regions, zones, available resources, instance types,
//! vswitches/VPCs, security groups, images, key pairs, prices.
use serde_json::{Value, json};

use super::{get, id_list, invalid, page, repeat_list, require, wildcard, wrap};
use ecsp_ecs::signer::Params;
use crate::ecs::state::Cloud;
use crate::ecs::failure::ApiFailure;

pub(crate) fn describe_regions(cloud: &Cloud) -> Result<Value, ApiFailure> {
    let regions: Vec<Value> = std::iter::once(&cloud.config.region_id)
        .chain(cloud.config.other_regions.iter())
        .map(|r| json!({ "RegionId": r, "RegionEndpoint": format!("ecs.{r}.aliyuncs.com"), "LocalName": r, "Status": "available" }))
        .collect();
    Ok(json!({ "Regions": wrap("Region", regions) }))
}

/// Whether a launch of `instance_type` in `zone` would find stock now (stock and injected faults).
fn in_stock(cloud: &Cloud, zone: &str, instance_type: &str, spot: bool) -> bool {
    let inner = cloud.lock();
    !inner.faults.zones_not_on_sale.iter().any(|z| z == zone)
        && !inner.faults.no_stock(zone, instance_type, spot)
        && cloud.stock(&inner, zone, instance_type) > 0
}

fn types_in_zone<'a>(cloud: &'a Cloud, zone: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cloud
        .config
        .instance_types
        .iter()
        .filter(move |t| t.offered_in(zone))
        .map(|t| t.instance_type.as_str())
}

fn spot_requested(p: &Params) -> bool {
    get(p, "SpotStrategy").is_some_and(|s| s != "NoSpot")
}

pub(crate) fn describe_zones(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let spot = spot_requested(p);
    let zones: Vec<Value> = cloud
        .config
        .zones
        .iter()
        .map(|z| {
            let types: Vec<&str> = types_in_zone(cloud, &z.zone_id).filter(|t| in_stock(cloud, &z.zone_id, t, spot)).collect();
            let families: Vec<&str> = {
                let mut f: Vec<&str> = cloud
                    .config
                    .instance_types
                    .iter()
                    .filter(|t| types.contains(&t.instance_type.as_str()))
                    .map(|t| t.family.as_str())
                    .collect();
                f.sort_unstable();
                f.dedup();
                f
            };
            json!({
                "ZoneId": z.zone_id,
                "LocalName": z.local_name,
                "ZoneType": "AvailabilityZone",
                "AvailableResourceCreation": { "ResourceTypes": ["Instance", "Disk", "VSwitch"] },
                "AvailableDiskCategories": { "DiskCategories": ["cloud_essd", "cloud_efficiency"] },
                "AvailableInstanceTypes": { "InstanceTypes": types },
                "AvailableResources": { "ResourcesInfo": [{
                    "IoOptimized": true,
                    "InstanceTypes": { "supportedInstanceType": types },
                    "InstanceTypeFamilies": { "supportedInstanceTypeFamily": families },
                    "SystemDiskCategories": { "supportedSystemDiskCategory": ["cloud_essd", "cloud_efficiency"] },
                    "DataDiskCategories": { "supportedDataDiskCategory": ["cloud_essd", "cloud_efficiency"] },
                    "NetworkTypes": { "supportedNetworkCategory": ["vpc"] }
                }] }
            })
        })
        .collect();
    Ok(json!({ "Zones": wrap("Zone", zones) }))
}

fn supported(value: &str, available: bool) -> Value {
    json!({
        "Value": value,
        "Status": if available { "Available" } else { "SoldOut" },
        "StatusCategory": if available { "WithStock" } else { "WithoutStock" },
    })
}

pub(crate) fn describe_available_resource(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let dest = get(p, "DestinationResource").ok_or_else(|| {
        ApiFailure::new(400, "Invalid.Param", "The input parameter DestinationResource that is mandatory for processing this request is not supplied.")
    })?;
    if !matches!(
        dest,
        "Zone" | "IoOptimized" | "InstanceType" | "Network" | "SystemDisk" | "DataDisk"
    ) {
        return Err(ApiFailure::new(
            404,
            "Invalid.DestinationResource",
            "The specified DestinationResource is not valid.",
        ));
    }
    let spot = spot_requested(p);
    let type_filter = get(p, "InstanceType");
    if matches!(dest, "SystemDisk" | "DataDisk") && type_filter.is_none() {
        return Err(ApiFailure::new(
            400,
            "Invalid.Param",
            "InstanceType is required for this DestinationResource.",
        ));
    }
    let zones: Vec<Value> = cloud
        .config
        .zones
        .iter()
        .filter(|z| get(p, "ZoneId").is_none_or(|want| want == z.zone_id))
        .filter_map(|z| {
            let types: Vec<(&str, bool)> = types_in_zone(cloud, &z.zone_id)
                .filter(|t| type_filter.is_none_or(|f| f == *t))
                .map(|t| (t, in_stock(cloud, &z.zone_id, t, spot)))
                .collect();
            let zone_available = types.iter().any(|(_, ok)| *ok);
            let resources: Vec<Value> = match dest {
                "Zone" => vec![json!({ "Type": "Zone", "SupportedResources": wrap("SupportedResource", vec![supported(&z.zone_id, zone_available)]) })],
                "IoOptimized" => vec![json!({ "Type": "IoOptimized", "SupportedResources": wrap("SupportedResource", vec![supported("optimized", zone_available)]) })],
                "InstanceType" => vec![json!({
                    "Type": "InstanceType",
                    "SupportedResources": wrap("SupportedResource", types.iter().map(|(t, ok)| supported(t, *ok)).collect()),
                })],
                "Network" => vec![json!({ "Type": "Network", "SupportedResources": wrap("SupportedResource", vec![supported("vpc", zone_available)]) })],
                "SystemDisk" | "DataDisk" => {
                    let filter = get(p, if dest == "DataDisk" { "DataDiskCategory" } else { "SystemDiskCategory" });
                    let disks = z
                        .disk_categories
                        .iter()
                        .filter(|c| filter.is_none_or(|f| f == c.as_str()))
                        .map(|c| {
                            let (min, max) = if dest == "DataDisk" {
                                ecsp_config::launch::data_disk_sizes(c, None)
                            } else {
                                ecsp_config::launch::system_disk_sizes(c, None)
                            };
                            let mut v = supported(c, zone_available);
                            v["Min"] = json!(min);
                            v["Max"] = json!(max);
                            v["Unit"] = json!("GiB");
                            v
                        })
                        .collect();
                    vec![json!({ "Type": dest, "SupportedResources": wrap("SupportedResource", disks) })]
                }
                _ => return None,
            };
            // A type filter that the zone does not offer hides the zone, as on the real API.
            if type_filter.is_some() && types.is_empty() {
                return None;
            }
            Some(json!({
                "RegionId": cloud.config.region_id,
                "ZoneId": z.zone_id,
                "Status": if zone_available { "Available" } else { "SoldOut" },
                "StatusCategory": if zone_available { "WithStock" } else { "WithoutStock" },
                "AvailableResources": wrap("AvailableResource", resources),
            }))
        })
        .collect();
    Ok(json!({ "AvailableZones": wrap("AvailableZone", zones) }))
}

pub(crate) fn describe_instance_types(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let wanted = repeat_list(p, "InstanceTypes");
    if wanted.len() > 10 {
        return Err(invalid("InstanceTypes", "more than 10 types"));
    }
    let family = get(p, "InstanceTypeFamily");
    let list: Vec<Value> = cloud
        .config
        .instance_types
        .iter()
        .filter(|t| wanted.is_empty() || wanted.contains(&t.instance_type))
        .filter(|t| family.is_none_or(|f| f == t.family))
        .map(|t| {
            json!({
                "InstanceTypeId": t.instance_type,
                "CpuCoreCount": t.vcpus,
                "MemorySize": t.memory_gib,
                "InstanceTypeFamily": t.family,
                "InstanceFamilyLevel": "EnterpriseLevel",
                "CpuArchitecture": t.cpu_architecture,
                "GPUAmount": 0,
                "GPUSpec": "",
                "EniQuantity": 3,
                "InstanceBandwidthRx": 1_024_000,
                "InstanceBandwidthTx": 1_024_000,
                "InstanceCategory": "General-purpose",
            })
        })
        .collect();
    Ok(json!({ "InstanceTypes": wrap("InstanceType", list), "NextToken": "" }))
}

pub(crate) fn describe_vswitches(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    if get(p, "RegionId").is_none() && get(p, "VpcId").is_none() {
        return Err(ApiFailure::new(
            400,
            "MissingParameter",
            "You must set at least one of RegionId and VpcId.",
        ));
    }
    let ids = id_list(p, "VSwitchId")?;
    let matching: Vec<Value> = {
        let inner = cloud.lock();
        cloud
            .config
            .vswitches
            .iter()
            .filter(|v| ids.is_empty() || ids.contains(&v.vswitch_id))
            .filter(|v| get(p, "VpcId").is_none_or(|x| x == v.vpc_id))
            .filter(|v| get(p, "ZoneId").is_none_or(|x| x == v.zone_id))
            .map(|v| {
                json!({
                    "VSwitchId": v.vswitch_id,
                    "VpcId": v.vpc_id,
                    "ZoneId": v.zone_id,
                    "CidrBlock": v.cidr_block,
                    "AvailableIpAddressCount": cloud.free_ips(&inner, &v.vswitch_id),
                    "Status": "Available",
                    "IsDefault": false,
                    "VSwitchName": v.name,
                    "Description": "",
                    "CreationTime": "2024-01-01T00:00:00Z",
                    "ResourceGroupId": "rg-acfmsim",
                    "Ipv6CidrBlock": "",
                    "RouteTable": { "RouteTableId": format!("vtb-{}", &v.vpc_id[4..]), "RouteTableType": "System" },
                    "Tags": { "Tag": [] }
                })
            })
            .collect()
    };
    let (items, number, size) = page(p, &matching, 50)?;
    Ok(
        json!({ "VSwitches": wrap("VSwitch", items), "TotalCount": matching.len(), "PageNumber": number, "PageSize": size }),
    )
}

pub(crate) fn describe_vpcs(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let mut vpcs: Vec<&str> = cloud
        .config
        .vswitches
        .iter()
        .map(|v| v.vpc_id.as_str())
        .collect();
    vpcs.sort();
    vpcs.dedup();
    let list: Vec<Value> = vpcs
        .iter()
        .filter(|v| get(p, "VpcId").is_none_or(|x| x.split(',').any(|x| x.trim() == **v)))
        .map(|v| {
            let vsw: Vec<&str> =
                cloud.config.vswitches.iter().filter(|s| s.vpc_id == *v).map(|s| s.vswitch_id.as_str()).collect();
            json!({ "VpcId": v, "VpcName": v, "CidrBlock": "172.16.0.0/12", "Status": "Available", "RegionId": cloud.config.region_id,
                    "IsDefault": false, "VSwitchIds": { "VSwitchId": vsw } })
        })
        .collect();
    let (items, number, size) = page(p, &list, 50)?;
    Ok(
        json!({ "Vpcs": wrap("Vpc", items), "TotalCount": list.len(), "PageNumber": number, "PageSize": size }),
    )
}

pub(crate) fn describe_security_groups(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let ids = id_list(p, "SecurityGroupIds")?;
    let list: Vec<Value> = cloud
        .config
        .security_groups
        .iter()
        .filter(|g| ids.is_empty() || ids.contains(&g.security_group_id))
        .filter(|g| get(p, "SecurityGroupId").is_none_or(|x| x == g.security_group_id))
        .filter(|g| get(p, "VpcId").is_none_or(|x| x == g.vpc_id))
        .map(|g| {
            json!({
                "SecurityGroupId": g.security_group_id,
                "SecurityGroupName": g.name,
                "Description": "",
                "SecurityGroupType": "normal",
                "VpcId": g.vpc_id,
                "CreationTime": "2024-01-01T00:00:00Z",
                "ResourceGroupId": "",
                "Tags": { "Tag": [] }
            })
        })
        .collect();
    let (items, number, size) = page(p, &list, 100)?;
    Ok(
        json!({ "SecurityGroups": wrap("SecurityGroup", items), "TotalCount": list.len(), "PageNumber": number,
               "PageSize": size, "RegionId": cloud.config.region_id, "NextToken": "" }),
    )
}

pub(crate) fn describe_images(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let ids = id_list(p, "ImageId")?;
    let list: Vec<Value> = cloud
        .config
        .images
        .iter()
        .filter(|m| ids.is_empty() || ids.contains(&m.image_id))
        .filter(|m| get(p, "ImageName").is_none_or(|n| wildcard(n, &m.image_name) || m.image_name.contains(n)))
        .filter(|m| get(p, "ImageOwnerAlias").is_none_or(|o| o == m.owner_alias))
        .filter(|m| get(p, "OSType").is_none_or(|o| o == m.os_type))
        .map(|m| {
            json!({
                "ImageId": m.image_id,
                "ImageName": m.image_name,
                "ImageFamily": "",
                "OSType": m.os_type,
                "OSName": m.os_name,
                "Architecture": m.architecture,
                "ImageOwnerAlias": m.owner_alias,
                "Status": "Available",
                "Size": m.size_gib,
                "IsPublic": m.owner_alias == "system",
                "Usage": "instance",
                "CreationTime": "2024-01-30T00:00:00Z",
                "DiskDeviceMappings": { "DiskDeviceMapping": [{ "Device": "/dev/xvda", "Type": "system", "Size": m.size_gib.to_string(), "SnapshotId": "" }] },
                "Tags": { "Tag": [] }
            })
        })
        .collect();
    let (items, number, size) = page(p, &list, 100)?;
    Ok(
        json!({ "Images": wrap("Image", items), "TotalCount": list.len(), "PageNumber": number, "PageSize": size,
               "RegionId": cloud.config.region_id }),
    )
}

pub(crate) fn describe_key_pairs(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let include_public = get(p, "IncludePublicKey").is_some_and(|v| v == "true");
    let list: Vec<Value> = cloud
        .lock()
        .p
        .key_pairs
        .iter()
        .filter(|(name, _)| get(p, "KeyPairName").is_none_or(|pat| wildcard(pat, name)))
        .filter(|(_, k)| get(p, "KeyPairFingerPrint").is_none_or(|f| f == k.fingerprint))
        .map(|(name, k)| {
            let mut v = json!({
                "KeyPairName": name,
                "KeyPairFingerPrint": k.fingerprint,
                "CreationTime": ecsp_ecs::signer::format_timestamp(
                    time::OffsetDateTime::from_unix_timestamp((k.created_ms / 1000) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)),
                "ResourceGroupId": "",
                "Tags": { "Tag": [] }
            });
            if include_public {
                v["PublicKey"] = json!(k.public_key);
            }
            v
        })
        .collect();
    let (items, number, size) = page(p, &list, 50)?;
    Ok(
        json!({ "KeyPairs": wrap("KeyPair", items), "TotalCount": list.len(), "PageNumber": number, "PageSize": size }),
    )
}

pub(crate) fn import_key_pair(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let name = require(p, "KeyPairName")?;
    let body = require(p, "PublicKeyBody")?;
    let fingerprint = cloud.import_key_pair(name, body)?;
    Ok(json!({ "KeyPairName": name, "KeyPairFingerPrint": fingerprint }))
}

pub(crate) fn describe_price(cloud: &Cloud, p: &Params) -> Result<Value, ApiFailure> {
    let resource = get(p, "ResourceType").unwrap_or("instance");
    if resource != "instance" {
        return Err(invalid("ResourceType", resource));
    }
    let type_name = require(p, "InstanceType")?;
    let t = cloud.config.instance_type(type_name).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidInstanceType.ValueNotSupported",
            "The specified InstanceType does not exist or beyond the permitted range.",
        )
    })?;
    if let Some(zone) = get(p, "ZoneId")
        && !t.offered_in(zone)
    {
        return Err(ApiFailure::new(
            403,
            "InvalidInstanceType.ZoneNotSupported",
            "The specified zone does not support this instancetype.",
        ));
    }
    let unit = get(p, "PriceUnit").unwrap_or("Hour");
    let hours = match unit {
        "Hour" => 1.0,
        "Week" => 24.0 * 7.0,
        "Month" => 24.0 * 30.0,
        "Year" => 24.0 * 365.0,
        other => return Err(invalid("PriceUnit", other)),
    };
    let original = t.price * hours;
    let trade = if spot_requested(p) {
        t.spot_price * hours
    } else {
        original
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "PriceInfo": {
            "Price": {
                "OriginalPrice": round(original),
                "DiscountPrice": round(original - trade),
                "TradePrice": round(trade),
                "Currency": "CNY",
                "DetailInfos": { "DetailInfo": [] }
            },
            "Rules": { "Rule": [] }
        }
    }))
}
