//! Ingestion: find source files, infer their schemas, plan a table, and import files into a
//! table in parallel as one append (or nothing).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::prelude::{
    cast, CsvReadOptions, DataFrame, Expr, ParquetReadOptions, SessionContext,
};
use futures::StreamExt;
use iceberg::arrow::{schema_to_arrow_schema, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, DataFileFormat, NestedField, Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::TableUpdate;
use lakeplan_core::{Error, Result, TableName};
use serde::{Deserialize, Serialize};

use crate::reach::{not_there, Reach};
use crate::s3::{self, S3Url};
use crate::schema::{
    fit, iceberg_type, normalize_schema, unify, ColumnConflict, PartitionColumn, PlannedColumn,
    TypeFit,
};
use crate::{from_iceberg, StagedCatalog};

mod jsonl;
mod source;

/// The snapshot-summary property listing the source files an append imported.
pub const SOURCE_FILES_PROPERTY: &str = "lakeplan.source-files";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    Jsonl,
    /// Arrow IPC file format (`.arrow`, `.ipc`, `.feather` v2): what pipeline functions produce.
    Arrow,
}

impl Format {
    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "arrow" | "ipc" | "feather" => Ok(Format::Arrow),
            _ => Err(Error::InvalidData {
                path: path.display().to_string(),
                message: format!(
                    "unknown file extension '{ext}': lakeplan imports .csv/.tsv, .parquet, .jsonl/.ndjson/.json (one JSON object per line) and .arrow/.ipc/.feather (Arrow IPC files)"
                ),
            }),
        }
    }
}

/// One file to import.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourceFile {
    pub path: String,
    pub size: u64,
    pub format: Format,
}

/// Finds the files a search URI names: a file, a folder (every file with a known extension
/// below it), or a glob (`data/*.csv`, `data/**/*.parquet`); locally or as
/// `s3://bucket/prefix/...` (a key prefix, or a glob over keys). Files out of `reach` are not
/// there: each is checked where it resolves (its canonical path, its listed key) before
/// anything about it is read or reported.
pub async fn discover(uri: &str, reach: &Reach) -> Result<Vec<SourceFile>> {
    if uri.starts_with("s3://") {
        return discover_s3(uri, reach).await;
    }
    let local = uri.strip_prefix("file://").unwrap_or(uri);
    let mut paths: Vec<PathBuf> = Vec::new();
    if local.contains(['*', '?', '[']) {
        let matches =
            glob::glob(local).map_err(|e| Error::InvalidInput(format!("bad glob '{uri}': {e}")))?;
        for m in matches {
            let p = m.map_err(|e| Error::io(uri, e.into()))?;
            if p.is_file() {
                paths.push(p);
            }
        }
    } else {
        let p = PathBuf::from(local);
        // A path the user named that is not there (or not theirs to read) is their input's
        // fault, said as such: a server reports it as a bad request, not an internal error.
        let meta = std::fs::metadata(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::InvalidInput(format!("'{uri}': no such file or folder"))
            }
            std::io::ErrorKind::PermissionDenied => {
                Error::InvalidInput(format!("'{uri}': permission denied"))
            }
            _ => Error::io(uri, e),
        })?;
        if meta.is_dir() {
            walk(&p, &mut paths)?;
            paths.retain(|p| Format::from_path(p).is_ok());
        } else {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        return Err(Error::InvalidInput(format!("no files match '{uri}'")));
    }
    paths.sort();
    let mut resolved = Vec::with_capacity(paths.len());
    for p in paths {
        // A file out of reach is skipped before anything about it is said, even its failing.
        let abs = match p.canonicalize() {
            Ok(abs) => abs,
            Err(_) if !reach.allows(&p.display().to_string()) => continue,
            Err(e) => return Err(Error::io(p.display(), e)),
        };
        if reach.allows(&abs.display().to_string()) {
            resolved.push((p, abs));
        }
    }
    if resolved.is_empty() {
        return Err(not_there(uri));
    }
    resolved
        .into_iter()
        .map(|(p, abs)| {
            let format = Format::from_path(&p)?;
            let size = std::fs::metadata(&abs)
                .map_err(|e| Error::io(abs.display(), e))?
                .len();
            Ok(SourceFile {
                path: abs.display().to_string(),
                size,
                format,
            })
        })
        .collect()
}

