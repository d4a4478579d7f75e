//! On whose authority a location is opened: the user's (the starter, the tools) or a
//! worker's, limited to what its operator granted.

use std::sync::Arc;

use crate::DataError;
use crate::grants::{Access, Grants};
use crate::place::Place;

/// On whose authority a location is opened.
#[derive(Debug, Clone)]
pub enum Authority {
    /// The user's own: the starter and the command-line tools, acting for whoever runs them.
    User,
    /// A worker's: only what its operator granted for this access.
    Granted { grants: Arc<Grants>, access: Access },
}

impl Authority {
    /// A worker's authority to do `access` under `grants`.
    pub fn granted(grants: &Arc<Grants>, access: Access) -> Self {
        Authority::Granted {
            grants: grants.clone(),
            access,
        }
    }

    /// Whether `target` may be opened; `written` names it in the message.
    pub(crate) fn check(&self, target: &Place, written: &str) -> Result<(), DataError> {
        match self {
            Authority::User => Ok(()),
            Authority::Granted { grants, access } => grants
                .check(*access, target, written)
                .map_err(|e| DataError::not_granted(written, e)),
        }
    }
}
