//! Replay protection: the signature nonces seen recently.

use std::collections::HashMap;

/// Nonces seen recently; entries expire after twice the timestamp tolerance (a replay older
/// than that fails the timestamp check anyway).
#[derive(Debug, Default)]
pub(crate) struct NonceCache(HashMap<String, i64>);

impl NonceCache {
    /// Records a nonce; false if it was already used.
    pub(crate) fn insert(&mut self, key: String, now: i64, keep_secs: i64) -> bool {
        if self.0.len() > 100_000 {
            self.0.retain(|_, exp| *exp > now);
        }
        match self.0.get(&key) {
            Some(exp) if *exp > now => false,
            _ => {
                self.0.insert(key, now + keep_secs);
                true
            }
        }
    }
}