async fn discover_s3(uri: &str, reach: &Reach) -> Result<Vec<SourceFile>> {
    let u = S3Url::parse(uri)?;
    let glob_at = u.prefix.find(['*', '?', '[']);
    // List below the longest literal folder; match keys against the glob, if any.
    let (list_prefix, pattern) = match glob_at {
        Some(i) => {
            let folder = u.prefix[..i].rfind('/').map_or("", |j| &u.prefix[..j]);
            let pat = glob::Pattern::new(&u.prefix)
                .map_err(|e| Error::InvalidInput(format!("bad glob '{uri}': {e}")))?;
            (folder.to_string(), Some(pat))
        }
        None => (u.prefix.clone(), None),
    };
    let store = s3::object_store(&u.bucket)?;
    if pattern.is_none() && !u.prefix.is_empty() {
        // One object?
        use object_store::ObjectStoreExt;
        match store
            .head(&object_store::path::Path::from(u.prefix.as_str()))
            .await
        {
            Ok(meta) => {
                let path = format!("s3://{}/{}", u.bucket, meta.location);
                reach.check(&path).map_err(|_| not_there(uri))?;
                return Ok(vec![SourceFile {
                    path,
                    size: meta.size,
                    format: Format::from_path(Path::new(&u.prefix))?,
                }]);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::Storage(format!("reading {uri}: {e}"))),
        }
    }
    let prefix =
        (!list_prefix.is_empty()).then(|| object_store::path::Path::from(list_prefix.as_str()));
    let mut listing = store.list(prefix.as_ref());
    let mut out = Vec::new();
    let mut hidden = false;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::Storage(format!("listing {uri}: {e}")))?;
        let key = meta.location.to_string();
        let keep = match &pattern {
            Some(p) => p.matches(&key),
            // a prefix names one object or a folder of objects
            None => {
                key == u.prefix || u.prefix.is_empty() || key.starts_with(&format!("{}/", u.prefix))
            }
        };
        if !keep {
            continue;
        }
        if !reach.allows(&format!("s3://{}/{key}", u.bucket)) {
            hidden = true;
            continue;
        }
        let path = Path::new(&key);
        let format = match Format::from_path(path) {
            Ok(f) => f,
            Err(e) if pattern.is_some() || key == u.prefix => return Err(e),
            Err(_) => continue,
        };
        out.push(SourceFile {
            path: format!("s3://{}/{key}", u.bucket),
            size: meta.size,
            format,
        });
    }
    if out.is_empty() && hidden {
        return Err(not_there(uri));
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(format!("no files match '{uri}'")));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A DataFusion context that can read `files` (object stores registered for S3 buckets).
pub fn source_context(files: &[SourceFile]) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    let mut buckets = BTreeSet::new();
    for f in files {
        if f.path.starts_with("s3://") {
            buckets.insert(S3Url::parse(&f.path)?.bucket);
        }
    }
    for b in buckets {
        let url = url::Url::parse(&format!("s3://{b}"))
            .map_err(|e| Error::InvalidInput(format!("bucket '{b}': {e}")))?;
        ctx.register_object_store(&url, s3::object_store(&b)?);
    }
    Ok(ctx)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The first bytes of a file (64 KiB at most), local or on S3.
async fn head_bytes(f: &SourceFile) -> Result<Vec<u8>> {
    let n = f.size.min(64 * 1024);
    if f.path.starts_with("s3://") {
        use object_store::ObjectStoreExt;
        let u = S3Url::parse(&f.path)?;
        let store = s3::object_store(&u.bucket)?;
        let bytes = store
            .get_range(&object_store::path::Path::from(u.prefix.as_str()), 0..n)
            .await
            .map_err(|e| Error::Storage(format!("reading {}: {e}", f.path)))?;
        return Ok(bytes.to_vec());
    }
    use std::io::Read;
    let mut buf = vec![0u8; n as usize];
    let mut file = std::fs::File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
    let read = file.read(&mut buf).map_err(|e| Error::io(&f.path, e))?;
    buf.truncate(read);
    Ok(buf)
}

/// Guesses a CSV delimiter from the first line: the most frequent of `,`, tab, `;`, `|`.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let first = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let best = [b',', b'\t', b';', b'|']
        .into_iter()
        .map(|d| (first.iter().filter(|b| **b == d).count(), d))
        .max_by_key(|(c, _)| *c);
    match best {
        Some((c, d)) if c > 0 => d,
        _ => b',',
    }
}

