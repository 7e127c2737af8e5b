//! Scanning an Iceberg table at one snapshot with DataFusion's own Parquet reader.
//!
//! iceberg-rust plans the scan (manifest pruning by partition values and column statistics for
//! the pushed-down filters); the surviving data files are then read by DataFusion's
//! `ParquetSource` in as many parallel groups as the session has target partitions, with
//! row-group pruning and projection — the same reader that `register_parquet` uses. (The scan of
//! iceberg-datafusion 0.10 reads everything in one partition.) Columns are matched by name;
//! files written before a column was added read it as nulls, narrower types are cast. Tables
//! whose files carry delete files, or are not Parquet, are read by iceberg-datafusion's scan.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;
use iceberg_datafusion::IcebergStaticTableProvider;

fn ice(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One Iceberg table at its current snapshot.
#[derive(Debug)]
pub(crate) struct LakeTable {
    table: Table,
    schema: SchemaRef,
}

impl LakeTable {
    pub(crate) fn try_new(table: Table) -> DFResult<Self> {
        let schema = schema_to_arrow_schema(table.metadata().current_schema()).map_err(ice)?;
        Ok(LakeTable {
            table,
            schema: Arc::new(crate::types::to_view_types(&schema)),
        })
    }

    /// iceberg-datafusion's own scan, for what the Parquet path does not handle.
    async fn fallback_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let filters: Vec<Expr> = filters.iter().map(crate::types::plain_literals).collect();
        let plan = IcebergStaticTableProvider::try_new_from_table(self.table.clone())
            .await
            .map_err(ice)?
            .scan(state, projection, &filters, limit)
            .await?;
        crate::types::cast_plan_to(plan, self.empty(projection)?.schema())
    }

    /// No rows, with the projected schema.
    fn empty(&self, projection: Option<&Vec<usize>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }

    /// Attaches each file's statistics, read from its footer (through the session's metadata
    /// cache) a few files at a time.
    async fn with_statistics(
        &self,
        state: &dyn Session,
        format: &ParquetFormat,
        store: &ObjectStoreUrl,
        files: Vec<PartitionedFile>,
    ) -> DFResult<Vec<PartitionedFile>> {
        let object_store = state.runtime_env().object_store(store)?;
        let concurrency = state.config_options().execution.meta_fetch_concurrency;
        futures::stream::iter(files)
            .map(|f| {
                let object_store = object_store.clone();
                async move {
                    let stats = format
                        .infer_stats(state, &object_store, self.schema.clone(), &f.object_meta)
                        .await?;
                    Ok::<_, DataFusionError>(f.with_statistics(Arc::new(stats)))
                }
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn plan_files(&self, filters: &[Expr]) -> DFResult<Vec<FileScanTask>> {
        let mut builder = self.table.scan().select_all();
        // iceberg-datafusion converts plain string literals only.
        let filters: Vec<Expr> = filters.iter().map(crate::types::plain_literals).collect();
        if let Some(p) = convert_filters_to_predicate(&filters) {
            builder = builder.with_filter(p);
        }
        let scan = builder.build().map_err(ice)?;
        scan.plan_files()
            .await
            .map_err(ice)?
            .try_collect()
            .await
            .map_err(ice)
    }
}

/// Splits a data file location into the object store it lives in and the path inside it.
fn locate(path: &str) -> DFResult<(ObjectStoreUrl, String)> {
    if let Some(p) = path.strip_prefix("file://") {
        return Ok((
            ObjectStoreUrl::local_filesystem(),
            p.trim_start_matches('/').to_string(),
        ));
    }
    if let Some(rest) = path.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok((
            ObjectStoreUrl::parse(format!("s3://{bucket}"))?,
            key.to_string(),
        ));
    }
    Err(DataFusionError::Plan(format!(
        "data file '{path}' is in a store lakeplan cannot read"
    )))
}

/// The statistics of a set of files with statistics: sums of rows and bytes, the widest
/// min/max, summed null counts.
fn merge_statistics(files: &[PartitionedFile], schema: &SchemaRef) -> DFResult<Statistics> {
    if files.is_empty() {
        return Ok(Statistics::new_unknown(schema));
    }
    Statistics::try_merge_iter(files.iter().filter_map(|f| f.statistics.as_deref()), schema)
}

/// Greedy bin-packing of files into `n` groups of similar byte size.
fn group(files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let mut tasks: Vec<(PartitionedFile, u64)> = files
        .into_iter()
        .map(|f| {
            let size = f.object_meta.size;
            (f, size)
        })
        .collect();
    tasks.sort_by_key(|t| std::cmp::Reverse(t.1));
    let n = n.max(1).min(tasks.len().max(1));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for (file, size) in tasks {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += size;
            g.1.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|g| FileGroup::new(g.1))
        .collect()
}

#[async_trait]
impl TableProvider for LakeTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if self.table.metadata().current_snapshot().is_none() {
            return self.empty(projection);
        }
        let tasks = self.plan_files(filters).await?;
        if tasks
            .iter()
            .any(|t| !t.deletes.is_empty() || t.data_file_format != DataFileFormat::Parquet)
        {
            return self.fallback_scan(state, projection, filters, limit).await;
        }
        let mut store = None;
        let mut files = Vec::with_capacity(tasks.len());
        for t in &tasks {
            let (url, path) = locate(&t.data_file_path)?;
            if store.get_or_insert_with(|| url.clone()) != &url {
                return self.fallback_scan(state, projection, filters, limit).await;
            }
            files.push(PartitionedFile::new(path, t.file_size_in_bytes));
        }
        let Some(store) = store else {
            return self.empty(projection);
        };
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        // Per-file statistics (rows, bytes, and each column's min/max/null count) from the
        // Parquet footers, as DataFusion's own listing tables collect them: join planning
        // needs them to pick build sides and partitioning, and files whose ranges miss the
        // filters are skipped. Footers come from the process-wide metadata cache (data files
        // are immutable), so a table's footers are read once per process.
        let files = self.with_statistics(state, &format, &store, files).await?;
        let groups = group(files, state.config().target_partitions())
            .into_iter()
            .map(|g| {
                let stats = merge_statistics(g.files(), &self.schema)?;
                Ok(g.with_statistics(Arc::new(stats)))
            })
            .collect::<DFResult<Vec<_>>>()?;
        // The table's statistics from the groups' (as DataFusion's own listing tables do).
        let stats = Statistics::try_merge_iter(
            groups.iter().filter_map(|g| g.file_statistics(None)),
            &self.schema,
        )?;
        let source = format.file_source(TableSchema::new(self.schema.clone(), vec![]));
        let config = FileScanConfigBuilder::new(store, source)
            .with_file_groups(groups)
            .with_statistics(stats)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let (u, p) = locate("file:///tmp/w/t/data/a.parquet").unwrap();
        assert_eq!(u, ObjectStoreUrl::local_filesystem());
        assert_eq!(p, "tmp/w/t/data/a.parquet");
        let (u, p) = locate("s3://bkt/wh/t/data/a.parquet").unwrap();
        assert_eq!(u.as_str(), "s3://bkt/");
        assert_eq!(p, "wh/t/data/a.parquet");
        assert!(locate("gs://x/y").is_err());
    }

    #[test]
    fn groups_balance_bytes() {
        let files = [100u64, 90, 10, 10, 5]
            .iter()
            .enumerate()
            .map(|(i, s)| PartitionedFile::new(format!("f{i}"), *s))
            .collect();
        let g = group(files, 2);
        assert_eq!(g.len(), 2);
        let sizes: Vec<u64> = g
            .iter()
            .map(|g| g.files().iter().map(|f| f.object_meta.size).sum())
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), 215);
        assert!(sizes.iter().all(|s| *s >= 100), "{sizes:?}");
        assert_eq!(group(vec![], 4).len(), 0);
    }
}
