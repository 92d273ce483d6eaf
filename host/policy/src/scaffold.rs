//! `policy new <name>`: scaffold a policy crate that builds to wasm32-wasip2 and passes
//! `policy test` out of the box (Python and JavaScript policies: `scaffold_script`).
//!
//! The crate implements the SDK's `Policy` trait with every default (`ecs_policy_sdk::Policy`,
//! exported with `ecs_policy_sdk::export_policy!`), has a native unit test, a fixture file and
//! a README. Outside a cargo workspace it is its own workspace (with a size-optimised release
//! profile); inside one it leaves workspace membership and profiles to the workspace.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::lang::Language;

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The crate name.
    pub name: String,
    /// Whether the crate lives inside an existing cargo workspace (Rust only).
    pub in_workspace: bool,
    /// The policy's language.
    pub language: Language,
}

impl Created {
    /// Where `cargo build` puts the component, relative to the build's target directory.
    pub fn wasm_file_name(&self) -> String {
        format!("{}.wasm", self.name.replace('-', "_"))
    }
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dir.display();
        match self.language {
            Language::Python => {
                writeln!(f, "created Python policy `{}` in {d}", self.name)?;
                writeln!(
                    f,
                    "next: cd {d} && python -m pytest && ecs-provisioner policy build"
                )?;
                return write!(
                    f,
                    "then: ecs-provisioner policy test build/{}.wasm fixtures/",
                    self.name
                );
            }
            Language::Javascript => {
                writeln!(f, "created JavaScript policy `{}` in {d}", self.name)?;
                writeln!(
                    f,
                    "next: cd {d} && npm install && node --test test/ && ecs-provisioner policy build"
                )?;
                return write!(
                    f,
                    "then: ecs-provisioner policy test build/{}.wasm fixtures/",
                    self.name
                );
            }
            Language::Rust => {}
        }
        writeln!(f, "created policy crate `{}` in {d}", self.name)?;
        if self.in_workspace {
            writeln!(
                f,
                "note: it is inside a cargo workspace: add it to the workspace's `members` (or `exclude`)"
            )?;
            writeln!(
                f,
                "next: cargo build -p {} --target wasm32-wasip2 --profile wasm",
                self.name
            )?;
        } else {
            writeln!(
                f,
                "next: cd {d} && cargo test && cargo build --release --target wasm32-wasip2"
            )?;
            write!(
                f,
                "then: ecs-provisioner policy test target/wasm32-wasip2/release/{} fixtures/",
                self.wasm_file_name()
            )?;
        }
        Ok(())
    }
}

/// Where a scaffold outside a checkout gets the SDK: a copy of the one embedded in the binary.
pub const VENDORED_SDK: &str = "vendor/ecs-policy-sdk";

/// Creates `dir/name`. `sdk_path` overrides where `ecs-policy-sdk` is found; by default it is
/// looked for in an ecs-provisioner checkout above `dir` (`guest-sdk/`), else the SDK this
/// binary embeds is written into the crate ([`VENDORED_SDK`]).
pub fn create(name: &str, dir: &Path, sdk_path: Option<&Path>) -> Result<Created, String> {
    validate_name(name)?;
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        return Err(format!("{} already exists", crate_dir.display()));
    }
    std::fs::create_dir_all(crate_dir.join("src"))
        .map_err(|e| format!("{}: {e}", crate_dir.display()))?;
    std::fs::create_dir_all(crate_dir.join("fixtures"))
        .map_err(|e| format!("{}: {e}", crate_dir.display()))?;
    let crate_dir = crate_dir.canonicalize().map_err(|e| e.to_string())?;

    let sdk = match sdk_path {
        Some(p) => Some(
            p.canonicalize()
                .map_err(|e| format!("--sdk-path {}: {e}", p.display()))?,
        ),
        None => find_sdk(&crate_dir),
    };
    let sdk_dep = match &sdk {
        Some(p) => format!(
            "ecs-policy-sdk = {{ path = \"{}\" }}",
            relative(&crate_dir, p).display()
        ),
        // Not published yet: the SDK this binary embeds goes into the crate.
        None => {
            super::vendored_sdk::write(&crate_dir.join(VENDORED_SDK))?;
            format!("ecs-policy-sdk = {{ path = \"{VENDORED_SDK}\" }}")
        }
    };
    let in_workspace = crate_dir.ancestors().skip(1).any(|a| {
        std::fs::read_to_string(a.join("Cargo.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
    });
    let type_name = type_name(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_dep, in_workspace)),
        (
            "src/lib.rs",
            LIB_RS.replace("{name}", name).replace("{Type}", &type_name),
        ),
        ("fixtures/basic.toml", FIXTURE.to_owned()),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{wasm}", &format!("{}.wasm", name.replace('-', "_"))),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = crate_dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Created {
        dir: crate_dir,
        name: name.to_owned(),
        in_workspace,
        language: Language::Rust,
    })
}

pub(super) fn validate_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid policy name: use lowercase letters, digits and dashes, starting with a letter"
        ))
    }
}

