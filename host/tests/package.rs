//! The Debian package (issue 12): `scripts/build-deb.sh` packs the binary cargo built for this
//! test, `dpkg -i` installs it on this machine, and the installed binary, unit, config,
//! completions and man page are checked; the package is purged afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_ecs-provisioner");

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "ecs-provisioner"]);
    }
}

#[test]
fn the_debian_package_installs_and_its_binary_runs() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "dpkg -i needs root (CI and the developers' machines run as root)");
    // The binary the test was built with: CARGO_BIN_EXE is target/<profile>/ecs-provisioner.
    let exe = Path::new(EXE);
    let profile_dir = exe.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let target = profile_dir.parent().unwrap();
    let started = std::time::Instant::now();
    let built = Command::new(checkout().join("scripts/build-deb.sh"))
        .arg(profile)
        .env("CARGO_TARGET_DIR", target)
        .env("ECSP_DEB_PREBUILT", "1")
        .output()
        .unwrap();
    let deb = ok(built, "scripts/build-deb.sh (cargo-deb is installed by scripts/setup-test-deps.sh)").trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb:?}");
    eprintln!("package built in {:.1} s", started.elapsed().as_secs_f64());

    let _installed = Installed;
    ok(run("dpkg", &["-i", &deb]), "dpkg -i");
    let version = ok(run("/usr/bin/ecs-provisioner", &["--version"]), "the installed binary");
    assert_eq!(version, ok(run(EXE, &["--version"]), "the built binary"));

    for file in [
        "/usr/share/man/man1/ecs-provisioner.1",
        "/usr/share/bash-completion/completions/ecs-provisioner",
        "/usr/share/zsh/vendor-completions/_ecs-provisioner",
        "/usr/share/fish/vendor_completions.d/ecs-provisioner.fish",
        "/usr/share/doc/ecs-provisioner/configuration.md",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/ecs-provisioner").unwrap();
    assert!(bash.contains("sim-agent") && bash.contains("--config"), "{bash}");

    // The example configuration is a conffile, parses, and only root and the service read it.
    let conffiles = ok(run("dpkg-query", &["--showformat=${Conffiles}", "--show", "ecs-provisioner"]), "dpkg-query");
    assert!(conffiles.contains("/etc/ecs-provisioner/ecs-provisioner.toml"), "{conffiles}");
    let config = ecs_provisioner::config::Config::load(Path::new("/etc/ecs-provisioner/ecs-provisioner.toml")).unwrap();
    assert_eq!(config.templates[0].labels, ["linux", "linux-amd64"]);
    let mode = ok(run("stat", &["-c", "%a %U:%G", "/etc/ecs-provisioner/ecs-provisioner.toml"]), "stat");
    assert_eq!(mode.trim(), "640 root:ecs-provisioner");
    ok(run("id", &["ecs-provisioner"]), "the service's user");

    let unit = "/usr/lib/systemd/system/ecs-provisioner.service";
    let text = std::fs::read_to_string(unit).unwrap();
    for line in ["Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "User=ecs-provisioner", "StateDirectory=ecs-provisioner", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(text.contains(line), "{unit} lacks {line}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        ok(run("systemd-analyze", &["verify", unit]), "systemd-analyze verify");
    } else {
        eprintln!("note: systemd-analyze is not installed here: the unit was not verified");
    }
}
