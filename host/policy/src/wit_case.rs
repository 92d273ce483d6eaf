//! WIT enum cases as text: `spot-first` in a fixture is the generated `SpotMode::SpotFirst`.
//!
//! The generated bindings derive serde with their Rust names. [`WitCase`] reads the name as
//! the WIT spells it and hands the Rust name to that derive, so the fixture format follows
//! the contract with no copy of its cases to keep in step.

use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error as _, IntoDeserializer};

/// A WIT enum case, written in kebab-case, read into the generated enum `T`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WitCase<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for WitCase<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wit = String::deserialize(d)?;
        if wit.is_empty() || !wit.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(D::Error::custom(format!(
                "`{wit}` is not a WIT enum case: write it as in wit/policy.wit, in kebab-case (e.g. `spot-first`)"
            )));
        }
        let rust: serde::de::value::StringDeserializer<serde::de::value::Error> = camel(&wit).into_deserializer();
        T::deserialize(rust).map(WitCase).map_err(|e| D::Error::custom(quoted_names_to_kebab(&e.to_string())))
    }
}

/// `spot-first` -> `SpotFirst`.
fn camel(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// `SpotFirst` -> `spot-first`.
fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites serde's "unknown variant `Foo`, expected one of `OnDemand`, ..." in WIT spelling.
fn quoted_names_to_kebab(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { kebab(part) } else { part.to_owned() })
        .collect::<Vec<_>>()
        .join("`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeState, SpotMode};

    fn read<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str::<WitCase<T>>(text).map(|c| c.0).map_err(|e| e.to_string())
    }

    #[test]
    fn every_case_reads_as_the_wit_spells_it() {
        assert_eq!(read::<SpotMode>("\"spot-first\""), Ok(SpotMode::SpotFirst));
        assert_eq!(read::<SpotMode>("\"on-demand\""), Ok(SpotMode::OnDemand));
        assert_eq!(read::<NodeState>("\"disconnected\""), Ok(NodeState::Disconnected));
    }

    #[test]
    fn a_wrong_case_is_named_with_the_cases_the_contract_has() {
        let e = read::<SpotMode>("\"spot-last\"").unwrap_err();
        assert!(e.contains("`spot-last`") && e.contains("`on-demand`, `spot-first`, `spot-only`"), "{e}");
        let e = read::<SpotMode>("\"SpotFirst\"").unwrap_err();
        assert!(e.contains("kebab-case"), "Rust spelling is refused: {e}");
    }
}
