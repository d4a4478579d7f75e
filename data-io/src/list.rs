//! A many-object source's listing ([`batch_core::objects`]): taken by the starter, once, under
//! the user's authority (every object under a prefix or a directory, or matching a glob, in
//! name order, the empty ones counted and left out), and stored beside the output when it is
//! too large to travel in the inputs; read back by the leaves, under the worker's grants,
//! checked against its sha256.

use std::path::Path;

use batch_core::objects::{Glob, Listing, MAX_OBJECTS, ObjectEntry, ObjectsError, is_hidden};
use batch_core::source::Compression;
use futures::TryStreamExt as _;
use object_store::ObjectStore as _;
use sha2::{Digest as _, Sha256};

use crate::location::Target;
use crate::{Authority, DataError, Location};

/// What a listing found.
#[derive(Debug)]
pub struct Listed {
    /// The prefix the names are under (ending with `/`).
    pub base: String,
    pub listing: Listing,
    /// Empty objects that matched, left out.
    pub empty: u64,
    /// Entries that are not regular files (links, devices), left out.
    pub skipped: u64,
}

/// Whether `location` names many objects: a glob, a prefix ending with `/`, or a local
/// directory.
pub fn is_many(location: &str) -> bool {
    Glob::is_pattern(location)
        || location.ends_with('/')
        || crate::place::spell(location).is_ok_and(|spelled| match spelled {
            crate::place::Spelled::Local(path) => path.is_dir(),
            crate::place::Spelled::Remote(_) => false,
        })
}

/// Lists the objects `location` names (see [`is_many`]), each with the compression
/// `compression` says (`Some(None)`: stored as they are) or its name does.
pub async fn list(
    location: &str,
    compression: Option<Option<Compression>>,
) -> Result<Listed, DataError> {
    let glob = Glob::parse(location);
    let base = match &glob {
        Some(glob) => glob.base.clone(),
        None => format!("{}/", location.trim_end_matches('/')),
    };
    if base.is_empty() || base == "/" {
        return Err(DataError::invalid(
            location,
            "a glob needs a directory or a prefix before its first wildcard",
        ));
    }
    let opened = Location::open(base.trim_end_matches('/'), Authority::User)?;
    let mut found = match opened.target() {
        Target::Local(path) => walk(&opened, path.clone()).await?,
        Target::Remote { store, path, .. } => {
            let prefix = (!path.as_ref().is_empty()).then_some(path);
            let strip = match path.as_ref() {
                "" => String::new(),
                p => format!("{p}/"),
            };
            let metas: Vec<_> = store
                .list(prefix)
                .try_collect()
                .await
                .map_err(|e| DataError::store(location, "cannot list the objects", e))?;
            let objects = metas
                .into_iter()
                .filter_map(|meta| {
                    let name = meta.location.as_ref().strip_prefix(&strip)?.to_owned();
                    Some((name, meta.size, meta.e_tag))
                })
                .collect();
            Found {
                objects,
                skipped: 0,
            }
        }
    };
    found
        .objects
        .retain(|(name, ..)| !is_hidden(name) && glob.as_ref().is_none_or(|g| g.matches(name)));
    found.objects.sort_by(|a, b| a.0.cmp(&b.0));
    let compression_of = |name: &str| compression.unwrap_or_else(|| Compression::from_name(name));
    // A gzip object's index beside it (`x.gz.gzi`) is the object's, not an object of its own
    // (an empty object's index is left out with it).
    let names: std::collections::HashMap<String, u64> = found
        .objects
        .iter()
        .map(|(name, size, _)| (name.clone(), *size))
        .collect();
    let indexed = |name: &str| {
        name.strip_suffix(crate::frames::GZI_SUFFIX)
            .filter(|stem| names.contains_key(*stem))
            .filter(|stem| compression_of(stem) == Some(Compression::Gzip))
            .map(str::to_owned)
    };
    let (indexes, objects): (Vec<_>, Vec<_>) = std::mem::take(&mut found.objects)
        .into_iter()
        .partition(|(name, ..)| indexed(name).is_some());
    found.objects = objects;
    let before = found.objects.len();
    found.objects.retain(|(_, size, _)| *size > 0);
    let empty = (before - found.objects.len()) as u64;
    if found.objects.len() > MAX_OBJECTS {
        return Err(invalid(
            location,
            ObjectsError::TooMany {
                pattern: location.to_owned(),
                count: found.objects.len(),
            },
        ));
    }
    if found.objects.is_empty() {
        return Err(invalid(
            location,
            ObjectsError::Nothing {
                pattern: location.to_owned(),
            },
        ));
    }
    let mut gzis = std::collections::HashMap::new();
    for (name, size, _) in indexes {
        let stem = indexed(&name).expect("an index");
        let object_size = names[&stem];
        if object_size > 0 {
            let at = opened.object(&name)?;
            let gzi = crate::frames::read_sidecar(&at, size, object_size).await?;
            gzis.insert(stem, gzi);
        }
    }
    let entries = found
        .objects
        .into_iter()
        .map(|(name, size, version)| ObjectEntry {
            compression: compression_of(&name),
            gzi: gzis.remove(&name),
            name,
            size,
            version,
        })
        .collect();
    let listing = Listing::new(entries).map_err(|e| invalid(location, e))?;
    Ok(Listed {
        base,
        listing,
        empty,
        skipped: found.skipped,
    })
}

