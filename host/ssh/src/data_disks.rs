//! Bootstrap step `mount-data-disks`: each data disk with a mount point gets a filesystem (only
//! if it has none), an fstab line with `nofail` and a mount, idempotently: a re-run after a
//! reconnect or a crash finds the filesystem and the fstab line and formats nothing.
//!
//! The disk is found by its serial, which on ECS is the disk id without `d-`: virtio disks
//! show as `/dev/disk/by-id/virtio-<serial>`, NVMe ones as `/dev/disk/by-id/nvme-*_<serial>`.
//! A device that holds anything `blkid -p` recognises (a filesystem of any type, a partition
//! table, RAID or LVM signatures) is never formatted; one with a filesystem is mounted as it
//! is, one with something else fails the step.
//!
//! Paths are taken under `$ECSP_SYSROOT` (unset, i.e. `/`, on real instances): the instance
//! SSH emulator sets it to the emulated instance's own root, where its disks are files, so
//! this same script runs there without touching the host machine's disks.

use std::fmt;

use super::template::sh_quote;

/// One data disk to format and mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskMount {
    /// ECS disk id (`d-...`).
    pub disk_id: String,
    /// Absolute mount point on the instance.
    pub mount_point: String,
}

impl DiskMount {
    /// The block device serial: the disk id without `d-`.
    pub fn serial(&self) -> &str {
        self.disk_id.strip_prefix("d-").unwrap_or(&self.disk_id)
    }
}

/// What the step did to one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOutcome {
    /// A filesystem was created now (the disk had none).
    pub formatted: bool,
    /// It was mounted now (it was not mounted yet).
    pub mounted: bool,
}

/// Why a disk could not be made ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskProblem {
    /// The ECS disk id.
    pub disk_id: String,
    /// Where it was to be mounted.
    pub mount_point: String,
    /// What the instance reported.
    pub reason: String,
}

impl fmt::Display for DiskProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data disk {} ({}): {}", self.disk_id, self.mount_point, self.reason)
    }
}

/// Seconds to wait for a disk's device to appear (udev may lag right after boot).
const DEVICE_WAIT_SECS: u32 = 60;

