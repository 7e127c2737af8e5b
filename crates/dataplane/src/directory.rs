//! What a worker asks of the server's registry of tenants and API keys: whose a key is (a
//! result ticket is fetched with the key that ran its query) and what a tenant's imports may
//! read. The server implements [`Directory`] over its registry; the data plane never depends on
//! the server.

use std::path::Path;
use std::sync::Arc;

use lakeplan_core::Result;
use lakeplan_lake::Reach;

use crate::tenants::{MetastoreUrl, Tenant};

/// The tenant and id of a live API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOwner {
    pub tenant: String,
    pub key_id: String,
}

/// The server's registry, as a worker reads it.
pub trait Directory: Send + Sync {
    /// The owner of the API key whose secret is `secret`; `None` for a key that is unknown or
    /// revoked.
    fn key_owner(&self, secret: &str) -> Result<Option<KeyOwner>>;

    /// What `tenant`'s table plans and imports may read, on this machine (`state_dir` is its
    /// server state folder).
    fn reach(&self, tenant: &Tenant, state_dir: &Path) -> Result<Reach>;
}

/// Opens the server's registry on the metastore the control plane names when a worker
/// registers.
pub type OpenDirectory = Arc<dyn Fn(&MetastoreUrl) -> Result<Arc<dyn Directory>> + Send + Sync>;
