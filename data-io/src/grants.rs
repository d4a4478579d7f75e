//! What a worker may read and write, as its operator granted it (`worker --allow-read PREFIX`,
//! `--allow-write PREFIX`). A batch's input, from the starter or from any Temporal client,
//! only chooses among these: every location is checked here, in its canonical form
//! ([`crate::place`]), where the worker opens it, before any byte is read or written.
//!
//! A grant is an absolute directory or file (or a `file://` URL), or a URL prefix
//! (`s3://bucket/in/`, `https://host:8443/data/`). It holds itself and everything under it,
//! by whole segments. A local grant is resolved when a location is checked, so a grant that is
//! a link, or a directory created after the worker started, work as the file system says at
//! that moment; a grant that does not exist yet holds what would be created under it (an
//! output directory a batch creates).

use std::path::PathBuf;

use crate::place::{self, Place, RemotePlace, Spelled};

/// What a location is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// The worker flag that grants it.
    pub fn flag(self) -> &'static str {
        match self {
            Access::Read => "--allow-read",
            Access::Write => "--allow-write",
        }
    }

    /// The environment variable that grants it (comma-separated prefixes).
    pub fn variable(self) -> &'static str {
        match self {
            Access::Read => "BATCH_ALLOW_READ",
            Access::Write => "BATCH_ALLOW_WRITE",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Read => "reading",
            Access::Write => "writing",
        }
    }
}

/// One granted prefix.
#[derive(Debug, Clone)]
struct Grant {
    /// As the operator wrote it.
    text: String,
    kind: GrantKind,
}

#[derive(Debug, Clone)]
enum GrantKind {
    /// Resolved at each check (see the module's docs).
    Local(PathBuf),
    Remote(RemotePlace),
}

impl Grant {
    fn parse(text: &str) -> Result<Self, String> {
        let kind = match place::spell(text).map_err(|e| format!("grant {text:?}: {e}"))? {
            Spelled::Local(path) => GrantKind::Local(path),
            Spelled::Remote(url) => {
                GrantKind::Remote(place::remote(&url).map_err(|e| format!("grant {text:?}: {e}"))?)
            }
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    fn holds(&self, target: &Place) -> bool {
        match &self.kind {
            GrantKind::Local(path) => match place::local(path) {
                Ok(resolved) => target.is_within(&Place::Local(resolved)),
                Err(_) => false,
            },
            GrantKind::Remote(prefix) => target.is_within(&Place::Remote(prefix.clone())),
        }
    }
}

/// A worker's grants: where it may read and where it may write. Writing does not imply
/// reading (an output is written, never read back by the worker).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    read: Vec<Grant>,
    write: Vec<Grant>,
}

/// A location outside the grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotGranted {
    pub access: Access,
    message: String,
}

impl Grants {
    /// No grant: a worker that reads and writes no data (range batches need none).
    pub fn none() -> Self {
        Self::default()
    }

