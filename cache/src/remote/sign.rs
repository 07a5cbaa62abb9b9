//! ed25519 keys and the signatures on action records pushed to a remote.
//!
//! Key files are one line of text, the Nix way: `NAME:BASE64`.
//!
//! * A secret key file holds the name and 64 bytes, the 32-byte ed25519
//!   seed followed by the 32-byte public key (`v6build key generate`
//!   writes it with mode 0600).
//! * A public key holds the name and the 32-byte public key; this is what
//!   `trusted-keys` lists.
//!
//! A record's signature covers [`SIGNATURE_DOMAIN`] followed by the JSON of
//! `{"key":…,"record":…}`, the action record's own payload without the
//! signature: so it binds the action key to its outputs, and a record
//! moved to another key's name no longer verifies.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Bytes signed before the record's JSON. Bump the number when what a
/// signature means changes.
pub const SIGNATURE_DOMAIN: &[u8] = b"v6build-action-record-signature/1\n";

/// A key file or key text that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not `NAME:BASE64`, a bad name, or the wrong length.
    #[error(
        "not a v6build {what} key ({reason}); expected NAME:BASE64 as `v6build key generate` writes"
    )]
    Malformed {
        /// `secret` or `public`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// No randomness for a new key.
    #[error("cannot get randomness for a new key: {0}")]
    Random(String),
}

fn malformed(what: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        what,
        reason: reason.into(),
    }
}

/// Whether `name` is a usable key name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn split<'a>(what: &'static str, text: &'a str) -> Result<(&'a str, Vec<u8>), KeyError> {
    let text = text.trim();
    let (name, b64) = text
        .split_once(':')
        .ok_or_else(|| malformed(what, "no `:` between name and key"))?;
    if !valid_key_name(name) {
        return Err(malformed(
            what,
            format!("bad key name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"),
        ));
    }
    let bytes = B64
        .decode(b64)
        .map_err(|e| malformed(what, format!("base64: {e}")))?;
    Ok((name, bytes))
}

/// A signing key (`--sign-key FILE`).
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never prints the secret.
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A fresh key named `name`, from the operating system's randomness.
    pub fn generate(name: &str) -> Result<SecretKey, KeyError> {
        if !valid_key_name(name) {
            return Err(malformed(
                "secret",
                format!("bad key name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"),
            ));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses a secret key file's text. The public half stored in it must
    /// match the seed, so a damaged file is refused rather than used.
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split("secret", text)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| malformed("secret", format!("{} bytes, not 64", b.len())))?;
        let key = SigningKey::from_keypair_bytes(&bytes)
            .map_err(|_| malformed("secret", "its public half does not match its seed"))?;
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    /// The key file's text (one line, no newline).
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `message` (after [`SIGNATURE_DOMAIN`]).
    pub fn sign(&self, message: &[u8]) -> RecordSignature {
        let sig = self.key.sign(&domain(message));
        RecordSignature {
            key: self.name.clone(),
            sig: B64.encode(sig.to_bytes()),
        }
    }
}

fn domain(message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + message.len());
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(message);
    m
}

/// A public key (`name:base64`), as `trusted-keys` lists them.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl PublicKey {
    /// Parses `name:base64` of a 32-byte ed25519 public key.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let (name, bytes) = split("public", text)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| malformed("public", format!("{} bytes, not 32", b.len())))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| malformed("public", "not a point on the curve"))?;
        Ok(PublicKey {
            name: name.to_string(),
            key,
        })
    }

    /// `name:base64`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.as_bytes()))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` is this key's signature of `message`. Strict
    /// verification: no malleable or small-order forms.
    pub fn verify(&self, message: &[u8], sig: &RecordSignature) -> bool {
        let Ok(bytes) = B64.decode(&sig.sig) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes) else {
            return false;
        };
        let sig = Signature::from_bytes(&bytes);
        self.key.verify_strict(&domain(message), &sig).is_ok()
            && self.key.verify(&domain(message), &sig).is_ok()
    }
}

/// The public keys whose records a reader accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// Parses keys separated by spaces, commas or newlines (the form of
    /// `V6BUILD_TRUSTED_KEYS` and of a trusted-keys file; `#` starts a
    /// comment that runs to the end of its line).
    pub fn parse(text: &str) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            for word in line.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
                keys.push(PublicKey::parse(word)?);
            }
        }
        Ok(TrustedKeys(keys))
    }

    /// Adds a key.
    pub fn push(&mut self, key: PublicKey) {
        if !self.0.contains(&key) {
            self.0.push(key);
        }
    }

    /// Whether no key is trusted (then no remote record is accepted).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// Checks `sig` over `message`: the key it names must be trusted and
    /// must have made it. Returns the key, or why not.
    pub fn check(&self, message: &[u8], sig: &RecordSignature) -> Result<&PublicKey, String> {
        let named: Vec<&PublicKey> = self.0.iter().filter(|k| k.name == sig.key).collect();
        if named.is_empty() {
            return Err(format!(
                "signed by {:?}, which is not a trusted key",
                sig.key
            ));
        }
        named
            .into_iter()
            .find(|k| k.verify(message, sig))
            .ok_or_else(|| format!("its signature by {:?} does not verify", sig.key))
    }
}

/// A signature as stored in a record: the signing key's name and the
/// base64 of the 64-byte ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSignature {
    /// The key's name.
    pub key: String,
    /// base64 of the signature.
    pub sig: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_sign() {
        let k = SecretKey::generate("ci-1").unwrap();
        let back = SecretKey::parse(&format!("{}\n", k.to_text())).unwrap();
        assert_eq!(back.public(), k.public());
        let p = PublicKey::parse(&k.public().to_text()).unwrap();
        let sig = k.sign(b"hello");
        assert!(p.verify(b"hello", &sig));
        assert!(!p.verify(b"hellp", &sig));
        let trusted = TrustedKeys::parse(&format!("# fleet\n{p}, \n")).unwrap();
        assert!(trusted.check(b"hello", &sig).is_ok());
        let other = SecretKey::generate("ci-1").unwrap();
        let e = trusted.check(b"hello", &other.sign(b"hello")).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        let stranger = SecretKey::generate("evil").unwrap();
        let e = trusted
            .check(b"hello", &stranger.sign(b"hello"))
            .unwrap_err();
        assert!(e.contains("not a trusted key"), "{e}");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(PublicKey::parse("nocolon").is_err());
        assert!(PublicKey::parse("bad name:AAAA").is_err());
        assert!(PublicKey::parse("a:AAAA").is_err());
        let k = SecretKey::generate("a").unwrap();
        // A secret whose public half was swapped for another key's.
        let mut bytes = k.key.to_keypair_bytes();
        bytes[40] ^= 1;
        assert!(SecretKey::parse(&format!("a:{}", B64.encode(bytes))).is_err());
        assert!(SecretKey::generate("").is_err());
    }
}
