//! `lakeplan worker`: the data plane's worker ([`lakeplan_dataplane::worker`]), reading this
//! server's registry. The data plane asks the registry two things through
//! [`lakeplan_dataplane::Directory`], implemented here: whose an API key is (a result ticket is
//! fetched with the key that ran its query) and what a tenant's imports may read.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use lakeplan_core::Result;
use lakeplan_dataplane::directory::{Directory, KeyOwner, OpenDirectory};
pub use lakeplan_dataplane::worker::{WorkerHandle, WorkerOptions, TICKET_TTL};
use lakeplan_dataplane::Tenant;
use lakeplan_lake::Reach;

use crate::registry::Registry;

impl Directory for Registry {
    fn key_owner(&self, secret: &str) -> Result<Option<KeyOwner>> {
        Ok(self.authenticate(secret)?.map(|p| KeyOwner {
            tenant: p.tenant.name,
            key_id: p.key_id,
        }))
    }

    fn reach(&self, tenant: &Tenant, state_dir: &Path) -> Result<Reach> {
        Registry::reach(self, tenant, state_dir)
    }
}

/// The registry of the server whose metastore a worker is told at registration.
fn registry() -> OpenDirectory {
    Arc::new(|metastore| Ok(Arc::new(Registry::new(metastore.system_store()?))))
}

/// Binds the worker's result port, then keeps it connected to the control plane.
pub async fn start(opts: WorkerOptions) -> Result<WorkerHandle> {
    lakeplan_dataplane::worker::start(opts, registry()).await
}

/// Runs a worker until `shutdown`.
pub async fn run(opts: WorkerOptions, shutdown: impl Future<Output = ()>) -> Result<()> {
    lakeplan_dataplane::worker::run(opts, registry(), shutdown).await
}

#[cfg(test)]
mod tests {
    use lakeplan_catalog::SqliteMetastore;

    use super::*;
    use crate::registry::Scope;

    #[test]
    fn a_key_is_its_tenants_until_revoked() {
        let registry = Registry::new(Arc::new(SqliteMetastore::open_in_memory().expect("db")));
        registry.create_tenant("acme", "/tmp/acme").expect("tenant");
        registry
            .create_user("acme", "alice", false, false)
            .expect("user");
        let (key, secret) = registry
            .create_key("acme", "alice", Scope::Read)
            .expect("key");
        let d: &dyn Directory = &registry;
        assert_eq!(
            d.key_owner(&secret).expect("lookup"),
            Some(KeyOwner {
                tenant: "acme".into(),
                key_id: key.id.clone(),
            })
        );
        assert_eq!(d.key_owner("lpk_nope").expect("lookup"), None);
        registry.revoke_key("acme", &key.id).expect("revoke");
        assert_eq!(d.key_owner(&secret).expect("lookup"), None);
    }
}
