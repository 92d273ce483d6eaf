//! The emulated actions: parameters in, response JSON (without `RequestId`) or an
//! [`ApiFailure`] out. Response shapes follow shared/reference/ecs-openapi.md §3.
mod catalog;
mod instances;
mod launch_params;


use serde_json::Value;

use super::state::Cloud;
use super::failure::ApiFailure;
use ecsp_ecs::signer::Params;

const ECS_VERSION: &str = "2014-05-26";
const VPC_VERSION: &str = "2016-04-28";

/// Runs one action.
pub(crate) fn dispatch(cloud: &Cloud, action: &str, p: &Params) -> Result<Value, ApiFailure> {
    let version = p.get("Version").map(String::as_str).unwrap_or_default();
    let vpc_action = matches!(action, "DescribeVSwitches" | "DescribeVpcs");
    let version_ok = version == ECS_VERSION || (vpc_action && version == VPC_VERSION);
    if !version_ok {
        return Err(ApiFailure::new(
            400,
            "InvalidVersion",
            format!("Specified parameter Version is not valid: {version:?}."),
        ));
    }
    if let Some(region) = p.get("RegionId")
        && region != &cloud.config.region_id
        && action != "DescribeRegions"
    {
        return Err(ApiFailure::new(
            404,
            "InvalidRegionId.NotFound",
            "The specified RegionId does not exist.",
        ));
    }
    match action {
        "RunInstances" => instances::run_instances(cloud, p),
        "DescribeInstances" => instances::describe_instances(cloud, p),
        "DescribeDisks" => instances::describe_disks(cloud, p),
        "DeleteInstances" => instances::delete_instances(cloud, p),
        "StopInstances" => instances::stop_or_start(cloud, p, true),
        "StartInstances" => instances::stop_or_start(cloud, p, false),
        "GetInstanceConsoleOutput" => instances::console_output(cloud, p),
        "DescribeRegions" => catalog::describe_regions(cloud),
        "DescribeZones" => catalog::describe_zones(cloud, p),
        "DescribeAvailableResource" => catalog::describe_available_resource(cloud, p),
        "DescribeInstanceTypes" => catalog::describe_instance_types(cloud, p),
        "DescribeVSwitches" => catalog::describe_vswitches(cloud, p),
        "DescribeVpcs" => catalog::describe_vpcs(cloud, p),
        "DescribeSecurityGroups" => catalog::describe_security_groups(cloud, p),
        "DescribeImages" => catalog::describe_images(cloud, p),
        "DescribeKeyPairs" => catalog::describe_key_pairs(cloud, p),
        "ImportKeyPair" => catalog::import_key_pair(cloud, p),
        "DescribePrice" => catalog::describe_price(cloud, p),
        _ => Err(ApiFailure::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}."),
        )),
    }
}

/// A non-empty parameter.
pub(crate) fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// A required parameter, else `MissingParameter`.
pub(crate) fn require<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiFailure> {
    get(p, name).ok_or_else(|| {
        ApiFailure::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    })
}

pub(crate) fn invalid(name: &str, value: &str) -> ApiFailure {
    ApiFailure::new(
        400,
        "InvalidParameter",
        format!("The specified parameter \"{name}\" is not valid: {value:?}."),
    )
}

/// An integer parameter with a default and an allowed range.
pub(crate) fn int(
    p: &Params,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiFailure> {
    match get(p, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| invalid(name, v)),
    }
}

pub(crate) fn boolean(p: &Params, name: &str) -> bool {
    get(p, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `Name.1`, `Name.2`, ... in index order.
pub(crate) fn repeat_list(p: &Params, name: &str) -> Vec<String> {
    let prefix = format!("{name}.");
    let mut items: Vec<(u32, String)> = p
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse::<u32>().ok()?, v.clone())))
        .collect();
    items.sort();
    items.into_iter().map(|(_, v)| v).collect()
}

/// `Tag.N.Key` / `Tag.N.Value` pairs in index order (value `None` when absent).
pub(crate) fn tags(p: &Params) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(u32, String, Option<String>)> = p
        .iter()
        .filter_map(|(k, v)| {
            let n = k
                .strip_prefix("Tag.")?
                .strip_suffix(".Key")?
                .parse::<u32>()
                .ok()?;
            Some((n, v.clone(), p.get(&format!("Tag.{n}.Value")).cloned()))
        })
        .collect();
    out.sort_by_key(|t| t.0);
    out.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// A list given as a JSON array (`["a","b"]`) or comma-separated.
pub(crate) fn id_list(p: &Params, name: &str) -> Result<Vec<String>, ApiFailure> {
    let Some(v) = get(p, name) else {
        return Ok(Vec::new());
    };
    if v.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(v).map_err(|_| invalid(name, v))
    } else {
        Ok(v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

/// One page of `items` for PageNumber/PageSize paging, with the page fields.
pub(crate) fn page<T: Clone>(
    p: &Params,
    items: &[T],
    max_size: u64,
) -> Result<(Vec<T>, u64, u64), ApiFailure> {
    let number = int(p, "PageNumber", 1, 1..=u64::MAX)?;
    let size = int(p, "PageSize", 10, 1..=max_size)?;
    let start = ((number - 1) * size) as usize;
    let slice = items
        .iter()
        .skip(start)
        .take(size as usize)
        .cloned()
        .collect();
    Ok((slice, number, size))
}

/// `*` wildcard match (prefix/suffix/contains), as KeyPairName and InstanceName filters allow.
pub(crate) fn wildcard(pattern: &str, value: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(rest), _) if rest.ends_with('*') => value.contains(rest.trim_end_matches('*')),
        (Some(suffix), _) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => value == pattern,
    }
}

/// Wraps a list the way the API does: `{"<key>": [...]}`.
pub(crate) fn wrap(key: &str, items: Vec<Value>) -> Value {
    serde_json::json!({ key: items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_and_tag_parsing() {
        let p = params(&[
            ("InstanceId.10", "c"),
            ("InstanceId.2", "b"),
            ("InstanceId.1", "a"),
            ("Tag.2.Key", "k2"),
            ("Tag.1.Key", "k1"),
            ("Tag.1.Value", "v1"),
        ]);
        assert_eq!(repeat_list(&p, "InstanceId"), vec!["a", "b", "c"]);
        assert_eq!(
            tags(&p),
            vec![
                ("k1".to_string(), Some("v1".to_string())),
                ("k2".to_string(), None)
            ]
        );
        let p = params(&[("Ids", "[\"x\",\"y\"]"), ("Csv", "x, y")]);
        assert_eq!(id_list(&p, "Ids").unwrap(), vec!["x", "y"]);
        assert_eq!(id_list(&p, "Csv").unwrap(), vec!["x", "y"]);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*key", "sshkey"));
        assert!(wildcard("ssh*", "sshkey"));
        assert!(wildcard("*hk*", "sshkey"));
        assert!(!wildcard("ssh", "sshkey"));
    }
}
