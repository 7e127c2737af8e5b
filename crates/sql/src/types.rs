//! String and binary columns are scanned as Arrow view types (`Utf8View`, `BinaryView`), as
//! DataFusion's own Parquet tables do (`schema_force_view_types`): filters, joins and group-bys
//! on strings run several times faster on views. Results leave lakeplan in the table's plain
//! types (`Utf8`, `Binary`), so what a query or a pipeline scan returns does not depend on this
//! choice. Only top-level columns are converted.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::{cast as physical_cast, col as physical_col};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::ExecutionPlan;

fn view_of(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 => Some(DataType::Utf8View),
        DataType::Binary | DataType::LargeBinary => Some(DataType::BinaryView),
        _ => None,
    }
}

fn plain_of(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// The schema a lake table is scanned with: its string and binary columns as views.
pub(crate) fn to_view_types(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match view_of(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `expr` with view-typed literals made plain, for code that only knows plain literals
/// (iceberg-datafusion's filter conversion). Comparisons keep their meaning.
pub(crate) fn plain_literals(expr: &Expr) -> Expr {
    expr.clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::Literal(ScalarValue::Utf8View(v), m) => {
                    Transformed::yes(Expr::Literal(ScalarValue::Utf8(v), m))
                }
                Expr::Literal(ScalarValue::BinaryView(v), m) => {
                    Transformed::yes(Expr::Literal(ScalarValue::Binary(v), m))
                }
                e => Transformed::no(e),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

/// The schema with its top-level view-typed columns made plain (`None` when there are none).
fn plain_schema(schema: &Schema) -> Option<SchemaRef> {
    if !schema
        .fields()
        .iter()
        .any(|f| plain_of(f.data_type()).is_some())
    {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match plain_of(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// `stream` with its view-typed columns cast to plain types, batch by batch, as it is read.
///
/// This is done on the stream, not as a projection in the plan: a projection above a sort
/// lets DataFusion's optimizer spread the casts over partitions (a round-robin repartition
/// it then merges without regard to order), which returned ORDER BY results as interleaved
/// sorted runs. On the stream, rows leave in exactly the order and partition the plan made.
pub(crate) fn plain_stream(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let Some(plain) = plain_schema(&stream.schema()) else {
        return stream;
    };
    let out = plain.clone();
    let cast_batch = move |batch: DFResult<RecordBatch>| -> DFResult<RecordBatch> {
        let batch = batch?;
        let columns = batch
            .columns()
            .iter()
            .zip(out.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(out.clone(), columns)?)
    };
    Box::pin(RecordBatchStreamAdapter::new(
        plain,
        futures::StreamExt::map(stream, cast_batch),
    ))
}

/// `plan` with each column cast to the type `want` gives it (same names, same order): how a
/// scan that produces plain types (iceberg-datafusion's) meets the view-typed table schema.
pub(crate) fn cast_plan_to(
    plan: Arc<dyn ExecutionPlan>,
    want: SchemaRef,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let have = plan.schema();
    if have.fields().len() != want.fields().len()
        || have
            .fields()
            .iter()
            .zip(want.fields())
            .all(|(h, w)| h.data_type() == w.data_type())
    {
        return Ok(plan);
    }
    let exprs = have
        .fields()
        .iter()
        .zip(want.fields())
        .map(|(h, w)| {
            let c = physical_col(h.name(), &have)?;
            let e = if h.data_type() == w.data_type() {
                c
            } else {
                physical_cast(c, &have, w.data_type().clone())?
            };
            Ok((e, w.name().clone()))
        })
        .collect::<DFResult<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn strings_and_binaries_become_views() {
        let s = Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, false),
            Field::new("c", DataType::Binary, true),
        ]);
        let v = to_view_types(&s);
        assert_eq!(v.field(0).data_type(), &DataType::Utf8View);
        assert_eq!(v.field(1).data_type(), &DataType::Int64);
        assert_eq!(v.field(2).data_type(), &DataType::BinaryView);
        assert!(v.field(0).is_nullable() && !v.field(1).is_nullable());
    }

    #[test]
    fn view_literals_become_plain() {
        let e = col("a").eq(Expr::Literal(ScalarValue::Utf8View(Some("x".into())), None));
        assert_eq!(plain_literals(&e), col("a").eq(lit("x")));
        let untouched = col("b").gt(lit(3));
        assert_eq!(plain_literals(&untouched), untouched);
    }
}
