//! The emulated cloud's state: instances with their status clock, loopback IPs and host keys,
//! key pairs, stock, ClientTokens; plus counters and the request log. Optionally persisted to a
//! JSON state file so the cloud survives a provisioner restart.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::nonce::NonceCache;
use super::config::SimConfig;
use super::faults::{Faults, RateWindows};
use super::failure::ApiFailure;
use crate::{EmulatedInstance, InstanceDirectory, now_ms};


/// Parameters every signed RPC request carries for the protocol and the signature, not for
/// the operation (signature V2 names, and both spellings SDKs use for the timestamp).
pub(crate) const PROTOCOL_PARAMS: &[&str] = &[
    "AccessKeyId",
    "Action",
    "Format",
    "RegionId",
    "SecurityToken",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureType",
    "SignatureVersion",
    "Timestamp",
    "TimeStamp",
    "Version",
];

/// A spot reclaim announced for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reclaim {
    /// When the `Recycling` lock appeared.
    pub notice_ms: u64,
    /// When the cloud takes the instance (it then shows `Stopping`, and is gone after).
    pub release_ms: u64,
}

impl SimInstance {
    /// When the instance was (or will be) released: deleted through the API or reclaimed.
    pub(crate) fn released_ms(&self, now: u64) -> Option<u64> {
        let reclaimed = self.reclaim.map(|r| r.release_ms).filter(|&t| now >= t);
        match (self.deleted_ms, reclaimed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The `OperationLocks` reasons in force: `Recycling` from a reclaim notice on.
    pub(crate) fn lock_reasons(&self) -> Vec<&'static str> {
        self.reclaim.map(|_| "Recycling").into_iter().collect()
    }
}

/// One emulated instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SimInstance {
    pub seq: u64,
    pub instance_id: String,
    pub instance_name: String,
    pub host_name: String,
    pub zone_id: String,
    pub vswitch_id: String,
    pub vpc_id: String,
    pub security_group_id: String,
    /// Groups after the first (`SecurityGroupIds.2`...).
    #[serde(default)]
    pub extra_security_group_ids: Vec<String>,
    /// The system disk first, then the data disks in `DataDisk.N` order.
    #[serde(default)]
    pub disks: Vec<super::disk::SimDisk>,
    /// Assigned when launched with public bandwidth.
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ram_role: String,
    #[serde(default)]
    pub resource_group_id: String,
    /// `optional` or `required` (empty in state written before it was recorded: optional).
    #[serde(default)]
    pub http_tokens: String,
    #[serde(default)]
    pub auto_release_time: String,
    pub instance_type: String,
    pub image_id: String,
    pub key_pair_name: String,
    pub ip: Ipv4Addr,
    pub tags: Vec<(String, String)>,
    pub spot_strategy: String,
    pub spot_price_limit: Option<f64>,
    pub charge_type: String,
    pub internet_max_bandwidth_out: u32,
    pub user_data: Option<String>,
    /// cloud-init's per-instance mark: the user data was started (it runs once per instance).
    #[serde(default)]
    pub user_data_started: bool,
    /// What the user data printed, newest last, at most [`CONSOLE_MAX`] bytes.
    #[serde(default)]
    pub console: String,
    pub created_ms: u64,
    pub deleted_ms: Option<u64>,
    /// When StopInstances stopped it (cleared by StartInstances).
    #[serde(default)]
    pub stopped_ms: Option<u64>,
    /// When StartInstances restarted it.
    #[serde(default)]
    pub restarted_ms: Option<u64>,
    /// `StoppedMode` of the last StopInstances: `StopCharging` gave its stock back, so a start
    /// must take stock again (and fails when the zone has none); `KeepCharging` kept it.
    #[serde(default)]
    pub stopped_mode: String,
    /// A spot reclaim: the `Recycling` lock shows from `notice_ms`, and the instance is
    /// released at `release_ms`.
    #[serde(default)]
    pub reclaim: Option<Reclaim>,
    /// Host private key, OpenSSH PEM.
    pub host_key_pem: String,
    /// Host public key, OpenSSH one-line.
    pub host_key_public: String,
    /// The launch key pair's public key (empty when launched without one).
    pub authorized_key: String,
}

/// A registered key pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyPairRecord {
    pub public_key: String,
    pub fingerprint: String,
    pub created_ms: u64,
}

/// What a ClientToken was first used with, and what it produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub fingerprint: String,
    pub instance_ids: Vec<String>,
}

