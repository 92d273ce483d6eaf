//! Host-key policies and the known-hosts store the host manages for `accept-new`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use russh::keys::PublicKey;

use super::console::ConsoleOutputSource;
use super::error::{HostKeyRejection, SshError};
use super::keys::{fingerprint, same_key};

/// How an instance's host key is verified. Config names: `accept-new` (default), `strict`, `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Pin the key on first contact per instance id (known-hosts file); refuse a changed key.
    #[default]
    AcceptNew,
    /// Accept only a key the instance printed on its console (`GetInstanceConsoleOutput`).
    Strict,
    /// Accept any key. Explicit opt-in; logged as a warning.
    Off,
}

impl HostKeyPolicy {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::Off => "off",
        }
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HostKeyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "strict" => Ok(HostKeyPolicy::Strict),
            "off" => Ok(HostKeyPolicy::Off),
            other => Err(format!(
                "unknown host key policy {other:?}; expected accept-new, strict or off"
            )),
        }
    }
}

/// One pinned key.
#[derive(Clone)]
struct Pin {
    key: PublicKey,
    ip: String,
}

/// Host keys pinned per instance id, persisted in a file the host owns.
///
/// One line per pin: `<instance-id> <key-type> <base64> <ip>`; a later `-<instance-id>` line
/// forgets it; `#` comments. A pin or a forget appends its line and syncs it, so a crash keeps
/// every change that returned, and pins survive restarts. The file is rewritten whole
/// (temporary file + fsync + rename) only when forgotten lines outnumber the live ones: each
/// change costs the same at 10 instances as at 10,000, where rewriting the file at every pin
/// made a fleet's bootstraps quadratic. Keyed by instance id, not IP: private IPs are reused by
/// later instances, instance ids never are.
pub struct KnownHosts {
    path: PathBuf,
    state: Mutex<Pins>,
}

/// The pins, and how many records the file holds for them.
struct Pins {
    by_instance: BTreeMap<String, Pin>,
    /// Pin and forget lines in the file; past twice the live pins (plus some) it is compacted.
    records: usize,
}

/// Forgotten records allowed in the file beyond the live ones before it is rewritten.
const SLACK_RECORDS: usize = 64;

const HEADER: &str = "# Host keys pinned by ecs-provisioner (accept-new): <instance-id> <key-type> <base64> <ip>; a later `-<instance-id>` forgets one\n";

/// Result of [`KnownHosts::check_or_pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// First contact: the key is now pinned.
    Pinned,
    /// The key matches the pinned one.
    Matched,
}

impl KnownHosts {
    /// Opens (or starts) the store at `path`; a missing file is an empty store, a malformed line
    /// is an error naming the file and line. A last line cut short (a crash while it was being
    /// appended: that change never returned) is dropped, and the file rewritten without it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SshError> {
        let path = path.into();
        let err = |reason: String| SshError::KnownHosts {
            path: path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        let torn = !text.is_empty() && !text.ends_with('\n');
        let complete = if torn { &text[..text.rfind('\n').map_or(0, |i| i + 1)] } else { &text[..] };
        let mut pins = BTreeMap::new();
        let mut records = 0;
        for (n, line) in complete.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            records += 1;
            if let Some(id) = line.strip_prefix('-') {
                pins.remove(id);
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, algo, b64, rest @ ..] = fields.as_slice() else {
                return Err(err(format!(
                    "line {}: expected `<instance-id> <key-type> <base64> [ip]` or `-<instance-id>`",
                    n + 1
                )));
            };
            let key = PublicKey::from_openssh(&format!("{algo} {b64}"))
                .map_err(|e| err(format!("line {}: bad key for {id}: {e}", n + 1)))?;
            let ip = rest.first().copied().unwrap_or("").to_string();
            pins.insert(id.to_string(), Pin { key, ip });
        }
        let store = Self {
            path,
            state: Mutex::new(Pins { by_instance: pins, records }),
        };
        if torn {
            let mut state = store.lock();
            store.compact(&mut state).map_err(|reason| SshError::KnownHosts {
                path: store.path.clone(),
                reason,
            })?;
        }
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key pinned for `instance_id`, if any.
    pub fn pinned(&self, instance_id: &str) -> Option<PublicKey> {
        self.lock().by_instance.get(instance_id).map(|p| p.key.clone())
    }

