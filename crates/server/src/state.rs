//! What the server holds: where metadata lives, the registry, and one open lake per tenant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lakeplan_catalog::{Metastore, PostgresMetastore, SqliteMetastore};
use lakeplan_core::{Error, Result};
use lakeplan_lake::{Lake, LakeConfig};

use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::metrics::Metrics;
use crate::registry::{Registry, Tenant};

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

/// How `lakeplan serve` runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub metastore: MetastoreUrl,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Longest a request may take, body reading included (408 after it).
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers (the connection is closed).
    pub header_timeout: Duration,
    /// Whether imports may read files on the server's own disk. Off by default: with it on,
    /// anyone with a write key reads any file the server can read. Meant for a single-user
    /// server on one's own machine.
    pub allow_local_paths: bool,
    /// The secret data-plane workers present on the internal routes (empty: none may connect).
    pub worker_token: String,
    /// Timing of the data plane.
    pub dispatch: DispatchConfig,
}

impl ServerConfig {
    pub fn new(metastore: MetastoreUrl) -> ServerConfig {
        ServerConfig {
            metastore,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
            allow_local_paths: false,
            worker_token: String::new(),
            dispatch: DispatchConfig::default(),
        }
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

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub tenants: Arc<Tenants>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// The data plane's task queue and workers.
    pub dispatcher: Arc<Dispatcher>,
    /// The refs Flight SQL's `USE REF` set, by connection.
    pub flight_sessions: Arc<crate::flight_sql::Sessions>,
}

impl AppState {
    pub fn open(config: ServerConfig) -> Result<AppState> {
        let registry = Registry::new(config.metastore.system_store()?);
        Ok(AppState {
            registry,
            tenants: Arc::new(Tenants::new(config.metastore.clone())),
            dispatcher: Dispatcher::start(config.dispatch),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            flight_sessions: Arc::default(),
        })
    }
}
