//! SQL over the lake: DataFusion sessions bound to a ref.
//!
//! A session's default catalog `lake` is the tree of the ref it was opened at: its schemas are
//! the namespaces, its tables the Iceberg tables, read through iceberg-datafusion with
//! projection and filter pushdown (partition and file pruning by statistics). Any other catalog
//! name is read as a ref expression, so one query can compare refs:
//!
//! ```sql
//! SELECT a.n, b.n FROM (SELECT count(*) n FROM default.trips) a,
//!                      (SELECT count(*) n FROM "main@1a2b3c4d".default.trips) b
//! ```
//!
//! The `system` schema of the default catalog holds lakeplan's own tables (the audit log).

mod providers;
mod scan;
mod types;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakeplan_core::{Error, Result, TreeView};
use lakeplan_storage::Warehouse;
pub use providers::RefResolver;
use providers::{LakeCatalogList, DEFAULT_CATALOG};

/// Builds a session whose default catalog is `view` (the tree of the ref the query runs at),
/// with `namespace` as its default schema.
pub fn session(
    view: Arc<dyn TreeView>,
    warehouse: Warehouse,
    resolver: Arc<dyn RefResolver>,
    namespace: &str,
    system_tables: Vec<(String, Arc<dyn TableProvider>)>,
) -> Result<SessionContext> {
    session_with_overlay(
        view,
        warehouse,
        resolver,
        namespace,
        system_tables,
        HashMap::new(),
    )
}

/// [`session`], with `overlay` tables (keyed `namespace.name`) that shadow the tree's tables of
/// the same name in the default catalog: how a pipeline's SQL models read the in-memory
/// outputs of the models before them.
pub fn session_with_overlay(
    view: Arc<dyn TreeView>,
    warehouse: Warehouse,
    resolver: Arc<dyn RefResolver>,
    namespace: &str,
    system_tables: Vec<(String, Arc<dyn TableProvider>)>,
    overlay: HashMap<String, Arc<dyn TableProvider>>,
) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(DEFAULT_CATALOG, namespace)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    let s3_bucket = lakeplan_storage::s3::S3Url::parse(warehouse.url())
        .ok()
        .map(|u| u.bucket);
    let list = LakeCatalogList::new(view, warehouse, resolver, system_tables, overlay);
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime_env()?)
        .with_default_features()
        .with_catalog_list(Arc::new(list))
        .build();
    let ctx = SessionContext::new_with_state(state);
    if let Some(bucket) = s3_bucket {
        let url = url::Url::parse(&format!("s3://{bucket}"))
            .map_err(|e| Error::InvalidInput(format!("bucket '{bucket}': {e}")))?;
        ctx.register_object_store(&url, lakeplan_storage::s3::object_store(&bucket)?);
    }
    Ok(ctx)
}

/// A runtime for one session that shares the process-wide cache of Parquet footers: data files
/// are immutable and uniquely named, so a footer read by one query serves every later one
/// (for statistics and for the scan itself). The cache is bounded (DataFusion's LRU, 64 MiB).
fn runtime_env() -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
    use datafusion::execution::cache::DefaultFilesMetadataCache;
    static FOOTERS: std::sync::OnceLock<Arc<DefaultFilesMetadataCache>> =
        std::sync::OnceLock::new();
    const LIMIT: usize = 64 * 1024 * 1024;
    let cache: Arc<dyn FileMetadataCache> = FOOTERS
        .get_or_init(|| Arc::new(DefaultFilesMetadataCache::new(LIMIT)))
        .clone();
    datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_cache_manager(
            CacheManagerConfig::default()
                .with_file_metadata_cache(Some(cache))
                .with_metadata_cache_limit(LIMIT),
        )
        .build_arc()
        .map_err(|e| Error::Internal(format!("DataFusion runtime: {e}")))
}

fn sql_err(e: datafusion::error::DataFusionError) -> Error {
    Error::Sql(e.to_string())
}

/// Plans `sql` and returns its result as a stream (one statement; DDL and DML that would
/// change tables are rejected: lakeplan writes go through commits).
pub async fn execute_stream(ctx: &SessionContext, sql: &str) -> Result<SendableRecordBatchStream> {
    read_only_frame(ctx, sql)
        .await?
        .execute_stream()
        .await
        .map_err(sql_err)
}

/// Plans `sql` as one read-only statement.
async fn read_only_frame(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame> {
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(sql_err)?;
    check_read_only(&plan)?;
    let frame = ctx.execute_logical_plan(plan).await.map_err(sql_err)?;
    types::plain_output(frame).map_err(sql_err)
}

/// [`execute_stream`], one stream per output partition (to be consumed concurrently).
pub async fn execute_partitioned(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<SendableRecordBatchStream>> {
    read_only_frame(ctx, sql)
        .await?
        .execute_stream_partitioned()
        .await
        .map_err(sql_err)
}

/// Runs `sql` and collects at most `max_rows` rows (all with `None`). Returns the schema, the
/// batches and whether rows were cut.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
    max_rows: Option<usize>,
) -> Result<(SchemaRef, Vec<RecordBatch>, bool)> {
    use futures::StreamExt;
    let mut stream = execute_stream(ctx, sql).await?;
    let schema = stream.schema();
    let mut out = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(sql_err)?;
        if let Some(max) = max_rows {
            if rows + batch.num_rows() > max {
                out.push(batch.slice(0, max - rows));
                truncated = true;
                break;
            }
        }
        rows += batch.num_rows();
        out.push(batch);
    }
    Ok((schema, out, truncated))
}

fn check_read_only(plan: &datafusion::logical_expr::LogicalPlan) -> Result<()> {
    use datafusion::logical_expr::LogicalPlan as P;
    match plan {
        P::Dml(_) | P::Ddl(_) | P::Copy(_) => Err(Error::Sql(
            "lakeplan queries are read-only: change tables with `lakeplan table import/create/rm` (each a commit on a branch)".into(),
        )),
        _ => Ok(()),
    }
}
