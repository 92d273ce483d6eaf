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
