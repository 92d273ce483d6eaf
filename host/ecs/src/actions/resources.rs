//! Launch prerequisites: DescribeSecurityGroups, DescribeImages, DescribeKeyPairs, ImportKeyPair.
use serde::Deserialize;

use super::{Page, Wrapped, json_list, put_opt};
use crate::error::EcsError;
use crate::signer::Params;
use crate::{Api, EcsClient};

/// A security group.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    pub security_group_id: String,
    #[serde(default)]
    pub security_group_name: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub security_group_type: String,
}

/// An image.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub image_id: String,
    #[serde(default)]
    pub image_name: String,
    #[serde(rename = "OSType", default)]
    pub os_type: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub status: String,
    /// GiB.
    #[serde(default)]
    pub size: u64,
}

/// An SSH key pair.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPair {
    pub key_pair_name: String,
    #[serde(default)]
    pub key_pair_finger_print: String,
    /// Present only when asked for (`IncludePublicKey`).
    #[serde(default)]
    pub public_key: Option<String>,
}

/// DescribeSecurityGroups filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityGroupFilter {
    pub vpc_id: Option<String>,
    pub security_group_ids: Vec<String>,
}

/// DescribeImages filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFilter {
    pub image_id: Option<String>,
    pub image_name: Option<String>,
    /// `system`, `self`, `others`, `marketplace`.
    pub owner_alias: Option<String>,
}

macro_rules! page_response {
    ($name:ident, $field:literal, $item:ty) => {
        #[derive(Deserialize)]
        struct $name {
            #[serde(rename = $field, default)]
            items: Wrapped<$item>,
            #[serde(rename = "TotalCount", default)]
            total_count: u64,
        }
        impl Page for $name {
            type Item = $item;
            fn total_count(&self) -> u64 {
                self.total_count
            }
            fn into_items(self) -> Vec<$item> {
                self.items.0
            }
        }
    };
}

page_response!(SecurityGroupsPage, "SecurityGroups", SecurityGroup);
page_response!(ImagesPage, "Images", Image);
page_response!(KeyPairsPage, "KeyPairs", KeyPair);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportKeyPairResponse {
    key_pair_name: String,
    #[serde(default)]
    key_pair_finger_print: String,
}

impl EcsClient {
    /// Security groups, 50 per page.
    pub async fn describe_security_groups(
        &self,
        filter: &SecurityGroupFilter,
    ) -> Result<Vec<SecurityGroup>, EcsError> {
        let mut p = Params::new();
        put_opt(&mut p, "VpcId", filter.vpc_id.as_ref());
        if !filter.security_group_ids.is_empty() {
            p.insert(
                "SecurityGroupIds".into(),
                json_list(&filter.security_group_ids),
            );
        }
        self.paged::<SecurityGroupsPage>(Api::Ecs, "DescribeSecurityGroups", p, 50)
            .await
    }

    /// Images, 100 per page.
    pub async fn describe_images(&self, filter: &ImageFilter) -> Result<Vec<Image>, EcsError> {
        let mut p = Params::new();
        put_opt(&mut p, "ImageId", filter.image_id.as_ref());
        put_opt(&mut p, "ImageName", filter.image_name.as_ref());
        put_opt(&mut p, "ImageOwnerAlias", filter.owner_alias.as_ref());
        self.paged::<ImagesPage>(Api::Ecs, "DescribeImages", p, 100)
            .await
    }

    /// Key pairs (name may use `*` wildcards), with public keys, 50 per page.
    pub async fn describe_key_pairs(&self, name: Option<&str>) -> Result<Vec<KeyPair>, EcsError> {
        let mut p = Params::new();
        put_opt(&mut p, "KeyPairName", name);
        p.insert("IncludePublicKey".into(), "true".into());
        self.paged::<KeyPairsPage>(Api::Ecs, "DescribeKeyPairs", p, 50)
            .await
    }

    /// Registers an OpenSSH public key under a name.
    pub async fn import_key_pair(&self, name: &str, public_key: &str) -> Result<KeyPair, EcsError> {
        let mut p = Params::new();
        p.insert("KeyPairName".into(), name.into());
        p.insert("PublicKeyBody".into(), public_key.into());
        let r: ImportKeyPairResponse = self.call(Api::Ecs, "ImportKeyPair", p).await?;
        Ok(KeyPair {
            key_pair_name: r.key_pair_name,
            key_pair_finger_print: r.key_pair_finger_print,
            public_key: None,
        })
    }
}
