//! Test helpers for SSH: OpenSSH's sshd on a loopback port with a temporary config, keys made
//! by ssh-keygen, and process inspection/cleanup for the agents that bootstraps start.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SETUP_HINT: &str =
    "run scripts/setup-test-deps.sh (installs openssh-server) or set ECSP_SSHD";

/// The sshd binary: `$ECSP_SSHD`, default `/usr/sbin/sshd`. Panics (the test fails, never
/// skips) when it is missing.
pub fn sshd_binary() -> PathBuf {
    let path = std::env::var_os("ECSP_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
    assert!(
        path.is_file(),
        "OpenSSH sshd not found at {}: {SETUP_HINT}",
        path.display()
    );
    path
}

/// ssh-keygen, next to sshd's package: `$ECSP_SSH_KEYGEN`, default `ssh-keygen` on PATH.
fn ssh_keygen_binary() -> PathBuf {
    std::env::var_os("ECSP_SSH_KEYGEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ssh-keygen"))
}

/// A key pair written by ssh-keygen.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_path: PathBuf,
    /// OpenSSH one-line public key.
    pub public_line: String,
}

/// Creates a key pair with ssh-keygen: `kind` is `ed25519`, `rsa` or `ecdsa`; an empty
/// passphrase leaves it unencrypted.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> KeyPair {
    let path = dir.join(name);
    let mut cmd = Command::new(ssh_keygen_binary());
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}): {SETUP_HINT}"));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_line = std::fs::read_to_string(path.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{}.pub", path.display())))
        .expect("ssh-keygen wrote no public key");
    KeyPair {
        private_path: path,
        public_line: public_line.trim().to_string(),
    }
}

/// The name of the user the tests run as (sshd logins go to this user).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A free loopback TCP port (free when this returns; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// OpenSSH's sshd, listening on 127.0.0.1:<port> with a config, host key and authorized_keys in
/// a temporary directory. Killed on drop.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    host_key: KeyPair,
}

impl Sshd {
    /// Starts sshd on a free port with a new ed25519 host key.
    pub fn start(authorized_keys: &[&str]) -> Sshd {
        Self::start_on(authorized_keys, None, None)
    }

    /// Starts sshd on `port` (a free one if `None`), with `host_key` (a new ed25519 key if
    /// `None`). Panics with sshd's own log when it does not come up.
    pub fn start_on(
        authorized_keys: &[&str],
        port: Option<u16>,
        host_key: Option<&KeyPair>,
    ) -> Sshd {
        Self::start_configured(authorized_keys, port, host_key, "")
    }

    /// Starts sshd on a free port with `extra` lines appended to its sshd_config (for
    /// example `SetEnv` for the sessions' environment).
    pub fn start_with_config(authorized_keys: &[&str], extra: &str) -> Sshd {
        Self::start_configured(authorized_keys, None, None, extra)
    }

    fn start_configured(
        authorized_keys: &[&str],
        port: Option<u16>,
        host_key: Option<&KeyPair>,
        extra: &str,
    ) -> Sshd {
        let sshd = sshd_binary();
        // Privilege separation directory; sshd refuses to start without it when run as root.
        std::fs::create_dir_all("/run/sshd").ok();
        let dir = tempfile::tempdir().unwrap();
        let host_key = match host_key {
            Some(k) => {
                let path = dir.path().join("host_key");
                std::fs::copy(&k.private_path, &path).unwrap();
                set_mode(&path, 0o600);
                KeyPair {
                    private_path: path,
                    public_line: k.public_line.clone(),
                }
            }
            None => keygen(dir.path(), "host_key", "ed25519", ""),
        };
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, authorized_keys.join("\n") + "\n").unwrap();
        let mut tries = 0;
        loop {
            tries += 1;
            let port = port.unwrap_or_else(free_port);
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
                     StrictModes no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     PidFile none\nMaxStartups 200\nMaxSessions 64\nLogLevel VERBOSE\n{extra}\n",
                    host = host_key.private_path.display(),
                    auth = authorized.display(),
                ),
            )
            .unwrap();
            let log_path = dir.path().join("sshd.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}: {SETUP_HINT}", sshd.display()));
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    // Lost a race for the port: try another one.
                    if log.contains("Address already in use") && tries < 5 {
                        break;
                    }
                    panic!("sshd exited ({status}) at start; its log:\n{log}");
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        port,
                        dir,
                        host_key,
                    };
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("sshd did not listen on port {port} within 10 s; its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The host public key sshd presents (OpenSSH one-line format).
    pub fn host_public_key(&self) -> &str {
        &self.host_key.public_line
    }

    /// sshd's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether `pid` is a live process (exists and is not a zombie: orphans may not be reaped
/// in containers whose init does not reap).
pub fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) state ...`; comm may contain spaces, so split after the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// `(pid, command line)` of every process whose command line contains `needle`.
pub fn command_lines_containing(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(needle) {
                found.push((pid, line));
            }
        }
    }
    found
}

/// Kills, on drop, every agent whose pid file lies under `root` (at any depth up to 4), with
/// its whole process group (agents are started with `setsid`, so pgid = pid).
pub struct AgentReaper {
    root: PathBuf,
}

impl AgentReaper {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Pids found in `agent.pid` files under the root.
    pub fn agent_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        collect_pids(&self.root, 0, &mut pids);
        pids
    }

    /// Kills all agents now.
    pub fn kill_all(&self) {
        for pid in self.agent_pids() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

impl Drop for AgentReaper {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn collect_pids(dir: &Path, depth: usize, pids: &mut Vec<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "agent.pid") {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                pids.push(pid);
            }
        } else if depth < 4 && path.is_dir() {
            collect_pids(&path, depth + 1, pids);
        }
    }
}
