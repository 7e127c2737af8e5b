use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use lakeplan_core::{Result, DEFAULT_NAMESPACE};

use crate::audit::AuditTable;
use crate::view::Resolver;
use crate::Lake;

/// A query's rows, cut at `max_rows` when asked.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

impl Lake {
    /// A DataFusion session at ref `r` (default: the active branch).
    pub fn session(
        &self,
        r: Option<&str>,
        ns: Option<&str>,
    ) -> Result<datafusion::prelude::SessionContext> {
        let r = self.ref_or_active(r)?;
        let view = self.view(&r)?;
        lakeplan_sql::session(
            view,
            self.warehouse.clone(),
            Arc::new(Resolver {
                catalog: self.catalog.clone(),
            }),
            ns.unwrap_or(DEFAULT_NAMESPACE),
            vec![(
                "audit".to_string(),
                Arc::new(AuditTable::new(self.catalog.clone())) as _,
            )],
        )
    }

    /// Plans one read-only SQL statement at ref `r`; its rows come as they are computed.
    pub async fn query_stream(
        &self,
        sql: &str,
        r: Option<&str>,
        ns: Option<&str>,
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        let ctx = self.session(r, ns)?;
        lakeplan_sql::execute_stream(&ctx, sql).await
    }

    /// Runs one read-only SQL statement at ref `r`.
    pub async fn query(
        &self,
        sql: &str,
        r: Option<&str>,
        ns: Option<&str>,
        max_rows: Option<usize>,
    ) -> Result<QueryResult> {
        let ctx = self.session(r, ns)?;
        let (schema, batches, truncated) = lakeplan_sql::query(&ctx, sql, max_rows).await?;
        Ok(QueryResult {
            schema,
            batches,
            truncated,
        })
    }
}
