//! The plugin store: plugin versions published once, in any store the data path opens (a
//! directory, `file://`, `s3://`, ...), and fetched by every worker of a fleet on first use.
//!
//! ```text
//! blobs/sha256-<digest>.wasm              a version's bytes, put once, never changed
//! signatures/sha256-<digest>/<key>.sig    key <key>'s signature of that version (optional)
//! names/<name>/<stamp>-<digest12>.json    one record per publish: name, digest, size, when, by
//! ```
//!
//! A name's current version is its newest record (the greatest `<stamp>`, a UTC time to the
//! microsecond). Publishing writes the version's bytes, then its signature, then a new record:
//! one put of a new object, so the name moves at once, never to a version whose bytes are
//! missing, and two concurrent publishes each add a record (the later stamp wins) instead of
//! racing to rewrite one pointer. This needs no conditional writes, so it holds on every store.
//! Older records stay: `batch-plugin versions` lists them, and a batch pinned to one of their
//! digests (`starter --plugin NAME@sha256:HEX`) still runs it.
//!
//! Nothing read from the store is trusted: a version's bytes are hashed and compared with the
//! digest they were fetched for before anything compiles them, records are bounded and
//! checked, and signatures are verified by the worker against its own keys ([`super::signing`]).

use batch_core::config::{validate_digest, validate_plugin_name};
use batch_core::text::{bounded, neutralised};
use chrono::SubsecRound as _;
use data_io::{Authority, DataError, Location};
use serde::{Deserialize, Serialize};

use super::digest::PluginBytes;
use super::sandbox::MAX_PLUGIN_FILE_BYTES;
use super::signing::{MAX_SIGNATURE_BYTES, Signer};

/// Most bytes of a publish record.
const MAX_RECORD_BYTES: u64 = 16 << 10;

/// Longest `published_by` kept.
pub const MAX_PUBLISHER_CHARS: usize = 200;

/// A record's stamp: UTC to the microsecond, so that names sort in time order.
const STAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("plugin store {store}")]
    Data {
        store: String,
        #[source]
        source: DataError,
    },
    #[error(
        "plugin store object {location} is not version sha256:{digest}: its bytes hash to \
         sha256:{found} (changed or corrupted in the store); refused, never compiled"
    )]
    Tampered {
        location: String,
        digest: String,
        found: String,
    },
    #[error("plugin store record {location} is invalid: {reason}")]
    BadRecord { location: String, reason: String },
    #[error(
        "version sha256:{digest} is not in plugin store {store} (or hidden from this \
         worker's credentials)"
    )]
    Missing { store: String, digest: String },
    #[error("{0}")]
    InvalidName(#[from] batch_core::ConfigError),
}

impl StoreError {
    /// Whether another attempt could succeed (the store was unreachable, not wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Data { source, .. } if !source.is_permanent())
    }
}

/// A version's bytes, under the store's root.
fn blob_name(digest: &str) -> String {
    format!("blobs/sha256-{digest}.wasm")
}

/// Whether `file` is named as a publish names its record, `<stamp>-<12 hex>.json`: anything
/// else under a name (a stray file, a forged name sorting last) is not one of its versions.
fn is_record_name(file: &str) -> bool {
    let Some((stamp, rest)) = file.split_once('-') else {
        return false;
    };
    let hex = rest.strip_suffix(".json").unwrap_or("");
    chrono::NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT).is_ok()
        && stamp.len() == "20261203T194002.512339Z".len()
        && hex.len() == 12
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One publish of a version under a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub name: String,
    pub digest: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// Who published it, as they said (`--by`, else `user@host`): bounded, neutralised.
    pub published_by: String,
    /// The ids of the keys whose signatures were stored with it.
    #[serde(default)]
    pub signed_by: Vec<String>,
}

pub struct PluginStore {
    root: Location,
}

