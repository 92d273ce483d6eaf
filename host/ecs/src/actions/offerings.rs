//! What can be launched where: DescribeRegions, DescribeZones, DescribeAvailableResource,
//! DescribeInstanceTypes, DescribeVSwitches (VPC API), DescribePrice.
use serde::Deserialize;

use super::{Page, SpotStrategy, Wrapped, put_list, put_opt};
use crate::error::EcsError;
use crate::signer::Params;
use crate::{Api, EcsClient};

/// A region (DescribeRegions).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Region {
    pub region_id: String,
    #[serde(default)]
    pub region_endpoint: String,
    #[serde(default)]
    pub local_name: String,
    #[serde(default)]
    pub status: String,
}

/// A zone (DescribeZones).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Zone {
    pub zone_id: String,
    #[serde(default)]
    pub local_name: String,
    #[serde(default)]
    pub available_instance_types: Wrapped<String>,
    #[serde(default)]
    pub available_resource_creation: Wrapped<String>,
}

/// DescribeAvailableResource query.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailableResourceRequest {
    /// `Zone`, `InstanceType`, `SystemDisk`, ... (see the reference's dependency order).
    pub destination_resource: String,
    pub zone_id: Option<String>,
    pub instance_type: Option<String>,
    pub spot_strategy: SpotStrategy,
    pub instance_charge_type: Option<String>,
}

impl AvailableResourceRequest {
    /// Instance types per zone, on-demand.
    pub fn instance_types() -> Self {
        Self {
            destination_resource: "InstanceType".into(),
            zone_id: None,
            instance_type: None,
            spot_strategy: SpotStrategy::NoSpot,
            instance_charge_type: None,
        }
    }
}

/// One supported value, e.g. an instance type with its stock state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SupportedResource {
    pub value: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_category: String,
}

impl SupportedResource {
    /// `Status == Available` (stock left).
    pub fn in_stock(&self) -> bool {
        self.status == "Available"
    }
}

/// Resources of one type in one zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AvailableResource {
    #[serde(rename = "Type")]
    pub resource_type: String,
    #[serde(default)]
    pub supported_resources: Wrapped<SupportedResource>,
}

/// A zone with its available resources.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AvailableZone {
    pub zone_id: String,
    #[serde(default)]
    pub region_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_category: String,
    #[serde(default)]
    pub available_resources: Wrapped<AvailableResource>,
}

/// An instance type's shape (DescribeInstanceTypes).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypeInfo {
    pub instance_type_id: String,
    #[serde(default)]
    pub cpu_core_count: u32,
    /// GiB.
    #[serde(default)]
    pub memory_size: f64,
    #[serde(default)]
    pub instance_type_family: String,
    #[serde(default)]
    pub cpu_architecture: String,
}

/// A vswitch (VPC DescribeVSwitches).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VSwitch {
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub zone_id: String,
    #[serde(default)]
    pub cidr_block: String,
    #[serde(default)]
    pub available_ip_address_count: u64,
    #[serde(default)]
    pub status: String,
    #[serde(rename = "VSwitchName", default)]
    pub name: String,
}

/// DescribeVSwitches filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VSwitchFilter {
    pub vpc_id: Option<String>,
    pub zone_id: Option<String>,
    pub vswitch_id: Option<String>,
}

/// DescribePrice query for one instance type.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRequest {
    pub instance_type: String,
    pub zone_id: Option<String>,
    pub spot_strategy: SpotStrategy,
    pub system_disk_category: Option<String>,
}

