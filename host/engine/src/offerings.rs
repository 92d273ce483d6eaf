//! Offerings: what can be launched where, cached for minutes, with recent capacity failures.
//!
//! Discovery costs several API calls, so it runs only when the cache is older than its TTL (or
//! empty); capacity errors are remembered per offering so policies can cool down and the host
//! never retries a failed offering within the same cycle.

use std::collections::BTreeMap;

use ecsp_config::{CloudConfig, SpotModeConfig, TemplateConfig};

use super::model::{Offering, OfferingFailure};
use super::ports::CloudOffering;

/// Identifies one offering: zone, vswitch, instance type, spot.
pub type OfferingKey = (String, String, String, bool);

/// The key of an offering.
pub fn key_of(o: &Offering) -> OfferingKey {
    (o.zone.clone(), o.vswitch.clone(), o.instance_type.clone(), o.spot)
}

/// The cached discovery result and the failure marks.
#[derive(Debug, Default)]
pub struct OfferingCache {
    discovered: Vec<CloudOffering>,
    fetched_ms: Option<u64>,
    failures: BTreeMap<OfferingKey, OfferingFailure>,
}

impl OfferingCache {
    /// Whether discovery must run again.
    pub fn stale(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.fetched_ms.is_none_or(|at| now_ms.saturating_sub(at) >= ttl_ms)
    }

    /// Replaces the discovered offerings, fetched at `now_ms`.
    pub fn store(&mut self, discovered: Vec<CloudOffering>, now_ms: u64) {
        self.discovered = discovered;
        self.fetched_ms = Some(now_ms);
    }

    /// Records a capacity error; forgotten after the cooldown. Stock is per zone x type x
    /// capacity type, so a stock-out marks that type in every vswitch of the zone; running out
    /// of IPs is the vswitch's alone.
    pub fn mark_failed(&mut self, key: OfferingKey, code: &str, now_ms: u64) {
        let failure = OfferingFailure { code: code.to_owned(), at_ms: now_ms };
        if !code.contains("IpNotEnough") {
            let (zone, _, itype, spot) = &key;
            for d in self.discovered.iter().filter(|d| d.zone == *zone && d.instance_type == *itype) {
                self.failures.insert((d.zone.clone(), d.vswitch.clone(), d.instance_type.clone(), *spot), failure.clone());
            }
        }
        self.failures.insert(key, failure);
    }

    /// Every offering, split by capacity type, with prices and failure marks.
    pub fn all(&mut self, cloud: &CloudConfig, now_ms: u64) -> Vec<Offering> {
        let cooldown = cloud.capacity_cooldown.as_millis() as u64;
        self.failures.retain(|_, f| now_ms.saturating_sub(f.at_ms) < cooldown);
        let mut out = Vec::with_capacity(self.discovered.len() * 2);
        for d in &self.discovered {
            for spot in [false, true] {
                let prices = if spot { &cloud.spot_prices } else { &cloud.prices };
                let key = (d.zone.clone(), d.vswitch.clone(), d.instance_type.clone(), spot);
                out.push(Offering {
                    zone: d.zone.clone(),
                    vswitch: d.vswitch.clone(),
                    instance_type: d.instance_type.clone(),
                    spot,
                    vcpus: d.vcpus,
                    memory_mib: d.memory_mib,
                    free_ips: d.free_ips,
                    price_per_hour: prices.get(&d.instance_type).copied(),
                    in_stock: if spot { d.spot_in_stock } else { d.in_stock },
                    last_failure: self.failures.get(&key).cloned(),
                });
            }
        }
        out
    }
}

