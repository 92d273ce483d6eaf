//! SSH client and bootstrap against OpenSSH's sshd, and the same bootstrap against the
//! instance SSH emulator. Needs sshd (scripts/setup-test-deps.sh); never skipped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::ssh::{
    AgentReaper, KeyPair, Sshd, command_lines_containing, current_user, free_port, keygen,
    process_running,
};
use ecs_provisioner::sim::{EmulatedInstance, InstanceDirectory};
use ecs_provisioner::ssh::client::RemoteExit;
use ecs_provisioner::ssh::{
    AgentStart, BootstrapError, BootstrapSpec, ClientKey, ConsoleOutputSource, HostKeyRejection,
    HostKeyVerifier, InitScriptOutcome, JarDelivery, JarUpload, KnownHosts, PassphraseSource,
    SshClientConfig, SshError, SshTarget, bootstrap, connect, console_host_keys_block, keys,
};

/// Agent stand-in: needs the secret file, then stays up like agent.jar would.
const TEST_AGENT: &str = "test -s {secret_file} && echo agent {node_name} up && exec sleep 600";

/// A temp dir, a client key sshd accepts, an accept-new store, and a reaper for agents.
struct Fixture {
    // First field: dropped first, while the pid files under `dir` still exist.
    reaper: AgentReaper,
    dir: tempfile::TempDir,
    key: KeyPair,
    known_hosts: Arc<KnownHosts>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "id_ed25519", "ed25519", "");
        let known_hosts = Arc::new(KnownHosts::open(dir.path().join("state/known_hosts")).unwrap());
        let reaper = AgentReaper::new(dir.path().join("agents"));
        Fixture {
            reaper,
            dir,
            key,
            known_hosts,
        }
    }

    fn client(&self) -> SshClientConfig {
        let key = ClientKey::load(&self.key.private_path, None).unwrap();
        let mut config =
            SshClientConfig::new(key, HostKeyVerifier::AcceptNew(self.known_hosts.clone()));
        // Generous: the test machine is shared and can be very loaded.
        config.step_timeout = Duration::from_secs(60);
        config
    }

    fn agents_dir(&self) -> PathBuf {
        self.dir.path().join("agents")
    }

    /// A bootstrap of `instance_id` reaching `port` on 127.0.0.1, working in its own directory.
    fn spec(&self, instance_id: &str, ip: Ipv4Addr, port: u16) -> BootstrapSpec {
        let mut spec = BootstrapSpec::new(
            instance_id,
            IpAddr::V4(ip),
            format!("linux-{instance_id}"),
            "http://127.0.0.1:8080",
            format!("{:064x}", rand_u128(instance_id)),
            Instant::now() + Duration::from_secs(120),
        );
        spec.user = current_user();
        spec.port = port.to_string();
        spec.work_dir = format!("{}/{{instance_id}}", self.agents_dir().display());
        spec.agent_command = TEST_AGENT.into();
        spec.agent_confirm_delay = Duration::from_millis(300);
        spec
    }

    fn state_file(&self, instance_id: &str, name: &str) -> PathBuf {
        self.agents_dir()
            .join(instance_id)
            .join(".ecs-provisioner")
            .join(name)
    }
}

/// A distinct, unguessable-looking secret per call.
fn rand_u128(seed: &str) -> u128 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) as u128;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t.wrapping_mul(6364136223846793005).wrapping_add(n << 64) ^ seed.len() as u128
}

