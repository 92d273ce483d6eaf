//! The languages a policy can be written in, and `policy.toml`, the manifest that tells
//! `policy build` how to build a Python or JavaScript policy (a Rust policy is a cargo crate).
//!
//! ```toml
//! name = "cost-aware-py"          # the component is build/<name>.wasm
//! language = "python"             # or "javascript"
//! entry = "app"                   # Python: the module; JavaScript: the file exporting `policy`
//! sdk = "../../guest-sdk/python/src"   # Python only: the SDK, relative to this file
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A language policies are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// A cargo crate built with the Rust SDK (`ecs-policy-sdk`) for wasm32-wasip2.
    Rust,
    /// Python with `guest-sdk/python`, built by componentize-py.
    Python,
    /// JavaScript with `guest-sdk/js`, bundled by esbuild and built by componentize-js.
    #[value(alias = "js")]
    Javascript,
}

impl Language {
    /// The language's name as `--lang` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Javascript => "javascript",
        }
    }
}

/// `policy.toml` of a Python or JavaScript policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// The policy's name; the component is `build/<name>.wasm`.
    pub name: String,
    /// `python` or `javascript`.
    pub language: Language,
    /// Python: the entry module (`app`); JavaScript: the entry file (`component.js`).
    pub entry: String,
    /// Python: the SDK's source directory (holding `ecs_policy/`), relative to the manifest.
    #[serde(default)]
    pub sdk: Option<PathBuf>,
}

/// What `policy build` found in a policy directory.
#[derive(Debug, Clone)]
pub enum Project {
    /// A cargo crate (`Cargo.toml`, no `policy.toml`).
    Rust {
        /// The crate's directory.
        dir: PathBuf,
        /// The crate name from `Cargo.toml`.
        name: String,
    },
    /// A Python or JavaScript policy with its manifest.
    Script {
        /// The policy's directory.
        dir: PathBuf,
        /// Its `policy.toml`.
        manifest: Manifest,
    },
}

impl Project {
    /// Reads the policy in `dir`: its `policy.toml`, else its `Cargo.toml`.
    pub fn open(dir: &Path) -> Result<Project, String> {
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let manifest = dir.join("policy.toml");
        if manifest.exists() {
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("{}: {e}", manifest.display()))?;
            let m: Manifest =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
            if m.language == Language::Rust {
                return Err(format!(
                    "{}: a Rust policy is a cargo crate and needs no policy.toml",
                    manifest.display()
                ));
            }
            return Ok(Project::Script { dir, manifest: m });
        }
        let cargo = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&cargo).map_err(|_| {
            format!(
                "{}: no policy.toml (Python, JavaScript) or Cargo.toml (Rust) here",
                dir.display()
            )
        })?;
        let value: toml::Value =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", cargo.display()))?;
        let name = value
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("{}: no [package] name", cargo.display()))?;
        Ok(Project::Rust {
            name: name.to_owned(),
            dir,
        })
    }

    /// The policy's language.
    pub fn language(&self) -> Language {
        match self {
            Project::Rust { .. } => Language::Rust,
            Project::Script { manifest, .. } => manifest.language,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let err = Project::open(dir.path()).unwrap_err();
        assert!(
            err.contains("no policy.toml (Python, JavaScript) or Cargo.toml (Rust)"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("policy.toml"),
            "name = \"p\"\nlanguage = \"perl\"\nentry = \"x\"\n",
        )
        .unwrap();
        let err = Project::open(dir.path()).unwrap_err();
        assert!(err.contains("policy.toml") && err.contains("perl"), "{err}");
        std::fs::write(
            dir.path().join("policy.toml"),
            "name = \"p\"\nlanguage = \"javascript\"\nentry = \"c.js\"\n",
        )
        .unwrap();
        assert_eq!(
            Project::open(dir.path()).unwrap().language(),
            Language::Javascript
        );
        std::fs::remove_file(dir.path().join("policy.toml")).unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"my-policy\"\n",
        )
        .unwrap();
        assert!(
            matches!(Project::open(dir.path()).unwrap(), Project::Rust { name, .. } if name == "my-policy")
        );
    }
}
