//! Typed policy settings from the JSON the host passes to `configure`.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, Debug)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Settings {
//!     #[serde(default = "five_minutes")]
//!     cooldown_secs: u64,
//! }
//! fn five_minutes() -> u64 { 300 }
//!
//! let s: Settings = ecs_policy_sdk::settings::parse("{}").unwrap();
//! assert_eq!(s.cooldown_secs, 300);
//!
//! let err = ecs_policy_sdk::settings::parse::<Settings>(r#"{"cooldown-secs": "soon"}"#)
//!     .unwrap_err();
//! assert!(err.contains("cooldown-secs"), "{err}");
//! ```

use serde::de::DeserializeOwned;

/// Parse settings JSON into `T`. Empty text counts as `{}`.
///
/// The error names the offending setting by its path (`windows[0].start: ...`), so that the
/// host's `check` points the user at the right key. Put `#[serde(deny_unknown_fields)]` on
/// `T` to reject misspelt keys.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| describe(&e))?;
    de.end().map_err(|e| format!("settings: {e}"))?;
    Ok(value)
}

/// Accept empty settings only: empty text or an empty JSON object. The default `configure`.
pub fn expect_none(json: &str) -> Result<(), String> {
    let map: serde_json::Map<String, serde_json::Value> = parse(json)?;
    match map.keys().next() {
        None => Ok(()),
        Some(key) => Err(format!(
            "unknown setting `{key}`: this policy takes no settings"
        )),
    }
}

/// `path: message`, or just the message when the error is at the top level.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." {
        format!("settings: {}", e.inner())
    } else {
        format!("setting `{path}`: {}", e.inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Window {
        #[allow(dead_code)] // only its parse error is tested
        start: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        windows: Vec<Window>,
    }

    #[test]
    fn nested_errors_name_the_path() {
        let err = parse::<Settings>(r#"{"windows": [{"start": 8}]}"#).unwrap_err();
        assert!(err.starts_with("setting `windows[0].start`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse::<Settings>(r#"{"widnows": []}"#).unwrap_err();
        assert!(err.contains("widnows"), "{err}");
    }

    #[test]
    fn empty_means_defaults() {
        assert!(parse::<Settings>("  ").unwrap().windows.is_empty());
        assert_eq!(expect_none(""), Ok(()));
        assert_eq!(expect_none("{}"), Ok(()));
        assert!(expect_none(r#"{"x": 1}"#).unwrap_err().contains("`x`"));
        assert!(expect_none("[1]").is_err());
    }
}
