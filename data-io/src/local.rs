//! Local files, read and written by the worker itself rather than through `object_store`:
//!
//! - **Pinned reads.** A local file's version is its identity and its change time: inode,
//!   size, modification time and *change time* (ctime), to the nanosecond (not the device
//!   number, which differs between machines that mount one network file system). Any write
//!   to the file, even one that keeps its size and puts its modification time back, sets its
//!   change time, which only the kernel sets (`touch` and `utime` cannot). Each ranged read
//!   opens the file (`O_NOFOLLOW`), checks the version on the open descriptor, reads, and
//!   checks again: a file replaced, rewritten or truncated mid-batch fails the read for good.
//! - **Staged writes.** A part is written under a hidden `.staging/` directory beside it, with
//!   a name of its own per attempt, synced, then renamed into place: a reader globbing
//!   `part-*` never sees half a part, a new attempt at a part first removes what earlier
//!   attempts of it staged (a killed worker leaves its file there), and the root removes
//!   `.staging/` once every part is in place.
//!
//! Every open resolves the path again and checks it against the authority
//! ([`Location::recheck_local`]).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::source_info::SourceInfo;
use crate::{DataError, Location};

/// The hidden directory beside an output's files where parts are written before they are
/// renamed into place.
pub const STAGING_DIR: &str = ".staging";

/// Bytes buffered before a staged part is written to its file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// The version of a local file (see the module's docs).
pub(crate) fn version_of(meta: &Metadata) -> String {
    format!(
        "file:{:x}:{}:{}.{:09}:{}.{:09}",
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// Opens a regular file for reading: never a link at the last step, and never blocking on a
/// FIFO or a device (opened without waiting, then refused for not being a regular file).
fn open_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Runs file work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    location: &Location,
    work: impl FnOnce() -> Result<T, DataError> + Send + 'static,
) -> Result<T, DataError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DataError::invalid(location.text(), format!("file work stopped: {e}")))?
}

pub(crate) async fn stat(location: &Location, path: &Path) -> Result<SourceInfo, DataError> {
    let path = location.recheck_local(path)?;
    let text = location.text().to_owned();
    blocking(location, move || {
        let what = "cannot read the source";
        let file = open_file(&path).map_err(|e| DataError::io(&text, what, e))?;
        let meta = file.metadata().map_err(|e| DataError::io(&text, what, e))?;
        Ok(SourceInfo {
            size: meta.size(),
            version: Some(version_of(&meta)),
        })
    })
    .await
}

/// Bytes `first..=last` (1-based) of the file, if it is still `version`.
pub(crate) async fn read_range(
    location: &Location,
    path: &Path,
    version: Option<&str>,
    first: u64,
    last: u64,
) -> Result<Bytes, DataError> {
    let path = location.recheck_local(path)?;
    let text = location.text().to_owned();
    let version = version.map(str::to_owned);
    blocking(location, move || {
        let what = || format!("cannot read bytes {first}..={last}");
        let check = |file: &File| -> Result<(), DataError> {
            let meta = file
                .metadata()
                .map_err(|e| DataError::io(&text, what(), e))?;
            match &version {
                Some(pinned) if *pinned != version_of(&meta) => Err(DataError::Changed {
                    location: text.clone(),
                    what: what(),
                }),
                _ => Ok(()),
            }
        };
        let file = open_file(&path).map_err(|e| DataError::io(&text, what(), e))?;
        check(&file)?;
        let len = usize::try_from(last - first + 1)
            .map_err(|_| DataError::invalid(&text, format!("{}: too many bytes", what())))?;
        let mut buffer = vec![0; len];
        file.read_exact_at(&mut buffer, first - 1)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => DataError::Changed {
                    location: text.clone(),
                    what: format!("{}: the file is shorter", what()),
                },
                _ => DataError::io(&text, what(), e),
            })?;
        // Changed while it was read: the bytes may mix two versions.
        check(&file)?;
        Ok(Bytes::from(buffer))
    })
    .await
}

/// The whole file (a failed-items part read back by the starter, tests).
pub(crate) async fn get(location: &Location, path: &Path) -> Result<Bytes, DataError> {
    let path = location.recheck_local(path)?;
    let text = location.text().to_owned();
    blocking(location, move || {
        let mut file = open_file(&path).map_err(|e| DataError::io(&text, "cannot read", e))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| DataError::io(&text, "cannot read", e))?;
        Ok(Bytes::from(bytes))
    })
    .await
}

/// A part being written to its staged file.
pub(crate) struct StagedFile {
    location: Location,
    target: PathBuf,
    staged: PathBuf,
    file: std::io::BufWriter<File>,
}

impl StagedFile {
    /// Prepares `location` (a file at `target`) to be written: its directory made, earlier
    /// attempts' staged files of it removed, its own staged file created.
    pub(crate) async fn create(location: &Location, target: &Path) -> Result<Self, DataError> {
        let location = location.clone();
        let target = target.to_path_buf();
        let worker_location = location.clone();
        blocking(&worker_location, move || {
            let text = location.text().to_owned();
            let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
                return Err(DataError::invalid(&text, "not a file's path"));
            };
            let name = name.to_string_lossy().into_owned();
            // Checked where it is made: a link put in the way leads nowhere ungranted.
            let staging = dir.join(STAGING_DIR);
            std::fs::create_dir_all(&staging)
                .map_err(|e| DataError::io(&text, "cannot create the output directory", e))?;
            let staging = location.recheck_local(&staging)?;
            let earlier = format!("{name}.");
            let entries = std::fs::read_dir(&staging)
                .map_err(|e| DataError::io(&text, "cannot list the staging directory", e))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&earlier) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let staged = staging.join(format!("{name}.{}", unique()));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&staged)
                .map_err(|e| DataError::io(&text, "cannot create the staged part", e))?;
            Ok(Self {
                location,
                target,
                staged,
                file: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            })
        })
        .await
    }

    /// Appends `bytes` (blocking: the caller is on the blocking pool or writes little).
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        self.file
            .write_all(bytes)
            .map_err(|e| DataError::io(self.location.text(), "cannot write the part", e))
    }

    /// Syncs the staged file and renames it into place.
    pub(crate) fn finish(self) -> Result<(), DataError> {
        let text = self.location.text().to_owned();
        let file = self
            .file
            .into_inner()
            .map_err(|e| DataError::io(&text, "cannot write the part", e.into_error()))?;
        file.sync_all()
            .map_err(|e| DataError::io(&text, "cannot sync the part", e))?;
        let dir = self.target.parent().unwrap_or(Path::new("/"));
        let dir = self.location.recheck_local(dir)?;
        let target = dir.join(self.target.file_name().unwrap_or_default());
        std::fs::rename(&self.staged, &target)
            .map_err(|e| DataError::io(&text, "cannot move the part into place", e))?;
        // The rename itself survives a crash of the machine once the directory is synced.
        if let Ok(dir) = File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Gives up: the staged file is removed.
    pub(crate) fn abort(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// Removes the staging directory under `dir` (every part is in place: what is left there was
/// staged by attempts that did not finish).
pub(crate) async fn remove_staging(location: &Location, dir: &Path) -> Result<(), DataError> {
    let staging = dir.join(STAGING_DIR);
    let text = location.text().to_owned();
    blocking(location, move || match std::fs::remove_dir_all(&staging) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DataError::io(
            &text,
            "cannot remove the staging directory",
            e,
        )),
    })
    .await
}

/// A name no other attempt uses at the same time: this process, a counter, the time.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:x}-{:x}-{:x}.staged",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}
