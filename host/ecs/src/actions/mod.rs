//! Typed ECS/VPC actions: request builders and response types (reference §3), as methods on
//! [`EcsClient`](super::EcsClient). List calls page internally and return everything.
mod instances;
mod offerings;
mod resources;

use serde::{Deserialize, Deserializer, Serialize};

pub use instances::*;
pub use offerings::*;
pub use resources::*;

use super::signer::Params;

/// A resource tag. Requests send it as `Tag.N.Key`/`Tag.N.Value`; responses as `TagKey`/`TagValue`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    #[serde(rename = "TagKey")]
    pub key: String,
    #[serde(rename = "TagValue", default)]
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A response list: the API wraps every array in an object with one key
/// (`"Instances": {"Instance": [...]}`); this reads any such wrapper.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrapped<T>(pub Vec<T>);

impl<T> Default for Wrapped<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Wrapped<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, Vec<T>>::deserialize(d)?;
        Ok(Wrapped(map.into_values().next().unwrap_or_default()))
    }
}

/// Reads a number the API sometimes renders as a string (`"TradePrice": "0.165"`).
pub(crate) fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }
    Ok(match Option::<Num>::deserialize(d)? {
        Some(Num::F(f)) => Some(f),
        Some(Num::S(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// Adds `Name.1..N` repeat-list parameters.
pub(crate) fn put_list(params: &mut Params, name: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        params.insert(format!("{name}.{}", i + 1), v.clone());
    }
}

/// Adds `Tag.N.Key`/`Tag.N.Value`.
pub(crate) fn put_tags(params: &mut Params, tags: &[Tag]) {
    for (i, t) in tags.iter().enumerate() {
        params.insert(format!("Tag.{}.Key", i + 1), t.key.clone());
        params.insert(format!("Tag.{}.Value", i + 1), t.value.clone());
    }
}

/// Adds a parameter when set.
pub(crate) fn put_opt(params: &mut Params, name: &str, value: Option<impl ToString>) {
    if let Some(v) = value {
        params.insert(name.into(), v.to_string());
    }
}

/// A JSON array of strings, as `InstanceIds`/`SecurityGroupIds` filters expect.
pub(crate) fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).expect("strings serialise")
}

/// The response shape of page-numbered list actions.
pub(crate) trait Page {
    type Item;
    fn total_count(&self) -> u64;
    fn into_items(self) -> Vec<Self::Item>;
}

impl super::EcsClient {
    /// Fetches every page of a `PageNumber`/`PageSize` list action.
    pub(crate) async fn paged<R>(
        &self,
        api: super::Api,
        action: &str,
        params: Params,
        page_size: u32,
    ) -> Result<Vec<R::Item>, super::EcsError>
    where
        R: Page + serde::de::DeserializeOwned,
    {
        let mut items = Vec::new();
        for page in 1u32.. {
            let mut p = params.clone();
            p.insert("PageNumber".into(), page.to_string());
            p.insert("PageSize".into(), page_size.to_string());
            let r: R = self.call(api, action, p).await?;
            let total = r.total_count();
            let got = r.into_items();
            let empty = got.is_empty();
            items.extend(got);
            if empty || items.len() as u64 >= total {
                break;
            }
        }
        Ok(items)
    }
}