/// An hourly price.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Price {
    #[serde(default)]
    pub original_price: f64,
    #[serde(default)]
    pub discount_price: f64,
    #[serde(default)]
    pub trade_price: f64,
    #[serde(default)]
    pub currency: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegionsResponse {
    regions: Wrapped<Region>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ZonesResponse {
    zones: Wrapped<Zone>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AvailableResourceResponse {
    #[serde(default)]
    available_zones: Wrapped<AvailableZone>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceTypesResponse {
    #[serde(default)]
    instance_types: Wrapped<InstanceTypeInfo>,
    #[serde(default)]
    next_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VSwitchesResponse {
    #[serde(rename = "VSwitches", default)]
    vswitches: Wrapped<VSwitch>,
    #[serde(default)]
    total_count: u64,
}

impl Page for VSwitchesResponse {
    type Item = VSwitch;
    fn total_count(&self) -> u64 {
        self.total_count
    }
    fn into_items(self) -> Vec<VSwitch> {
        self.vswitches.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PriceInfo {
    price: Price,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PriceResponse {
    price_info: PriceInfo,
}

impl EcsClient {
    /// All regions.
    pub async fn describe_regions(&self) -> Result<Vec<Region>, EcsError> {
        let r: RegionsResponse = self
            .call(Api::Ecs, "DescribeRegions", Params::new())
            .await?;
        Ok(r.regions.0)
    }

    /// Zones of the client's region, with the instance types each offers.
    pub async fn describe_zones(&self, spot_strategy: SpotStrategy) -> Result<Vec<Zone>, EcsError> {
        let mut p = Params::new();
        if spot_strategy.is_spot() {
            p.insert("SpotStrategy".into(), spot_strategy.as_str().into());
        }
        let r: ZonesResponse = self.call(Api::Ecs, "DescribeZones", p).await?;
        Ok(r.zones.0)
    }

    /// What is available (in stock) per zone.
    pub async fn describe_available_resource(
        &self,
        req: &AvailableResourceRequest,
    ) -> Result<Vec<AvailableZone>, EcsError> {
        let mut p = Params::new();
        p.insert(
            "DestinationResource".into(),
            req.destination_resource.clone(),
        );
        put_opt(&mut p, "ZoneId", req.zone_id.as_ref());
        put_opt(&mut p, "InstanceType", req.instance_type.as_ref());
        put_opt(
            &mut p,
            "InstanceChargeType",
            req.instance_charge_type.as_ref(),
        );
        if req.spot_strategy.is_spot() {
            p.insert("SpotStrategy".into(), req.spot_strategy.as_str().into());
        }
        let r: AvailableResourceResponse =
            self.call(Api::Ecs, "DescribeAvailableResource", p).await?;
        Ok(r.available_zones.0)
    }

    /// Shapes of the given instance types (all types if empty; ≤10 per request, as the API allows).
    pub async fn describe_instance_types(
        &self,
        ids: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, EcsError> {
        let chunks: Vec<&[String]> = if ids.is_empty() {
            vec![&[]]
        } else {
            ids.chunks(10).collect()
        };
        let mut out = Vec::new();
        for chunk in chunks {
            let mut p = Params::new();
            put_list(&mut p, "InstanceTypes", chunk);
            loop {
                let r: InstanceTypesResponse = self
                    .call(Api::Ecs, "DescribeInstanceTypes", p.clone())
                    .await?;
                let done = r.next_token.is_empty() || r.instance_types.0.is_empty();
                out.extend(r.instance_types.0);
                if done {
                    break;
                }
                p.insert("NextToken".into(), r.next_token);
            }
        }
        Ok(out)
    }

    /// VSwitches (VPC API, its own endpoint), 50 per page.
    pub async fn describe_vswitches(
        &self,
        filter: &VSwitchFilter,
    ) -> Result<Vec<VSwitch>, EcsError> {
        let mut p = Params::new();
        put_opt(&mut p, "VpcId", filter.vpc_id.as_ref());
        put_opt(&mut p, "ZoneId", filter.zone_id.as_ref());
        put_opt(&mut p, "VSwitchId", filter.vswitch_id.as_ref());
        self.paged::<VSwitchesResponse>(Api::Vpc, "DescribeVSwitches", p, 50)
            .await
    }

    /// The hourly price of one instance type (spot price for a spot strategy).
    pub async fn describe_price(&self, req: &PriceRequest) -> Result<Price, EcsError> {
        let mut p = Params::new();
        p.insert("ResourceType".into(), "instance".into());
        p.insert("InstanceType".into(), req.instance_type.clone());
        p.insert("PriceUnit".into(), "Hour".into());
        put_opt(&mut p, "ZoneId", req.zone_id.as_ref());
        put_opt(
            &mut p,
            "SystemDisk.Category",
            req.system_disk_category.as_ref(),
        );
        if req.spot_strategy.is_spot() {
            p.insert("SpotStrategy".into(), req.spot_strategy.as_str().into());
        }
        let r: PriceResponse = self.call(Api::Ecs, "DescribePrice", p).await?;
        Ok(r.price_info.price)
    }
}
