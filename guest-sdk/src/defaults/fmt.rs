//! Short human text for reasons: `3 queued`, `1 idle executor`, `12m30s`.

/// `1 executor`, `2 executors`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Milliseconds as `45s`, `12m30s`, `2h5m`.
pub(crate) fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 && s % 60 == 0 => format!("{}m", s / 60),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        s => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_well() {
        assert_eq!(super::duration(45_999), "45s");
        assert_eq!(super::duration(600_000), "10m");
        assert_eq!(super::duration(750_000), "12m30s");
        assert_eq!(super::duration(7_500_000), "2h5m");
        assert_eq!(super::count(1, "executor"), "1 executor");
        assert_eq!(super::count(0, "executor"), "0 executors");
    }
}