/// Refuses a file with two columns of one name (DataFusion's CSV reader would keep one of them
/// and misread every row).
fn check_unique<'a>(f: &SourceFile, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Error::InvalidData {
                path: f.path.clone(),
                message: format!(
                    "column '{name}' appears more than once: every column needs its own name"
                ),
            });
        }
    }
    Ok(())
}

/// The column names of a CSV file's header.
fn csv_header(f: &SourceFile, head: &[u8], delimiter: u8) -> Result<Vec<String>> {
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(delimiter)
        .infer_schema(std::io::Cursor::new(head), Some(0))
        .map_err(|e| Error::InvalidData {
            path: f.path.clone(),
            message: format!("header: {e}"),
        })?;
    Ok(schema.fields().iter().map(|c| c.name().clone()).collect())
}

fn ext_of(path: &str) -> String {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

/// Opens a file as a DataFrame, with `schema` if already inferred. Without one (the first
/// read of a file, which both `table create` and `table import` do) the file is checked first:
/// its first bytes against its extension, a CSV file's header and its quoting to the end.
async fn read(
    ctx: &SessionContext,
    f: &SourceFile,
    schema: Option<&ArrowSchema>,
) -> Result<DataFrame> {
    if f.size == 0 {
        return Err(Error::InvalidData {
            path: f.path.clone(),
            message: "file is empty".into(),
        });
    }
    let ext = ext_of(&f.path);
    let wrap = |e: datafusion::error::DataFusionError| Error::InvalidData {
        path: f.path.clone(),
        message: clean_df_error(&e, &f.path),
    };
    let head = head_bytes(f).await?;
    source::check_signature(f, &head)?;
    match f.format {
        Format::Csv => {
            let delimiter = sniff_delimiter(&head);
            if schema.is_none() {
                check_unique(
                    f,
                    csv_header(f, &head, delimiter)?.iter().map(String::as_str),
                )?;
                source::check_quotes(f, delimiter).await?;
            }
            let mut opts = CsvReadOptions::new()
                .has_header(true)
                .delimiter(delimiter)
                .file_extension(&ext)
                .schema_infer_max_records(100_000);
            if let Some(s) = schema {
                opts = opts.schema(s);
            }
            ctx.read_csv(&f.path, opts).await.map_err(wrap)
        }
        Format::Jsonl => match schema {
            Some(s) => jsonl::frame(ctx, f, s),
            None => jsonl::frame(ctx, f, &jsonl::infer(f).await?),
        },
        Format::Parquet => {
            let opts = ParquetReadOptions::default().file_extension(&ext);
            ctx.read_parquet(&f.path, opts).await.map_err(wrap)
        }
        Format::Arrow => {
            let opts = ArrowReadOptions {
                file_extension: &ext,
                ..Default::default()
            };
            ctx.read_arrow(&f.path, opts).await.map_err(wrap)
        }
    }
}

/// A DataFusion error's message for a user, about the file at `path` (which the error it goes
/// into names already).
fn clean_df_error(e: &datafusion::error::DataFusionError, path: &str) -> String {
    let text = e
        .to_string()
        .replace("Arrow error: ", "")
        .replace("External error: ", "");
    // DataFusion names the file again by its object-store path (without the leading '/', or
    // without the bucket): "Error when processing CSV file <path>\ncaused by\n<reason>".
    let store_path = match path.strip_prefix("s3://") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, key)| key),
        None => path.trim_start_matches('/'),
    };
    let text = text.replace(path, store_path);
    match text.find(store_path) {
        Some(i) => {
            let after = &text[i + store_path.len()..];
            match after.split_once("caused by") {
                Some((_, reason)) => reason.trim().to_string(),
                None => text.replace(store_path, "the file"),
            }
        }
        None => text,
    }
}

/// The schema a file would bring (as read, before normalization).
pub async fn infer_schema(ctx: &SessionContext, f: &SourceFile) -> Result<ArrowSchema> {
    let df = read(ctx, f, None).await?;
    let schema = df.schema().as_arrow().clone();
    check_unique(f, schema.fields().iter().map(|c| c.name().as_str()))?;
    if schema.fields().is_empty() {
        return Err(Error::InvalidData {
            path: f.path.clone(),
            message: "no columns found".into(),
        });
    }
    Ok(schema)
}

