//! Query results as the HTTP API answers them: JSON rows with their columns, or an Arrow IPC
//! stream.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use lakeplan_core::Error;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The media type a client asks `/api/v1/query` for to get a Flight ticket instead of a
/// redirect to the rows.
pub const FLIGHT_TICKET: &str = "application/vnd.lakeplan.flight+json";

pub use lakeplan_lake::{columns, json_rows};

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
