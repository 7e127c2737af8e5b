//! Where tenants' lakes are: the server's metastore ([`MetastoreUrl`]), which the control plane
//! names to its workers when they register, and one open lake per tenant ([`Tenants`]), which
//! the control plane and every worker open alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lakeplan_catalog::{Metastore, PostgresMetastore, SqliteMetastore};
use lakeplan_core::{Error, Result};
use lakeplan_lake::{Lake, LakeConfig};
use serde::{Deserialize, Serialize};

/// A tenant, as the server's registry records it and as a task names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// Where the tenant's tables live: a folder or `s3://bucket/prefix`, not shared with any
    /// other tenant.
    pub warehouse: String,
    pub created_at: DateTime<Utc>,
}

/// Where the server keeps metadata.
///
/// - `sqlite:DIR`: `DIR/server.db` (tenants, users, keys and the admin audit log) and
///   `DIR/tenants/<tenant>/catalog.db` (each tenant's catalog).
/// - `postgres://...`: schema `lakeplan_system` for the registry and `tenant_<tenant>` for each
///   tenant's catalog, in one database that several servers share. Job records and run folders
///   stay on the server's disk, in `state_dir`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetastoreUrl {
    Sqlite { dir: PathBuf },
    Postgres { url: String, state_dir: PathBuf },
}

const SYSTEM_SCHEMA: &str = "lakeplan_system";

impl MetastoreUrl {
    /// `state_dir` is where a PostgreSQL-backed server keeps local state (ignored for SQLite,
    /// whose folder holds it).
    pub fn parse(s: &str, state_dir: PathBuf) -> Result<MetastoreUrl> {
        if let Some(dir) = s.strip_prefix("sqlite:") {
            let dir = dir.strip_prefix("//").unwrap_or(dir);
            if dir.is_empty() {
                return Err(Error::InvalidInput(
                    "--metastore sqlite:DIR needs a folder".into(),
                ));
            }
            return Ok(MetastoreUrl::Sqlite {
                dir: PathBuf::from(dir),
            });
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(MetastoreUrl::Postgres {
                url: s.to_string(),
                state_dir,
            });
        }
        Err(Error::InvalidInput(format!(
            "--metastore '{s}': expected sqlite:DIR or postgres://user@host:port/db"
        )))
    }

    /// The folder of this server's local state (job records, the worker token).
    pub fn state_dir(&self) -> &Path {
        match self {
            MetastoreUrl::Sqlite { dir } => dir,
            MetastoreUrl::Postgres { state_dir, .. } => state_dir,
        }
    }

    /// Where tenants' tables go when neither the tenant nor the server names a warehouse.
    pub fn default_warehouse_root(&self) -> String {
        self.state_dir().join("warehouses").display().to_string()
    }

    /// The server's own metastore: the registry and the admin audit log.
    pub fn system_store(&self) -> Result<Arc<dyn Metastore>> {
        match self {
            MetastoreUrl::Sqlite { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
                Ok(Arc::new(SqliteMetastore::open(&dir.join("server.db"))?))
            }
            MetastoreUrl::Postgres { url, .. } => {
                Ok(Arc::new(PostgresMetastore::connect(url, SYSTEM_SCHEMA)?))
            }
        }
    }

    /// A tenant's catalog and the local folder of its job records and runs.
    fn tenant_store(&self, tenant: &str) -> Result<(Arc<dyn Metastore>, PathBuf)> {
        let root = self.state_dir().join("tenants").join(tenant);
        std::fs::create_dir_all(&root).map_err(|e| Error::io(root.display(), e))?;
        let store: Arc<dyn Metastore> = match self {
            MetastoreUrl::Sqlite { .. } => {
                Arc::new(SqliteMetastore::open(&root.join("catalog.db"))?)
            }
            // Tenant names are [a-z0-9_] (see registry::validate_principal_name), so the schema
            // name is a valid identifier and distinct per tenant.
            MetastoreUrl::Postgres { url, .. } => Arc::new(PostgresMetastore::connect(
                url,
                &format!("tenant_{tenant}"),
            )?),
        };
        Ok((store, root))
    }
}

/// One open lake per tenant, opened on first use and kept (a lake is cheap to share: its
/// catalog serializes access to the tenant's metastore itself).
pub struct Tenants {
    metastore: MetastoreUrl,
    lakes: Mutex<HashMap<String, Arc<Lake>>>,
}

impl Tenants {
    pub fn new(metastore: MetastoreUrl) -> Tenants {
        Tenants {
            metastore,
            lakes: Mutex::new(HashMap::new()),
        }
    }

    /// The folder of this machine's server state.
    pub fn state_dir(&self) -> &Path {
        self.metastore.state_dir()
    }

    pub fn lake(&self, tenant: &Tenant) -> Result<Arc<Lake>> {
        let mut lakes = self.lakes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lakes.get(&tenant.name) {
            return Ok(l.clone());
        }
        let (store, root) = self.metastore.tenant_store(&tenant.name)?;
        // Its workers may be on other machines: runs share their node cache through the lake.
        let lake = Arc::new(
            Lake::open_on(
                &root,
                store,
                Some(&tenant.warehouse),
                LakeConfig {
                    actor: "server".into(),
                    client: "api".into(),
                },
            )?
            .sharing_node_cache(),
        );
        lakes.insert(tenant.name.clone(), lake.clone());
        Ok(lake)
    }
}
