//! What `--version` says: the package version, the git revision it was built from and the
//! policy contract versions this build serves.

use std::sync::LazyLock;

/// The git revision (12 hex digits) the binary was built from, or `unknown`.
pub const GIT_REVISION: &str = env!("ECSP_GIT_REVISION");

/// `0.1.0 (git 0123456789ab; policy contracts 0.2.x, 0.1.x)`.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (git {GIT_REVISION}; policy contracts {})",
        env!("CARGO_PKG_VERSION"),
        ecsp_policy::ACCEPTED_VERSIONS
    )
});
