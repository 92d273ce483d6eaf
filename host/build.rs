//! Records the git revision the binary is built from, for `--version` and the package.
//! `ECSP_GIT_REVISION` in the environment wins (a build from a source tarball has no `.git`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ECSP_GIT_REVISION");
    let revision = std::env::var("ECSP_GIT_REVISION").ok().filter(|s| !s.is_empty()).or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
        for path in [git(&["rev-parse", "--git-path", "HEAD"]), git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r]))]
        .into_iter()
        .flatten()
        {
            if let Ok(abs) = std::path::absolute(&path) {
                println!("cargo:rerun-if-changed={}", abs.display());
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!("cargo:rustc-env=ECSP_GIT_REVISION={}", revision.unwrap_or_else(|| "unknown".into()));
}
