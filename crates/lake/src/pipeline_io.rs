//! The data side of a pipeline run that happens in-process: scans of lake tables into Arrow IPC
//! files (with the node's columns and filter pushed into the Iceberg scan), SQL models executed
//! by DataFusion over the lake and the run's in-memory outputs, and output-contract checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::ipc::writer::FileWriter;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use lakeplan_core::{Error, Result};

use crate::audit::AuditTable;
use crate::view::{CommitView, Resolver};
use crate::Lake;

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Writes a stream of batches to an uncompressed Arrow IPC file; returns the row count and
/// the schema written.
pub(crate) async fn write_ipc(
    mut stream: SendableRecordBatchStream,
    path: &Path,
    what: &str,
) -> Result<(u64, SchemaRef)> {
    let schema = stream.schema();
    let file = std::fs::File::create(path).map_err(|e| Error::io(path.display(), e))?;
    let mut w = FileWriter::try_new(std::io::BufWriter::new(file), &schema)
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Error::Sql(format!("{what}: {e}")))?;
        rows += batch.num_rows() as u64;
        w.write(&batch)
            .map_err(|e| Error::Internal(format!("{what}: writing {}: {e}", path.display())))?;
    }
    w.finish()
        .map_err(|e| Error::Internal(format!("{what}: writing {}: {e}", path.display())))?;
    Ok((rows, schema))
}

/// A table provider over Arrow IPC files written by a run (an upstream node's output).
pub(crate) async fn ipc_table(
    ctx: &datafusion::prelude::SessionContext,
    path: &Path,
) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(path.display().to_string())
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let opts = ListingOptions::new(Arc::new(ArrowFormat)).with_file_extension(ext);
    let state = ctx.state();
    let schema = opts
        .infer_schema(&state, &url)
        .await
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(schema);
    let t = ListingTable::try_new(config)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(Arc::new(t))
}

impl Lake {
    /// A read-only session over commit `commit`, in namespace `ns`, where `overlay` tables
    /// (keyed `namespace.name`, Arrow IPC files) shadow the lake's.
    pub(crate) async fn run_session(
        &self,
        commit: &lakeplan_core::CommitId,
        ns: &str,
        overlay: &[(String, PathBuf)],
    ) -> Result<datafusion::prelude::SessionContext> {
        let view = Arc::new(CommitView {
            catalog: self.catalog.clone(),
            commit: commit.clone(),
            label: format!("@{}", commit.short()),
        });
        let probe = datafusion::prelude::SessionContext::new();
        let mut tables: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
        for (key, path) in overlay {
            tables.insert(key.clone(), ipc_table(&probe, path).await?);
        }
        lakeplan_sql::session_with_overlay(
            view,
            self.warehouse.clone(),
            Arc::new(Resolver {
                catalog: self.catalog.clone(),
            }),
            ns,
            vec![(
                "audit".to_string(),
                Arc::new(AuditTable::new(self.catalog.clone())) as _,
            )],
            tables,
        )
    }
}

/// Runs `sql` in `ctx` and writes its rows to `out`.
pub(crate) async fn sql_to_ipc(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    out: &Path,
    what: &str,
) -> Result<(u64, SchemaRef)> {
    let stream = lakeplan_sql::execute_stream(ctx, sql)
        .await
        .map_err(sql_context(what))?;
    write_ipc(stream, out, what).await
}

/// Prefixes a SQL error with what the SQL was for.
fn sql_context(what: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Sql(m) => Error::Sql(format!("{what}: {m}")),
        other => other,
    }
}

/// Runs `sql` in `ctx` and writes each output partition to its own IPC file
/// (`{stem}.{i}.arrow`), concurrently: the encode of a large scan uses every core. Returns the
/// row count and the files, in partition order.
pub(crate) async fn sql_to_ipc_parts(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    stem: &Path,
    what: &str,
) -> Result<(u64, Vec<PathBuf>)> {
    let streams = lakeplan_sql::execute_partitioned(ctx, sql)
        .await
        .map_err(sql_context(what))?;
    let mut tasks = Vec::new();
    let mut paths = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let path = PathBuf::from(format!("{}.{i}.arrow", stem.display()));
        paths.push(path.clone());
        let what = what.to_string();
        tasks.push(tokio::spawn(async move {
            write_ipc(stream, &path, &what).await
        }));
    }
    let mut rows = 0;
    for t in tasks {
        let (n, _) = t
            .await
            .map_err(|e| Error::Internal(format!("{what}: {e}")))??;
        rows += n;
    }
    Ok((rows, paths))
}

/// The SQL that reads a node's input table with its declared columns and filter, which
/// DataFusion pushes into the Iceberg scan (projection, and the filter as a scan predicate).
pub(crate) fn scan_sql(
    ns: &str,
    table: &str,
    columns: Option<&[String]>,
    filter: Option<&str>,
) -> String {
    let cols = match columns {
        Some(cs) if !cs.is_empty() => cs
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "*".to_string(),
    };
    let mut sql = format!(
        "SELECT {cols} FROM {}.{}",
        quote_ident(ns),
        quote_ident(table)
    );
    if let Some(f) = filter.filter(|f| !f.trim().is_empty()) {
        sql.push_str(&format!(" WHERE {f}"));
    }
    sql
}