/// The names (relative, `/`-separated, sorted) of every object under the prefix or directory
/// `at`, hidden ones left out: nothing there is an empty list, not an error. For small
/// listings that are not data sources (a plugin store's records).
pub async fn names_under(at: &Location) -> Result<Vec<String>, DataError> {
    let found = match at.target() {
        Target::Local(path) => match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DataError::io(at.text(), "cannot list it", e)),
            Ok(_) => walk(at, path.clone()).await?,
        },
        Target::Remote { store, path, .. } => {
            let strip = format!("{}/", path.as_ref());
            let metas: Vec<_> = store
                .list(Some(path))
                .try_collect()
                .await
                .map_err(|e| DataError::store(at.text(), "cannot list the objects", e))?;
            let objects = metas
                .into_iter()
                .filter_map(|meta| {
                    let name = meta.location.as_ref().strip_prefix(&strip)?.to_owned();
                    Some((name, meta.size, None))
                })
                .collect();
            Found {
                objects,
                skipped: 0,
            }
        }
    };
    let mut names: Vec<String> = found
        .objects
        .into_iter()
        .map(|(name, ..)| name)
        .filter(|name| !is_hidden(name))
        .collect();
    names.sort();
    Ok(names)
}

fn invalid(location: &str, e: ObjectsError) -> DataError {
    DataError::invalid(location, e.to_string())
}

/// What a walk or a store listing found: (name, size, version) of each object.
struct Found {
    objects: Vec<(String, u64, Option<String>)>,
    skipped: u64,
}

/// Every regular file under the directory `root`, recursively, without following links.
async fn walk(location: &Location, root: std::path::PathBuf) -> Result<Found, DataError> {
    let text = location.text().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut found = Found {
            objects: Vec::new(),
            skipped: 0,
        };
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| DataError::io(&text, "cannot list the directory", e))?;
            for entry in entries {
                let entry = entry.map_err(|e| DataError::io(&text, "cannot list it", e))?;
                let path = entry.path();
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| DataError::io(&text, "cannot list it", e))?;
                let Some(name) = relative(&root, &path) else {
                    found.skipped += 1;
                    continue;
                };
                if meta.is_dir() {
                    if !is_hidden(&name) {
                        dirs.push(path);
                    }
                } else if meta.is_file() {
                    use std::os::unix::fs::MetadataExt as _;
                    let version = crate::local::version_of(&meta);
                    found.objects.push((name, meta.size(), Some(version)));
                } else {
                    found.skipped += 1;
                }
                if found.objects.len() > 2 * MAX_OBJECTS {
                    break;
                }
            }
        }
        Ok(found)
    })
    .await
    .map_err(|e| DataError::invalid(location.text(), format!("listing stopped: {e}")))?
}

/// `path`'s name under `root`, `/`-separated, if it is UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.iter().map(|p| p.to_str()).collect();
    Some(parts?.join("/"))
}

/// The sha256 of a listing's stored bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a listing of this sha256 is stored under `dir` (an output): `_listing-{sha256}.jsonl`,
/// a hidden name (a source pointed at the output leaves it out).
pub fn listing_location(dir: &str, sha256: &str) -> Result<Location, DataError> {
    Location::open(dir, Authority::User)?.object(&format!("_listing-{sha256}.jsonl"))
}