/// The offerings a template may use: its zones, vswitches and types, and capacity types its
/// spot mode allows.
pub fn for_template<'a>(all: &'a [Offering], t: &TemplateConfig) -> Vec<&'a Offering> {
    all.iter()
        .filter(|o| t.zones.allows(&o.zone) && t.vswitches.allows(&o.vswitch) && t.instance_types.allows(&o.instance_type))
        .filter(|o| match t.spot {
            SpotModeConfig::OnDemand => !o.spot,
            SpotModeConfig::SpotOnly => o.spot,
            SpotModeConfig::SpotFirst => true,
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;
    use ecsp_config::Config;

    fn cloud() -> Config {
        Config::parse(
            r#"controller-id = "t"
[cloud]
region = "r"
vpc-id = "v"
security-group-id = "s"
image-id = "m"
key-pair-name = "k"
capacity-cooldown = "60s"
prices = { "ecs.a" = 1.0 }
[jenkins]
url = "http://x/"
user = "u"
[[template]]
name = "t"
labels = ["l"]
max-nodes = 1
zones = ["z1"]
spot = "spot-first"
"#,
        )
        .unwrap()
    }

    fn discovered(zone: &str) -> CloudOffering {
        CloudOffering {
            zone: zone.into(),
            vswitch: format!("vsw-{zone}"),
            instance_type: "ecs.a".into(),
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 10,
            in_stock: true,
            spot_in_stock: false,
        }
    }

    #[test]
    fn offerings_split_by_capacity_type_and_carry_failures_until_cooldown() {
        let c = cloud();
        let mut cache = OfferingCache::default();
        assert!(cache.stale(0, 1000));
        cache.store(vec![discovered("z1"), discovered("z2")], 0);
        assert!(!cache.stale(999, 1000));
        cache.mark_failed(("z1".into(), "vsw-z1".into(), "ecs.a".into(), false), "OperationDenied.NoStock", 1000);
        let all = cache.all(&c.cloud, 2000);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].last_failure.as_ref().unwrap().code, "OperationDenied.NoStock");
        assert_eq!(all[0].price_per_hour, Some(1.0));
        assert_eq!(all[1].price_per_hour, None, "no spot price configured");
        assert!(!all[1].in_stock, "spot stock is reported separately");
        assert!(cache.all(&c.cloud, 61_001)[0].last_failure.is_none(), "cooldown over");

        // A stock-out is the zone's, for every vswitch; IP exhaustion only the vswitch's.
        let mut cache = OfferingCache::default();
        let mut second = discovered("z1");
        second.vswitch = "vsw-z1b".into();
        cache.store(vec![discovered("z1"), second], 0);
        cache.mark_failed(("z1".into(), "vsw-z1".into(), "ecs.a".into(), false), "OperationDenied.NoStock", 0);
        let marked: Vec<bool> = cache.all(&c.cloud, 1).iter().map(|o| o.last_failure.is_some()).collect();
        assert_eq!(marked, [true, false, true, false], "on-demand of both vswitches, not spot");
        let mut cache = OfferingCache::default();
        cache.store(vec![discovered("z1"), { let mut d = discovered("z1"); d.vswitch = "vsw-z1b".into(); d }], 0);
        cache.mark_failed(("z1".into(), "vsw-z1".into(), "ecs.a".into(), false), "InvalidVSwitchId.IpNotEnough", 0);
        let marked: Vec<bool> = cache.all(&c.cloud, 1).iter().map(|o| o.last_failure.is_some()).collect();
        assert_eq!(marked, [true, false, false, false]);

        let mine = for_template(&all, &c.templates[0]);
        assert_eq!(mine.len(), 2, "zone z1 only, both capacity types");
    }

    #[test]
    fn discovery_reruns_once_the_ttl_has_passed_and_failures_last_exactly_the_cooldown() {
        let c = cloud();
        let mut cache = OfferingCache::default();
        cache.store(vec![discovered("z1")], 1_000);
        assert!(!cache.stale(1_999, 1_000));
        assert!(cache.stale(2_000, 1_000), "a TTL of 1 s is over 1 s after the fetch");
        cache.mark_failed(("z1".into(), "vsw-z1".into(), "ecs.a".into(), false), "OperationDenied.NoStock", 1_000);
        assert!(cache.all(&c.cloud, 60_999)[0].last_failure.is_some(), "within the 60 s cooldown");
        assert!(cache.all(&c.cloud, 61_000)[0].last_failure.is_none(), "60 s after the failure it is forgotten");
    }

    #[test]
    fn a_stock_out_marks_only_its_zone_and_instance_type() {
        let c = cloud();
        let mut cache = OfferingCache::default();
        let other_type = CloudOffering { instance_type: "ecs.b".into(), ..discovered("z1") };
        cache.store(vec![discovered("z1"), discovered("z2"), other_type], 0);
        cache.mark_failed(("z1".into(), "vsw-z1".into(), "ecs.a".into(), true), "OperationDenied.NoSpotStock", 0);
        let marked: Vec<(String, String, bool)> = cache
            .all(&c.cloud, 1)
            .into_iter()
            .filter(|o| o.last_failure.is_some())
            .map(|o| (o.zone, o.instance_type, o.spot))
            .collect();
        assert_eq!(marked, [("z1".to_owned(), "ecs.a".to_owned(), true)], "not z2's ecs.a, not z1's ecs.b, not on-demand");
    }

    fn offering(itype: &str, spot: bool) -> Offering {
        Offering {
            zone: "z1".into(),
            vswitch: "vsw-z1".into(),
            instance_type: itype.into(),
            spot,
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 10,
            price_per_hour: None,
            in_stock: true,
            last_failure: None,
        }
    }

    fn template(extra: &str) -> TemplateConfig {
        let text = format!(
            "controller-id = \"t\"\n[cloud]\nregion = \"r\"\nvpc-id = \"v\"\nsecurity-group-id = \"s\"\nimage-id = \"m\"\n\
             key-pair-name = \"k\"\n[jenkins]\nurl = \"http://x/\"\nuser = \"u\"\n[[template]]\nname = \"t\"\n\
             labels = [\"l\"]\nmax-nodes = 1\n{extra}\n"
        );
        Config::parse(&text).unwrap().templates.remove(0)
    }

    fn kinds(offerings: &[&Offering]) -> Vec<(String, bool)> {
        offerings.iter().map(|o| (o.instance_type.clone(), o.spot)).collect()
    }

    #[test]
    fn a_template_gets_only_its_instance_types_and_capacity_types() {
        let all = [offering("ecs.a", false), offering("ecs.a", true), offering("ecs.b", false), offering("ecs.b", true)];
        let a = |s: &str| (s.to_owned(), false);
        let spot = |s: &str| (s.to_owned(), true);
        let t = template("instance-types = [\"ecs.a\"]\nspot = \"on-demand\"");
        assert_eq!(kinds(&for_template(&all, &t)), [a("ecs.a")], "on-demand, ecs.a only");
        let t = template("instance-types = [\"ecs.b\"]\nspot = \"spot-only\"");
        assert_eq!(kinds(&for_template(&all, &t)), [spot("ecs.b")], "spot only, ecs.b only");
        let t = template("instance-types = [\"ecs.a\"]\nspot = \"spot-first\"");
        assert_eq!(kinds(&for_template(&all, &t)), [a("ecs.a"), spot("ecs.a")]);
        let t = template("zones = [\"z2\"]");
        assert!(for_template(&all, &t).is_empty(), "another zone");
    }
}
