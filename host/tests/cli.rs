//! The `ecs-provisioner` binary as a user runs it: `--version`, `--help`, the messages of a
//! missing configuration, and the commands `sim` prints, run exactly as printed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_ecs-provisioner");

fn run(args: &[&str]) -> Output {
    Command::new(EXE).args(args).env_remove("RUST_LOG").output().expect("running ecs-provisioner")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_names_the_git_revision_and_the_contract_versions() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let version = text(&out.stdout);
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok().filter(|o| o.status.success());
    // Built from a clone: the revision is HEAD's (the build script reruns when HEAD moves).
    let revision = head.map(|o| text(&o.stdout).trim().to_owned()).unwrap_or_else(|| "unknown".into());
    let want = format!("ecs-provisioner {} (git {revision}; policy contracts 0.2.x, 0.1.x)", env!("CARGO_PKG_VERSION"));
    assert_eq!(version.trim(), want);
}

#[test]
fn every_option_of_plan_and_check_is_described_and_sim_agent_has_help() {
    for command in ["plan", "check", "run"] {
        let help = text(&run(&[command, "--help"]).stdout);
        let line = help.lines().find(|l| l.contains("--config")).unwrap_or_else(|| panic!("{help}"));
        assert!(line.contains("Configuration file [default: ecs-provisioner.toml]"), "{command}: {line}");
    }
    let out = run(&["sim-agent", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("-webSocket"), "{}", text(&out.stdout));
}

#[test]
fn a_missing_configuration_is_said_once_with_the_right_hint() {
    let out = run(&["plan", "-c", "/nonexistent/ecs-provisioner.toml"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.starts_with("error: cannot read config file /nonexistent/ecs-provisioner.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    let out = run(&["check", "-c", "/nonexistent/ecs-provisioner.toml"]);
    let said = text(&out.stdout);
    assert_eq!(said.matches("No such file").count(), 1, "{said}");
    assert!(said.contains("hint: pass the file with --config"), "{said}");
    assert!(!said.contains("names the key"), "{said}");
}

/// Kills a child started here (by its own pid) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn shell(command: &str) -> Output {
    Command::new("sh").arg("-c").arg(command).env_remove("RUST_LOG").output().unwrap()
}

/// The value after `label` on the line of `printed` that starts with it.
fn after<'a>(printed: &'a [String], label: &str) -> &'a str {
    printed
        .iter()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {printed:#?}"))
        .trim()
}

#[test]
fn the_commands_sim_prints_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let status = format!("127.0.0.1:{}", free_port());
    let mut sim = Running(
        Command::new(EXE)
            .args(["sim", "--ecs-listen", "127.0.0.1:0", "--sts-listen", "127.0.0.1:0", "--jenkins-listen", "127.0.0.1:0"])
            .args(["--ssh-listen", "0.0.0.0:0", "--status-listen", &status, "--dir"])
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("sim.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut printed = Vec::new();
    for line in BufReader::new(sim.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let last = line.starts_with("Enqueue builds:");
        printed.push(line);
        if last {
            break;
        }
    }
    let start = after(&printed, "Run the provisioner:");
    let page = after(&printed, "Its status page:");
    let enqueue = after(&printed, "Enqueue builds:");
    assert_eq!(page, format!("http://{status}/status"));

    let enqueued = shell(enqueue);
    assert!(enqueued.status.success(), "{enqueue}\n{}", text(&enqueued.stderr));
    assert!(text(&enqueued.stdout).contains("\"ids\":[1,2,3]"), "{}", text(&enqueued.stdout));

    let mut provisioner = Running(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {start}"))
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = shell(&format!("curl -fsS {page}"));
        if got.status.success() && text(&got.stdout).contains("linux") {
            break;
        }
        assert!(Instant::now() < deadline, "{page} never showed the template: {}", text(&got.stderr));
        if let Some(exit) = provisioner.0.try_wait().unwrap() {
            panic!("`{start}` exited with {exit}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Log lines into a file (a pipe, the journal) carry no colour codes.
    drop(provisioner);
    drop(sim);
    for (name, says) in [("run.log", "ecs-provisioner started"), ("sim.log", "")] {
        let log = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(log.contains(says), "{name}: {log}");
        assert!(!log.contains('\u{1b}'), "{name}: {log}");
    }
}
