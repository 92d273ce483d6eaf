//! Local wall-clock arithmetic from `now-ms`, without a time zone database: a fixed UTC offset
//! is all a policy needs, and it keeps the policy a pure function of its input.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// Every day, Monday first.
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    /// The day before.
    pub fn previous(self) -> Day {
        Day::ALL[(self as usize + 6) % 7]
    }
}

/// Minutes since local midnight, parsed from `"HH:MM"` (`"24:00"` is the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    /// Parse `HH:MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("expected a time as \"HH:MM\" (00:00 to 24:00), got {text:?}");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if m > 59 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TimeOfDay::parse(&text).map_err(D::Error::custom)
    }
}

/// A local moment: day of the week and minute of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Local day of the week.
    pub day: Day,
    /// Minutes since local midnight (0..1440).
    pub minute: u32,
}

impl Local {
    /// `now_ms` (Unix epoch, UTC) shifted by `offset_minutes` east of UTC.
    pub fn at(now_ms: u64, offset_minutes: i32) -> Local {
        let minutes = (now_ms / 60_000) as i64 + i64::from(offset_minutes);
        let days = minutes.div_euclid(24 * 60);
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let day = Day::ALL[(days + 3).rem_euclid(7) as usize];
        Local {
            day,
            minute: minutes.rem_euclid(24 * 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23 00:00 UTC, a Monday.
    const MONDAY: u64 = 1_795_392_000_000;

    #[test]
    fn weekdays_and_offsets() {
        assert_eq!(
            Local::at(0, 0),
            Local {
                day: Day::Thu,
                minute: 0
            }
        );
        assert_eq!(
            Local::at(MONDAY + 3_600_000, 480),
            Local {
                day: Day::Mon,
                minute: 9 * 60
            }
        );
        assert_eq!(
            Local::at(MONDAY + 60_000, -300),
            Local {
                day: Day::Sun,
                minute: 19 * 60 + 1
            }
        );
        assert_eq!(Day::Mon.previous(), Day::Sun);
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(TimeOfDay::parse("08:30"), Ok(TimeOfDay(510)));
        assert_eq!(TimeOfDay::parse("24:00"), Ok(TimeOfDay(1440)));
        for bad in ["8:30", "24:01", "12:60", "noon", "12-00"] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }
}
