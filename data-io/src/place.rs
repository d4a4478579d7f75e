//! The canonical form of a location: what a grant is compared with, and what is then opened.
//! Two spellings of one place get one form, so no spelling reaches past a grant:
//!
//! - A local path (or a `file://` URL) is made absolute by the file system itself: symbolic
//!   links, `.`, `..` and repeated slashes are resolved in the part that exists
//!   ([`std::fs::canonicalize`]); the rest, a directory an output will create, may hold only
//!   plain names. What is opened afterwards is this resolved path, so a link swapped in later
//!   is not followed at the last step (files are opened with `O_NOFOLLOW`).
//! - A URL is parsed by the `url` crate (the WHATWG rules every HTTP client follows): the
//!   scheme and host are lowercased, default ports and dot segments removed, IP literals
//!   written one way (`0x7f.1` is `127.0.0.1`). Its path is split into the segments the object
//!   store uses; a segment that is empty (`//`) or that decodes (`%2F`, `%2e%2e`) to a slash,
//!   a backslash, `.` or `..` is refused, since a server may decode it and step outside. User
//!   info (`user:password@`), a query and a fragment are refused: credentials come from the
//!   environment, and a query would make another object of the same path.

use std::path::{Component, Path, PathBuf};

use url::Url;

/// Where a location is, canonically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A local path with no symbolic link, `.` or `..` in it.
    Local(PathBuf),
    /// An object or prefix in a store reached by URL.
    Remote(RemotePlace),
}

/// A URL's store and the path segments in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePlace {
    /// `scheme://host[:port]`, as normalized (an explicit port only when it is not the
    /// scheme's default).
    pub origin: String,
    /// The path's segments as they are sent (percent-encoded as written).
    pub segments: Vec<String>,
}

impl Place {
    /// Whether this place is `prefix` or lies under it (whole segments: `/data/in` does not
    /// hold `/data/inside`).
    pub fn is_within(&self, prefix: &Place) -> bool {
        match (self, prefix) {
            (Place::Local(path), Place::Local(prefix)) => path.starts_with(prefix),
            (Place::Remote(place), Place::Remote(prefix)) => {
                place.origin == prefix.origin && place.segments.starts_with(&prefix.segments)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local(path) => write!(f, "{}", path.display()),
            Place::Remote(place) => {
                write!(f, "{}/{}", place.origin, place.segments.join("/"))
            }
        }
    }
}

/// What a location's text names, before the file system is asked: a local path, or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spelled {
    Local(PathBuf),
    Remote(Url),
}

/// Reads a location as written: an absolute path, a `file://` URL (a local path), or another
/// URL. Refuses what no grant could name safely, with the reason.
pub fn spell(text: &str) -> Result<Spelled, String> {
    if !text.contains("://") {
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(
                "a local path must be absolute (workers may run in other directories)".into(),
            );
        }
        return Ok(Spelled::Local(path.to_path_buf()));
    }
    let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a URL may not hold a user or a password: stores take their credentials \
                    from the environment"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a URL may not have a query (?...) or a fragment (#...)".into());
    }
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|()| "a file:// URL must name a local path (file:///dir/file)".to_owned())?;
        return Ok(Spelled::Local(path));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host (or bucket)".into());
    }
    Ok(Spelled::Remote(url))
}

/// The canonical place of a URL (see the module's docs).
pub fn remote(url: &Url) -> Result<RemotePlace, String> {
    let host = url.host_str().unwrap_or_default();
    let origin = match url.port() {
        // `Url` drops a port that is the scheme's default already.
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = Vec::new();
    if !path.is_empty() {
        for segment in path.split('/') {
            check_segment(segment)?;
            segments.push(segment.to_owned());
        }
    }
    Ok(RemotePlace { origin, segments })
}

pub(crate) fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("the path has an empty segment (//)".into());
    }
    let decoded = percent_decode(segment);
    if decoded == "." || decoded == ".." {
        return Err(format!(
            "the path segment {segment:?} is a relative step (. or ..)"
        ));
    }
    if decoded.contains('/') || decoded.contains('\\') {
        return Err(format!(
            "the path segment {segment:?} holds an encoded slash or backslash"
        ));
    }
    if decoded.chars().any(char::is_control) {
        return Err(format!(
            "the path segment {segment:?} holds a control character"
        ));
    }
    Ok(())
}

