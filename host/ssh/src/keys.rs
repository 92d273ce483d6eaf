//! Client keys (load from a file, optionally encrypted) and small public-key helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::error::SshError;

/// Where the passphrase of an encrypted client key comes from. Never from the config file
/// itself, so the config can be shared without leaking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file, without trailing line breaks.
    File(PathBuf),
}

impl PassphraseSource {
    fn read(&self) -> Result<String, String> {
        match self {
            PassphraseSource::Env(var) => std::env::var(var)
                .map_err(|_| format!("passphrase environment variable {var} is not set")),
            PassphraseSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read passphrase file {}: {e}", path.display())),
        }
    }

    fn describe(&self) -> String {
        match self {
            PassphraseSource::Env(var) => format!("environment variable {var}"),
            PassphraseSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// The private key the host logs in with (the launch key pair's private half).
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<PrivateKey>,
    path: PathBuf,
    fingerprint: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Loads an OpenSSH, PKCS#8 or PKCS#1 private key (ed25519, ECDSA or RSA), decrypting it
    /// with the passphrase from `passphrase` when it is encrypted.
    pub fn load(path: &Path, passphrase: Option<&PassphraseSource>) -> Result<Self, SshError> {
        let err = |reason: String| SshError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let pass = match passphrase {
            Some(source) => Some(source.read().map_err(err)?),
            None => None,
        };
        let key = russh::keys::decode_secret_key(&text, pass.as_deref()).map_err(|e| {
            err(match (e, passphrase) {
                (russh::keys::Error::KeyIsEncrypted, None) => {
                    "the key is encrypted but no passphrase is configured \
                     (set a passphrase environment variable or file)"
                        .to_string()
                }
                (e, Some(source)) if text.contains("ENCRYPTED") || is_encrypted_openssh(&text) => {
                    format!(
                        "cannot decrypt with the passphrase from {}: {e}",
                        source.describe()
                    )
                }
                (e, _) => format!("not a supported private key (ed25519, ECDSA, RSA): {e}"),
            })
        })?;
        Ok(Self::from_private_key(key, path))
    }

    /// Wraps an in-memory key; `label` names it in errors (usually its path).
    pub fn from_private_key(key: PrivateKey, label: impl Into<PathBuf>) -> Self {
        let fingerprint = fingerprint(key.public_key());
        Self {
            key: Arc::new(key),
            path: label.into(),
            fingerprint,
        }
    }

    pub(crate) fn private_key(&self) -> Arc<PrivateKey> {
        self.key.clone()
    }

    /// Where the key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `SHA256:... (ssh-ed25519)`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The public half in OpenSSH one-line format.
    pub fn public_key_line(&self) -> String {
        public_key_line(&self.key)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
}

fn is_encrypted_openssh(text: &str) -> bool {
    PrivateKey::from_openssh(text).is_ok_and(|k| k.is_encrypted())
}

/// A fresh ed25519 key pair (for emulated instances' host keys and for tests).
pub fn generate_ed25519(comment: &str) -> PrivateKey {
    let seed: [u8; 32] = rand::random();
    let keypair = Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::try_from(KeypairData::Ed25519(keypair))
        .expect("an ed25519 key pair is always a valid private key");
    key.set_comment(comment);
    key
}

/// The key as an OpenSSH private key PEM (unencrypted).
pub fn private_key_pem(key: &PrivateKey) -> String {
    key.to_openssh(LineEnding::LF)
        .expect("encoding an in-memory key cannot fail")
        .to_string()
}

/// The public half in OpenSSH one-line format (`ssh-ed25519 AAAA... comment`).
pub fn public_key_line(key: &PrivateKey) -> String {
    key.public_key()
        .to_openssh()
        .expect("encoding an in-memory key cannot fail")
}

/// Parses a private key PEM (OpenSSH, PKCS#8 or PKCS#1; unencrypted), such as an emulated
/// instance's `host_key_pem`.
pub fn parse_private_key_pem(pem: &str) -> Result<PrivateKey, String> {
    russh::keys::decode_secret_key(pem, None).map_err(|e| format!("not a usable private key: {e}"))
}

/// The OpenSSH one-line public key of a private key PEM: what an instance prints on its
/// console for its host key (feed it to [`crate::console_host_keys_block`]).
pub fn public_key_line_of_pem(pem: &str) -> Result<String, String> {
    parse_private_key_pem(pem).map(|k| public_key_line(&k))
}

/// Parses an OpenSSH one-line public key (`type base64 [comment]`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("not an OpenSSH public key ({e}): {:?}", shorten(line)))
}

/// `SHA256:<base64> (<algorithm>)`, the form OpenSSH prints.
pub fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} ({})",
        key.fingerprint(HashAlg::Sha256),
        key.algorithm().as_str()
    )
}

