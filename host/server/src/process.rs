//! The standard `process_*` metrics (CPU, memory, open files, start time) read from /proc at
//! each scrape, under the names Prometheus' own clients use, so the usual dashboards work.
//!
//! Read by hand rather than with the procfs crate: that crate turns on another rustix feature,
//! which changes the feature set wasmtime is built with and so rebuilds it (minutes) for every
//! build of the workspace. Four small files are little to parse.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads this process's /proc entries when scraped. Outside Linux it exports nothing.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// User plus system CPU time, clock ticks.
    cpu_ticks: u64,
    /// Virtual memory size, bytes.
    vsize: u64,
    /// Resident set, pages.
    rss_pages: u64,
    /// Start time after boot, clock ticks.
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (proc(5)). The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself: fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state): field n is `fields[n - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { cpu_ticks: field(14)? + field(15)?, vsize: field(23)?, rss_pages: field(24)?, start_ticks: field(22)? })
}

/// The boot time (`btime`) from `/proc/stat`, seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// The soft limit of open files from `/proc/self/limits` (`None` when unlimited).
fn parse_max_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a system setting.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A /proc that cannot be read (another OS, a locked-down container) leaves these out:
        // a scrape must not fail because of them.
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let (Some(ticks), Some(page)) = (sysconf(libc::_SC_CLK_TCK), sysconf(libc::_SC_PAGESIZE)) else { return Ok(()) };
        if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
            let cpu = ConstCounter::new(stat.cpu_ticks as f64 / ticks as f64);
            cpu.encode(encoder.encode_descriptor("process_cpu_seconds", "User and system CPU time spent", None, cpu.metric_type())?)?;
            gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory size", (stat.rss_pages * page) as f64)?;
            gauge(&mut encoder, "process_virtual_memory_bytes", "Virtual memory size", stat.vsize as f64)?;
            if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_boot_time) {
                let start = boot as f64 + stat.start_ticks as f64 / ticks as f64;
                gauge(&mut encoder, "process_start_time_seconds", "Start time of the process since the Unix epoch", start)?;
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(&mut encoder, "process_open_fds", "Open file descriptors", fds.count() as f64)?;
        }
        if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_files) {
            gauge(&mut encoder, "process_max_fds", "Limit of open file descriptors", max as f64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as a process can name itself.
        let line = "4242 (we (ird) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 50 0 0 20 0 9 0 \
                    12345 1052672000 25000 18446744073709551615 1 1 0 0 0 0 0 4096 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(Stat { cpu_ticks: 200, vsize: 1_052_672_000, rss_pages: 25_000, start_ticks: 12_345 }));
        assert_eq!(parse_stat("4242 (cut) S 1"), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1764500000\nprocesses 9\n"), Some(1_764_500_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_files(limits), Some(1024));
        assert_eq!(parse_max_files("Max open files            unlimited            unlimited            files\n"), None);
    }

    #[test]
    fn exports_this_process_under_the_standard_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing:\n{text}");
        }
        let value = |name: &str| -> f64 {
            text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap()
        };
        assert!(value("process_resident_memory_bytes ") > 1e6, "a test process holds more than a MB");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = value("process_start_time_seconds ");
        assert!(start <= now + 1.0 && start > now - 3600.0, "started within the hour: {start} vs {now}");
    }
}
