//! Directories only this user can write, for compiled policy artifacts.
//!
//! A cached artifact is native code that wasmtime loads without re-verifying it
//! (`Component::deserialize_file` is `unsafe` for that reason). That is sound only if nobody
//! else can write the artifact: so the cache directory is created `0700`, and a directory or
//! artifact owned by another user, or writable by group or others, is never used.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Group or others may write.
const SHARED_WRITE: u32 = 0o022;

/// The effective user id of this process.
fn this_user() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no memory-safety preconditions.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (mode `0700`; missing parents with the default mode) unless it exists, then
/// checks that it is a real directory (not a symlink), owned by this user, and not writable
/// by group or others. The error names the directory and what is wrong with it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory (a symlink or a file)", dir.display()));
    }
    check_owner_and_mode(dir, &meta)
}

/// Whether the file at `path` may be loaded as a compiled artifact: a regular file (not a
/// symlink) owned by this user and not writable by group or others.
pub fn is_private_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    check_owner_and_mode(path, &meta)
}

fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let me = this_user();
    if meta.uid() != me {
        return Err(format!("{} is owned by uid {}, not by this user (uid {me})", path.display(), meta.uid()));
    }
    if meta.mode() & SHARED_WRITE != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); make it 0700 (chmod go-w)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_directory_is_private_and_a_shared_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/cache");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        ensure_private_dir(&dir).expect("an existing private directory is fine");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&dir).unwrap_err();
        assert!(e.contains("writable by group or others (mode 777)"), "{e}");

        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(ensure_private_dir(&link).unwrap_err().contains("not a directory"));

        let file = root.path().join("artifact");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        is_private_file(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(is_private_file(&file).unwrap_err().contains("writable by group or others"));
    }
}