impl PluginStore {
    /// Opens the store at `url` (a URL or a path; a relative path is made absolute). The store
    /// is the operator's choice, so it is opened on the user's authority, not a batch's grants.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let data = |source| StoreError::Data {
            store: url.to_owned(),
            source,
        };
        let absolute = data_io::location::absolute(url).map_err(data)?;
        let root = Location::open(absolute.trim_end_matches('/'), Authority::User).map_err(data)?;
        Ok(Self { root })
    }

    /// The store's location, as given.
    pub fn text(&self) -> &str {
        self.root.text()
    }

    fn data(&self, source: DataError) -> StoreError {
        StoreError::Data {
            store: self.text().to_owned(),
            source,
        }
    }

    fn object(&self, name: &str) -> Result<Location, StoreError> {
        self.root.object(name).map_err(|e| self.data(e))
    }

    fn blob(&self, digest: &str) -> Result<Location, StoreError> {
        validate_digest(digest)?;
        self.object(&blob_name(digest))
    }

    /// Where version `digest`'s bytes are, for messages.
    pub fn blob_text(&self, digest: &str) -> String {
        format!("{}/{}", self.text(), blob_name(digest))
    }

    fn signature_at(&self, digest: &str, key: &str) -> Result<Location, StoreError> {
        validate_digest(digest)?;
        self.object(&format!("signatures/sha256-{digest}/{key}.sig"))
    }

    /// The bytes of version `digest`, checked against it.
    pub async fn fetch(&self, digest: &str) -> Result<PluginBytes, StoreError> {
        let at = self.blob(digest)?;
        let bytes = match data_io::read::bounded(&at, MAX_PLUGIN_FILE_BYTES).await {
            Ok(bytes) => PluginBytes::new(bytes.to_vec()),
            Err(e) if e.is_not_found_or_denied() => {
                return Err(StoreError::Missing {
                    store: self.text().to_owned(),
                    digest: digest.to_owned(),
                });
            }
            Err(e) => return Err(self.data(e)),
        };
        if bytes.digest() != digest {
            return Err(StoreError::Tampered {
                location: at.text().to_owned(),
                digest: digest.to_owned(),
                found: bytes.digest().to_owned(),
            });
        }
        Ok(bytes)
    }

    /// Key `key`'s stored signature of version `digest`, if there is one.
    pub async fn signature(&self, digest: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let at = self.signature_at(digest, key)?;
        match data_io::read::bounded(&at, MAX_SIGNATURE_BYTES).await {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(e) if e.is_not_found_or_denied() => Ok(None),
            Err(e) => Err(self.data(e)),
        }
    }

    /// The record names of plugin `name`, oldest first.
    async fn record_names(&self, name: &str) -> Result<Vec<String>, StoreError> {
        validate_plugin_name(name)?;
        let dir = self.object(&format!("names/{name}"))?;
        let names = data_io::list::names_under(&dir)
            .await
            .map_err(|e| self.data(e))?;
        Ok(names.into_iter().filter(|n| is_record_name(n)).collect())
    }

    async fn record(&self, name: &str, file: &str) -> Result<Published, StoreError> {
        let at = self.object(&format!("names/{name}/{file}"))?;
        let bytes = data_io::read::bounded(&at, MAX_RECORD_BYTES)
            .await
            .map_err(|e| self.data(e))?;
        let bad = |reason: String| StoreError::BadRecord {
            location: at.text().to_owned(),
            reason,
        };
        let record: Published =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a record ({e})")))?;
        if record.name != name {
            return Err(bad(format!(
                "it is a record of {:?}, not of {name:?}",
                bounded(&record.name, 80)
            )));
        }
        validate_digest(&record.digest).map_err(|e| bad(e.to_string()))?;
        if !file.ends_with(&format!("-{}.json", &record.digest[..12])) {
            return Err(bad("its digest is not the one its name says".into()));
        }
        Ok(Published {
            published_by: neutralised(&bounded(&record.published_by, MAX_PUBLISHER_CHARS))
                .into_owned(),
            published_at: neutralised(&bounded(&record.published_at, 64)).into_owned(),
            signed_by: record
                .signed_by
                .into_iter()
                .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .take(16)
                .collect(),
            ..record
        })
    }

    /// Plugin `name`'s current version: its newest record. `None`: never published here.
    pub async fn current(&self, name: &str) -> Result<Option<Published>, StoreError> {
        match self.record_names(name).await?.last() {
            Some(file) => self.record(name, file).await.map(Some),
            None => Ok(None),
        }
    }

    /// Every publish of plugin `name`, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<Published>, StoreError> {
        let mut versions = Vec::new();
        for file in self.record_names(name).await?.iter().rev() {
            versions.push(self.record(name, file).await?);
        }
        Ok(versions)
    }

    /// Every plugin name published here, sorted.
    pub async fn names(&self) -> Result<Vec<String>, StoreError> {
        let names = data_io::list::names_under(&self.object("names")?)
            .await
            .map_err(|e| self.data(e))?;
        let mut names: Vec<String> = names
            .iter()
            .filter_map(|n| n.split_once('/').map(|(name, _)| name.to_owned()))
            .filter(|name| validate_plugin_name(name).is_ok())
            .collect();
        names.dedup();
        Ok(names)
    }

    /// Publishes `bytes` as plugin `name`'s current version: its bytes (unless the store
    /// already holds them intact), its signature, then its record.
    pub async fn publish(
        &self,
        name: &str,
        bytes: &PluginBytes,
        by: &str,
        signer: Option<&Signer>,
    ) -> Result<Published, StoreError> {
        validate_plugin_name(name)?;
        let digest = bytes.digest();
        match self.fetch(digest).await {
            Ok(_) => {}
            Err(StoreError::Missing { .. } | StoreError::Tampered { .. }) => {
                let blob = self.blob(digest)?;
                let put = data_io::write::put(&blob, bytes.bytes().to_vec()).await;
                // Another publisher putting the same bytes at once may win the race: fine if
                // the store now holds them.
                if let Err(e) = put
                    && self.fetch(digest).await.is_err()
                {
                    return Err(self.data(e));
                }
            }
            Err(e) => return Err(e),
        }
        let mut signed_by = Vec::new();
        if let Some(signer) = signer {
            let (key, signature) = (signer.key_id(), signer.sign(digest));
            let at = self.signature_at(digest, &key)?;
            let put = data_io::write::put(&at, signature.clone().into_bytes()).await;
            // An ed25519 signature is deterministic: a concurrent publish writes the same bytes.
            if let Err(e) = put
                && self.signature(digest, &key).await.ok().flatten() != Some(signature.into_bytes())
            {
                return Err(self.data(e));
            }
            signed_by.push(key);
        }
        let now = chrono::Utc::now();
        // After the newest record even if its publisher's clock ran ahead of ours: a publish
        // always becomes the current version.
        let newest = self.record_names(name).await?.last().and_then(|file| {
            let stamp = file.split('-').next()?;
            chrono::NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT).ok()
        });
        let mut stamp = now.naive_utc().trunc_subsecs(6);
        if let Some(newest) = newest
            && newest >= stamp
        {
            stamp = newest + chrono::Duration::microseconds(1);
        }
        let record = Published {
            name: name.to_owned(),
            digest: digest.to_owned(),
            size: bytes.len(),
            published_at: stamp
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            published_by: neutralised(&bounded(by, MAX_PUBLISHER_CHARS)).into_owned(),
            signed_by,
        };
        let file = format!(
            "names/{name}/{}-{}.json",
            stamp.format(STAMP_FORMAT),
            &digest[..12]
        );
        let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
        data_io::write::put(&self.object(&file)?, json)
            .await
            .map_err(|e| self.data(e))?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(n: u8) -> PluginBytes {
        PluginBytes::new(vec![0, b'a', b's', b'm', 1, 0, 0, 0, n])
    }

    #[tokio::test]
    async fn publishes_move_the_name_and_keep_every_version() {
        let dir = tempfile::tempdir().expect("dir");
        let store =
            PluginStore::open(dir.path().join("store").to_str().expect("utf-8")).expect("store");
        assert_eq!(store.current("cube").await.expect("read"), None);
        let (one, two) = (wasm(1), wasm(2));
        store.publish("cube", &one, "ann", None).await.expect("one");
        store
            .publish("cube", &two, "bob\x1b[2J", None)
            .await
            .expect("two");
        let current = store.current("cube").await.expect("read").expect("some");
        assert_eq!(current.digest, two.digest());
        assert!(!current.published_by.contains('\x1b'), "neutralised");
        let versions = store.versions("cube").await.expect("versions");
        let digests: Vec<_> = versions.iter().map(|v| v.digest.as_str()).collect();
        assert_eq!(digests, [two.digest(), one.digest()]);
        // Publishing an older version again is a rollback of the name.
        store
            .publish("cube", &one, "ann", None)
            .await
            .expect("again");
        let current = store.current("cube").await.expect("read").expect("some");
        assert_eq!(current.digest, one.digest());
        assert_eq!(store.names().await.expect("names"), ["cube"]);
        assert_eq!(
            store.fetch(two.digest()).await.expect("fetch").bytes(),
            two.bytes()
        );
    }

    #[tokio::test]
    async fn a_changed_object_or_a_forged_record_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("store");
        let store = PluginStore::open(root.to_str().expect("utf-8")).expect("store");
        let one = wasm(1);
        store.publish("cube", &one, "ann", None).await.expect("one");
        let blob = root.join(format!("blobs/sha256-{}.wasm", one.digest()));
        std::fs::write(&blob, b"\0asm\x01\0\0\0evil").expect("tamper");
        let err = store.fetch(one.digest()).await.expect_err("tampered");
        assert!(matches!(err, StoreError::Tampered { .. }), "{err}");
        assert!(err.to_string().contains(one.digest()), "{err}");
        let missing = store.fetch(&"0".repeat(64)).await.expect_err("missing");
        assert!(matches!(missing, StoreError::Missing { .. }), "{missing}");
        assert!(store.fetch("../../etc/passwd").await.is_err());
        // Over the size limit: refused from its size, not read (a sparse file costs nothing).
        let huge = "1".repeat(64);
        let file =
            std::fs::File::create(root.join(format!("blobs/sha256-{huge}.wasm"))).expect("create");
        file.set_len(MAX_PLUGIN_FILE_BYTES + 1).expect("sparse");
        let err = store.fetch(&huge).await.expect_err("too large");
        assert!(
            err.to_string().contains(&huge) || format!("{err:?}").contains("over the limit"),
            "{err:?}"
        );
        // A signature is bounded too.
        let sig_dir = root.join(format!("signatures/sha256-{}", one.digest()));
        std::fs::create_dir_all(&sig_dir).expect("mkdir");
        std::fs::write(sig_dir.join("0123456789abcdef.sig"), vec![b'a'; 10_000]).expect("write");
        assert!(
            store
                .signature(one.digest(), "0123456789abcdef")
                .await
                .is_err()
        );
        assert_eq!(
            store
                .signature(one.digest(), "fedcba9876543210")
                .await
                .expect("none"),
            None
        );
        // A record that says another digest than its name, or another plugin: refused.
        let names = root.join("names/cube");
        let file = std::fs::read_dir(&names)
            .expect("dir")
            .next()
            .expect("one")
            .expect("entry");
        let forged = format!(
            "{{\"name\":\"cube\",\"digest\":\"{}\",\"size\":1,\"published_at\":\"x\",\"published_by\":\"x\"}}",
            "f".repeat(64)
        );
        std::fs::write(
            names.join("99991231T000000.000000Z-ffffffffffff.json"),
            &forged,
        )
        .expect("write");
        std::fs::write(
            names.join("99991231T000001.000000Z-000000000000.json"),
            &forged,
        )
        .expect("write");
        let err = store.current("cube").await.expect_err("forged");
        assert!(
            err.to_string().contains("is not the one its name says"),
            "{err}"
        );
        drop(file);
        // A record over its bound is refused before it is read.
        std::fs::write(
            names.join("99991231T000002.000000Z-000000000000.json"),
            vec![b' '; (MAX_RECORD_BYTES + 1) as usize],
        )
        .expect("write");
        let err = store.current("cube").await.expect_err("too large");
        assert!(format!("{err:?}").contains("over the limit"), "{err:?}");
        assert!(store.current("Bad-Name").await.is_err());
    }
}
