//! What the server holds: where metadata lives, the registry, and one open lake per tenant.

use std::sync::Arc;
use std::time::Duration;

use lakeplan_core::Result;
pub use lakeplan_dataplane::tenants::{MetastoreUrl, Tenants};

use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::metrics::Metrics;
use crate::registry::Registry;

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