/// The first (`head`) or last `n` rows of an IPC file, as a text table.
pub(crate) fn preview(path: &Path, head: bool, n: usize) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    for b in reader {
        let b = b.map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        rows += b.num_rows();
        batches.push(b);
        if head && rows >= n {
            break;
        }
    }
    let mut picked = Vec::new();
    if head {
        let mut left = n;
        for b in &batches {
            if left == 0 {
                break;
            }
            let take = left.min(b.num_rows());
            picked.push(b.slice(0, take));
            left -= take;
        }
    } else {
        let mut left = n;
        for b in batches.iter().rev() {
            if left == 0 {
                break;
            }
            let take = left.min(b.num_rows());
            picked.insert(0, b.slice(b.num_rows() - take, take));
            left -= take;
        }
    }
    arrow::util::pretty::pretty_format_batches(&picked)
        .map(|t| t.to_string())
        .map_err(|e| Error::Internal(e.to_string()))
}

/// One column of a declared output contract.
#[derive(Clone, Debug)]
pub(crate) struct ContractField {
    pub name: String,
    /// A Bauplan field type name: Int64, Float64, String, TimestampMicroUTC, ...
    pub ty: String,
    pub nullable: bool,
}

/// Whether an Arrow type satisfies a declared field type.
fn type_matches(declared: &str, actual: &DataType) -> bool {
    use DataType::*;
    match declared {
        "Any" => true,
        "Bool" => matches!(actual, Boolean),
        "Int32" => matches!(actual, Int32 | Int16 | Int8 | UInt16 | UInt8),
        "Int64" => matches!(
            actual,
            Int64 | Int32 | Int16 | Int8 | UInt32 | UInt16 | UInt8
        ),
        "Float64" => matches!(actual, Float64 | Float32),
        "String" => matches!(actual, Utf8 | LargeUtf8 | Utf8View),
        "Binary" => matches!(actual, Binary | LargeBinary | BinaryView),
        "Date32" => matches!(actual, Date32),
        "Date64" => matches!(actual, Date64),
        "TimestampMicro" => matches!(actual, Timestamp(TimeUnit::Microsecond, None)),
        "TimestampNano" => matches!(actual, Timestamp(TimeUnit::Nanosecond, None)),
        "TimestampMicroUTC" => matches!(actual, Timestamp(TimeUnit::Microsecond, Some(_))),
        "TimestampNanoUTC" => matches!(actual, Timestamp(TimeUnit::Nanosecond, Some(_))),
        _ => false,
    }
}

/// Checks an output's schema and null counts against its declared contract; returns every
/// violation (empty = the output honours it).
pub(crate) fn check_contract(path: &Path, contract: &[ContractField]) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let schema = reader.schema();
    let mut problems = Vec::new();
    let mut check_nulls = Vec::new();
    for f in contract {
        match schema.index_of(&f.name) {
            Err(_) => problems.push(format!("column '{}' ({}) is missing", f.name, f.ty)),
            Ok(i) => {
                let actual = schema.field(i).data_type();
                if !type_matches(&f.ty, actual) {
                    problems.push(format!(
                        "column '{}' has type {actual}, the contract says {}",
                        f.name, f.ty
                    ));
                }
                if !f.nullable {
                    check_nulls.push((i, f.name.clone()));
                }
            }
        }
    }
    if !check_nulls.is_empty() {
        let mut nulls = vec![0usize; check_nulls.len()];
        for batch in reader {
            let batch = batch.map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
            for (k, (i, _)) in check_nulls.iter().enumerate() {
                nulls[k] += batch.column(*i).null_count();
            }
        }
        for (k, (_, name)) in check_nulls.iter().enumerate() {
            if nulls[k] > 0 {
                problems.push(format!(
                    "column '{name}' is not nullable in the contract but has {} null(s)",
                    nulls[k]
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;

    fn write(path: &Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        let mut w = FileWriter::try_new(std::fs::File::create(path).unwrap(), &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }

    fn field(name: &str, ty: &str, nullable: bool) -> ContractField {
        ContractField {
            name: name.into(),
            ty: ty.into(),
            nullable,
        }
    }

    #[test]
    fn contract_violations_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.arrow");
        write(&p);
        assert!(check_contract(
            &p,
            &[field("id", "Int64", true), field("name", "String", true)]
        )
        .unwrap()
        .is_empty());
        let v = check_contract(
            &p,
            &[
                field("id", "Int64", false),
                field("name", "Float64", true),
                field("extra", "Bool", true),
            ],
        )
        .unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v.iter().any(|m| m.contains("'id'") && m.contains("1 null")));
        assert!(v
            .iter()
            .any(|m| m.contains("'name'") && m.contains("Float64")));
        assert!(v
            .iter()
            .any(|m| m.contains("'extra'") && m.contains("missing")));
    }

    #[test]
    fn scan_sql_quotes_and_filters() {
        assert_eq!(
            scan_sql(
                "default",
                "trips",
                Some(&["a".into(), "B c".into()]),
                Some("a > 3")
            ),
            "SELECT \"a\", \"B c\" FROM \"default\".\"trips\" WHERE a > 3"
        );
        assert_eq!(scan_sql("n", "t", None, None), "SELECT * FROM \"n\".\"t\"");
    }
}
