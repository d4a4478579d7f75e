//! Who vouches for a plugin version: ed25519 signatures over its digest.
//!
//! A publisher signs the version's sha256 (`batch-plugin publish --sign-key FILE`); a worker
//! given trusted public keys (`worker --trust-key FILE`) runs only versions that one of them
//! signed. What is signed is the digest alone, under a fixed context string, so a signature
//! vouches for exact bytes whatever name they are published under, and cannot be replayed for
//! other bytes or taken for a signature of anything else. Keys are the PEM files
//! `openssl genpkey -algorithm ed25519` writes (PKCS#8 private, SPKI public), or
//! `batch-plugin keygen`'s. A key is known by its id, the first 16 hex digits of the sha256 of
//! its public key's 32 bytes: a version's signature by key ID is stored as `ID.sig`.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::digest::sha256_hex;

/// Most bytes of a key file read (a PEM ed25519 key is about 120).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Most bytes of a stored signature (128 hex digits and a line end).
pub const MAX_SIGNATURE_BYTES: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {path} is not an ed25519 {what} key in PEM ({reason}); make one with \
         `batch-plugin keygen` or `openssl genpkey -algorithm ed25519`"
    )]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The text signed for version `digest`.
fn message(digest: &str) -> Vec<u8> {
    format!("batch-plugin signature v1: sha256:{digest}").into_bytes()
}

/// A public key's id: the first 16 hex digits of the sha256 of its bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

/// A publisher's private key.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// Reads a PKCS#8 PEM private key.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Invalid {
            path: path.to_owned(),
            what: "private",
            reason: e.to_string(),
        })?;
        Ok(Self { key })
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// The signature of version `digest`, as stored: 128 hex digits and a line end.
    pub fn sign(&self, digest: &str) -> String {
        format!(
            "{}\n",
            hex::encode(self.key.sign(&message(digest)).to_bytes())
        )
    }

    /// A new key pair from the system's random source: the private key written to `private`
    /// (mode 0600, never over an existing file) and the public key to `public`.
    pub fn generate(private: &Path, public: &Path) -> Result<String, KeyError> {
        use std::io::Read as _;
        let mut secret = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(|source| KeyError::Read {
                path: "/dev/urandom".into(),
                source,
            })?;
        let key = SigningKey::from_bytes(&secret);
        let invalid = |what, e: &dyn std::fmt::Display| KeyError::Invalid {
            path: private.to_owned(),
            what,
            reason: e.to_string(),
        };
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| invalid("private", &e))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| invalid("public", &e))?;
        for path in [private, public] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        write_new(private, private_pem.as_bytes(), 0o600)?;
        if let Err(e) = write_new(public, public_pem.as_bytes(), 0o644) {
            // Never half a pair.
            let _ = std::fs::remove_file(private);
            return Err(e);
        }
        Ok(key_id(&key.verifying_key()))
    }
}

/// The public keys a worker trusts (`--trust-key`): none means signatures are not required.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Reads SPKI PEM public keys.
    pub fn read(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let text = read_key_file(path)?;
            let key = VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Invalid {
                path: path.clone(),
                what: "public",
                reason: e.to_string(),
            })?;
            let id = key_id(&key);
            if !keys.iter().any(|(known, _)| *known == id) {
                keys.push((id, key));
            }
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys' ids, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Whether `signature` (as stored, from the store's `ID.sig`) is key `id`'s valid
    /// signature of version `digest`. `Err` says why not.
    pub fn verify(&self, id: &str, digest: &str, signature: &[u8]) -> Result<(), String> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or_else(|| format!("key {id} is not trusted"))?;
        let text = std::str::from_utf8(signature)
            .map_err(|_| format!("the signature by key {id} is not text"))?;
        let bytes: [u8; 64] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("the signature by key {id} is not 128 hex digits"))?;
        key.verify_strict(&message(digest), &Signature::from_bytes(&bytes))
            .map_err(|_| format!("the signature by key {id} does not verify"))
    }
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    use std::io::Read as _;
    let read = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    Ok(text)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_digest_and_key_only() {
        let dir = tempfile::tempdir().expect("dir");
        let (a_key, a_pub) = (dir.path().join("a.key"), dir.path().join("a.pub"));
        let (b_key, b_pub) = (dir.path().join("b.key"), dir.path().join("b.pub"));
        let a_id = Signer::generate(&a_key, &a_pub).expect("a");
        Signer::generate(&b_key, &b_pub).expect("b");
        assert!(
            Signer::generate(&a_key, &a_pub).is_err(),
            "never over a key"
        );
        let signer = Signer::read(&a_key).expect("private key");
        assert_eq!(signer.key_id(), a_id);
        let trusted = TrustedKeys::read(std::slice::from_ref(&a_pub)).expect("public key");
        let digest = "ab".repeat(32);
        let signature = signer.sign(&digest);
        assert_eq!(trusted.verify(&a_id, &digest, signature.as_bytes()), Ok(()));
        // Another digest, a flipped bit, garbage, an untrusted key: refused.
        assert!(
            trusted
                .verify(&a_id, &"cd".repeat(32), signature.as_bytes())
                .is_err()
        );
        let mut flipped = signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(trusted.verify(&a_id, &digest, &flipped).is_err());
        assert!(trusted.verify(&a_id, &digest, b"not hex").is_err());
        let b = Signer::read(&b_key).expect("b");
        let by_b = b.sign(&digest);
        assert!(
            trusted
                .verify(&b.key_id(), &digest, by_b.as_bytes())
                .is_err()
        );
        // The private key is private; a public key is not a private one.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&a_key)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = Signer::read(&a_pub)
            .err()
            .expect("not a private key")
            .to_string();
        assert!(err.contains("not an ed25519 private key"), "{err}");
        let err = TrustedKeys::read(&[a_key])
            .expect_err("not public")
            .to_string();
        assert!(err.contains("not an ed25519 public key"), "{err}");
    }
}
