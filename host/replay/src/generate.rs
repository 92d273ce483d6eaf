//! Seeded workload generators: steady, diurnal, bursty and a release day.
//!
//! Each gives exactly the asked number of builds, so shapes compare at equal volume. Arrival
//! times are drawn from the shape's intensity over the period (rejection sampling); durations
//! are log-normal around the asked median, as CI build times are (a long right tail). The same
//! options and seed give the same trace on every machine: the generator is ChaCha8.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::trace::{Build, Trace};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The shape of the arrivals over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The same rate all the time.
    Steady,
    /// Busy on weekday working hours (08:00–20:00 UTC, peak at 14:00), quiet at night and on
    /// weekends: a tenth of the peak rate.
    Diurnal,
    /// Diurnal, with half the builds in bursts of 20–60 within two minutes (a merge train, a
    /// nightly fan-out).
    Bursty,
    /// Diurnal, with one day in the middle of the period at five times the volume.
    ReleaseDay,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "steady" => Ok(Shape::Steady),
            "diurnal" => Ok(Shape::Diurnal),
            "bursty" => Ok(Shape::Bursty),
            "release-day" => Ok(Shape::ReleaseDay),
            other => Err(format!("unknown shape {other:?}: expected steady, diurnal, bursty or release-day")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Arrival shape.
    pub shape: Shape,
    /// First arrival no earlier than this, ms since the Unix epoch.
    pub start_ms: u64,
    /// Length of the period, days.
    pub days: u32,
    /// Number of builds.
    pub builds: u32,
    /// Label expressions with relative weights; an empty list gives unlabelled builds.
    pub labels: Vec<(String, u32)>,
    /// Median build duration, ms.
    pub median_duration_ms: u64,
    /// Seed of the generator.
    pub seed: u64,
}

/// Generates a trace.
pub fn generate(o: &Options) -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let span = u64::from(o.days.max(1)) * DAY_MS;
    let (start, end) = (o.start_ms, o.start_ms + span);
    let release_day = start + (u64::from(o.days.max(1)) / 2) * DAY_MS;
    let intensity = |t: u64| -> f64 {
        let base = match o.shape {
            Shape::Steady => 1.0,
            _ => diurnal(t),
        };
        if o.shape == Shape::ReleaseDay && (release_day..release_day + DAY_MS).contains(&t) { base * 5.0 } else { base }
    };
    let peak = if o.shape == Shape::ReleaseDay { 5.0 } else { 1.0 };
    let draw_time = |rng: &mut ChaCha8Rng| loop {
        let t = rng.random_range(start..end);
        if rng.random::<f64>() * peak <= intensity(t) {
            break t;
        }
    };
    let mut times = Vec::with_capacity(o.builds as usize);
    if o.shape == Shape::Bursty {
        let in_bursts = o.builds / 2;
        while (times.len() as u32) < in_bursts {
            let centre = draw_time(&mut rng);
            let size = rng.random_range(20..=60).min(in_bursts - times.len() as u32);
            for _ in 0..size {
                times.push((centre + rng.random_range(0..120_000)).min(end - 1));
            }
        }
    }
    while (times.len() as u32) < o.builds {
        times.push(draw_time(&mut rng));
    }
    times.sort_unstable();
    let total_weight: u32 = o.labels.iter().map(|(_, w)| *w).sum();
    let builds = times
        .into_iter()
        .map(|at_ms| {
            let label = (total_weight > 0).then(|| {
                let mut pick = rng.random_range(0..total_weight);
                o.labels.iter().find(|(_, w)| if pick < *w { true } else { pick -= w; false }).map(|(l, _)| l.clone())
            });
            Build { at_ms, label: label.flatten(), duration_ms: log_normal(&mut rng, o.median_duration_ms) }
        })
        .collect();
    Trace { start_ms: start, end_ms: end, builds, events: Vec::new() }
}