/// The fingerprint ECS gives a key pair (`KeyPairFingerPrint`, imported or created): the MD5
/// of the public key blob, RFC 4716 section 4, in lower-case hex without colons.
pub fn ecs_fingerprint(key: &PublicKey) -> String {
    let blob = key.to_bytes().unwrap_or_default();
    format!("{:x}", md5::compute(blob))
}

/// Whether a fingerprint as ECS or OpenSSH prints it names `key`: MD5 in hex with or without
/// colons and an optional `MD5:` prefix, or `SHA256:<base64>`. `None`: neither form.
pub fn fingerprint_names(fingerprint: &str, key: &PublicKey) -> Option<bool> {
    let f = fingerprint.trim();
    if let Some(sha) = f.strip_prefix("SHA256:") {
        let ours = key.fingerprint(HashAlg::Sha256).to_string();
        return Some(ours.trim_start_matches("SHA256:").trim_end_matches('=') == sha.trim_end_matches('='));
    }
    let hex: String = f
        .strip_prefix("MD5:")
        .unwrap_or(f)
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex == ecs_fingerprint(key))
}

/// Whether two public keys are the same key, ignoring comments.
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(60)])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and the fingerprints `ssh-keygen -l -E md5` / `-E sha256` print for them.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJhB1/oLUwU338MQw6zcCJ56eu/LsJR0uxpnOwXnYFpF test";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCLcFhMHSDlinzT0AJ6AG/sqSaAqokqjzLU79Sw1Ky0jTZkLcB290DuxCJbZhmnDKjl9Ipo1bjPHLOMAswKrZQQg8K9b8SUYHGxXZkl26DzKwl/bzcPKjSkY3lb2gJ0offuRoX9Yvw02CnR8dLEG32G8lO6eogZ3da1VONkOmJk84exaB3zW4j3cSiJKTJMMGp46l39skqYVRR30GJitPHxjMtFKTPlXC7pNIpNhhruFWJsnnORH3kXKv/xr4ExgRfxkxOayRzHPeiaiWKcwlvlOI0qN6osQd/FnyjNpBNK9iWXNYl/RlYo7uyVEb98GL4xlbV/k/T519TXYSrnq2mp rsa";

    #[test]
    fn ecs_fingerprints_are_the_md5_of_the_key_blob() {
        let ed = parse_public_key(ED25519).unwrap();
        let rsa = parse_public_key(RSA).unwrap();
        assert_eq!(ecs_fingerprint(&ed), "334a2c68556b4cceca af2a19ff98ee6e".replace(' ', ""));
        assert_eq!(ecs_fingerprint(&rsa), "b641563fbff8463739b32b7986ffb295");
        // Every form a console or ssh-keygen shows, and only for the right key.
        for f in [
            "334a2c68556b4ccecaaf2a19ff98ee6e",
            "33:4a:2c:68:55:6b:4c:ce:ca:af:2a:19:ff:98:ee:6e",
            "MD5:33:4a:2c:68:55:6b:4c:ce:ca:af:2a:19:ff:98:ee:6e",
            "334A2C68556B4CCECAAF2A19FF98EE6E",
            "SHA256:HVg9Zx0XrDqT95ownocUJVGc6t1RBgFGzgVXT96Fk7I",
        ] {
            assert_eq!(fingerprint_names(f, &ed), Some(true), "{f}");
            assert_eq!(fingerprint_names(f, &rsa), Some(false), "{f}");
        }
        assert_eq!(fingerprint_names("b6:41:56:3f:bf:f8:46:37:39:b3:2b:79:86:ff:b2:95", &rsa), Some(true));
        assert_eq!(fingerprint_names("", &ed), None);
        assert_eq!(fingerprint_names("fdaf8ff7a756ef843814fc****", &ed), None);
    }

    #[test]
    fn generated_key_round_trips_through_pem_and_public_line() {
        let key = generate_ed25519("host");
        let pem = private_key_pem(&key);
        let parsed = russh::keys::decode_secret_key(&pem, None).unwrap();
        let line = public_key_line(&parsed);
        assert!(line.starts_with("ssh-ed25519 "), "{line}");
        assert!(same_key(
            &parse_public_key(&line).unwrap(),
            key.public_key()
        ));
        assert!(fingerprint(key.public_key()).starts_with("SHA256:"));
    }

    #[test]
    fn missing_key_file_names_the_path() {
        let err = ClientKey::load(Path::new("/nonexistent/id_ed25519"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/id_ed25519") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn missing_passphrase_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, private_key_pem(&generate_ed25519("c"))).unwrap();
        let source = PassphraseSource::Env("ECSP_TEST_NO_SUCH_VAR".into());
        let err = ClientKey::load(&path, Some(&source))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ECSP_TEST_NO_SUCH_VAR is not set"), "{err}");
    }
}