    /// Accepts `presented` if it matches the pin, pins it on first contact, refuses a change.
    pub fn check_or_pin(
        &self,
        instance_id: &str,
        ip: IpAddr,
        presented: &PublicKey,
    ) -> Result<PinOutcome, HostKeyRejection> {
        let mut state = self.lock();
        if let Some(pin) = state.by_instance.get(instance_id) {
            return if same_key(&pin.key, presented) {
                Ok(PinOutcome::Matched)
            } else {
                Err(HostKeyRejection::Changed {
                    pinned: fingerprint(&pin.key),
                    presented: fingerprint(presented),
                    known_hosts: self.path.clone(),
                })
            };
        }
        let pin = Pin {
            key: presented.clone(),
            ip: ip.to_string(),
        };
        let failed = |reason| HostKeyRejection::PinFailed {
            presented: fingerprint(presented),
            reason,
        };
        let line = pin_line(instance_id, &pin).map_err(failed)?;
        self.append(&mut state, &line).map_err(failed)?;
        state.by_instance.insert(instance_id.to_string(), pin);
        Ok(PinOutcome::Pinned)
    }

    /// Drops the pin of an instance that is gone. Returns whether there was one.
    pub fn forget(&self, instance_id: &str) -> Result<bool, SshError> {
        let mut state = self.lock();
        if !state.by_instance.contains_key(instance_id) {
            return Ok(false);
        }
        let failed = |reason| SshError::KnownHosts {
            path: self.path.clone(),
            reason,
        };
        self.append(&mut state, &format!("-{instance_id}\n")).map_err(failed)?;
        state.by_instance.remove(instance_id);
        if state.records > 2 * state.by_instance.len() + SLACK_RECORDS {
            self.compact(&mut state).map_err(failed)?;
        }
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pins> {
        // A change updates the map only after its line is written, so a panic while holding
        // the lock leaves map and file in step: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one record and syncs it; a file not there yet is started with its header.
    fn append(&self, state: &mut Pins, line: &str) -> Result<(), String> {
        if !self.path.exists() {
            self.compact(state)?;
        }
        let written = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            });
        written.map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        state.records += 1;
        Ok(())
    }

    /// Rewrites the file with the live pins only, atomically: temporary file in the same
    /// directory, fsync, rename.
    fn compact(&self, state: &mut Pins) -> Result<(), String> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut text = String::from(HEADER);
        for (id, pin) in &state.by_instance {
            text.push_str(&pin_line(id, pin)?);
        }
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("known_hosts");
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, &self.path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        state.records = state.by_instance.len();
        Ok(())
    }
}

/// The file's line for one pin.
fn pin_line(instance_id: &str, pin: &Pin) -> Result<String, String> {
    let line = pin.key.to_openssh().map_err(|e| e.to_string())?;
    let mut parts = line.split_whitespace();
    let (algo, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    Ok(format!("{instance_id} {algo} {b64} {}\n", pin.ip))
}

/// The runtime host-key check a connection uses: a policy with what it needs.
#[derive(Clone)]
pub enum HostKeyVerifier {
    /// `accept-new` with its store.
    AcceptNew(Arc<KnownHosts>),
    /// `strict` with where console output comes from.
    Strict(Arc<dyn ConsoleOutputSource>),
    /// `off`.
    Off,
}

impl fmt::Debug for HostKeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.policy().as_str())
    }
}

impl HostKeyVerifier {
    /// Builds the verifier for `policy`. `accept-new` needs `known_hosts`, `strict` needs
    /// `console`; `off` logs a warning once here (at start), since it disables MITM protection.
    pub fn new(
        policy: HostKeyPolicy,
        known_hosts: Option<Arc<KnownHosts>>,
        console: Option<Arc<dyn ConsoleOutputSource>>,
    ) -> Result<Self, String> {
        match policy {
            HostKeyPolicy::AcceptNew => known_hosts
                .map(HostKeyVerifier::AcceptNew)
                .ok_or_else(|| "host key policy accept-new needs a known-hosts file".to_string()),
            HostKeyPolicy::Strict => console.map(HostKeyVerifier::Strict).ok_or_else(|| {
                "host key policy strict needs a console output source (GetInstanceConsoleOutput)"
                    .to_string()
            }),
            HostKeyPolicy::Off => Ok(Self::off()),
        }
    }

    /// `off`, with the warning.
    pub fn off() -> Self {
        tracing::warn!(
            "SSH host key verification is OFF (host_key_policy = \"off\"): connections to \
             instances are not protected against man-in-the-middle attacks"
        );
        HostKeyVerifier::Off
    }

