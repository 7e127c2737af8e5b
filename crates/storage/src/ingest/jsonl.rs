//! JSON Lines, read as ingestion needs them rather than through DataFusion's JSON reader:
//! numbers and booleans are taken as their text where a column is a string (what schema
//! inference makes of a column of mixed values, and what the README promises: anything converts
//! to string), a large file is split in line-aligned byte ranges read in parallel, and every
//! error names the line of the file it is on.

use std::cell::Cell;
use std::sync::Arc;

use arrow::datatypes::{Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::{infer_json_schema_from_iterator, Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use lakeplan_core::{Error, Result};
use tokio::sync::mpsc::Sender;

use super::source::chunks;
use super::SourceFile;

/// Records read to infer a file's schema (as for CSV).
const INFER_RECORDS: usize = 100_000;

/// Files smaller than this are read as one range.
const MIN_RANGE: u64 = 16 << 20;

/// The schema of a JSON Lines file, from its first records.
pub(super) async fn infer(f: &SourceFile) -> Result<ArrowSchema> {
    let mut values = Vec::new();
    let mut lines = LineSplitter::new(chunks(f, 0).await?, 0, u64::MAX);
    let mut line_no = 0u64;
    while values.len() < INFER_RECORDS {
        let Some((line, _)) = lines.next().await? else {
            break;
        };
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&line).map_err(|e| {
            let text = e.to_string();
            let reason = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m);
            let message = match e.column() {
                0 => format!("not valid JSON: {reason}"),
                c => format!("column {c}: not valid JSON: {reason}"),
            };
            bad(f, line_no, &message)
        })?;
        values.push((line_no, value));
    }
    // The inference stops at the first record it cannot take: the line of the last one given.
    let at = Cell::new(0);
    infer_json_schema_from_iterator(values.iter().map(|(n, v)| {
        at.set(*n);
        Ok::<_, ArrowError>(v)
    }))
    .map_err(|e| bad(f, at.get(), &arrow_message(&e)))
}

