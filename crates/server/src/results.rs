//! Query results as the HTTP API answers them: JSON rows with their columns, or an Arrow IPC
//! stream.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use lakeplan_core::Error;
use serde_json::{json, Value};

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The media type a client asks `/api/v1/query` for to get a Flight ticket instead of a
/// redirect to the rows.
pub const FLIGHT_TICKET: &str = "application/vnd.lakeplan.flight+json";

/// `[{"name", "type"}]`, one per column.
pub fn columns(schema: &SchemaRef) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect()
}

/// `{"columns": [...], "rows": [{...}], "truncated": bool}`.
pub fn json_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    truncated: bool,
) -> Result<Value, Error> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        w.write(batch)
            .map_err(|e| Error::Internal(format!("JSON rows: {e}")))?;
    }
    w.finish()
        .map_err(|e| Error::Internal(format!("JSON rows: {e}")))?;
    let raw = w.into_inner();
    let rows: Value = if raw.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&raw).map_err(|e| Error::Internal(format!("JSON rows: {e}")))?
    };
    Ok(json!({"columns": columns(schema), "rows": rows, "truncated": truncated}))
}

/// The batches as one Arrow IPC stream.
pub fn ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let ipc_err = |e: arrow::error::ArrowError| Error::Internal(format!("Arrow IPC: {e}"));
    let mut buf = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema).map_err(ipc_err)?;
    for batch in batches {
        w.write(batch).map_err(ipc_err)?;
    }
    w.finish().map_err(ipc_err)?;
    drop(w);
    Ok(buf)
}