fn target(instance_id: &str, addr: SocketAddr) -> SshTarget {
    SshTarget {
        instance_id: instance_id.into(),
        addr,
        user: current_user(),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn key_login_with_ed25519_rsa_ecdsa_and_encrypted_keys() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    let rsa = keygen(dir, "id_rsa", "rsa", "");
    let ecdsa_enc = keygen(dir, "id_ecdsa", "ecdsa", "ecdsa pass");
    let ed_enc = keygen(dir, "id_ed25519_enc", "ed25519", "file pass");
    let sshd = Sshd::start(&[
        &fx.key.public_line,
        &rsa.public_line,
        &ecdsa_enc.public_line,
        &ed_enc.public_line,
    ]);
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("ECSP_TEST_ECDSA_PASSPHRASE", "ecdsa pass") };
    let pass_file = dir.join("passphrase");
    std::fs::write(&pass_file, "file pass\n").unwrap();
    let keys = [
        ClientKey::load(&fx.key.private_path, None).unwrap(),
        ClientKey::load(&rsa.private_path, None).unwrap(),
        ClientKey::load(
            &ecdsa_enc.private_path,
            Some(&PassphraseSource::Env("ECSP_TEST_ECDSA_PASSPHRASE".into())),
        )
        .unwrap(),
        ClientKey::load(
            &ed_enc.private_path,
            Some(&PassphraseSource::File(pass_file)),
        )
        .unwrap(),
    ];
    let err = ClientKey::load(&ed_enc.private_path, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encrypted") && err.contains("id_ed25519_enc"),
        "{err}"
    );

    for (i, key) in keys.into_iter().enumerate() {
        let fingerprint = key.fingerprint().to_string();
        let config = SshClientConfig::new(key, HostKeyVerifier::AcceptNew(fx.known_hosts.clone()));
        let session = connect(&target(&format!("i-key{i}"), sshd.addr()), &config, soon())
            .await
            .unwrap_or_else(|e| panic!("login with {fingerprint}: {e}\nsshd log:\n{}", sshd.log()));
        let out = session
            .run("probe", "echo hello; echo oops >&2; exit 3", None)
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "hello\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
        assert_eq!(out.exit, RemoteExit::Code(3));
        let out = session
            .run("stdin", "tr a-z A-Z", Some(b"piped in"))
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "PIPED IN");
        session.close().await;
    }
}