    /// The policy this verifier implements.
    pub fn policy(&self) -> HostKeyPolicy {
        match self {
            HostKeyVerifier::AcceptNew(_) => HostKeyPolicy::AcceptNew,
            HostKeyVerifier::Strict(_) => HostKeyPolicy::Strict,
            HostKeyVerifier::Off => HostKeyPolicy::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_ed25519;

    #[test]
    fn policy_names_round_trip() {
        for p in [
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::Strict,
            HostKeyPolicy::Off,
        ] {
            assert_eq!(p.as_str().parse::<HostKeyPolicy>().unwrap(), p);
        }
        assert!(
            "yes"
                .parse::<HostKeyPolicy>()
                .unwrap_err()
                .contains("accept-new, strict or off")
        );
        assert_eq!(HostKeyPolicy::default(), HostKeyPolicy::AcceptNew);
    }

    #[test]
    fn pins_survive_reopen_and_changed_key_is_refused_with_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/known_hosts");
        let a = generate_ed25519("a");
        let b = generate_ed25519("b");
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let store = KnownHosts::open(&path).unwrap();
        assert_eq!(
            store.check_or_pin("i-1", ip, a.public_key()).unwrap(),
            PinOutcome::Pinned
        );
        assert_eq!(
            store.check_or_pin("i-1", ip, a.public_key()).unwrap(),
            PinOutcome::Matched
        );

        let reopened = KnownHosts::open(&path).unwrap();
        let err = reopened
            .check_or_pin("i-1", ip, b.public_key())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&fingerprint(a.public_key())), "{err}");
        assert!(err.contains(&fingerprint(b.public_key())), "{err}");
        assert!(err.contains("known_hosts"), "{err}");
        assert_eq!(
            reopened.check_or_pin("i-2", ip, b.public_key()).unwrap(),
            PinOutcome::Pinned
        );

        assert!(reopened.forget("i-1").unwrap());
        let again = KnownHosts::open(&path).unwrap();
        assert!(again.pinned("i-1").is_none());
        assert!(again.pinned("i-2").is_some());
    }

    /// Records (pin and forget lines) in the file.
    fn records(path: &Path) -> usize {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count()
    }

    /// A store in a fresh directory, its file, and a key and an address to pin.
    struct Fresh {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: KnownHosts,
        key: russh::keys::PrivateKey,
        ip: IpAddr,
    }

    impl Fresh {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("known_hosts");
            let store = KnownHosts::open(&path).unwrap();
            Fresh { _dir: dir, path, store, key: generate_ed25519("k"), ip: "127.0.0.7".parse().unwrap() }
        }

        fn pin(&self, id: &str) {
            self.store.check_or_pin(id, self.ip, self.key.public_key()).unwrap();
        }
    }

    #[test]
    fn changes_append_and_the_file_is_compacted_once_forgotten_lines_outnumber_live_ones() {
        let f = Fresh::new();
        for i in 0..200 {
            f.pin(&format!("i-{i}"));
        }
        assert_eq!(records(&f.path), 200, "one appended line per pin");
        // Each forget appends a line, until the file would hold more than 2 x live + 64
        // records: 200 + k > 2 x (200 - k) + 64 first holds at k = 89, which rewrites it.
        for k in 1..=89 {
            assert!(f.store.forget(&format!("i-{}", k - 1)).unwrap());
            let live = 200 - k;
            let expected = if k < 89 { 200 + k } else { live };
            assert_eq!(records(&f.path), expected, "after {k} forgets");
            assert!(records(&f.path) <= 2 * live + SLACK_RECORDS);
        }
        let reopened = KnownHosts::open(&f.path).unwrap();
        assert!(reopened.pinned("i-0").is_none() && reopened.pinned("i-88").is_none());
        assert!((89..200).all(|i| reopened.pinned(&format!("i-{i}")).is_some()));
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped_and_the_rest_kept() {
        let f = Fresh::new();
        f.pin("i-1");
        f.pin("i-2");
        f.store.forget("i-2").unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(&f.path).unwrap();
        file.write_all(b"i-3 ssh-ed25519 AAAAC3Nza").unwrap();
        drop(file);
        let reopened = KnownHosts::open(&f.path).unwrap();
        assert!(reopened.pinned("i-1").is_some());
        assert!(reopened.pinned("i-2").is_none() && reopened.pinned("i-3").is_none());
        let text = std::fs::read_to_string(&f.path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("i-3"), "rewritten without the torn line: {text}");
        // Appends go on after the rewrite.
        reopened.check_or_pin("i-4", f.ip, f.key.public_key()).unwrap();
        assert!(KnownHosts::open(&f.path).unwrap().pinned("i-4").is_some());
    }

    #[test]
    fn malformed_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        std::fs::write(&path, "# c\n\ni-1 ssh-ed25519\n").unwrap();
        let err = KnownHosts::open(&path).err().unwrap().to_string();
        assert!(err.contains("line 3") && err.contains("kh"), "{err}");
    }
}
