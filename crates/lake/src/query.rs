use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use lakeplan_core::Result;

use crate::audit::AuditTable;
use crate::view::Resolver;
use crate::Lake;

/// `[{"name", "type"}]`, one per column.
pub fn columns(schema: &SchemaRef) -> Vec<serde_json::Value> {
    schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect()
}

/// `{"columns": [...], "rows": [{...}], "truncated": bool}`: a result as JSON (the server's
/// query route and the MCP query tool answer it).
pub fn json_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    truncated: bool,
) -> Result<serde_json::Value> {
    let err = |e: &dyn std::fmt::Display| lakeplan_core::Error::Internal(format!("JSON rows: {e}"));
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        w.write(batch).map_err(|e| err(&e))?;
    }
    w.finish().map_err(|e| err(&e))?;
    let raw = w.into_inner();
    let rows: serde_json::Value = if raw.is_empty() {
        serde_json::json!([])
    } else {
        serde_json::from_slice(&raw).map_err(|e| err(&e))?
    };
    Ok(serde_json::json!({"columns": columns(schema), "rows": rows, "truncated": truncated}))
}

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
            &match ns {
                Some(ns) => ns.to_string(),
                None => self.default_namespace()?,
            },
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