/// The shell functions of the step; `mount_disk <disk id> <serial> <mount point>` prints
/// `formatted`, `mounted` and `ready` (or one `problem` line) prefixed with the disk id.
const FUNCTIONS: &str = r#"root=${ECSP_SYSROOT:-}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
find_device() {
  for c in "$root/dev/disk/by-id/virtio-$1" "$root/dev/disk/by-id/nvme-"*"_$1"; do
    if [ -e "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}
mount_disk() {
  id=$1; mp="$root$3"; n=0
  while ! dev=$(find_device "$2"); do
    n=$((n+1)); if [ "$n" -gt "$WAIT" ]; then echo "$id problem no device with serial $2 under $root/dev/disk/by-id after ${WAIT}s"; return 1; fi
    sleep 1
  done
  probe=$(as_root blkid -p -o export "$dev" 2>&1); rc=$?
  if [ "$rc" = 2 ]; then
    out=$(as_root mkfs.ext4 -q "$dev" 2>&1 < /dev/null) || { echo "$id problem mkfs.ext4 $dev failed: $out" | tr '\n' ' '; echo; return 1; }
    echo "$id formatted"
    probe=$(as_root blkid -p -o export "$dev" 2>&1); rc=$?
  fi
  [ "$rc" = 0 ] || { echo "$id problem blkid -p $dev failed ($rc): $probe" | tr '\n' ' '; echo; return 1; }
  fs=$(printf '%s\n' "$probe" | sed -n 's/^TYPE=//p')
  uuid=$(printf '%s\n' "$probe" | sed -n 's/^UUID=//p')
  if [ -z "$fs" ] || [ -z "$uuid" ]; then
    echo "$id problem $dev holds no filesystem but something else (left alone): $probe" | tr '\n' ' '; echo; return 1
  fi
  as_root mkdir -p "$mp" || { echo "$id problem cannot create $mp"; return 1; }
  if ! grep -qs "^UUID=$uuid[[:space:]]" "$root/etc/fstab"; then
    printf 'UUID=%s %s %s defaults,nofail 0 2\n' "$uuid" "$3" "$fs" | as_root tee -a "$root/etc/fstab" > /dev/null \
      || { echo "$id problem cannot add to $root/etc/fstab"; return 1; }
  fi
  if ! as_root mountpoint -q "$mp"; then
    out=$(as_root mount -t "$fs" "$dev" "$mp" 2>&1) || { echo "$id problem mount $dev $mp failed: $out" | tr '\n' ' '; echo; return 1; }
    echo "$id mounted"
  fi
  echo "$id ready"
}
"#;

/// The step's command: the functions, then one `mount_disk` per disk; it stops at the first
/// disk that fails.
pub fn command(disks: &[DiskMount]) -> String {
    let mut c = format!("WAIT={DEVICE_WAIT_SECS}\n{FUNCTIONS}");
    for d in disks {
        c.push_str(&format!(
            "mount_disk {} {} {} || exit 0\n",
            sh_quote(&d.disk_id),
            sh_quote(d.serial()),
            sh_quote(&d.mount_point)
        ));
    }
    c
}

/// Reads the step's output: each disk's outcome in order, or the first problem.
pub fn parse(disks: &[DiskMount], stdout: &str) -> Result<Vec<DiskOutcome>, DiskProblem> {
    let mut outcomes = Vec::new();
    for d in disks {
        let mut outcome = DiskOutcome {
            formatted: false,
            mounted: false,
        };
        let mut ready = false;
        for line in stdout.lines() {
            let Some(rest) = line.strip_prefix(d.disk_id.as_str()).and_then(|r| r.strip_prefix(' ')) else {
                continue;
            };
            match rest.split_once(' ').map_or((rest, ""), |(w, r)| (w, r)) {
                ("formatted", _) => outcome.formatted = true,
                ("mounted", _) => outcome.mounted = true,
                ("ready", _) => ready = true,
                ("problem", why) => {
                    return Err(DiskProblem {
                        disk_id: d.disk_id.clone(),
                        mount_point: d.mount_point.clone(),
                        reason: why.trim().to_string(),
                    });
                }
                _ => {}
            }
        }
        if !ready {
            return Err(DiskProblem {
                disk_id: d.disk_id.clone(),
                mount_point: d.mount_point.clone(),
                reason: format!("the step ended without a result: {:?}", stdout.trim()),
            });
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(id: &str, mp: &str) -> DiskMount {
        DiskMount {
            disk_id: id.into(),
            mount_point: mp.into(),
        }
    }

    #[test]
    fn the_serial_is_the_disk_id_without_its_prefix() {
        assert_eq!(disk("d-bp1abc", "/data").serial(), "bp1abc");
        let c = command(&[disk("d-bp1abc", "/data"), disk("d-bp1xyz", "/var/cache x")]);
        assert!(c.contains("mount_disk d-bp1abc bp1abc /data || exit 0"), "{c}");
        assert!(c.contains("mount_disk d-bp1xyz bp1xyz '/var/cache x'"), "{c}");
    }

    #[test]
    fn outcomes_and_problems_are_read_per_disk() {
        let disks = [disk("d-1", "/a"), disk("d-2", "/b")];
        let out = "d-1 formatted\nd-1 mounted\nd-1 ready\nd-2 mounted\nd-2 ready\n";
        assert_eq!(
            parse(&disks, out).unwrap(),
            [
                DiskOutcome { formatted: true, mounted: true },
                DiskOutcome { formatted: false, mounted: true }
            ]
        );
        let out = "d-1 ready\nd-2 problem /dev/vdc holds no filesystem but something else (left alone): PTTYPE=gpt\n";
        let p = parse(&disks, out).unwrap_err();
        assert_eq!(p.disk_id, "d-2");
        assert!(p.to_string().contains("(/b): /dev/vdc holds no filesystem"), "{p}");
        assert!(parse(&disks, "d-1 ready\n").unwrap_err().reason.contains("without a result"));
    }
}
