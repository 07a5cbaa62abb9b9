//! Content digests.
//!
//! Everything v6build stores or compares is named by a BLAKE3 digest. The
//! printed form carries the algorithm (`blake3:…`), so a digest can never be
//! mistaken for a sha256 from a recipe or a `SHA256SUMS` file.

use std::fmt;
use std::str::FromStr;

/// A BLAKE3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// The prefix of a digest's printed form.
pub const DIGEST_PREFIX: &str = "blake3:";

impl Digest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Digest(*blake3::hash(data).as_bytes())
    }

    /// The lowercase hex form without the algorithm prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex characters, for compact displays.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(n.min(64));
        s
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DIGEST_PREFIX}{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DIGEST_PREFIX}{}", self.short(16))
    }
}

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestParseError {
    /// The `blake3:` prefix is missing.
    #[error("digest must start with `{DIGEST_PREFIX}`")]
    MissingPrefix,
    /// The hex part is not 64 lowercase hex characters.
    #[error("digest must have 64 lowercase hex characters after `{DIGEST_PREFIX}`")]
    BadHex,
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix(DIGEST_PREFIX)
            .ok_or(DigestParseError::MissingPrefix)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestParseError::BadHex);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestParseError::BadHex)?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let d = Digest::of(b"hello");
        let s = d.to_string();
        assert!(s.starts_with("blake3:"));
        assert_eq!(s.parse::<Digest>(), Ok(d));
    }

    #[test]
    fn parse_rejects() {
        assert_eq!(
            "abc".parse::<Digest>(),
            Err(DigestParseError::MissingPrefix)
        );
        assert_eq!(
            "blake3:abc".parse::<Digest>(),
            Err(DigestParseError::BadHex)
        );
        let upper = format!("blake3:{}", "A".repeat(64));
        assert_eq!(upper.parse::<Digest>(), Err(DigestParseError::BadHex));
    }
}