/// A DataFrame over a JSON Lines file read as `schema`.
pub(super) fn frame(
    ctx: &SessionContext,
    f: &SourceFile,
    schema: &ArrowSchema,
) -> Result<DataFrame> {
    let schema = Arc::new(schema.clone());
    let n = if f.size < MIN_RANGE {
        1
    } else {
        ctx.state().config().target_partitions().max(1) as u64
    };
    let ranges = (0..n)
        .map(|i| {
            Arc::new(Range {
                file: f.clone(),
                schema: schema.clone(),
                start: f.size * i / n,
                end: f.size * (i + 1) / n,
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let table =
        StreamingTable::try_new(schema, ranges).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.read_table(Arc::new(table))
        .map_err(|e| Error::Internal(format!("reading {}: {e}", f.path)))
}

fn bad(f: &SourceFile, line: u64, message: &str) -> Error {
    Error::InvalidData {
        path: f.path.clone(),
        message: format!("line {line}: {message}"),
    }
}

fn arrow_message(e: &ArrowError) -> String {
    let text = e.to_string();
    text.strip_prefix("Json error: ")
        .unwrap_or(&text)
        .to_string()
}

fn decoder(schema: &ArrowSchemaRef, batch_size: usize) -> std::result::Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build_decoder()
}

/// The lines whose first byte is in `start..end` of a file.
#[derive(Debug)]
struct Range {
    file: SourceFile,
    schema: ArrowSchemaRef,
    start: u64,
    end: u64,
}

/// Why a range stopped early.
enum Stop {
    Failed(Error),
    /// The reader of the rows went away (the query was dropped).
    Dropped,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl PartitionStream for Range {
    fn schema(&self) -> &ArrowSchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch_size = ctx.session_config().batch_size();
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let (file, schema, start, end) =
            (self.file.clone(), self.schema.clone(), self.start, self.end);
        builder.spawn(async move {
            match read_range(&file, &schema, start, end, batch_size, &tx).await {
                Ok(()) | Err(Stop::Dropped) => Ok(()),
                // The message goes on without the path: whoever reads the rows names the file.
                Err(Stop::Failed(Error::InvalidData { message, .. })) => {
                    Err(DataFusionError::External(message.into()))
                }
                Err(Stop::Failed(e)) => Err(DataFusionError::External(Box::new(e))),
            }
        });
        builder.build()
    }
}

async fn read_range(
    file: &SourceFile,
    schema: &ArrowSchemaRef,
    start: u64,
    end: u64,
    batch_size: usize,
    tx: &Sender<datafusion::error::Result<RecordBatch>>,
) -> std::result::Result<(), Stop> {
    // From the byte before the range: the line it ends (if any) belongs to the range before.
    let from = start.saturating_sub(1);
    let mut lines = LineSplitter::new(chunks(file, from).await?, from, end);
    let mut batch = Batch {
        file,
        schema,
        decoder: decoder(schema, batch_size).map_err(|e| Error::Internal(e.to_string()))?,
        batch_size,
        lines: Vec::new(),
        first_line: 0,
        next_line: 0,
        range_at: None,
    };
    if start > 0 {
        lines.next().await?;
    }
    while let Some((line, at)) = lines.next().await? {
        batch.range_at.get_or_insert(at);
        batch.push(&line, tx).await?;
    }
    batch.flush(tx).await
}

/// Splits a byte stream into lines (with their `\n`), each with the offset it starts at, up to
/// the first line that starts at or after `end`.
struct LineSplitter {
    bytes: futures::stream::BoxStream<'static, Result<bytes::Bytes>>,
    carry: Vec<u8>,
    /// The file offset of `carry[0]`.
    at: u64,
    end: u64,
    eof: bool,
}

impl LineSplitter {
    fn new(
        bytes: futures::stream::BoxStream<'static, Result<bytes::Bytes>>,
        at: u64,
        end: u64,
    ) -> Self {
        LineSplitter {
            bytes,
            carry: Vec::new(),
            at,
            end,
            eof: false,
        }
    }

    async fn next(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        let mut searched = 0;
        loop {
            if self.at >= self.end {
                return Ok(None);
            }
            let cut = match memchr::memchr(b'\n', &self.carry[searched..]) {
                Some(i) => searched + i + 1,
                None if self.eof && !self.carry.is_empty() => self.carry.len(),
                None if self.eof => return Ok(None),
                None => {
                    searched = self.carry.len();
                    match self.bytes.next().await {
                        Some(chunk) => self.carry.extend_from_slice(&chunk?),
                        None => self.eof = true,
                    }
                    continue;
                }
            };
            let rest = self.carry.split_off(cut);
            let line = std::mem::replace(&mut self.carry, rest);
            let at = self.at;
            self.at += line.len() as u64;
            return Ok(Some((line, at)));
        }
    }
}

/// The rows being decoded into one batch, with their lines kept to find the one at fault.
struct Batch<'a> {
    file: &'a SourceFile,
    schema: &'a ArrowSchemaRef,
    decoder: Decoder,
    batch_size: usize,
    /// The lines of the rows not flushed yet.
    lines: Vec<u8>,
    /// Of the range's lines (from 0): the first in `lines`, and the next to come.
    first_line: u64,
    next_line: u64,
    /// The offset of the range's first line.
    range_at: Option<u64>,
}

impl Batch<'_> {
    async fn push(
        &mut self,
        line: &[u8],
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> std::result::Result<(), Stop> {
        self.lines.extend_from_slice(line);
        let mut rest = line;
        loop {
            let n = match self.decoder.decode(rest) {
                Ok(n) => n,
                Err(e) => return Err(self.fault(e).await.into()),
            };
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            // A full batch stopped the decoder inside the line (several records on one line).
            self.flush(tx).await?;
            self.lines.extend_from_slice(rest);
        }
        self.next_line += 1;
        if self.decoder.len() >= self.batch_size {
            self.flush(tx).await?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> std::result::Result<(), Stop> {
        match self.decoder.flush() {
            Ok(Some(batch)) => tx.send(Ok(batch)).await.map_err(|_| Stop::Dropped)?,
            Ok(None) => {}
            Err(e) => return Err(self.fault(e).await.into()),
        }
        self.lines.clear();
        self.first_line = self.next_line;
        Ok(())
    }

    /// The error `e` of the batch, on its line of the file.
    async fn fault(&mut self, e: ArrowError) -> Error {
        let (line, message) = self.locate(e);
        match lines_before(self.file, self.range_at.unwrap_or(0)).await {
            Ok(before) => bad(self.file, before + line + 1, &message),
            Err(e) => e,
        }
    }

    /// The first of the batch's lines that fails on its own (of the range's lines, from 0), with
    /// its error; the batch's first line and `e` if none does.
    fn locate(&self, e: ArrowError) -> (u64, String) {
        for (i, text) in self.lines.split_inclusive(|b| *b == b'\n').enumerate() {
            let alone = decoder(self.schema, 2).and_then(|mut d| {
                let n = d.decode(text)?;
                if n < text.len() {
                    return Err(ArrowError::JsonError(
                        "more than one record on the line".into(),
                    ));
                }
                d.flush()
            });
            if let Err(e) = alone {
                return (self.first_line + i as u64, arrow_message(&e));
            }
        }
        (self.first_line, arrow_message(&e))
    }
}

/// The lines of a file before offset `until`.
async fn lines_before(file: &SourceFile, until: u64) -> Result<u64> {
    let mut bytes = chunks(file, 0).await?;
    let (mut seen, mut lines) = (0u64, 0u64);
    while seen < until {
        let Some(chunk) = bytes.next().await else {
            break;
        };
        let chunk = chunk?;
        let take = chunk.len().min((until - seen) as usize);
        lines += memchr::memchr_iter(b'\n', &chunk[..take]).count() as u64;
        seen += take as u64;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field};

    use crate::ingest::Format;

    fn file(dir: &tempfile::TempDir, text: &str) -> SourceFile {
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, text).unwrap();
        SourceFile {
            path: path.display().to_string(),
            size: text.len() as u64,
            format: Format::Jsonl,
        }
    }

    /// Every range of `f` cut at `cuts`, read with batches of 16 rows: its values of `n`, or
    /// the first error.
    async fn read_cut(f: &SourceFile, cuts: &[u64]) -> Result<Vec<i64>> {
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(
            "n",
            DataType::Int64,
            true,
        )]));
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(f.size);
        let mut out = Vec::new();
        for w in bounds.windows(2) {
            let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
            match read_range(f, &schema, w[0], w[1], 16, &tx).await {
                Ok(()) => {}
                Err(Stop::Failed(e)) => return Err(e),
                Err(Stop::Dropped) => panic!("the receiver is here"),
            }
            drop(tx);
            while let Some(batch) = rx.recv().await {
                let batch = batch.unwrap();
                let n = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                out.extend((0..n.len()).map(|i| n.value(i)));
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn ranges_read_every_line_once_and_errors_name_the_line_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // 300 records, a blank line after every 10th.
        let text: String = (0..300)
            .map(|i| format!("{{\"n\": {i}}}\n{}", if i % 10 == 0 { "\n" } else { "" }))
            .collect();
        let f = file(&dir, &text);
        let size = f.size;
        for cuts in [
            vec![],
            vec![1],
            vec![size / 3, size / 2, size - 1],
            (1..40).map(|i| i * 97).collect(),
        ] {
            let got = read_cut(&f, &cuts).await.unwrap();
            assert_eq!(got, (0..300).collect::<Vec<_>>(), "cuts {cuts:?}");
        }

        // Record 250 (line 250 + 25 blank lines + 1) is not a number; line 281 is not JSON.
        let bad: String = text
            .lines()
            .map(|l| {
                if l == "{\"n\": 250}" {
                    "{\"n\": \"x\"}"
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let f = file(&dir, &bad);
        for cuts in [vec![], vec![f.size / 2], (1..40).map(|i| i * 97).collect()] {
            let e = read_cut(&f, &cuts).await.unwrap_err().to_string();
            assert!(e.contains("f.jsonl: line 276: "), "cuts {cuts:?}: {e}");
        }
    }

    #[tokio::test]
    async fn inference_takes_mixed_values_as_strings_and_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "{\"v\": \"a\"}\n{\"v\": 1}\n");
        let schema = infer(&f).await.unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        let f = file(&dir, "{\"v\": 1}\n\n{\"v\": 2\n");
        let e = infer(&f).await.unwrap_err().to_string();
        assert!(e.contains("line 3: not valid JSON"), "{e}");
        let f = file(&dir, "{\"v\": 1}\n[1]\n");
        let e = infer(&f).await.unwrap_err().to_string();
        assert!(e.contains("line 2: "), "{e}");
    }
}