/// The part of the state that survives restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Persisted {
    pub instances: Vec<SimInstance>,
    pub key_pairs: BTreeMap<String, KeyPairRecord>,
    pub tokens: HashMap<String, TokenRecord>,
    /// Remaining stock by `zone|type`.
    pub stock: BTreeMap<String, u32>,
    pub next_ip: u32,
    pub next_seq: u64,
}

/// Calls and errors of one action, as the emulator saw them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActionCounter {
    /// Requests handled for the action.
    pub calls: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Error answers by error code.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// One handled request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Sequence number of the request, in handling order.
    pub seq: u64,
    /// When it was handled, ms since the Unix epoch.
    pub time_ms: u64,
    /// HTTP method.
    pub method: String,
    /// API action, e.g. `RunInstances`.
    pub action: String,
    /// AccessKey id the request was signed with.
    pub access_key_id: String,
    /// `HMAC-SHA1` (V1/V2 RPC signature) or `ACS3-HMAC-SHA256` (V3).
    pub signature_method: String,
    /// HTTP status answered.
    pub status: u16,
    /// Error code, empty on success.
    pub code: String,
    /// `RequestId` answered.
    pub request_id: String,
    /// Time taken to handle it, ms.
    pub duration_ms: u64,
    /// The request named its instances by id (`InstanceIds`): a lookup, not a listing.
    #[serde(default)]
    pub by_id: bool,
}

/// An instance as tests and the admin API see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceView {
    /// Instance id.
    pub instance_id: String,
    /// ECS status, e.g. `Running`.
    pub status: String,
    /// Zone.
    pub zone_id: String,
    /// VSwitch.
    pub vswitch_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Image the instance was launched from.
    pub image_id: String,
    /// Key pair it was launched with; empty if none.
    pub key_pair_name: String,
    /// Private IP.
    pub ip: Ipv4Addr,
    /// Whether it is a spot instance.
    pub spot: bool,
    /// Tags, as (key, value).
    pub tags: Vec<(String, String)>,
    /// Stopped by StopInstances and not started since (`Stopping`, then `Stopped`).
    pub stopped: bool,
}

pub(crate) struct Inner {
    pub p: Persisted,
    pub faults: Faults,
    pub rate: RateWindows,
    pub nonces: NonceCache,
    pub counters: BTreeMap<String, ActionCounter>,
    pub log: VecDeque<RequestLogEntry>,
    pub log_seq: u64,
    /// Every RunInstances: its operation parameters and the error code (empty: success).
    pub run_instances: Vec<RecordedRunInstances>,
}

/// One RunInstances as the emulator received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRunInstances {
    /// Operation parameters (signature and other common parameters left out).
    pub params: BTreeMap<String, String>,
    /// Error code, empty on success (`DryRunOperation` for a passed dry run).
    pub code: String,
}

/// The emulated cloud. Shared by the HTTP server, the admin API, tests and the SSH emulator
/// (through [`InstanceDirectory`]).
pub struct Cloud {
    pub(crate) config: SimConfig,
    /// Temporary credentials issued by the STS emulator.
    pub(crate) sessions: std::sync::Arc<super::sessions::Sessions>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("region_id", &self.config.region_id)
            .finish_non_exhaustive()
    }
}

