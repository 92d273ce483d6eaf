//! `[journal]`: where and how much of the decision journal `run` keeps.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[journal]`: every cycle's snapshot and decision, as compressed JSON lines (docs/journal.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JournalConfig {
    /// Whether `run` keeps a journal (on by default).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Directory of the journal files. Absent: [`JournalConfig::default_dir`].
    pub dir: Option<PathBuf>,
    /// A file is closed and a new one started past this size (compressed), MiB.
    #[serde(default = "max_file_mib")]
    pub max_file_mib: u64,
    /// The oldest files are deleted while all of them together exceed this, MiB.
    #[serde(default = "max_total_mib")]
    pub max_total_mib: u64,
    /// Files whose last record is older than this are deleted.
    #[serde(with = "humantime_serde", default = "max_age")]
    pub max_age: Duration,
}

fn enabled() -> bool {
    true
}
fn max_file_mib() -> u64 {
    16
}
fn max_total_mib() -> u64 {
    512
}
fn max_age() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { enabled: enabled(), dir: None, max_file_mib: max_file_mib(), max_total_mib: max_total_mib(), max_age: max_age() }
    }
}

impl JournalConfig {
    /// The directory used when `dir` is absent: systemd's `$STATE_DIRECTORY/journal` when the
    /// unit sets `StateDirectory=`, else `$XDG_STATE_HOME/ecs-provisioner/journal`, else
    /// `~/.local/state/ecs-provisioner/journal`.
    pub fn default_dir() -> PathBuf {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(state) = var("STATE_DIRECTORY") {
            // systemd may list several, separated by ':'; the first is this unit's own.
            let first = state.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
            return PathBuf::from(first).join("journal");
        }
        let base = var("XDG_STATE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("ecs-provisioner").join("journal")
    }

    /// The directory the journal is written to.
    pub fn directory(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(Self::default_dir)
    }

    /// What the types cannot express, one message per problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_file_mib == 0 {
            problems.push("journal.max-file-mib: must be at least 1".to_owned());
        }
        if self.max_total_mib < self.max_file_mib {
            problems.push(format!(
                "journal.max-total-mib: {} is less than max-file-mib ({}): a single file would not fit",
                self.max_total_mib, self.max_file_mib
            ));
        }
        if self.max_age < Duration::from_secs(3600) {
            problems.push("journal.max-age: must be at least 1h".to_owned());
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            problems.push("journal.dir: must not be empty (leave it out for the default)".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(JournalConfig::default().problems().is_empty());
        let bad = JournalConfig { max_file_mib: 0, max_total_mib: 0, max_age: Duration::from_secs(60), ..Default::default() };
        let problems = bad.problems().join("\n");
        for key in ["journal.max-file-mib", "journal.max-age"] {
            assert!(problems.contains(key), "{problems}");
        }
        let small = JournalConfig { max_file_mib: 64, max_total_mib: 32, ..Default::default() };
        assert!(small.problems()[0].starts_with("journal.max-total-mib: 32 is less than max-file-mib (64)"));
    }
}