#[tokio::test]
async fn wrong_key_is_refused_with_a_clear_error() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let stranger = keygen(fx.dir.path(), "id_stranger", "ed25519", "");
    let key = ClientKey::load(&stranger.private_path, None).unwrap();
    let fingerprint = key.fingerprint().to_string();
    let config = SshClientConfig::new(key, HostKeyVerifier::AcceptNew(fx.known_hosts.clone()));
    let started = Instant::now();
    let err = connect(
        &target("i-wrongkey", sshd.addr()),
        &config,
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .err()
    .expect("a key sshd does not know must be refused");
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        "i-wrongkey",
        "refused public-key login",
        &fingerprint,
        "id_stranger",
        &current_user(),
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
    // Final at once, not retried until the deadline.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn changed_host_key_is_refused_under_accept_new() {
    let fx = Fixture::new();
    let original = Sshd::start(&[&fx.key.public_line]);
    let session = connect(&target("i-rekeyed", original.addr()), &fx.client(), soon())
        .await
        .unwrap();
    session.close().await;
    let pinned = keys::fingerprint(&keys::parse_public_key(original.host_public_key()).unwrap());

    // Same instance id, another host key (e.g. a man in the middle). The store is reopened
    // from its file: the pin survives a restart of the host.
    let impostor = Sshd::start(&[&fx.key.public_line]);
    let reopened = Arc::new(KnownHosts::open(fx.known_hosts.path()).unwrap());
    let mut config = fx.client();
    config.host_keys = HostKeyVerifier::AcceptNew(reopened.clone());
    let err = connect(&target("i-rekeyed", impostor.addr()), &config, soon())
        .await
        .err()
        .expect("a changed host key must be refused");
    let presented = keys::fingerprint(&keys::parse_public_key(impostor.host_public_key()).unwrap());
    assert!(
        matches!(
            &err,
            SshError::HostKey {
                rejection: HostKeyRejection::Changed { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    for part in ["i-rekeyed", "127.0.0.1", &pinned, &presented, "known_hosts"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
    // Another instance id on the same address is a first contact and is pinned.
    connect(&target("i-other", impostor.addr()), &config, soon())
        .await
        .unwrap()
        .close()
        .await;
    assert!(reopened.pinned("i-other").is_some());

    // `off` (explicit) accepts the impostor and pins nothing.
    config.host_keys = HostKeyVerifier::off();
    connect(&target("i-rekeyed", impostor.addr()), &config, soon())
        .await
        .unwrap()
        .close()
        .await;
    connect(&target("i-unpinned", impostor.addr()), &config, soon())
        .await
        .unwrap()
        .close()
        .await;
    assert!(
        KnownHosts::open(fx.known_hosts.path())
            .unwrap()
            .pinned("i-unpinned")
            .is_none()
    );
}

#[tokio::test]
async fn slow_steps_time_out_naming_the_step() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let session = connect(&target("i-slow", sshd.addr()), &fx.client(), soon())
        .await
        .unwrap();
    let started = Instant::now();
    let err = session
        .exec(
            "probe",
            "sleep 8",
            None,
            Duration::from_millis(500),
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SshError::Timeout { step: "probe", .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    session.close().await;

    let mut spec = fx.spec("i-slow", Ipv4Addr::LOCALHOST, sshd.port());
    spec.init_script = Some("echo starting; sleep 8".into());
    spec.init_script_timeout = Duration::from_secs(2);
    let err = bootstrap(&spec, &fx.client())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("i-slow") && err.contains("'init-script' timed out"),
        "{err}"
    );
}

/// Console output that appears only after `delay_calls` reads, as on a booting instance.
struct SlowConsole {
    text: String,
    calls: Mutex<usize>,
    delay_calls: usize,
}

impl ConsoleOutputSource for SlowConsole {
    fn console_output<'a>(
        &'a self,
        _instance_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 'a>>
    {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let text = if *calls > self.delay_calls {
            self.text.clone()
        } else {
            "Booting...\n".into()
        };
        Box::pin(async move { Ok(text) })
    }
}

#[tokio::test]
async fn strict_accepts_only_the_console_output_key() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut config = fx.client();
    config.retry_initial_delay = Duration::from_millis(50);

    // The console shows the host key only from the third read on: strict waits for it.
    let console = Arc::new(SlowConsole {
        text: format!(
            "cloud-init boot\n{}",
            console_host_keys_block(&[sshd.host_public_key().to_string()])
        ),
        calls: Mutex::new(0),
        delay_calls: 2,
    });
    config.host_keys = HostKeyVerifier::Strict(console.clone());
    let session = connect(&target("i-strict", sshd.addr()), &config, soon())
        .await
        .unwrap();
    assert_eq!(session.attempts(), 3);
    session.close().await;

    // A console listing another key: the sshd key is refused, naming both.
    let other = keys::public_key_line(&keys::generate_ed25519("other"));
    let block = console_host_keys_block(std::slice::from_ref(&other));
    config.host_keys = HostKeyVerifier::Strict(Arc::new(move |_id: String| {
        let block = block.clone();
        async move { Ok::<_, anyhow::Error>(block) }
    }));
    let err = connect(&target("i-strict", sshd.addr()), &config, soon())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            SshError::HostKey {
                rejection: HostKeyRejection::NotInConsoleOutput { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    let expected = keys::fingerprint(&keys::parse_public_key(&other).unwrap());
    let presented = keys::fingerprint(&keys::parse_public_key(sshd.host_public_key()).unwrap());
    assert!(msg.contains(&expected) && msg.contains(&presented), "{msg}");
}

#[tokio::test]
async fn connect_retries_until_sshd_comes_up_and_gives_up_at_the_deadline() {
    let fx = Fixture::new();
    let port = free_port();
    let mut config = fx.client();
    config.retry_initial_delay = Duration::from_millis(100);
    config.retry_max_delay = Duration::from_millis(400);

    // Nothing listens: unreachable once the deadline passes, with the last error.
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let err = connect(
        &target("i-late", addr),
        &config,
        Instant::now() + Duration::from_millis(1500),
    )
    .await
    .err()
    .unwrap();
    let SshError::Unreachable {
        attempts,
        ref last_error,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(attempts >= 3, "{err}");
    assert!(last_error.contains("refused"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // sshd starts a second after the first attempt: the connection succeeds.
    let key_line = fx.key.public_line.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        Sshd::start_on(&[&key_line], Some(port), None)
    });
    let session = connect(
        &target("i-late", addr),
        &config,
        Instant::now() + Duration::from_secs(15),
    )
    .await
    .unwrap();
    assert!(session.attempts() > 1, "attempts {}", session.attempts());
    session.close().await;
    drop(late.join().unwrap());
}

#[tokio::test]
async fn init_script_runs_once_and_the_agent_outlives_the_session() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut spec = fx.spec("i-once", Ipv4Addr::LOCALHOST, sshd.port());
    spec.init_script = Some(
        "#!/bin/sh\necho \"init for $ECSP_INSTANCE_ID as $ECSP_NODE_NAME in $(pwd)\"\necho ran >> init-count\n"
            .into(),
    );
    let config = fx.client();

    let first = bootstrap(&spec, &config)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(first.init_script, InitScriptOutcome::Ran);
    let AgentStart::Started { pid } = first.agent else {
        panic!("{first:?}")
    };
    let step_names: Vec<_> = first.steps.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        step_names,
        [
            "connect",
            "prepare",
            "init-script",
            "start-agent",
            "confirm-agent"
        ]
    );

    // The session is closed; the agent is still there, detached.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(read_pid(&fx.state_file("i-once", "agent.pid")), pid);
    assert!(process_running(pid), "agent {pid} died with the session");
    let log = std::fs::read_to_string(fx.state_file("i-once", "agent.log")).unwrap();
    assert_eq!(log.trim(), "agent linux-i-once up");

    // A second bootstrap (as after a host crash): no second init run, the agent is kept.
    let second = bootstrap(&spec, &config).await.unwrap();
    assert_eq!(second.init_script, InitScriptOutcome::Skipped);
    assert_eq!(second.agent, AgentStart::AlreadyRunning { pid });
    let count = std::fs::read_to_string(fx.agents_dir().join("i-once/init-count")).unwrap();
    assert_eq!(count, "ran\n", "the init script ran more than once");
}

#[tokio::test]
async fn failing_init_script_is_reported_with_its_output() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut spec = fx.spec("i-initfail", Ipv4Addr::LOCALHOST, sshd.port());
    spec.init_script =
        Some("echo installing jdk\necho 'E: Unable to locate package' >&2\nexit 7\n".into());
    let err = bootstrap(&spec, &fx.client())
        .await
        .expect_err("the init script fails");
    let BootstrapError::InitScriptFailed {
        ref exit,
        ref last_lines,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*exit, RemoteExit::Code(7));
    assert_eq!(
        last_lines,
        &["installing jdk", "E: Unable to locate package"]
    );
    let msg = err.to_string();
    assert!(
        msg.contains("i-initfail")
            && msg.contains("exit status 7")
            && msg.contains("Unable to locate"),
        "{msg}"
    );
    // No agent was started, and the marker is not set: a fixed script runs next time.
    assert!(!fx.state_file("i-initfail", "agent.pid").exists());
    spec.init_script = Some("echo fixed\n".into());
    let report = bootstrap(&spec, &fx.client()).await.unwrap();
    assert_eq!(report.init_script, InitScriptOutcome::Ran);
}

#[tokio::test]
async fn agent_that_dies_at_start_is_reported_with_its_log() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut spec = fx.spec("i-deadagent", Ipv4Addr::LOCALHOST, sshd.port());
    spec.agent_command = "echo 'Error: Unable to access jarfile agent.jar'; exit 1".into();
    let err = bootstrap(&spec, &fx.client()).await.err().unwrap();
    let BootstrapError::AgentNotRunning { ref last_lines, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(last_lines, &["Error: Unable to access jarfile agent.jar"]);
}

/// A jar of `len` pseudo-random bytes (many SSH packets), tagged so two versions differ.
fn test_jar(version: &str, len: usize) -> JarUpload {
    let mut bytes = Vec::with_capacity(len);
    let mut x = rand_u128(version) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    let sha256 = ecs_provisioner::jenkins::agent_jar::sha256_hex(&bytes);
    JarUpload {
        bytes: bytes.into(),
        sha256,
    }
}

/// A `java` that answers `-version` like a JRE does (on stderr).
fn fake_java(dir: &Path) -> String {
    let path = dir.join("jdk/bin/java");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$1\" = -version ] && echo 'openjdk version \"17.0.9\" 2023-10-17' >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Real OpenSSH sshd: agent.jar is uploaded, checked and renamed into place; the same jar is
/// not sent again; a damaged or outdated one is replaced; the agent command finds it at
/// `{agent_jar}` and runs it with `{java}` and `{jvm_options}`.
#[tokio::test]
async fn agent_jar_is_delivered_over_sshd_once_and_replaced_when_it_differs() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let config = fx.client();
    let mut spec = fx.spec("i-jar", Ipv4Addr::LOCALHOST, sshd.port());
    spec.java = Some(fake_java(fx.dir.path()));
    spec.jvm_options = vec!["-Xmx64m".into(), "-Dname=two words".into()];
    // The agent stand-in records its command line and needs the jar.
    spec.agent_command =
        "test -s {agent_jar} && echo {java} {jvm_options} -jar {agent_jar} > cmdline && exec sleep 600".into();
    let v1 = test_jar("2.541", 1_400_000);
    spec.agent_jar = Some(v1.clone());
    let jar_path = fx.agents_dir().join("i-jar/agent.jar");

    let first = bootstrap(&spec, &config)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(first.agent_jar, JarDelivery::Uploaded);
    assert_eq!(
        first.java_version.as_deref(),
        Some("openjdk version \"17.0.9\" 2023-10-17")
    );
    let steps: Vec<_> = first.steps.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        [
            "connect",
            "prepare",
            "java-and-jar",
            "upload-agent-jar",
            "start-agent",
            "confirm-agent"
        ]
    );
    assert!(
        std::fs::read(&jar_path).unwrap() == *v1.bytes,
        "the jar on the instance differs from the one sent"
    );
    assert!(
        !jar_path.with_extension("jar.upload").exists(),
        "the temporary file was left behind"
    );
    let cmdline = std::fs::read_to_string(fx.agents_dir().join("i-jar/cmdline")).unwrap();
    assert_eq!(
        cmdline.trim(),
        format!(
            "{} -Xmx64m -Dname=two words -jar {}",
            spec.java.as_deref().unwrap(),
            jar_path.display()
        )
    );

    // The same jar is there: nothing is sent.
    let again = bootstrap(&spec, &config).await.unwrap();
    assert_eq!(again.agent_jar, JarDelivery::AlreadyPresent);
    assert!(
        !again.steps.iter().any(|(s, _)| *s == "upload-agent-jar"),
        "{:?}",
        again.steps
    );

    // A damaged jar (same size, one byte off) is replaced.
    let mut damaged = v1.bytes.to_vec();
    damaged[700_000] ^= 0xff;
    std::fs::write(&jar_path, &damaged).unwrap();
    assert_eq!(
        bootstrap(&spec, &config).await.unwrap().agent_jar,
        JarDelivery::Uploaded
    );
    assert!(std::fs::read(&jar_path).unwrap() == *v1.bytes);

    // The controller was upgraded: the new jar replaces the old one.
    let v2 = test_jar("2.550", 1_500_000);
    spec.agent_jar = Some(v2.clone());
    assert_eq!(
        bootstrap(&spec, &config).await.unwrap().agent_jar,
        JarDelivery::Uploaded
    );
    assert!(std::fs::read(&jar_path).unwrap() == *v2.bytes);
}

/// No Java on the image: the bootstrap stops before the agent, naming the image and what to
/// set, and nothing is started.
#[tokio::test]
async fn missing_java_fails_the_bootstrap_naming_the_image() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut spec = fx.spec("i-nojava", Ipv4Addr::LOCALHOST, sshd.port());
    spec.java = Some("/nonexistent/jdk/bin/java".into());
    spec.image_id = Some("m-bare".into());
    spec.agent_jar = Some(test_jar("2.541", 1000));
    let err = bootstrap(&spec, &fx.client())
        .await
        .expect_err("no Java, no agent");
    let BootstrapError::JavaMissing {
        ref image,
        ref exit,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(image, "m-bare");
    assert_eq!(*exit, RemoteExit::Code(127), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no Java on image m-bare")
            && msg.contains("java-path")
            && msg.contains("init-script"),
        "{msg}"
    );
    assert!(
        !fx.state_file("i-nojava", "agent.pid").exists(),
        "an agent was started without Java"
    );
    assert!(
        !fx.agents_dir().join("i-nojava/agent.jar").exists(),
        "the jar was sent to an instance that cannot run it"
    );
}

/// A `java` printing `banner` for `-version` (on stderr, as a JRE does).
fn java_printing(dir: &Path, name: &str, banner: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\n[ \"$1\" = -version ] && printf '%s' '{banner}' >&2\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Real OpenSSH sshd: a Java older than `java_min_version` stops the bootstrap before the
/// agent, naming the version found and the one needed; a new enough one passes, also when
/// the JVM first announces JAVA_TOOL_OPTIONS.
#[tokio::test]
async fn too_old_java_fails_the_bootstrap_naming_both_versions() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let mut spec = fx.spec("i-oldjava", Ipv4Addr::LOCALHOST, sshd.port());
    spec.image_id = Some("m-jdk8".into());
    spec.java = Some(java_printing(
        fx.dir.path(),
        "java8",
        "openjdk version \"1.8.0_392\"\nOpenJDK Runtime Environment (Temurin)(build 1.8.0_392-b08)\n",
    ));
    let err = bootstrap(&spec, &fx.client()).await.expect_err("Java 8 is too old");
    let BootstrapError::JavaTooOld { major, required, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*major, *required), (Some(8), 17));
    let msg = err.to_string();
    assert!(
        msg.contains("m-jdk8") && msg.contains("1.8.0_392") && msg.contains("Java 17 or later"),
        "{msg}"
    );
    assert!(!fx.state_file("i-oldjava", "agent.pid").exists(), "an agent was started on Java 8");

    // Java 21 behind a JAVA_TOOL_OPTIONS notice passes a minimum of 21.
    spec.java = Some(java_printing(
        fx.dir.path(),
        "java21",
        "Picked up JAVA_TOOL_OPTIONS: -Dfile.encoding=UTF-8\nopenjdk version \"21\" 2023-09-19\nOpenJDK Runtime Environment (build 21+35-2513)\n",
    ));
    spec.java_min_version = Some(21);
    let report = bootstrap(&spec, &fx.client())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(
        report.java_version.as_deref(),
        Some("openjdk version \"21\" 2023-09-19")
    );

    // A launcher that prints no version at all is refused while a minimum is set.
    let mut spec = fx.spec("i-oddjava", Ipv4Addr::LOCALHOST, sshd.port());
    spec.java = Some(java_printing(fx.dir.path(), "odd", "some wrapper\n"));
    let err = bootstrap(&spec, &fx.client()).await.expect_err("no version");
    assert!(err.to_string().contains("of unknown version"), "{err}");
    spec.java_min_version = None;
    bootstrap(&spec, &fx.client()).await.expect("no minimum: any Java");
}

#[tokio::test]
async fn secret_file_is_0600_and_never_on_a_command_line() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let config = fx.client();
    let specs: Vec<BootstrapSpec> = (0..4)
        .map(|i| fx.spec(&format!("i-secret{i}"), Ipv4Addr::LOCALHOST, sshd.port()))
        .collect();
    let secrets: Vec<String> = specs.iter().map(|s| s.agent_secret.clone()).collect();

    // Scan every process's command line while the bootstraps run and after.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanner = {
        let (done, secrets) = (done.clone(), secrets.clone());
        std::thread::spawn(move || {
            let mut scans = 0;
            let mut leaks = Vec::new();
            while !done.load(Ordering::Relaxed) || scans == 0 {
                for s in &secrets {
                    leaks.extend(command_lines_containing(s));
                }
                scans += 1;
            }
            (scans, leaks)
        })
    };
    let reports = futures_join(specs.iter().map(|s| bootstrap(s, &config))).await;
    done.store(true, Ordering::Relaxed);
    let (scans, leaks) = scanner.join().unwrap();
    for r in reports {
        r.unwrap();
    }
    assert!(leaks.is_empty(), "secret on a command line: {leaks:?}");
    assert!(scans > 1, "the scanner did not run during the bootstraps");
    for (spec, secret) in specs.iter().zip(&secrets) {
        let file = fx.state_file(&spec.instance_id, "agent-secret");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        assert_eq!(&std::fs::read_to_string(&file).unwrap(), secret);
        assert!(command_lines_containing(secret).is_empty());
    }
}

/// Runs futures concurrently on this task (no spawn: the specs are borrowed).
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_bootstraps() {
    let fx = Fixture::new();
    let sshd = Sshd::start(&[&fx.key.public_line]);
    let config = Arc::new(fx.client());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let spec = fx.spec(&format!("i-many{i:02}"), Ipv4Addr::LOCALHOST, sshd.port());
        let config = config.clone();
        tasks.spawn(async move { bootstrap(&spec, &config).await });
    }
    let mut pids = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let report = result
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\nsshd log tail:\n{}", tail(&sshd.log(), 30)));
        let AgentStart::Started { pid } = report.agent else {
            panic!("{report:?}")
        };
        pids.push(pid);
    }
    eprintln!("50 concurrent bootstraps in {:?}", started.elapsed());
    assert_eq!(pids.len(), 50);
    assert!(
        pids.iter().all(|p| process_running(*p)),
        "some agents are not running"
    );
    assert_eq!(fx.reaper.agent_pids().len(), 50);
    // All 50 pins made it to the file despite concurrent writers.
    let reopened = KnownHosts::open(fx.known_hosts.path()).unwrap();
    assert!((0..50).all(|i| reopened.pinned(&format!("i-many{i:02}")).is_some()));
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- The instance SSH emulator ----