impl Cloud {
    /// Builds the cloud, loading the state file if the config names one that exists.
    pub fn new(config: SimConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let mut p = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read ECS emulator state {}: {e}", path.display())
                })?;
                serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("ECS emulator state {} is corrupt: {e}", path.display())
                })?
            }
            _ => Persisted {
                next_ip: u32::from(config.first_ip),
                ..Default::default()
            },
        };
        for kp in &config.key_pairs {
            if !p.key_pairs.contains_key(&kp.name) {
                let rec = key_pair_record(&kp.public_key)
                    .map_err(|e| anyhow::anyhow!("key_pairs {:?}: {}", kp.name, e.message))?;
                p.key_pairs.insert(kp.name.clone(), rec);
            }
        }
        let inner = Inner {
            p,
            faults: config.faults.clone(),
            rate: RateWindows::default(),
            nonces: NonceCache::default(),
            counters: BTreeMap::new(),
            log: VecDeque::new(),
            log_seq: 0,
            run_instances: Vec::new(),
        };
        Ok(Self {
            config,
            sessions: Default::default(),
            inner: Mutex::new(inner),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("ECS emulator state lock poisoned")
    }

    /// The status of an instance now; `None` once it is gone.
    pub(crate) fn status(&self, inst: &SimInstance, now: u64) -> Option<&'static str> {
        let t = &self.config.timings;
        match inst.released_ms(now) {
            Some(d) if now >= d + t.stopping_ms => None,
            Some(_) => Some("Stopping"),
            None if inst.stopped_ms.is_some() => {
                let stopped = inst.stopped_ms.unwrap_or_default();
                Some(if now < stopped + t.stopping_ms {
                    "Stopping"
                } else {
                    "Stopped"
                })
            }
            None if inst.restarted_ms.is_some() => {
                let started = inst.restarted_ms.unwrap_or_default();
                Some(if now < started + t.starting_ms {
                    "Starting"
                } else {
                    "Running"
                })
            }
            None => {
                let age = now.saturating_sub(inst.created_ms);
                Some(if age < t.pending_ms {
                    "Pending"
                } else if age < t.pending_ms + t.starting_ms {
                    "Starting"
                } else {
                    "Running"
                })
            }
        }
    }

    /// Drops instances that finished releasing and returns their stock.
    pub(crate) fn purge(&self, inner: &mut Inner, now: u64) {
        let gone: Vec<usize> = (0..inner.p.instances.len())
            .filter(|&i| self.status(&inner.p.instances[i], now).is_none())
            .collect();
        for &i in gone.iter().rev() {
            let inst = inner.p.instances.remove(i);
            if inst.stopped_ms.is_some() && inst.stopped_mode == "StopCharging" {
                // Its economical-mode stop already gave the stock back.
                continue;
            }
            *inner
                .p
                .stock
                .entry(stock_key(&inst.zone_id, &inst.instance_type))
                .or_insert(0) += 1;
        }
    }

    /// Remaining stock of a type in a zone.
    pub(crate) fn stock(&self, inner: &Inner, zone: &str, instance_type: &str) -> u32 {
        match inner.p.stock.get(&stock_key(zone, instance_type)) {
            Some(n) => *n,
            None => self
                .config
                .instance_type(instance_type)
                .map(|t| t.initial_stock(zone))
                .unwrap_or(0),
        }
    }

    pub(crate) fn take_stock(&self, inner: &mut Inner, zone: &str, instance_type: &str, n: u32) {
        let left = self.stock(inner, zone, instance_type).saturating_sub(n);
        inner.p.stock.insert(stock_key(zone, instance_type), left);
    }

    /// Returns one unit of stock (an economical-mode stop released its compute resources).
    pub(crate) fn give_stock(&self, inner: &mut Inner, zone: &str, instance_type: &str) {
        let left = self.stock(inner, zone, instance_type).saturating_add(1);
        inner.p.stock.insert(stock_key(zone, instance_type), left);
    }

    /// Free addresses left in a vswitch.
    pub(crate) fn free_ips(&self, inner: &Inner, vswitch_id: &str) -> u64 {
        let Some(v) = self
            .config
            .vswitches
            .iter()
            .find(|v| v.vswitch_id == vswitch_id)
        else {
            return 0;
        };
        let used = inner
            .p
            .instances
            .iter()
            .filter(|i| i.vswitch_id == vswitch_id)
            .count() as u64;
        v.capacity().saturating_sub(used)
    }

    /// The next loopback address (skipping .0 and .255 so every address is a usable host).
    pub(crate) fn allocate_ip(&self, inner: &mut Inner) -> Result<Ipv4Addr, ApiFailure> {
        loop {
            let ip = Ipv4Addr::from(inner.p.next_ip);
            if !ip.is_loopback() {
                return Err(ApiFailure::new(
                    500,
                    "InternalError",
                    "the emulator ran out of loopback addresses",
                ));
            }
            inner.p.next_ip += 1;
            if ip.octets()[3] != 0 && ip.octets()[3] != 255 {
                return Ok(ip);
            }
        }
    }

    /// Writes the state file, if configured (atomically: temp file, then rename).
    pub(crate) fn persist(&self, inner: &Inner) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let result = serde_json::to_vec(&inner.p)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "cannot write ECS emulator state");
        }
    }

    /// All instances still visible (not gone), oldest first.
    pub fn instances(&self) -> Vec<InstanceView> {
        let now = now_ms();
        let mut inner = self.lock();
        self.purge(&mut inner, now);
        inner
            .p
            .instances
            .iter()
            .filter_map(|i| {
                Some(InstanceView {
                    instance_id: i.instance_id.clone(),
                    status: self.status(i, now)?.to_string(),
                    zone_id: i.zone_id.clone(),
                    vswitch_id: i.vswitch_id.clone(),
                    instance_type: i.instance_type.clone(),
                    image_id: i.image_id.clone(),
                    key_pair_name: i.key_pair_name.clone(),
                    ip: i.ip,
                    spot: i.spot_strategy != "NoSpot",
                    tags: i.tags.clone(),
                    stopped: i.stopped_ms.is_some() && i.deleted_ms.is_none(),
                })
            })
            .collect()
    }

    /// Registers a key pair (OpenSSH public key); returns its fingerprint.
    pub fn import_key_pair(&self, name: &str, public_key: &str) -> Result<String, ApiFailure> {
        let mut inner = self.lock();
        if inner.p.key_pairs.contains_key(name) {
            return Err(ApiFailure::new(
                400,
                "KeyPair.AlreadyExist",
                "The key pair already exists.",
            ));
        }
        let rec = key_pair_record(public_key)?;
        let fp = rec.fingerprint.clone();
        inner.p.key_pairs.insert(name.to_string(), rec);
        self.persist(&inner);
        Ok(fp)
    }

    /// Releases an instance from outside the API, as a spot reclaim or a colleague in the
    /// console would: it shows `Stopping`, then disappears. False if there is no such instance.
    pub fn release_instance(&self, instance_id: &str) -> bool {
        let now = now_ms();
        let mut inner = self.lock();
        let Some(inst) = inner
            .p
            .instances
            .iter_mut()
            .find(|i| i.instance_id == instance_id && i.deleted_ms.is_none())
        else {
            return false;
        };
        inst.deleted_ms = Some(now);
        self.purge(&mut inner, now);
        self.persist(&inner);
        true
    }

    /// Announces a spot reclaim, as ECS does about five minutes ahead: the instance shows the
    /// `Recycling` operation lock at once, and is released `notice_ms` later. False if there
    /// is no such live instance or it is not a spot instance (ECS reclaims only those).
    pub fn reclaim_instance(&self, instance_id: &str, notice_ms: u64) -> bool {
        let now = now_ms();
        let mut inner = self.lock();
        let Some(inst) = inner.p.instances.iter_mut().find(|i| {
            i.instance_id == instance_id && i.deleted_ms.is_none() && i.reclaim.is_none() && i.spot_strategy != "NoSpot"
        }) else {
            return false;
        };
        inst.reclaim = Some(Reclaim { notice_ms: now, release_ms: now + notice_ms });
        self.persist(&inner);
        true
    }

    /// The fault rules in force.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        faults.validate()?;
        self.lock().faults = faults;
        Ok(())
    }

    /// Sets the remaining stock of a type in a zone.
    pub fn set_stock(&self, zone_id: &str, instance_type: &str, count: u32) {
        self.lock()
            .p
            .stock
            .insert(stock_key(zone_id, instance_type), count);
    }

    /// Per-action counters since start (or the last reset).
    pub fn counters(&self) -> BTreeMap<String, ActionCounter> {
        self.lock().counters.clone()
    }

    /// Clears the per-action counters.
    pub fn reset_counters(&self) {
        let mut inner = self.lock();
        inner.counters.clear();
        inner.log.clear();
    }

    /// Every RunInstances so far (the last `request_log_capacity`), oldest first.
    pub fn run_instances_log(&self) -> Vec<RecordedRunInstances> {
        self.lock().run_instances.clone()
    }

    /// Records one RunInstances (its operation parameters) and its outcome.
    pub(crate) fn record_run_instances(&self, p: &ecsp_ecs::signer::Params, code: String) {
        let params = p
            .iter()
            .filter(|(k, _)| !PROTOCOL_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut inner = self.lock();
        inner
            .run_instances
            .push(RecordedRunInstances { params, code });
        // Bounded like the request log: a long-running `sim` must not grow without end.
        let excess = inner
            .run_instances
            .len()
            .saturating_sub(self.config.request_log_capacity);
        inner.run_instances.drain(..excess);
    }

    /// The disks of an instance (system first), as launched.
    pub(crate) fn disks_of(&self, instance_id: &str) -> Option<Vec<super::disk::SimDisk>> {
        self.lock()
            .p
            .instances
            .iter()
            .find(|i| i.instance_id == instance_id)
            .map(|i| i.disks.clone())
    }

    /// Logged requests with `seq > since`, oldest first.
    pub fn request_log(&self, since: u64) -> Vec<RequestLogEntry> {
        self.lock()
            .log
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    /// Counts and logs one handled request.
    pub(crate) fn record(&self, mut entry: RequestLogEntry) {
        let mut inner = self.lock();
        let c = inner.counters.entry(entry.action.clone()).or_default();
        c.calls += 1;
        if !entry.code.is_empty() {
            c.errors += 1;
            *c.errors_by_code.entry(entry.code.clone()).or_default() += 1;
        }
        inner.log_seq += 1;
        entry.seq = inner.log_seq;
        inner.log.push_back(entry);
        while inner.log.len() > self.config.request_log_capacity {
            inner.log.pop_front();
        }
    }
}

/// Console output kept per instance, bytes (the oldest is dropped first).
pub(crate) const CONSOLE_MAX: usize = 64 * 1024;

impl Cloud {
    /// The user data of each running instance that has not run it yet, with the instance:
    /// cloud-init runs it once, at the instance's first boot. Marks them as started.
    pub fn user_data_due(&self) -> Vec<(EmulatedInstance, String)> {
        let now = now_ms();
        let mut due = Vec::new();
        let mut inner = self.lock();
        for inst in inner.p.instances.iter_mut() {
            if inst.user_data_started || inst.user_data.is_none() || self.status(inst, now) != Some("Running") {
                continue;
            }
            inst.user_data_started = true;
            due.push((inst.instance_id.clone(), inst.ip, inst.user_data.clone().unwrap_or_default()));
        }
        if !due.is_empty() {
            self.persist(&inner);
        }
        drop(inner);
        due.into_iter()
            .filter_map(|(id, ip, script)| {
                let found = self.instance_by_ip(ip).filter(|i| i.instance_id == id);
                found.map(|i| (i, script))
            })
            .collect()
    }

    /// Appends to an instance's console output (what its user data prints).
    pub fn append_console(&self, instance_id: &str, text: &str) {
        let mut inner = self.lock();
        if let Some(inst) = inner.p.instances.iter_mut().find(|i| i.instance_id == instance_id) {
            inst.console.push_str(text);
            if inst.console.len() > CONSOLE_MAX {
                let mut start = inst.console.len() - CONSOLE_MAX;
                while !inst.console.is_char_boundary(start) {
                    start += 1;
                }
                inst.console.drain(..start);
            }
        }
    }
}

impl InstanceDirectory for Cloud {
    fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<EmulatedInstance> {
        let now = now_ms();
        let inner = self.lock();
        let inst = inner
            .p
            .instances
            .iter()
            .find(|i| i.ip == ip || i.public_ip == Some(ip))?;
        let status = self.status(inst, now)?;
        Some(EmulatedInstance {
            instance_id: inst.instance_id.clone(),
            ip: inst.ip,
            authorized_key: inst.authorized_key.clone(),
            host_key_pem: inst.host_key_pem.clone(),
            running: status == "Running",
            data_disks: inst
                .disks
                .iter()
                .enumerate()
                .filter(|(_, d)| d.kind == "data")
                .map(|(n, _)| crate::disks::disk_id(&inst.instance_id, n))
                .collect(),
        })
    }
}

pub(crate) fn stock_key(zone: &str, instance_type: &str) -> String {
    format!("{zone}|{instance_type}")
}

fn key_pair_record(public_key: &str) -> Result<KeyPairRecord, ApiFailure> {
    let key = russh::keys::PublicKey::from_openssh(public_key.trim()).map_err(|e| {
        ApiFailure::new(
            400,
            "InvalidKeyPair.FormatInvalid",
            format!("The public key is not a valid OpenSSH key: {e}"),
        )
    })?;
    Ok(KeyPairRecord {
        public_key: public_key.trim().to_string(),
        // As ECS computes it (ImportKeyPair: "RFC 4716 ... MD5").
        fingerprint: ecsp_ssh::keys::ecs_fingerprint(&key),
        created_ms: now_ms(),
    })
}

/// A fresh ed25519 host key: (OpenSSH PEM private key, OpenSSH one-line public key).
pub(crate) fn new_host_key(comment: &str) -> (String, String) {
    use ecsp_ssh::keys::{generate_ed25519, private_key_pem, public_key_line};
    let key = generate_ed25519(comment);
    (private_key_pem(&key), public_key_line(&key))
}

/// The OpenSSH one-line public key of an OpenSSH PEM private key (tests compare host keys).
pub fn public_key_of(pem: &str) -> Option<String> {
    ecsp_ssh::keys::public_key_line_of_pem(pem).ok()
}
