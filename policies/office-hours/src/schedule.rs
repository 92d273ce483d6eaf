//! Office-hour windows and the warm pool they ask for.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::clock::{Day, Local, TimeOfDay};

/// Settings (`[policy.settings]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Minutes east of UTC of the windows' clock (480 = UTC+8). Default 0.
    #[serde(default)]
    pub timezone_offset_minutes: i32,
    /// Open a window's warm pool this many minutes early, so nodes are online when people
    /// arrive. Default 0.
    #[serde(default)]
    pub warm_up_minutes: u32,
    /// Seconds an offering is skipped after a capacity error (default 300).
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// The office hours.
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// One recurring window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Window {
    /// Days the window opens on (default: every day).
    #[serde(default = "every_day")]
    pub days: Vec<Day>,
    /// Local opening time, `HH:MM`.
    pub start: TimeOfDay,
    /// Local closing time, `HH:MM`; earlier than `start` means the window closes the next day.
    pub end: TimeOfDay,
    /// Nodes to keep per template name while the window is open.
    pub warm_nodes: BTreeMap<String, u32>,
}

fn every_day() -> Vec<Day> {
    Day::ALL.to_vec()
}
fn default_cooldown_secs() -> u64 {
    300
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone_offset_minutes: 0,
            warm_up_minutes: 0,
            cooldown_secs: 300,
            windows: Vec::new(),
        }
    }
}

impl Settings {
    /// Parse and check the settings JSON.
    pub fn parse(json: &str) -> Result<Self, String> {
        let s: Settings = ecs_policy_sdk::settings::parse(json)?;
        if !(-12 * 60..=14 * 60).contains(&s.timezone_offset_minutes) {
            return Err(format!(
                "setting `timezone-offset-minutes`: {} is outside -720..=840",
                s.timezone_offset_minutes
            ));
        }
        if s.warm_up_minutes > 24 * 60 {
            return Err("setting `warm-up-minutes`: at most 1440".into());
        }
        for (i, w) in s.windows.iter().enumerate() {
            if w.start == w.end {
                return Err(format!(
                    "setting `windows[{i}]`: start and end are both {:?}",
                    w.start
                ));
            }
            if w.days.is_empty() {
                return Err(format!(
                    "setting `windows[{i}].days`: empty (leave it out for every day)"
                ));
            }
        }
        Ok(s)
    }

    /// The warm pool per template at `now_ms`: for each template the largest `warm-nodes` of
    /// the windows open then (or opening within `warm-up-minutes`).
    pub fn warm_nodes(&self, now_ms: u64) -> BTreeMap<String, u32> {
        let now = Local::at(now_ms, self.timezone_offset_minutes);
        let soon = Local::at(
            now_ms.saturating_add(u64::from(self.warm_up_minutes) * 60_000),
            self.timezone_offset_minutes,
        );
        let mut warm = BTreeMap::new();
        for w in self
            .windows
            .iter()
            .filter(|w| w.is_open(now) || w.is_open(soon))
        {
            for (template, &n) in &w.warm_nodes {
                let slot = warm.entry(template.clone()).or_insert(0);
                *slot = n.max(*slot);
            }
        }
        warm
    }
}

impl Window {
    /// Whether the window is open at this local moment.
    pub fn is_open(&self, at: Local) -> bool {
        let (start, end) = (self.start.0, self.end.0);
        if start < end {
            self.days.contains(&at.day) && (start..end).contains(&at.minute)
        } else {
            // Overnight: opened today, or opened yesterday and not yet closed.
            (self.days.contains(&at.day) && at.minute >= start)
                || (self.days.contains(&at.day.previous()) && at.minute < end)
        }
    }
}