/// In-memory instance directory for the emulator.
#[derive(Default)]
struct Instances(Mutex<Vec<EmulatedInstance>>);

impl InstanceDirectory for Instances {
    fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<EmulatedInstance> {
        self.0.lock().unwrap().iter().find(|i| i.ip == ip).cloned()
    }
}

fn emulated(id: &str, ip: [u8; 4], authorized_key: &str, running: bool) -> EmulatedInstance {
    EmulatedInstance {
        instance_id: id.into(),
        ip: Ipv4Addr::from(ip),
        authorized_key: authorized_key.into(),
        host_key_pem: keys::private_key_pem(&keys::generate_ed25519(&format!("root@{id}"))),
        running,
        data_disks: Vec::new(),
    }
}

#[tokio::test]
async fn the_same_bootstrap_succeeds_against_the_instance_ssh_emulator() {
    use ecs_provisioner::sim::ssh::{SshEmulatorConfig, start};
    let fx = Fixture::new();
    let directory = Arc::new(Instances::default());
    let a = emulated("i-emu-a", [127, 0, 3, 1], &fx.key.public_line, true);
    let b = emulated("i-emu-b", [127, 0, 3, 2], &fx.key.public_line, true);
    let stopped = emulated("i-emu-stopped", [127, 0, 3, 3], &fx.key.public_line, false);
    directory
        .0
        .lock()
        .unwrap()
        .extend([a.clone(), b.clone(), stopped]);
    let root = fx.dir.path().join("emulator");
    let emulator = start(directory.clone(), SshEmulatorConfig::new(&root))
        .await
        .unwrap();
    let _reaper = AgentReaper::new(&root);

    // strict against the host keys the instances would print on their consoles.
    let consoles: Arc<Vec<(String, String)>> = Arc::new(
        [&a, &b]
            .iter()
            .map(|i| {
                let key = keys::public_key_line_of_pem(&i.host_key_pem).unwrap();
                (i.instance_id.clone(), console_host_keys_block(&[key]))
            })
            .collect(),
    );
    let mut config = fx.client();
    config.host_keys = HostKeyVerifier::Strict(Arc::new(move |id: String| {
        let consoles = consoles.clone();
        async move {
            consoles
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| anyhow::anyhow!("no such instance {id}"))
        }
    }));

    for inst in [&a, &b] {
        let mut spec = fx.spec(&inst.instance_id, inst.ip, emulator.port());
        // Relative: under the instance's home, which the emulator keeps per instance.
        spec.work_dir = "agent".into();
        spec.init_script =
            Some("echo \"init on $ECSP_INSTANCE_ID, HOME=$HOME\"; echo ran >> init-count".into());
        let report = bootstrap(&spec, &config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", inst.instance_id));
        assert_eq!(report.init_script, InitScriptOutcome::Ran);
        let home = emulator.instance_dir(&inst.instance_id);
        assert_eq!(Path::new(&report.work_dir), home.join("agent"));
        let AgentStart::Started { pid } = report.agent else {
            panic!("{report:?}")
        };
        assert!(process_running(pid));
        let log = std::fs::read_to_string(home.join("agent/.ecs-provisioner/agent.log")).unwrap();
        assert_eq!(log.trim(), format!("agent linux-{} up", inst.instance_id));
        let state = emulator
            .instance_dir(&inst.instance_id)
            .join("agent/.ecs-provisioner");
        let mode = std::fs::metadata(state.join("agent-secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(state.join("agent-secret")).unwrap(),
            spec.agent_secret
        );
        // Again: init skipped, agent kept.
        let again = bootstrap(&spec, &config).await.unwrap();
        assert_eq!(again.init_script, InitScriptOutcome::Skipped);
        assert_eq!(again.agent, AgentStart::AlreadyRunning { pid });
    }

    // Each address presents its own instance's host key: instance a's console key does not
    // match what answers on b's address.
    let err = connect(
        &target(
            "i-emu-a",
            SocketAddr::from(([127, 0, 3, 2], emulator.port())),
        ),
        &config,
        soon(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SshError::HostKey { .. }), "{err:?}");

    // A key other than the launch key is refused.
    let stranger = keygen(fx.dir.path(), "id_stranger", "ed25519", "");
    let mut wrong = fx.client();
    wrong.key = ClientKey::load(&stranger.private_path, None).unwrap();
    let err = connect(
        &target("i-emu-a", SocketAddr::from((a.ip, emulator.port()))),
        &wrong,
        soon(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");

    // A stopped instance (and an unknown address) never answers.
    for (id, ip) in [
        ("i-emu-stopped", [127, 0, 3, 3]),
        ("i-none", [127, 0, 3, 9]),
    ] {
        let deadline = Instant::now() + Duration::from_millis(800);
        let err = connect(
            &target(id, SocketAddr::from((ip, emulator.port()))),
            &fx.client(),
            deadline,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
    }

    // Deleting the instance kills its processes, detached agent included.
    let pid_a = read_pid(
        &emulator
            .instance_dir("i-emu-a")
            .join("agent/.ecs-provisioner/agent.pid"),
    );
    assert!(emulator.kill_instance_processes("i-emu-a") >= 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !process_running(pid_a),
        "agent of the deleted instance still runs"
    );
    let pid_b = read_pid(
        &emulator
            .instance_dir("i-emu-b")
            .join("agent/.ecs-provisioner/agent.pid"),
    );
    assert!(
        process_running(pid_b),
        "another instance's agent was killed"
    );
    emulator.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!process_running(pid_b), "shutdown left an agent running");
}

/// Real OpenSSH sshd runs the `mount-data-disks` step: sshd's `SetEnv` gives the sessions an
/// emulated instance root and the device-command shims first on `PATH` (the shims refuse any
/// path outside that root, so the host's disks are out of reach). Two blank disks are
/// formatted and mounted once; a second bootstrap formats nothing; a disk holding a partition
/// table is left alone and named in the error.
#[tokio::test]
async fn data_disks_are_formatted_once_over_real_sshd() {
    use ecs_provisioner::sim::disks;
    use ecs_provisioner::ssh::data_disks::DiskMount;
    let fx = Fixture::new();
    let root = fx.dir.path().join("sysroot");
    let shims = fx.dir.path().join("shims");
    disks::install_shims(&shims).unwrap();
    let ids = ["d-bp1real0000000001", "d-bp1real0000000002", "d-bp1real0000000003"].map(String::from);
    disks::prepare_sysroot(&root, &ids).unwrap();
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let sshd = Sshd::start_with_config(
        &[&fx.key.public_line],
        &format!("SetEnv ECSP_SYSROOT={} PATH={path}", root.display()),
    );
    let mut spec = fx.spec("i-disks", Ipv4Addr::LOCALHOST, sshd.port());
    spec.data_disks = vec![
        DiskMount { disk_id: ids[0].clone(), mount_point: "/data".into() },
        DiskMount { disk_id: ids[1].clone(), mount_point: "/var/cache/build".into() },
    ];
    let report = bootstrap(&spec, &fx.client())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert!(report.data_disks.iter().all(|(_, o)| o.formatted && o.mounted), "{:?}", report.data_disks);
    assert_eq!(disks::formats(&root).len(), 2);
    assert_eq!(disks::mounts(&root).len(), 2);
    let fstab = std::fs::read_to_string(root.join("etc/fstab")).unwrap();
    assert_eq!(fstab.lines().filter(|l| l.contains(" ext4 defaults,nofail 0 2")).count(), 2, "{fstab}");

    let again = bootstrap(&spec, &fx.client()).await.unwrap();
    assert!(again.data_disks.iter().all(|(_, o)| !o.formatted && !o.mounted), "{:?}", again.data_disks);
    assert_eq!(disks::formats(&root).len(), 2, "a second bootstrap formatted a disk");
    assert_eq!(std::fs::read_to_string(root.join("etc/fstab")).unwrap(), fstab);

    // A disk with a partition table but no filesystem is not formatted.
    std::fs::write(disks::device_path(&root, &ids[2]), "ECSP-SIM-PT gpt\n").unwrap();
    spec.data_disks.push(DiskMount { disk_id: ids[2].clone(), mount_point: "/scratch".into() });
    let err = bootstrap(&spec, &fx.client()).await.expect_err("a partitioned disk is left alone");
    let msg = err.to_string();
    assert!(msg.contains(&ids[2]) && msg.contains("/scratch") && msg.contains("PTTYPE=gpt"), "{msg}");
    assert_eq!(disks::formats(&root).len(), 2);
    assert_eq!(std::fs::read_to_string(disks::device_path(&root, &ids[2])).unwrap(), "ECSP-SIM-PT gpt\n");
}