/// A table creation plan: the schema inferred from the files, with every conflict listed.
/// Saved as YAML by `table create-plan`; applied by `table create-plan-apply`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CreatePlan {
    pub table: String,
    pub search_uri: String,
    pub branch: String,
    #[serde(default)]
    pub replace: bool,
    pub schema: Vec<PlannedColumn>,
    #[serde(default)]
    pub partitions: Vec<PartitionColumn>,
    #[serde(default)]
    pub conflicts: Vec<ColumnConflict>,
    pub files: Vec<SourceFile>,
}

impl CreatePlan {
    pub fn can_auto_apply(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// Infers the columns of a table from files.
pub async fn plan_columns(
    files: &[SourceFile],
) -> Result<(Vec<PlannedColumn>, Vec<ColumnConflict>)> {
    let ctx = source_context(files)?;
    let mut schemas = Vec::with_capacity(files.len());
    for f in files {
        schemas.push((
            f.path.clone(),
            normalize_schema(&infer_schema(&ctx, f).await?),
        ));
    }
    unify(&schemas)
}

#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub continue_on_error: bool,
    pub import_duplicate_files: bool,
    /// The files are temporary (a pipeline's outputs): don't record their paths as imported
    /// sources, and don't skip them as duplicates.
    pub untracked_sources: bool,
    /// Extra properties for the snapshot summary (a pipeline run's job id, say).
    pub snapshot_properties: HashMap<String, String>,
    /// Files imported at once; 0 = the number of cores.
    pub parallelism: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileResult {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImportReport {
    pub imported: Vec<FileResult>,
    pub skipped: Vec<SkippedFile>,
    pub duplicates: Vec<String>,
    pub schema_changes: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    pub data_files: usize,
}

/// What an import tells its progress display.
#[derive(Clone, Debug)]
pub enum Progress {
    Start { files: usize, bytes: u64 },
    Rows(u64),
    FileDone { path: String, bytes: u64 },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

fn imported_files(table: &Table) -> BTreeSet<String> {
    table
        .metadata()
        .snapshots()
        .filter_map(|s| s.summary().additional_properties.get(SOURCE_FILES_PROPERTY))
        .flat_map(|v| v.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Checks one file's columns against the (evolving) table schema and records what must change.
/// Returns Err(SchemaConflict) naming the file and column when Iceberg cannot take the file.
fn check_file(
    path: &str,
    file: &ArrowSchema,
    cols: &mut Vec<(String, Type, bool)>,
    changes: &mut Vec<String>,
) -> Result<()> {
    let mut next = cols.clone();
    let mut notes = Vec::new();
    for f in file.fields() {
        let ty = iceberg_type(f.data_type()).map_err(|e| Error::SchemaConflict {
            path: path.into(),
            column: f.name().clone(),
            message: e.to_string(),
        })?;
        match next.iter_mut().find(|(n, _, _)| n == f.name()) {
            Some((name, table_ty, _)) => match fit(table_ty, &ty) {
                TypeFit::Fits => {}
                TypeFit::Widen(w) => {
                    notes.push(format!("widen column '{name}' from {table_ty} to {w}"));
                    *table_ty = w;
                }
                TypeFit::Incompatible => {
                    return Err(Error::SchemaConflict {
                        path: path.into(),
                        column: name.clone(),
                        message: format!(
                            "the file has type {ty}, the table has {table_ty}, and Iceberg cannot promote one to the other"
                        ),
                    })
                }
            },
            None => {
                notes.push(format!("add column '{}' ({ty})", f.name()));
                next.push((f.name().clone(), ty, false));
            }
        }
    }
    for (name, _, required) in cols.iter() {
        if *required && file.field_with_name(name).is_err() {
            return Err(Error::SchemaConflict {
                path: path.into(),
                column: name.clone(),
                message: "the column is required in the table but missing from the file".into(),
            });
        }
    }
    *cols = next;
    changes.extend(notes);
    Ok(())
}

/// Imports `files` into `table` as staged in `staged`: schema evolution (new columns, widened
/// types) and one fast-append of every file's data. Files are read and written in parallel.
/// On any error nothing is staged, unless `continue_on_error`, which skips the bad files and
/// reports each.
pub async fn import(
    staged: &StagedCatalog,
    name: &TableName,
    files: Vec<SourceFile>,
    opts: &ImportOptions,
    progress: ProgressFn,
) -> Result<ImportReport> {
    let mut table = staged.load(name).await?;
    let mut report = ImportReport::default();
    let already = imported_files(&table);
    let mut todo = Vec::new();
    for f in files {
        if !opts.import_duplicate_files && !opts.untracked_sources && already.contains(&f.path) {
            report.duplicates.push(f.path);
        } else {
            todo.push(f);
        }
    }

    // 1. Schemas: infer each file's and check it against the table.
    let ctx = source_context(&todo)?;
    let schema = table.metadata().current_schema().clone();
    let mut cols: Vec<(String, Type, bool)> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), (*f.field_type).clone(), f.required))
        .collect();
    let mut ready: Vec<(SourceFile, ArrowSchema)> = Vec::new();
    for f in todo {
        let checked = match infer_schema(&ctx, &f).await {
            Ok(s) => check_file(
                &f.path,
                &normalize_schema(&s),
                &mut cols,
                &mut report.schema_changes,
            )
            .map(|_| s),
            Err(e) => Err(e),
        };
        match checked {
            Ok(s) => ready.push((f, s)),
            Err(e) if opts.continue_on_error => report.skipped.push(SkippedFile {
                path: f.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }

    // 2. Evolve the schema if the files bring new columns or wider types.
    if !report.schema_changes.is_empty() {
        let mut next_id = table.metadata().last_column_id();
        let fields = cols
            .iter()
            .map(|(n, t, req)| {
                let id = match schema.field_by_name(n) {
                    Some(f) => f.id,
                    None => {
                        next_id += 1;
                        next_id
                    }
                };
                Arc::new(if *req {
                    NestedField::required(id, n, t.clone())
                } else {
                    NestedField::optional(id, n, t.clone())
                })
            })
            .collect::<Vec<_>>();
        let new_schema = Schema::builder()
            .with_schema_id(schema.schema_id() + 1)
            .with_fields(fields)
            .build()
            .map_err(from_iceberg)?;
        table = staged
            .apply_updates(
                &table,
                vec![
                    TableUpdate::AddSchema { schema: new_schema },
                    TableUpdate::SetCurrentSchema { schema_id: -1 },
                ],
            )
            .await?;
    }

    // 3. Write every file's rows as Parquet data files, in parallel.
    (progress)(Progress::Start {
        files: ready.len(),
        bytes: ready.iter().map(|(f, _)| f.size).sum(),
    });
    let parallelism = if opts.parallelism == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.parallelism
    };
    let target =
        Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).map_err(from_iceberg)?);
    let results = futures::stream::iter(ready.into_iter().map(|(f, s)| {
        let table = table.clone();
        let target = target.clone();
        let progress = progress.clone();
        let ctx = ctx.clone();
        async move {
            let path = f.path.clone();
            let size = f.size;
            let out =
                tokio::spawn(
                    async move { write_file(&ctx, &table, &f, &s, target, progress).await },
                )
                .await
                .map_err(|e| Error::Internal(format!("import task for {path}: {e}")))
                .and_then(|r| r);
            (path, size, out)
        }
    }))
    .buffer_unordered(parallelism)
    .collect::<Vec<_>>()
    .await;

    let mut data_files: Vec<DataFile> = Vec::new();
    let mut sources = Vec::new();
    for (path, size, out) in results {
        match out {
            Ok((files, rows)) => {
                (progress)(Progress::FileDone {
                    path: path.clone(),
                    bytes: size,
                });
                report.rows += rows;
                report.bytes += size;
                report.data_files += files.len();
                data_files.extend(files);
                sources.push(path.clone());
                report.imported.push(FileResult {
                    path,
                    rows,
                    bytes: size,
                });
            }
            Err(e) if opts.continue_on_error => report.skipped.push(SkippedFile {
                path,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    report.imported.sort_by(|a, b| a.path.cmp(&b.path));

    // 4. One append for everything.
    if !data_files.is_empty() {
        sources.sort();
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .add_data_files(data_files)
            .set_snapshot_properties(snapshot_properties(opts, &sources))
            .apply(tx)
            .map_err(from_iceberg)?;
        tx.commit(staged).await.map_err(from_iceberg)?;
    }
    Ok(report)
}

/// The summary properties of an import's snapshot: the caller's, plus the source files unless
/// they are temporary.
fn snapshot_properties(opts: &ImportOptions, sources: &[String]) -> HashMap<String, String> {
    let mut props = opts.snapshot_properties.clone();
    if !opts.untracked_sources {
        props.insert(SOURCE_FILES_PROPERTY.to_string(), sources.join("\n"));
    }
    props
}

/// Reads one source file and writes its rows as Parquet data files. The file is read in
/// the session's target partitions (DataFusion splits large CSV/JSON/Parquet files by byte
/// range), and each partition is encoded by its own writer on its own task, so a single large
/// file uses every core.
async fn write_file(
    ctx: &SessionContext,
    table: &Table,
    f: &SourceFile,
    file_schema: &ArrowSchema,
    target: ArrowSchemaRef,
    progress: ProgressFn,
) -> Result<(Vec<DataFile>, u64)> {
    let bad = |message: String| Error::InvalidData {
        path: f.path.clone(),
        message,
    };
    let df = read(ctx, f, Some(file_schema)).await?;
    let exprs: Vec<Expr> = target
        .fields()
        .iter()
        .map(|field| {
            let e = if file_schema.field_with_name(field.name()).is_ok() {
                Expr::Column(Column::new_unqualified(field.name()))
            } else {
                Expr::Literal(ScalarValue::Null, None)
            };
            cast(e, field.data_type().clone()).alias(field.name())
        })
        .collect();
    let df = df
        .select(exprs)
        .map_err(|e| bad(clean_df_error(&e, &f.path)))?;
    let streams = df
        .execute_stream_partitioned()
        .await
        .map_err(|e| bad(clean_df_error(&e, &f.path)))?;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let (table, target, progress, path) = (
                table.clone(),
                target.clone(),
                progress.clone(),
                f.path.clone(),
            );
            tokio::spawn(async move { write_stream(&table, &path, stream, target, progress).await })
        })
        .collect();
    let mut files = Vec::new();
    let mut rows = 0u64;
    for t in tasks {
        let (fs, n) = t
            .await
            .map_err(|e| Error::Internal(format!("import task for {}: {e}", f.path)))??;
        files.extend(fs);
        rows += n;
    }
    if rows == 0 {
        return Err(bad("the file has no rows".into()));
    }
    Ok((files, rows))
}

/// Writes one stream of rows (already cast to the table's types) through iceberg's writers:
/// rolling Parquet files, split by partition for partitioned tables.
async fn write_stream(
    table: &Table,
    path: &str,
    mut stream: datafusion::execution::SendableRecordBatchStream,
    target: ArrowSchemaRef,
    progress: ProgressFn,
) -> Result<(Vec<DataFile>, u64)> {
    let bad = |message: String| Error::InvalidData {
        path: path.to_string(),
        message,
    };
    let metadata = table.metadata();
    let props = crate::write_props::writer_properties(metadata.properties())?;
    let pw = ParquetWriterBuilder::new(props, metadata.current_schema().clone());
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        pw,
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata).map_err(from_iceberg)?,
        DefaultFileNameGenerator::new(
            format!("lp-{}", uuid::Uuid::new_v4().simple()),
            None,
            DataFileFormat::Parquet,
        ),
    );
    let builder = DataFileWriterBuilder::new(rolling);
    let spec = metadata.default_partition_spec().clone();
    let mut rows = 0u64;

    enum W<B: IcebergWriterBuilder> {
        Plain(B::R),
        Parts(Box<(FanoutWriter<B>, RecordBatchPartitionSplitter)>),
    }
    let mut w = if spec.is_unpartitioned() {
        W::Plain(builder.build(None).await.map_err(from_iceberg)?)
    } else {
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(
            metadata.current_schema().clone(),
            spec,
        )
        .map_err(from_iceberg)?;
        W::Parts(Box::new((FanoutWriter::new(builder), splitter)))
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| bad(clean_df_error(&e, path)))?;
        let batch = RecordBatch::try_new(target.clone(), batch.columns().to_vec())
            .map_err(|e| bad(e.to_string()))?;
        rows += batch.num_rows() as u64;
        (progress)(Progress::Rows(batch.num_rows() as u64));
        match &mut w {
            W::Plain(w) => w.write(batch).await.map_err(from_iceberg)?,
            W::Parts(parts) => {
                let (w, splitter) = &mut **parts;
                for (key, part) in splitter.split(&batch).map_err(from_iceberg)? {
                    w.write(key, part).await.map_err(from_iceberg)?;
                }
            }
        }
    }
    let files = match w {
        W::Plain(mut w) => w.close().await.map_err(from_iceberg)?,
        W::Parts(parts) => parts.0.close().await.map_err(from_iceberg)?,
    };
    Ok((files, rows))
}
