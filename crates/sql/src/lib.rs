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

mod names;
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
use lakeplan_core::{sql_limits, Error, Result, TreeView};
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
    let stream = read_only_frame(ctx, sql)
        .await?
        .execute_stream()
        .await
        .map_err(sql_err)?;
    Ok(types::plain_stream(stream))
}

/// Plans `sql` as one read-only statement. Its rows leave in the table's plain types through
/// [`types::plain_stream`].
///
/// The statement is parsed and its depth checked on a thread with a large stack
/// ([`lakeplan_core::sql_limits`]): a statement too long or too deep is an error, never a
/// crash of the process planning it. Its unquoted names then find the tables and columns
/// they match ignoring case ([`names`]).
async fn read_only_frame(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = sql_limits::parse_within_limits(sql, || {
        let statement = state.sql_to_statement(sql, &dialect).map_err(sql_err)?;
        check_depth(&statement)?;
        Ok(statement)
    })??;
    names::resolve(&state, &mut statement).await?;
    let plan = state.statement_to_plan(statement).await.map_err(sql_err)?;
    check_read_only(&plan)?;
    ctx.execute_logical_plan(plan).await.map_err(sql_err)
}

/// [`sql_limits::check_expression_depth`] of what a DataFusion statement holds.
fn check_depth(statement: &datafusion::sql::parser::Statement) -> Result<()> {
    use datafusion::sql::parser::{CopyToSource, Statement as S};
    match statement {
        S::Statement(s) => sql_limits::check_expression_depth(s.as_ref()),
        S::Explain(e) => check_depth(&e.statement),
        S::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => sql_limits::check_expression_depth(q.as_ref()),
            CopyToSource::Relation(_) => Ok(()),
        },
        S::CreateExternalTable(_) | S::Reset(_) => Ok(()),
    }
}

/// [`execute_stream`], one stream per output partition (to be consumed concurrently).
pub async fn execute_partitioned(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<SendableRecordBatchStream>> {
    Ok(read_only_frame(ctx, sql)
        .await?
        .execute_stream_partitioned()
        .await
        .map_err(sql_err)?
        .into_iter()
        .map(types::plain_stream)
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;

    /// 60,000 rows whose string column is a view (as a lake table's is), sorted.
    const SORTED: &str =
        "SELECT arrow_cast(to_hex(value * 2654435761 % 1000003), 'Utf8View') AS s, \
        value AS k FROM generate_series(1, 60000) ORDER BY s, k";

    fn ctx() -> SessionContext {
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4))
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            assert_eq!(b.schema().field(0).data_type(), &DataType::Utf8);
            let s = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let k = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend((0..b.num_rows()).map(|i| (s.value(i).to_string(), k.value(i))));
        }
        out
    }

    fn assert_sorted(rows: &[(String, i64)]) {
        assert_eq!(rows.len(), 60_000);
        let out_of_order = rows.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(out_of_order, 0, "rows out of order");
    }

    #[tokio::test]
    async fn order_by_results_keep_their_order_in_plain_types() {
        // Several times: the interleaving this guards against depended on timing.
        for _ in 0..8 {
            let (schema, batches, truncated) = query(&ctx(), SORTED, None).await.unwrap();
            assert!(!truncated);
            assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
            assert_sorted(&rows(&batches));
        }
        // DESC with a limit, cut by max_rows
        let sql = SORTED.replace("ORDER BY s, k", "ORDER BY s DESC, k DESC LIMIT 20000");
        let (_, batches, _) = query(&ctx(), &sql, Some(15_000)).await.unwrap();
        let r = rows(&batches);
        assert_eq!(r.len(), 15_000);
        assert_eq!(r.windows(2).filter(|w| w[1] > w[0]).count(), 0);
    }

    #[tokio::test]
    async fn partitioned_order_by_results_come_as_one_ordered_partition() {
        use futures::TryStreamExt;
        let streams = execute_partitioned(&ctx(), SORTED).await.unwrap();
        let mut all = Vec::new();
        for s in streams {
            all.extend(rows(&s.try_collect::<Vec<_>>().await.unwrap()));
        }
        assert_sorted(&all);
    }
}
