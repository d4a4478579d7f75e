//! A location (`--source`, `--output`) opened for reading or writing, under an authority: the
//! user's own (the starter, with the user's files and credentials), or a worker's grants,
//! checked here on the location's canonical form before anything is opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;

use crate::DataError;
use crate::authority::Authority;
use crate::place::{self, Place, RemotePlace, Spelled};

/// An object or a prefix, local or in a store.
#[derive(Debug, Clone)]
pub struct Location {
    target: Target,
    authority: Authority,
    /// As the batch named it (messages name it so).
    text: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A resolved local path (see [`crate::place`]); read and written by [`crate::local`].
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
        place: RemotePlace,
    },
}

impl Location {
    /// Opens `text` (a URL, or an absolute local path) on `authority`. Stores other than local
    /// files take their settings from the environment (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
    /// ...), as their own tools do.
    pub fn open(text: &str, authority: Authority) -> Result<Self, DataError> {
        Self::open_with(text, authority, std::env::vars())
    }

    /// [`Self::open`] with the stores' settings given (`aws_endpoint`, `aws_access_key_id`,
    /// ...) instead of read from the environment.
    pub fn open_with<K: AsRef<str>, V: Into<String>>(
        text: &str,
        authority: Authority,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, DataError> {
        batch_core::source::validate_location(text)
            .map_err(|e| DataError::invalid(text, e.to_string()))?;
        let target = match place::spell(text).map_err(|e| DataError::invalid(text, e))? {
            Spelled::Local(path) => {
                let resolved = place::local(&path).map_err(|e| DataError::invalid(text, e))?;
                authority.check(&Place::Local(resolved.clone()), text)?;
                Target::Local(resolved)
            }
            Spelled::Remote(url) => {
                let place = place::remote(&url).map_err(|e| DataError::invalid(text, e))?;
                authority.check(&Place::Remote(place.clone()), text)?;
                let (store, path) = crate::store::open(&url, &authority, options)
                    .map_err(|e| DataError::store(text, "cannot open the store", e))?;
                Target::Remote { store, path, place }
            }
        };
        Ok(Self {
            target,
            authority,
            text: text.to_owned(),
        })
    }

    /// The object `name` (a plain name) under this prefix, on the same authority.
    pub fn child(&self, name: &str) -> Self {
        let target = match &self.target {
            Target::Local(path) => Target::Local(path.join(name)),
            Target::Remote { store, path, place } => {
                let mut place = place.clone();
                place.segments.push(name.to_owned());
                Target::Remote {
                    store: store.clone(),
                    path: path.clone().join(name),
                    place,
                }
            }
        };
        Self {
            target,
            authority: self.authority.clone(),
            text: format!("{}/{name}", self.text.trim_end_matches('/')),
        }
    }

    /// The object `name` (relative, `/`-separated plain segments: an entry of a listing) under
    /// this prefix, checked against the authority as any location: a forged listing cannot
    /// name an object outside the grants. The store's client is this location's, shared.
    pub fn object(&self, name: &str) -> Result<Self, DataError> {
        let text = format!("{}/{name}", self.text.trim_end_matches('/'));
        let plain = !name.is_empty()
            && !name.chars().any(char::is_control)
            && name
                .split('/')
                .all(|segment| !matches!(segment, "" | "." | ".."));
        if !plain {
            return Err(DataError::invalid(
                &text,
                "not a plain relative name under the source",
            ));
        }
        let target = match &self.target {
            Target::Local(path) => {
                let resolved =
                    place::local(&path.join(name)).map_err(|e| DataError::invalid(&text, e))?;
                self.authority
                    .check(&Place::Local(resolved.clone()), &text)?;
                Target::Local(resolved)
            }
            Target::Remote { store, path, place } => {
                let mut place = place.clone();
                for segment in name.split('/') {
                    place::check_segment(segment).map_err(|e| DataError::invalid(&text, e))?;
                    place.segments.push(segment.to_owned());
                }
                self.authority.check(&Place::Remote(place.clone()), &text)?;
                let joined = match path.as_ref() {
                    "" => name.to_owned(),
                    base => format!("{base}/{name}"),
                };
                let path = object_store::path::Path::parse(joined)
                    .map_err(|e| DataError::invalid(&text, e.to_string()))?;
                Target::Remote {
                    store: store.clone(),
                    path,
                    place,
                }
            }
        };
        Ok(Self {
            target,
            authority: self.authority.clone(),
            text,
        })
    }

    /// The object named as this one with `suffix` after it (`x.gz.gzi` beside `x.gz`), on the
    /// same authority, checked against it as any location.
    pub fn sibling(&self, suffix: &str) -> Result<Self, DataError> {
        Self::open(&format!("{}{suffix}", self.text), self.authority.clone())
    }

    /// The location as the batch named it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The local path, resolved, if this is a local location.
    pub fn local_path(&self) -> Option<&Path> {
        match &self.target {
            Target::Local(path) => Some(path),
            Target::Remote { .. } => None,
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// A local path resolved and checked again, as it is about to be opened: a link put in
    /// its way since the location was opened leads nowhere the grants do not hold.
    pub(crate) fn recheck_local(&self, path: &Path) -> Result<PathBuf, DataError> {
        let resolved = place::local(path).map_err(|e| DataError::invalid(&self.text, e))?;
        self.authority
            .check(&Place::Local(resolved.clone()), &self.text)?;
        Ok(resolved)
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
    use crate::grants::{Access, Grants};

    #[test]
    fn locations_are_checked_with_the_reason() {
        let relative = Location::open("data/x.jsonl", Authority::User).expect_err("an error");
        assert_eq!(
            relative.to_string(),
            "data/x.jsonl: a local path must be absolute (workers may run in other directories)"
        );
        let bad = Location::open("s3://", Authority::User).expect_err("an error");
        assert!(bad.to_string().starts_with("s3://: "), "{bad}");
        let unknown = Location::open("ftp://host/x", Authority::User).expect_err("an error");
        assert!(
            unknown.to_string().starts_with("ftp://host/x: "),
            "{unknown}"
        );
    }

    #[test]
    fn children_and_absolute_paths() {
        let dir = Location::open("/tmp/out/", Authority::User).expect("absolute");
        let part = dir.child("part-1");
        assert_eq!(part.text(), "/tmp/out/part-1");
        let resolved = std::fs::canonicalize("/tmp").expect("resolves");
        assert_eq!(
            part.local_path(),
            Some(resolved.join("out/part-1").as_path())
        );
        assert_eq!(absolute("s3://b/k").expect("no error"), "s3://b/k");
        assert_eq!(absolute("/a/b").expect("no error"), "/a/b");
        let here = std::env::current_dir().expect("no error");
        assert_eq!(
            absolute("x.csv").expect("no error"),
            here.join("x.csv").to_str().expect("no error")
        );
    }

    #[test]
    fn a_worker_opens_only_what_is_granted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("resolves");
        std::fs::create_dir(root.join("in")).expect("dir");
        let grants = Arc::new(
            Grants::new(
                &[root.join("in").to_str().expect("utf-8")],
                &["s3://b/out/"],
            )
            .expect("valid"),
        );
        let read = Authority::granted(&grants, Access::Read);
        let write = Authority::granted(&grants, Access::Write);
        let inside = root.join("in/x.csv");
        assert!(Location::open(inside.to_str().expect("utf-8"), read.clone()).is_ok());
        let outside = root.join("x.csv");
        let err = Location::open(outside.to_str().expect("utf-8"), read).expect_err("refused");
        assert!(err.is_permanent());
        assert!(
            err.to_string().contains("reading it is not granted"),
            "{err}"
        );
        let err = Location::open("s3://b/other/", write.clone()).expect_err("refused");
        assert!(
            err.to_string().contains("writing it is not granted"),
            "{err}"
        );
        let out = Location::open_with(
            "s3://b/out/",
            write,
            [("aws_region", "us-east-1"), ("aws_skip_signature", "true")],
        )
        .expect("granted");
        assert_eq!(out.child("part-1").text(), "s3://b/out/part-1");
    }
}
