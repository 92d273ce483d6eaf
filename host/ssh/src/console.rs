//! Host keys printed on an instance's serial console, the source of truth for `strict`.
//!
//! Format (cloud-init's `write-ssh-key-fingerprints` block), in the text that
//! `GetInstanceConsoleOutput` returns once base64-decoded:
//!
//! ```text
//! -----BEGIN SSH HOST KEY KEYS-----
//! ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... root@host
//! ecdsa-sha2-nistp256 AAAAE2VjZHNh... root@host
//! -----END SSH HOST KEY KEYS-----
//! ```
//!
//! Consoles add noise (kernel timestamps, `cloud-init[123]:` or `ec2:` prefixes, CRLF), so each
//! marker and key is found anywhere in its line. A console may show the block several times
//! (reboots): the last complete block wins. An unterminated block is ignored (still being
//! written).

use std::future::Future;
use std::pin::Pin;

use russh::keys::PublicKey;

/// First line of the block.
pub const HOST_KEYS_BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
/// Last line of the block.
pub const HOST_KEYS_END: &str = "-----END SSH HOST KEY KEYS-----";

/// Key-type names a key line may start with.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519 ",
    "ecdsa-sha2-",
    "ssh-rsa ",
    "sk-ssh-ed25519@",
    "sk-ecdsa-",
];

/// The block an instance prints on its console, listing its host public keys (OpenSSH
/// one-line format). The ECS emulator prints exactly this; [`parse_console_host_keys`] reads it.
pub fn console_host_keys_block(public_keys: &[String]) -> String {
    let mut out = String::new();
    out.push_str(HOST_KEYS_BEGIN);
    out.push('\n');
    for key in public_keys {
        out.push_str(key.trim());
        out.push('\n');
    }
    out.push_str(HOST_KEYS_END);
    out.push('\n');
    out
}

/// The host keys of the last complete block in `console`; `Ok(None)` when no complete block
/// is there yet (the instance has not finished booting). A line inside the block that looks
/// like a key but does not parse is an error, naming the line.
pub fn parse_console_host_keys(console: &str) -> Result<Option<Vec<PublicKey>>, String> {
    let mut last: Option<Vec<PublicKey>> = None;
    let mut current: Option<Vec<PublicKey>> = None;
    for (n, line) in console.lines().enumerate() {
        if line.contains(HOST_KEYS_BEGIN) {
            current = Some(Vec::new());
        } else if line.contains(HOST_KEYS_END) {
            if let Some(keys) = current.take() {
                last = Some(keys);
            }
        } else if let Some(keys) = current.as_mut() {
            let Some(start) = KEY_TYPES.iter().filter_map(|t| line.find(t)).min() else {
                continue;
            };
            let key = PublicKey::from_openssh(line[start..].trim())
                .map_err(|e| format!("console output line {}: bad host key: {e}", n + 1))?;
            keys.push(key);
        }
    }
    Ok(last)
}

/// Where `strict` reads an instance's console output from (the ECS client's
/// `GetInstanceConsoleOutput`, base64-decoded). Closures `Fn(String) -> impl Future` work too.
pub trait ConsoleOutputSource: Send + Sync {
    /// The console text of `instance_id` as it is now.
    fn console_output<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>>;
}

impl<F, Fut> ConsoleOutputSource for F
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: Future<Output = anyhow::Result<String>> + Send + 'static,
{
    fn console_output<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>> {
        Box::pin(self(instance_id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate_ed25519, public_key_line, same_key};

    #[test]
    fn block_round_trips_through_a_noisy_console() {
        let a = generate_ed25519("root@a");
        let b = generate_ed25519("root@b");
        let block = console_host_keys_block(&[public_key_line(&a), public_key_line(&b)]);
        let noisy: String = block
            .lines()
            .map(|l| format!("[   12.3456] cloud-init[812]: {l}\r\n"))
            .collect();
        let console = format!("Booting...\n{noisy}login: ");
        let keys = parse_console_host_keys(&console).unwrap().unwrap();
        assert_eq!(keys.len(), 2);
        assert!(same_key(&keys[0], a.public_key()));
        assert!(same_key(&keys[1], b.public_key()));
    }

    #[test]
    fn unfinished_block_is_not_yet_there_and_last_block_wins() {
        let a = generate_ed25519("a");
        let b = generate_ed25519("b");
        let first = console_host_keys_block(&[public_key_line(&a)]);
        assert!(parse_console_host_keys("booting").unwrap().is_none());
        let partial = format!("{HOST_KEYS_BEGIN}\n{}\n", public_key_line(&a));
        assert!(parse_console_host_keys(&partial).unwrap().is_none());
        let rebooted = format!(
            "{first}reboot\n{}",
            console_host_keys_block(&[public_key_line(&b)])
        );
        let keys = parse_console_host_keys(&rebooted).unwrap().unwrap();
        assert!(keys.len() == 1 && same_key(&keys[0], b.public_key()));
    }

    #[test]
    fn corrupt_key_line_is_an_error_naming_the_line() {
        let console =
            format!("x\n{HOST_KEYS_BEGIN}\nssh-ed25519 AAAAnotbase64!!\n{HOST_KEYS_END}\n");
        let err = parse_console_host_keys(&console).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }
}
