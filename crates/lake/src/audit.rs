//! The audit log as a SQL table (`system.audit`), read when a query scans it.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use lakeplan_catalog::{AuditRecord, Catalog};

use crate::Lake;

#[derive(Debug)]
pub(crate) struct AuditTable {
    catalog: Arc<Catalog>,
    schema: SchemaRef,
}

impl AuditTable {
    pub(crate) fn new(catalog: Arc<Catalog>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("actor", DataType::Utf8, false),
            Field::new("client", DataType::Utf8, false),
            Field::new("operation", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("details", DataType::Utf8, false),
            Field::new("result", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, true),
        ]));
        AuditTable { catalog, schema }
    }

    fn batch(&self, recs: &[AuditRecord]) -> DFResult<RecordBatch> {
        let s = |f: fn(&AuditRecord) -> String| -> ArrayRef {
            Arc::new(StringArray::from(recs.iter().map(f).collect::<Vec<_>>()))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(
                recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    recs.iter()
                        .map(|r| r.timestamp.timestamp_micros())
                        .collect::<Vec<_>>(),
                )
                .with_timezone("+00:00"),
            ),
            s(|r| r.actor.clone()),
            s(|r| r.client.clone()),
            s(|r| r.operation.clone()),
            s(|r| r.target.clone()),
            s(|r| r.details.to_string()),
            s(|r| r.result.clone()),
            Arc::new(StringArray::from(
                recs.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
            )),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

#[async_trait]
impl TableProvider for AuditTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let mut recs = self
            .catalog
            .store()
            .list_audit(None)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        recs.reverse();
        let mem = MemTable::try_new(self.schema.clone(), vec![vec![self.batch(&recs)?]])?;
        mem.scan(state, projection, filters, limit).await
    }
}

impl Lake {
    /// The newest `limit` audit records, newest first.
    pub fn audit_log(&self, limit: Option<usize>) -> lakeplan_core::Result<Vec<AuditRecord>> {
        self.catalog.store().list_audit(limit)
    }
}
