//! A real etcd (Debian's `etcd-server`, installed by scripts/setup-test-deps.sh) on loopback
//! ports, in a temporary data directory, for the high-availability tests.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd; killed when dropped.
pub struct Etcd {
    child: Child,
    /// `127.0.0.1:PORT` of its client endpoint.
    pub endpoint: String,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn etcd_binary() -> String {
    std::env::var("ECSP_ETCD").unwrap_or_else(|_| "etcd".into())
}

impl Etcd {
    /// Starts etcd with its data under `dir`, serving clients on a free loopback port.
    pub fn start(dir: &Path) -> Etcd {
        Etcd::start_on(dir, free_port())
    }

    /// Starts etcd serving clients on `client_port`; waits until it answers.
    pub fn start_on(dir: &Path, client_port: u16) -> Etcd {
        let peer_port = free_port();
        let data = dir.join(format!("etcd-{client_port}"));
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join(format!("etcd-{client_port}.log"))).unwrap();
        let child = Command::new(etcd_binary())
            .args(["--name", "e2e", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e2e={peer}"), "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): run scripts/setup-test-deps.sh (it installs etcd-server)", etcd_binary()));
        let etcd = Etcd { child, endpoint: format!("127.0.0.1:{client_port}") };
        etcd.wait_healthy(Duration::from_secs(30));
        etcd
    }

    fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = health(&self.endpoint);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "etcd at {} not healthy within {within:?}", self.endpoint);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGSTOP: etcd answers nothing (and its leases do not tick) until [`Etcd::resume`].
    pub fn pause(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGCONT) }, 0);
    }
}

/// Whether etcd at `endpoint` says it is healthy (`GET /health`, plain HTTP/1.0).
fn health(endpoint: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(endpoint) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