/// Stores a listing's bytes at `at` (written again, they are the same bytes).
pub async fn store(at: &Location, bytes: Vec<u8>) -> Result<(), DataError> {
    crate::write::put(at, bytes).await
}

/// Reads a stored listing back, under `authority`, refusing bytes that are not the ones the
/// batch started with.
pub async fn load(at: &Location, sha256: &str) -> Result<Listing, DataError> {
    let bytes = crate::write::get(at).await?;
    if bytes.len() > batch_core::objects::MAX_LISTING_BYTES {
        return Err(invalid(
            at.text(),
            ObjectsError::Encoding(format!("{} bytes", bytes.len())),
        ));
    }
    if sha256_hex(&bytes) != sha256 {
        return Err(DataError::Changed {
            location: at.text().to_owned(),
            what: "the source's listing".into(),
        });
    }
    Listing::decode(&bytes).map_err(|e| invalid(at.text(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gzip_objects_index_is_its_own_not_an_object() {
        let dir = tempfile::tempdir().expect("dir");
        let (gz, gzi) = crate::frames::tests::gzip_indexed(&[b'x'; 5000], 1000);
        for (name, bytes) in [
            ("a.jsonl.gz", gz.as_slice()),
            ("a.jsonl.gz.gzi", &gzi),
            ("b.jsonl.gz", b""),
            ("b.jsonl.gz.gzi", &gzi),
            ("c.jsonl.gzi", b"{}\n"),
        ] {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        let listed = list(dir.path().to_str().expect("utf-8"), None)
            .await
            .expect("listed");
        let entries = &listed.listing.entries;
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.jsonl.gz", "c.jsonl.gzi"]);
        let sidecar = entries[0].gzi.as_ref().expect("a's index");
        assert_eq!(sidecar.size, gzi.len() as u64);
        assert_eq!(listed.empty, 1, "b and its index are left out");
        // Read as stored, a .gz is not gzip, and its .gzi is an object like any other.
        let stored = list(dir.path().to_str().expect("utf-8"), Some(None))
            .await
            .expect("listed");
        assert_eq!(stored.listing.entries.len(), 4);
    }

    #[tokio::test]
    async fn a_directory_lists_in_name_order_without_hidden_empty_or_linked_entries() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        for (name, bytes) in [
            ("b/2.jsonl.gz", &b"x"[..]),
            ("a.jsonl", b"{}\n"),
            ("b/1.jsonl.zst", b"y"),
            ("c/empty.jsonl", b""),
            ("_manifest.json", b"{}"),
            (".staging/part", b"z"),
            ("b/_x/hidden.jsonl", b"z"),
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, bytes).expect("write");
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.jsonl")).expect("link");
        let text = root.to_str().expect("utf-8");
        assert!(is_many(text) && is_many(&format!("{text}/*.jsonl")));
        let listed = list(text, None).await.expect("listed");
        let names: Vec<(&str, Option<Compression>)> = listed
            .listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.compression))
            .collect();
        assert_eq!(
            names,
            [
                ("a.jsonl", None),
                ("b/1.jsonl.zst", Some(Compression::Zstd)),
                ("b/2.jsonl.gz", Some(Compression::Gzip)),
            ]
        );
        assert_eq!((listed.empty, listed.skipped), (1, 1));
        assert_eq!(listed.base, format!("{text}/"));
        let globbed = list(&format!("{text}/b/*.jsonl.gz"), None)
            .await
            .expect("listed");
        assert_eq!(globbed.listing.entries.len(), 1);
        assert_eq!(globbed.base, format!("{text}/b/"));
        let none = list(&format!("{text}/*.csv"), None)
            .await
            .expect_err("nothing");
        assert!(none.to_string().contains("matches no object"), "{none}");

        // Stored and read back; a changed listing is refused.
        let bytes = listed.listing.encode();
        let sha256 = sha256_hex(&bytes);
        let location = listing_location(text, &sha256).expect("location");
        store(&location, bytes).await.expect("stored");
        assert_eq!(
            load(&location, &sha256).await.expect("loaded"),
            listed.listing
        );
        std::fs::write(location.local_path().expect("local"), b"").expect("emptied");
        let changed = load(&location, &sha256).await.expect_err("changed");
        assert!(
            changed
                .to_string()
                .contains("changed since the batch started"),
            "{changed}"
        );
    }
}
