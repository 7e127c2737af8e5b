use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// SHA-256 of `bytes`, as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A commit id: the SHA-256 of the commit's canonical content, 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommitId(String);

impl CommitId {
    /// Parses a full 64-hex commit id.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitId(s.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidRef {
                expr: s.to_string(),
                reason: "a commit id is 64 hex characters".into(),
            })
        }
    }

    /// Wraps a hash computed by [`sha256_hex`].
    pub fn from_hash(hex: String) -> Self {
        CommitId(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, for display.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_stable() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn commit_id_parse() {
        let h = sha256_hex(b"x");
        assert_eq!(CommitId::parse(&h.to_uppercase()).unwrap().as_str(), h);
        assert!(CommitId::parse("abc").is_err());
        assert!(CommitId::parse(&"g".repeat(64)).is_err());
    }
}
