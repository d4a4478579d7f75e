//! The I/O edge of data batches, shared by the starter (which looks at a source before a batch
//! starts) and the worker (whose leaves read splits and write parts, and whose root writes the
//! manifest). Everything goes through the `object_store` crate, so a location is a local path
//! or `file://` URL, or an `s3://`, `gs://`, `az://`/`abfs://` or `http(s)://` URL, with
//! credentials and endpoints from the environment variables each store's own tools use
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`...).
//!
//! - [`grants`]: what a worker's operator lets it read and write; every location a worker
//!   opens is checked against them.
//! - [`place`]: the canonical form of a location, which grants are compared with.
//! - [`location`]: a location opened on an authority (the user's, or a worker's grants).
//! - [`read`]: what a source is (size, version, CSV header) and ranged reads of a split.
//! - [`decode`]: a compressed source's stream decompressed, bounded.
//! - [`frames`]: a seekable zstd object's frames, from its seek table.
//! - [`list`]: a many-object source's listing, taken, stored and read back.
//! - [`mod@parquet`]: a Parquet object's row groups, read as JSON rows.
//! - [`schema`]: a Parquet output's schema as text, given or inferred.
//! - [`part_encoder`]: a part's bytes from its outputs: JSON Lines, compressed or not, or
//!   Parquet.
//! - [`mod@write`]: a part written whole, the manifest, the staging area cleared.
//! - [`error`]: failures, naming the location, split into permanent and transient.
//!
//! Local files are read and written by `local.rs` (pinned reads, staged writes); the other
//! stores by `object_store`, with an HTTP client that follows redirects only within the
//! authority ([`store`]).

pub mod authority;
pub mod decode;
pub mod error;
pub mod frames;
pub mod grants;
pub mod list;
mod local;
pub mod location;
pub mod parquet;
pub mod part_encoder;
pub mod place;
pub mod read;
pub mod schema;
mod source_info;
pub mod store;
pub mod write;

pub use authority::Authority;
pub use error::DataError;
pub use grants::{Access, Grants};
pub use local::STAGING_DIR;
pub use location::Location;