/// Relative arrival rate at `t` for a weekday-working-hours workload, in 0.1..=1.
fn diurnal(t: u64) -> f64 {
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
    let weekday = (t / DAY_MS + 3) % 7;
    let hour = (t % DAY_MS) as f64 / HOUR_MS as f64;
    if weekday >= 5 || !(8.0..20.0).contains(&hour) {
        return 0.1;
    }
    // A bump from 08:00 to 20:00 peaking at 14:00.
    0.1 + 0.9 * (PI * (hour - 8.0) / 12.0).sin()
}

/// A log-normal duration with this median and a spread (sigma 0.6) typical of CI builds,
/// kept within 10 s..6 h.
fn log_normal(rng: &mut ChaCha8Rng, median_ms: u64) -> u64 {
    // Box–Muller: one standard normal from two uniforms.
    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos();
    let d = (median_ms.max(1) as f64) * (0.6 * z).exp();
    (d as u64).clamp(10_000, 6 * HOUR_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(shape: Shape) -> Options {
        Options {
            shape,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z, a Thursday
            days: 14,
            builds: 5000,
            labels: vec![("linux".into(), 3), ("windows".into(), 1)],
            median_duration_ms: 300_000,
            seed: 7,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
        let a = generate(&options(Shape::Bursty));
        assert_eq!(a, generate(&options(Shape::Bursty)));
        assert_ne!(a, generate(&Options { seed: 8, ..options(Shape::Bursty) }));
    }

    #[test]
    fn every_shape_gives_exactly_the_asked_builds_inside_the_period_sorted() {
        for shape in [Shape::Steady, Shape::Diurnal, Shape::Bursty, Shape::ReleaseDay] {
            let t = generate(&options(shape));
            assert_eq!(t.builds.len(), 5000, "{shape:?}");
            assert!(t.builds.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "{shape:?}");
            assert!(t.builds.iter().all(|b| (t.start_ms..t.end_ms).contains(&b.at_ms)), "{shape:?}");
            assert!(t.builds.iter().all(|b| (10_000..=6 * HOUR_MS).contains(&b.duration_ms)));
        }
    }

    #[test]
    fn labels_follow_their_weights_and_durations_their_median() {
        let t = generate(&options(Shape::Steady));
        let linux = t.builds.iter().filter(|b| b.label.as_deref() == Some("linux")).count();
        assert!((3500..4000).contains(&linux), "3:1 of 5000 gives about 3750, got {linux}");
        let mut d: Vec<u64> = t.builds.iter().map(|b| b.duration_ms).collect();
        d.sort_unstable();
        let median = d[d.len() / 2];
        assert!((270_000..330_000).contains(&median), "median {median}");
    }

    #[test]
    fn shapes_put_their_builds_where_they_say() {
        let in_working_hours = |t: &Trace| {
            t.builds.iter().filter(|b| diurnal(b.at_ms) > 0.1).count() as f64 / t.builds.len() as f64
        };
        let steady = in_working_hours(&generate(&options(Shape::Steady)));
        let diurnal_share = in_working_hours(&generate(&options(Shape::Diurnal)));
        // Working hours are 12 h of 5 days in 7: 36% of the time.
        assert!((0.30..0.42).contains(&steady), "steady {steady}");
        assert!(diurnal_share > 0.75, "diurnal {diurnal_share}");

        let o = options(Shape::ReleaseDay);
        let t = generate(&o);
        let day = o.start_ms + 7 * DAY_MS;
        let on_release_day = t.builds.iter().filter(|b| (day..day + DAY_MS).contains(&b.at_ms)).count();
        let day_before = t.builds.iter().filter(|b| (day - DAY_MS..day).contains(&b.at_ms)).count();
        assert!(on_release_day > 3 * day_before, "{on_release_day} vs {day_before} (both weekdays)");

        let t = generate(&options(Shape::Bursty));
        let busiest_two_minutes = t
            .builds
            .windows(20)
            .filter(|w| w[19].at_ms - w[0].at_ms <= 120_000)
            .count();
        assert!(busiest_two_minutes > 50, "bursts of 20+ within two minutes: {busiest_two_minutes}");
    }
}
