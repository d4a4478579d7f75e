//! The I/O edge of data batches, shared by the starter (which looks at a source before a batch
//! starts) and the worker (whose leaves read splits and write parts, and whose root writes the
//! manifest). Everything goes through the `object_store` crate, so a location is a local path
//! or `file://` URL, or an `s3://`, `gs://`, `az://`/`abfs://` or `http(s)://` URL, with
//! credentials and endpoints from the environment variables each store's own tools use
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`...).
//!
//! - [`location`]: a location opened as a store and a path in it.
//! - [`read`]: what a source is (size, version, CSV header) and ranged reads of a split.
//! - [`mod@write`]: a part written atomically, and the manifest.
//! - [`error`]: failures, naming the location, split into permanent and transient.

pub mod error;
pub mod location;
pub mod read;
pub mod write;

pub use error::DataError;
pub use location::Location;
