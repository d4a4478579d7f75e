//! A many-object source's listing, as a leaf gets it: from its input when it is small, else
//! read from where the starter stored it (under the worker's read grants, or its write grants:
//! the starter stores it beside the output), checked against its sha256 and against the
//! source's count and size, and kept for the next leaves of the batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use batch_core::DataSource;
use batch_core::objects::{Listing, ListingRef, Objects};
use data_io::{Access, Authority, DataError, Location};
use temporalio_sdk::activities::ActivityContext;

use super::SplitError;
use crate::activities::PluginActivities;
use crate::activities::checkpoint::heartbeating;

/// Stored listings kept: the batches a worker serves at once, each read once (a 100,000-object
/// listing is ~10 MB, read in well under a second).
const KEPT_LISTINGS: usize = 4;

/// A listing and its sha256.
type Kept = (String, Arc<Listing>);

/// The listings read lately, by sha256 (shared by the activities' clones).
#[derive(Default, Clone)]
pub(crate) struct ListingCache(Arc<Mutex<VecDeque<Kept>>>);

impl ListingCache {
    fn get(&self, sha256: &str) -> Option<Arc<Listing>> {
        let kept = self.0.lock().expect("not poisoned");
        kept.iter()
            .find(|(key, _)| key == sha256)
            .map(|(_, listing)| listing.clone())
    }

    fn keep(&self, sha256: &str, listing: Arc<Listing>) {
        let mut kept = self.0.lock().expect("not poisoned");
        if kept.len() == KEPT_LISTINGS {
            kept.pop_front();
        }
        kept.push_back((sha256.to_owned(), listing));
    }
}

impl PluginActivities {
    /// The listing of `source`, whose objects are `objects`.
    pub(super) async fn listing(
        &self,
        ctx: &ActivityContext,
        source: &DataSource,
        objects: &Objects,
    ) -> Result<Arc<Listing>, SplitError> {
        let invalid = |at: &str, e: batch_core::objects::ObjectsError| {
            SplitError::Data(DataError::invalid(at, e.to_string()))
        };
        let (location, sha256) = match &objects.listing {
            ListingRef::Inline(entries) => {
                let listing =
                    Listing::new(entries.clone()).map_err(|e| invalid(&source.location, e))?;
                listing
                    .check(objects, source.size)
                    .map_err(|e| invalid(&source.location, e))?;
                return Ok(Arc::new(listing));
            }
            ListingRef::Stored { location, sha256 } => (location, sha256),
        };
        if let Some(listing) = self.listings.get(sha256) {
            return Ok(listing);
        }
        let at = Location::open(location, Authority::granted(&self.grants, Access::Read)).or_else(
            |_| Location::open(location, Authority::granted(&self.grants, Access::Write)),
        )?;
        let listing = heartbeating(ctx, &0u64, data_io::list::load(&at, sha256)).await?;
        listing
            .check(objects, source.size)
            .map_err(|e| invalid(location, e))?;
        let listing = Arc::new(listing);
        self.listings.keep(sha256, listing.clone());
        Ok(listing)
    }
}
