//! A plugin version's identity: the sha256 of its bytes, computed once when the bytes are read
//! and carried with them, so a load never hashes the same bytes twice.

use sha2::{Digest, Sha256};

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A plugin file's bytes with their digest.
#[derive(Debug, Clone)]
pub struct PluginBytes {
    bytes: Vec<u8>,
    digest: String,
}

impl PluginBytes {
    /// Hashes `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256_hex(&bytes);
        Self { bytes, digest }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lowercase hex sha256 of the bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