/// `demo-policy` -> `DemoPolicy`.
pub(super) fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `guest-sdk/` of an ecs-provisioner checkout above `dir`, if any.
fn find_sdk(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|a| a.join("guest-sdk")).find(|p| {
        std::fs::read_to_string(p.join("Cargo.toml"))
            .is_ok_and(|t| t.contains("name = \"ecs-policy-sdk\""))
    })
}

/// `to` relative to `from` (both absolute), e.g. `../../guest-sdk`.
pub(super) fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return to.to_owned();
    }
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    p
}

fn cargo_toml(name: &str, sdk_dep: &str, in_workspace: bool) -> String {
    let mut s = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm component; rlib: native unit tests (`cargo test`).
crate-type = ["cdylib", "rlib"]

[dependencies]
{sdk_dep}
serde = {{ version = "1", features = ["derive"] }}
"#
    );
    if !in_workspace {
        s.push_str(
            r#"
# Policies are loaded often and should be small.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A workspace of its own, so it builds wherever it was created.
[workspace]
"#,
        );
    }
    s
}

const LIB_RS: &str = r#"//! {name}: a placement and scaling policy for ecs-provisioner.
//!
//! Every method of `Policy` has a default (demand-driven `scale`, zone-spreading `place`,
//! a `configure` that takes no settings): override the ones you want to change.

use ecs_policy_sdk::{Policy, export_policy};

/// The policy. Add fields for its settings and override `configure` to fill them.
#[derive(Default)]
pub struct {Type};

impl Policy for {Type} {}

export_policy!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use ecs_policy_sdk::builders::{SnapshotBuilder, TemplateBuilder};
    use ecs_policy_sdk::testing;

    #[test]
    fn launches_for_queued_builds() {
        let snapshot = SnapshotBuilder::new(0)
            .template(TemplateBuilder::new("linux").max(10))
            .queued("linux", 3, 60_000)
            .build();
        let plan = testing::run_scale({Type}::default(), "{}", &snapshot);
        assert!(plan.launches.iter().any(|l| l.template == "linux" && l.count > 0), "{plan:?}");
    }
}
"#;

pub(super) const FIXTURE: &str = r#"# Fixtures for `ecs-provisioner policy test <policy.wasm> fixtures/`.
# Keys are kebab-case as in the WIT contract; every field has a default.
# Top-level keys (like `snapshot` here) are shared by every [[case]].

[snapshot]
templates = [{ name = "linux", max-nodes = 10 }]

[[case]]
name = "nothing queued, nothing launched"
expect = { launch-total = 0, remove-count = 0 }

[[case]]
name = "queued builds cause launches"
snapshot.demand = [{ template = "linux", queued = 3 }]
expect = { launch-at-least = { linux = 1 }, launch-at-most = { linux = 3 } }

[[case]]
name = "places every node asked for"
function = "place"
request = { template = "linux", count = 2 }
offerings = [{ zone = "cn-hangzhou-h" }, { zone = "cn-hangzhou-i" }]
expect = { placed = 2 }

[[case]]
name = "takes no settings"
function = "configure"
settings = { surprise = 1 }
expect = { error = "surprise" }
"#;

const README: &str = r#"# {name}

A placement and scaling policy for ecs-provisioner, built as a WebAssembly component.

- `src/lib.rs`: the policy (implements `ecs_policy_sdk::Policy`).
- `fixtures/`: cases the host runs against the compiled component.

```sh
rustup target add wasm32-wasip2                 # once
cargo test                                      # native unit tests
cargo build --release --target wasm32-wasip2    # the component
ecs-provisioner policy test target/wasm32-wasip2/release/{wasm} fixtures/
ecs-provisioner policy bench target/wasm32-wasip2/release/{wasm}
```

Use it from the provisioner's configuration:

```toml
[policy]
source = "/path/to/{wasm}"

[policy.settings]
# the policy's own settings, given to its `configure`
```

If `vendor/ecs-policy-sdk/` exists, it is the SDK (`ecs-policy-sdk`, not on crates.io yet) as
`ecs-provisioner policy new` embedded it; a newer ecs-provisioner's `policy new` writes a newer one.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(type_name("demo-policy"), "DemoPolicy");
        assert!(validate_name("demo-policy2").is_ok());
        assert!(
            validate_name("Demo").is_err()
                && validate_name("a_b").is_err()
                && validate_name("x-").is_err()
        );
        assert_eq!(
            relative(Path::new("/w/a/b"), Path::new("/w/guest-sdk")),
            PathBuf::from("../../guest-sdk")
        );
    }

    #[test]
    fn writes_a_standalone_crate() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = dir.path().join("sdk");
        std::fs::create_dir(&sdk).unwrap();
        let created = create("demo-policy", dir.path(), Some(&sdk)).unwrap();
        let toml = std::fs::read_to_string(created.dir.join("Cargo.toml")).unwrap();
        assert!(
            toml.contains("ecs-policy-sdk = { path = \"../sdk\" }"),
            "{toml}"
        );
        assert!(toml.contains("[workspace]"));
        let lib = std::fs::read_to_string(created.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_policy!(DemoPolicy);"));
        assert!(
            create("demo-policy", dir.path(), Some(&sdk))
                .unwrap_err()
                .contains("already exists")
        );
    }
}