/// `%XX` sequences decoded (lossily: only used to look for what they could hide).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical form of a local path, as the file system resolves it now: the longest part
/// that exists, resolved (links, `.`, `..`, `//`), followed by the rest, which must be plain
/// names (an output directory not created yet).
pub fn local(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("a local path must be absolute".into());
    }
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut resolved) => {
                for name in rest.iter().rev() {
                    resolved.push(name);
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name() else {
                    return Err(format!("cannot resolve {}: {e}", path.display()));
                };
                rest.push(name.to_owned());
                // `file_name` is None for `..` and `.`: only plain names reach here.
                existing.pop();
                if existing.components().next_back() == Some(Component::ParentDir)
                    || existing.as_os_str().is_empty()
                {
                    return Err(format!("cannot resolve {}", path.display()));
                }
            }
            Err(e) => return Err(format!("cannot resolve {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(text: &str) -> Result<Place, String> {
        match spell(text)? {
            Spelled::Local(path) => local(&path).map(Place::Local),
            Spelled::Remote(url) => remote(&url).map(Place::Remote),
        }
    }

    #[test]
    fn urls_are_compared_by_their_normal_form() {
        let same = [
            ("S3://bucket/in/x", "s3://bucket/in/x"),
            ("HTTPS://Example.COM:443/a/b", "https://example.com/a/b"),
            ("http://example.com:80/a", "http://example.com/a"),
            ("http://0x7f.1:8080/a", "http://127.0.0.1:8080/a"),
            ("http://2130706433/a", "http://127.0.0.1/a"),
            ("http://h/a/./b/../c", "http://h/a/c"),
            ("http://h/a/%2e%2E/c", "http://h/c"),
            ("s3://b/in/../secret", "s3://b/secret"),
            ("s3://b/in/./x", "s3://b/in/x"),
            ("http://[0:0:0:0:0:0:0:1]/a", "http://[::1]/a"),
        ];
        for (a, b) in same {
            assert_eq!(place(a), place(b), "{a} and {b}");
        }
        assert_ne!(place("http://h:8080/a"), place("http://h/a"));
        assert_ne!(place("s3a://bucket/in"), place("s3://bucket/in"));
    }

    #[test]
    fn tricks_in_urls_are_refused_with_the_reason() {
        for (text, reason) in [
            ("https://user:pw@h/a", "may not hold a user"),
            (
                "https://granted.example@evil.example/a",
                "may not hold a user",
            ),
            ("s3://b/in?versionId=1", "query"),
            ("s3://b/in#x", "fragment"),
            ("s3://b/in//x", "empty segment"),
            ("s3://b/in/%2e%2e%2fsecret", "encoded slash"),
            ("s3://b/in/a%2Fb", "encoded slash"),
            ("http://h/in/a%5c..%5cb", "encoded slash"),
            ("s3://b/in/a%0Ab", "control character"),
            ("file://otherhost/etc/passwd", "must name a local path"),
            ("relative/path", "must be absolute"),
            ("s3:///key", "no host"),
        ] {
            let err = place(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn prefixes_hold_whole_segments() {
        let grant = place("s3://b/in/").expect("valid");
        assert!(place("s3://b/in").expect("valid").is_within(&grant));
        assert!(place("s3://b/in/x/y").expect("valid").is_within(&grant));
        assert!(!place("s3://b/inside").expect("valid").is_within(&grant));
        assert!(!place("s3://c/in/x").expect("valid").is_within(&grant));
        assert!(!place("s3://b/").expect("valid").is_within(&grant));
        // Written one way in the grant, another in the location: the same raw segment only.
        assert!(!place("s3://b/i%6E/x").expect("valid").is_within(&grant));
        let whole = place("s3://b").expect("valid");
        assert!(place("s3://b/anything").expect("valid").is_within(&whole));
    }

    #[test]
    fn local_paths_are_resolved_by_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("resolves");
        std::fs::create_dir_all(root.join("in/sub")).expect("dirs");
        std::fs::create_dir_all(root.join("outside")).expect("dirs");
        std::os::unix::fs::symlink(root.join("outside"), root.join("in/link")).expect("link");
        let text = |p: &str| format!("{}/{p}", root.display());
        let within_in = |p: &str| {
            place(&text(p))
                .expect("resolves")
                .is_within(&Place::Local(root.join("in")))
        };
        assert!(within_in("in/sub/x.csv"));
        assert!(within_in("in//sub/./x.csv"));
        assert!(within_in("in/new/dir/x"), "a directory still to be created");
        assert!(!within_in("in/../outside/x"));
        assert!(!within_in("in/sub/../../outside/x"));
        assert!(!within_in("in/link/x"), "a link inside pointing outside");
        assert!(!within_in("inside"));
        let url = format!("file://{}", text("in/sub/x"));
        assert_eq!(place(&url), place(&text("in/sub/x")));
        let err = place(&text("in/new/../../outside")).expect_err("a step up after a new name");
        assert!(err.contains("cannot resolve"), "{err}");
    }
}
