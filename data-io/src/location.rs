//! A location (`--source`, `--output`) opened as an object store and a path in it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::DataError;

/// An object or a prefix in a store.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// As the user wrote it (messages name it so).
    text: String,
}

impl Location {
    /// Opens `text`: a URL, or an absolute local path. Stores other than local files take
    /// their settings from the environment (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, ...), as
    /// their own tools do.
    pub fn open(text: &str) -> Result<Self, DataError> {
        Self::open_with(text, std::env::vars())
    }

    /// [`Self::open`] with the stores' settings given (`aws_endpoint`, `aws_access_key_id`,
    /// ...) instead of read from the environment.
    pub fn open_with<K: AsRef<str>, V: Into<String>>(
        text: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, DataError> {
        batch_core::source::validate_location(text)
            .map_err(|e| DataError::invalid(text, e.to_string()))?;
        // HTTPS to the stores goes through rustls with ring, the crypto the Temporal client
        // already links; reqwest needs it installed as the process's default once.
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let (store, path): (Arc<dyn ObjectStore>, Path) = if text.contains("://") {
            let url = Url::parse(text)
                .map_err(|e| DataError::invalid(text, format!("not a valid URL: {e}")))?;
            let (store, path) = object_store::parse_url_opts(&url, options)
                .map_err(|e| DataError::store(text, "cannot open the store", e))?;
            (Arc::from(store), path)
        } else {
            let local = std::path::Path::new(text);
            if !local.is_absolute() {
                return Err(DataError::invalid(
                    text,
                    "a local path must be absolute (workers may run in other directories)",
                ));
            }
            let path = Path::from_absolute_path(local)
                .map_err(|e| DataError::invalid(text, format!("not a usable path: {e}")))?;
            (Arc::new(LocalFileSystem::new()), path)
        };
        Ok(Self {
            store,
            path,
            text: text.to_owned(),
        })
    }

    /// The object `name` under this prefix.
    pub fn child(&self, name: &str) -> Self {
        Self {
            store: self.store.clone(),
            path: self.path.clone().join(name),
            text: format!("{}/{name}", self.text.trim_end_matches('/')),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The location as the user wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `text` as every worker can open it: a relative local path made absolute (against the
/// current directory); URLs and absolute paths as they are.
pub fn absolute(text: &str) -> Result<String, DataError> {
    if text.contains("://") || std::path::Path::new(text).is_absolute() {
        return Ok(text.to_owned());
    }
    let path = std::path::absolute(text)
        .map_err(|e| DataError::invalid(text, format!("cannot make the path absolute: {e}")))?;
    path.into_os_string()
        .into_string()
        .map_err(|_| DataError::invalid(text, "the path is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_checked_with_the_reason() {
        let relative = Location::open("data/x.jsonl").expect_err("an error");
        assert_eq!(
            relative.to_string(),
            "data/x.jsonl: a local path must be absolute (workers may run in other directories)"
        );
        let bad = Location::open("s3://").expect_err("an error");
        assert!(bad.to_string().starts_with("s3://: "), "{bad}");
        let unknown = Location::open("ftp://host/x").expect_err("an error");
        assert!(
            unknown.to_string().starts_with("ftp://host/x: "),
            "{unknown}"
        );
    }

    #[test]
    fn children_and_absolute_paths() {
        let dir = Location::open("/tmp/out/").expect("absolute");
        let part = dir.child("part-1");
        assert_eq!(part.text(), "/tmp/out/part-1");
        assert_eq!(part.path().as_ref(), "tmp/out/part-1");
        assert_eq!(absolute("s3://b/k").expect("no error"), "s3://b/k");
        assert_eq!(absolute("/a/b").expect("no error"), "/a/b");
        let here = std::env::current_dir().expect("no error");
        assert_eq!(
            absolute("x.csv").expect("no error"),
            here.join("x.csv").to_str().expect("no error")
        );
    }
}