    /// The grants from the operator's prefixes; a prefix that is not an absolute path or a
    /// usable URL is refused, with the reason.
    pub fn new<S: AsRef<str>>(read: &[S], write: &[S]) -> Result<Self, String> {
        let parse = |list: &[S]| {
            list.iter()
                .map(|t| t.as_ref().trim())
                .filter(|t| !t.is_empty())
                .map(Grant::parse)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            read: parse(read)?,
            write: parse(write)?,
        })
    }

    fn list(&self, access: Access) -> &[Grant] {
        match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        }
    }

    /// The prefixes granted for `access`, as written, comma-separated (or "none").
    pub fn describe(&self, access: Access) -> String {
        let list = self.list(access);
        if list.is_empty() {
            "none".into()
        } else {
            list.iter()
                .map(|g| g.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Whether `target` (canonical) may be opened for `access`; `written` is the location as
    /// the batch named it, for the message.
    pub fn check(&self, access: Access, target: &Place, written: &str) -> Result<(), NotGranted> {
        let list = self.list(access);
        if list.iter().any(|g| g.holds(target)) {
            return Ok(());
        }
        let resolved = if target.to_string().trim_end_matches('/') == written.trim_end_matches('/')
        {
            String::new()
        } else {
            format!(" (it resolves to {target})")
        };
        let message = if list.is_empty() {
            format!(
                "{written}: {} it is not granted: this worker is granted no {} of data{resolved}; \
                 its operator grants places with `worker {} PREFIX` (or {}=PREFIX,...), an \
                 absolute directory or a URL prefix such as s3://bucket/in/",
                access.verb(),
                access.verb(),
                access.flag(),
                access.variable(),
            )
        } else {
            format!(
                "{written}: {} it is not granted{resolved}: this worker's {} grants are {}",
                access.verb(),
                access.flag(),
                self.describe(access),
            )
        };
        Err(NotGranted { access, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(text: &str) -> Place {
        match place::spell(text).expect("valid") {
            Spelled::Remote(url) => Place::Remote(place::remote(&url).expect("valid")),
            Spelled::Local(path) => Place::Local(place::local(&path).expect("resolves")),
        }
    }

    #[test]
    fn a_place_needs_a_grant_for_its_access() {
        let grants = Grants::new(
            &["s3://lake/in/", "https://api.example:8443/data"],
            &["s3://lake/out"],
        )
        .expect("valid");
        let ok = |access, text: &str| grants.check(access, &remote(text), text).is_ok();
        assert!(ok(Access::Read, "s3://lake/in/2026/x.jsonl"));
        assert!(ok(Access::Read, "https://API.example:8443/data/x"));
        assert!(
            !ok(Access::Read, "https://api.example/data/x"),
            "another port"
        );
        assert!(
            !ok(Access::Read, "http://api.example:8443/data/x"),
            "another scheme"
        );
        assert!(
            !ok(Access::Read, "s3://lake/out/part-1"),
            "writing is not reading"
        );
        assert!(ok(Access::Write, "s3://lake/out/part-1"));
        assert!(!ok(Access::Write, "s3://lake/outside/part-1"));
        let err = grants
            .check(
                Access::Read,
                &remote("s3://lake/secret"),
                "s3://lake/secret",
            )
            .expect_err("not granted");
        assert_eq!(
            err.to_string(),
            "s3://lake/secret: reading it is not granted: this worker's --allow-read grants \
             are s3://lake/in/, https://api.example:8443/data"
        );
    }

    #[test]
    fn no_grant_holds_nothing_and_says_how_to_grant() {
        let err = Grants::none()
            .check(Access::Write, &remote("s3://b/out"), "s3://b/out")
            .expect_err("nothing granted");
        assert!(
            err.to_string().contains(
                "this worker is granted no writing of data; its operator grants places with \
                 `worker --allow-write PREFIX` (or BATCH_ALLOW_WRITE=PREFIX,...)"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_grants_are_refused_with_the_reason() {
        for (grant, reason) in [
            ("data/in", "must be absolute"),
            ("https://u:p@h/", "may not hold a user"),
            ("s3://b/a%2F..%2Fc", "encoded slash"),
        ] {
            let err = Grants::new(&[grant], &[] as &[&str]).expect_err(grant);
            assert!(err.contains(reason), "{grant}: {err}");
        }
    }

    #[test]
    fn local_grants_resolve_when_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("resolves");
        let granted = root.join("later");
        let grants = Grants::new(&[granted.to_str().expect("utf-8")], &[] as &[&str])
            .expect("valid: it need not exist yet");
        let file = granted.join("x.csv");
        let text = file.to_str().expect("utf-8");
        // A grant made a link to elsewhere: it holds where it leads, not what it was.
        let place = |p: &std::path::Path| Place::Local(place::local(p).expect("resolves"));
        assert!(grants.check(Access::Read, &place(&file), text).is_ok());
        std::fs::create_dir(&granted).expect("dir");
        assert!(grants.check(Access::Read, &place(&file), text).is_ok());
        // Through a link from elsewhere: the place is where the link leads.
        std::os::unix::fs::symlink(&granted, root.join("alias")).expect("link");
        let aliased = root.join("alias/x.csv");
        assert!(
            grants
                .check(Access::Read, &place(&aliased), "alias")
                .is_ok()
        );
        let err = grants
            .check(Access::Read, &place(&root.join("x.csv")), "/x.csv")
            .expect_err("outside");
        assert!(err.to_string().contains("it resolves to"), "{err}");
    }
}
