//! Emulated block devices of emulated instances, for the bootstrap's `mount-data-disks` step.
//!
//! Each emulated instance has its own root directory (its "sysroot"): every data disk ECS
//! lists for it is a file `<sysroot>/dev/disk/by-id/virtio-<serial>` (serial = disk id without
//! `d-`, as on ECS), and `<sysroot>/etc/fstab` is its fstab. The instance's commands run with
//! `ECSP_SYSROOT=<sysroot>` and a `PATH` whose first directory holds shims of the commands the
//! step uses on devices (`blkid`, `mkfs.ext4`, `mount`, `mountpoint`, and `sudo`): the real
//! script runs unchanged, and the shims act on those files only. Every shim refuses a path
//! outside `$ECSP_SYSROOT`, so nothing can reach the host machine's disks.
//!
//! An emulated filesystem is a first line `ECSP-SIM-FS <type> <uuid>` in the disk file; a
//! first line `ECSP-SIM-PT <type>` stands for a partition table without a filesystem. Each
//! `mkfs.ext4` appends the device to `<sysroot>/var/log/sim-mkfs.log` and each `mount` a line
//! `<device> <mount point> <type>` to `<sysroot>/proc/mounts`, so tests can count them.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The variable naming an emulated instance's root (unset on real instances: `/`).
pub const SYSROOT_ENV: &str = "ECSP_SYSROOT";

/// The id DescribeDisks gives the `n`-th disk (0 = system disk) of an emulated instance.
pub fn disk_id(instance_id: &str, n: usize) -> String {
    format!("d-{}{:02}", instance_id.trim_start_matches("i-"), n)
}

/// The device file of a disk under `sysroot`.
pub fn device_path(sysroot: &Path, disk_id: &str) -> PathBuf {
    let serial = disk_id.strip_prefix("d-").unwrap_or(disk_id);
    sysroot.join(format!("dev/disk/by-id/virtio-{serial}"))
}

/// Creates `sysroot` with a device file for each disk (kept if it exists: a disk keeps its
/// content across sessions), `etc/`, `proc/` and `var/log/`.
pub fn prepare_sysroot(sysroot: &Path, disk_ids: &[String]) -> io::Result<()> {
    for dir in ["dev/disk/by-id", "etc", "proc", "var/log"] {
        std::fs::create_dir_all(sysroot.join(dir))?;
    }
    for id in disk_ids {
        let path = device_path(sysroot, id);
        if !path.exists() {
            std::fs::File::create(&path)?;
        }
    }
    Ok(())
}

/// Writes the shims into `dir` (created); put it first on the instances' `PATH`.
pub fn install_shims(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, body) in SHIMS {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n# Emulated {name} (ecs-provisioner instance emulator).\n{GUARD}{body}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Devices `mkfs.ext4` formatted under `sysroot`, in order.
pub fn formats(sysroot: &Path) -> Vec<String> {
    lines(&sysroot.join("var/log/sim-mkfs.log"))
}

/// `(device, mount point)` of every mount under `sysroot`.
pub fn mounts(sysroot: &Path) -> Vec<(String, String)> {
    lines(&sysroot.join("proc/mounts"))
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Shared prologue: a sysroot must be set, and `inside PATH` refuses what lies outside it.
const GUARD: &str = r#"[ -n "$ECSP_SYSROOT" ] || { echo "${0##*/}: ECSP_SYSROOT is not set: refusing to touch the host" >&2; exit 1; }
inside() { case "$1" in "$ECSP_SYSROOT"/*) return 0;; esac; echo "${0##*/}: $1 is outside the emulated instance ($ECSP_SYSROOT)" >&2; exit 1; }
"#;

const SHIMS: &[(&str, &str)] = &[
    (
        "blkid",
        r#"mode=full; tag=; dev=
while [ $# -gt 0 ]; do case $1 in -p) ;; -o) mode=$2; shift;; -s) tag=$2; shift;; *) dev=$1;; esac; shift; done
inside "$dev"
[ -e "$dev" ] || { echo "blkid: $dev: No such file or directory" >&2; exit 2; }
read -r magic a b < "$dev" 2>/dev/null
case $magic in
  ECSP-SIM-FS) fs=$a; uuid=$b
    case $mode in
      export) printf 'UUID=%s\nTYPE=%s\n' "$uuid" "$fs";;
      value) case $tag in UUID) echo "$uuid";; TYPE) echo "$fs";; *) printf '%s\n%s\n' "$uuid" "$fs";; esac;;
      *) echo "$dev: UUID=\"$uuid\" TYPE=\"$fs\"";;
    esac;;
  ECSP-SIM-PT) [ "$mode" = export ] && echo "PTTYPE=$a" || echo "$dev: PTTYPE=\"$a\"";;
  *) exit 2;;
esac
"#,
    ),
    (
        "mkfs.ext4",
        r#"force=; dev=
for a in "$@"; do case $a in -F) force=1;; -*) ;; *) dev=$a;; esac; done
inside "$dev"
[ -e "$dev" ] || { echo "mkfs.ext4: The file $dev does not exist" >&2; exit 1; }
read -r magic rest < "$dev" 2>/dev/null
if [ -n "$magic" ] && [ -z "$force" ]; then
  printf '%s contains data (%s %s)\nProceed anyway? (y,N) ' "$dev" "$magic" "$rest" >&2
  read -r answer || answer=n
  [ "$answer" = y ] || exit 1
fi
printf 'ECSP-SIM-FS ext4 %s\n' "$(cat /proc/sys/kernel/random/uuid)" > "$dev" || exit 1
echo "$dev" >> "$ECSP_SYSROOT/var/log/sim-mkfs.log"
"#,
    ),
    (
        "mount",
        r#"fs=; args=
while [ $# -gt 0 ]; do case $1 in -t) fs=$2; shift;; -*) ;; *) args="$args $1";; esac; shift; done
set -- $args
[ $# = 2 ] || { echo "mount: emulated mount takes a device and a mount point" >&2; exit 1; }
inside "$1"; inside "$2"
read -r magic type uuid < "$1" 2>/dev/null
[ "$magic" = ECSP-SIM-FS ] || { echo "mount: $2: wrong fs type, bad option, bad superblock on $1" >&2; exit 32; }
[ -z "$fs" ] || [ "$fs" = "$type" ] || { echo "mount: $2: wrong fs type $fs on $1 ($type)" >&2; exit 32; }
[ -d "$2" ] || { echo "mount: $2: mount point does not exist" >&2; exit 32; }
if awk -v m="$2" '$2 == m { f = 1 } END { exit !f }' "$ECSP_SYSROOT/proc/mounts" 2>/dev/null; then
  echo "mount: $2: already mounted" >&2; exit 32
fi
echo "$1 $2 $type" >> "$ECSP_SYSROOT/proc/mounts"
"#,
    ),
    (
        "mountpoint",
        r#"mp=
for a in "$@"; do case $a in -*) ;; *) mp=$a;; esac; done
inside "$mp"
awk -v m="$mp" '$2 == m { f = 1 } END { exit !f }' "$ECSP_SYSROOT/proc/mounts" 2>/dev/null
"#,
    ),
    (
        "sudo",
        r#"# The login user may run anything as root, without a password (as ecs-user on ECS images).
[ "$1" = -n ] && shift
exec "$@"
"#,
    ),
];
