use std::collections::HashMap;

use lakeplan_core::{validate_identifier, Entry, Error, Result, TableName};
use lakeplan_storage::ingest::{self, CreatePlan, ImportOptions, ImportReport, ProgressFn};
use lakeplan_storage::load_table;
use lakeplan_storage::schema::{parse_partitioning, partition_spec, schema_from_columns};
use serde_json::json;

use crate::{FieldInfo, Lake, PartitionInfo, TableInfo, TableSummary, WriteInfo};

fn written(branch: &str, id: Option<lakeplan_core::CommitId>) -> WriteInfo {
    WriteInfo {
        branch: branch.to_string(),
        hash: id.map(|c| c.to_string()),
    }
}

impl Lake {
    pub fn list_namespaces(&self, r: Option<&str>) -> Result<Vec<String>> {
        let r = self.ref_or_active(r)?;
        let view = self.view(&r)?;
        Ok(self
            .catalog
            .entries(&view.commit)?
            .into_iter()
            .filter(|(_, e)| matches!(e, Entry::Namespace))
            .map(|(k, _)| k)
            .collect())
    }

    pub async fn create_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        let branch = self.ref_or_active(branch)?;
        self.audited_async("namespace.create", ns, json!({"branch": branch}), async {
            let (_, id) = self
                .write(
                    &branch,
                    "namespace.create",
                    format!("Create namespace {ns}"),
                    |s| async move { s.create_namespace_(ns) },
                )
                .await?;
            Ok(written(&branch, id))
        })
        .await
    }

    pub async fn drop_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        let branch = self.ref_or_active(branch)?;
        self.audited_async("namespace.delete", ns, json!({"branch": branch}), async {
            validate_identifier(ns)?;
            let (_, id) = self
                .write(
                    &branch,
                    "namespace.delete",
                    format!("Delete namespace {ns}"),
                    |s| async move { s.drop_namespace_(ns) },
                )
                .await?;
            Ok(written(&branch, id))
        })
        .await
    }

    pub fn list_tables(&self, r: Option<&str>, ns: Option<&str>) -> Result<Vec<TableSummary>> {
        let r = self.ref_or_active(r)?;
        let view = self.view(&r)?;
        let mut out = Vec::new();
        for (k, e) in self.catalog.entries(&view.commit)? {
            if let Entry::Table(t) = e {
                let name = TableName::parse(&k, None)?;
                if ns.is_some_and(|n| n != name.namespace) {
                    continue;
                }
                out.push(TableSummary {
                    namespace: name.namespace,
                    name: name.name,
                    records: t.records,
                    snapshot_id: t.snapshot_id,
                });
            }
        }
        Ok(out)
    }

    /// Whether `table` exists at ref `r` (default: the active branch): a tree lookup, no
    /// metadata file is read.
    pub fn has_table(&self, table: &str, ns: Option<&str>, r: Option<&str>) -> Result<bool> {
        let r = self.ref_or_active(r)?;
        let name = self.table_name(table, ns)?;
        let view = self.view(&r)?;
        Ok(matches!(
            self.catalog.entry(&view.commit, &name.key())?,
            Some(Entry::Table(_))
        ))
    }

    /// `Ok` if namespace `ns` exists at ref `r` (default: the active branch), else
    /// [`Error::NamespaceNotFound`].
    pub fn require_namespace(&self, ns: &str, r: Option<&str>) -> Result<()> {
        let r = self.ref_or_active(r)?;
        let view = self.view(&r)?;
        match self.catalog.entry(&view.commit, ns)? {
            Some(Entry::Namespace) => Ok(()),
            _ => Err(Error::NamespaceNotFound(ns.to_string())),
        }
    }

    /// `table` or `ns.table`; a bare name without `ns` is in the lake's default namespace.
    fn table_name(&self, table: &str, ns: Option<&str>) -> Result<TableName> {
        match ns {
            Some(ns) => TableName::parse(table, Some(ns)),
            None if table.contains('.') => TableName::parse(table, None),
            None => TableName::parse(table, Some(&self.default_namespace()?)),
        }
    }

    pub async fn get_table(
        &self,
        table: &str,
        ns: Option<&str>,
        r: Option<&str>,
    ) -> Result<TableInfo> {
        let r = self.ref_or_active(r)?;
        let name = self.table_name(table, ns)?;
        let view = self.view(&r)?;
        let entry = match self.catalog.entry(&view.commit, &name.key())? {
            Some(Entry::Table(t)) => t,
            _ => {
                return Err(Error::TableNotFound {
                    table: name.to_string(),
                    at: r,
                })
            }
        };
        let t = load_table(self.warehouse.file_io(), &name, &entry).await?;
        let md = t.metadata_ref();
        let schema = md.current_schema();
        let summary = md
            .current_snapshot()
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        let num = |k: &str| {
            summary
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let snapshots = md.snapshots().len();
        let info = TableInfo {
            id: md.uuid().to_string(),
            namespace: name.namespace.clone(),
            name: name.name.clone(),
            fqn: name.to_string(),
            at: r,
            metadata_location: entry.metadata_location.clone(),
            current_schema_id: md.current_schema_id(),
            current_snapshot_id: md.current_snapshot_id(),
            snapshots,
            records: num("total-records"),
            size: num("total-files-size"),
            data_files: num("total-data-files"),
            last_updated_ms: md.last_updated_ms(),
            fields: schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| FieldInfo {
                    id: f.id,
                    name: f.name.clone(),
                    ty: f.field_type.to_string(),
                    required: f.required,
                })
                .collect(),
            partitions: md
                .default_partition_spec()
                .fields()
                .iter()
                .map(|p| PartitionInfo {
                    name: p.name.clone(),
                    source: schema
                        .name_by_field_id(p.source_id)
                        .unwrap_or("?")
                        .to_string(),
                    transform: p.transform.to_string(),
                })
                .collect(),
        };
        Ok(info)
    }

    /// Removes a table from a branch (a commit). Its files stay: other refs and older commits
    /// still read them.
    pub async fn drop_table(
        &self,
        table: &str,
        ns: Option<&str>,
        branch: Option<&str>,
        if_exists: bool,
    ) -> Result<WriteInfo> {
        let branch = self.ref_or_active(branch)?;
        let name = self.table_name(table, ns)?;
        self.audited_async(
            "table.delete",
            &name.to_string(),
            json!({"branch": branch}),
            async {
                let (_, id) = self
                    .write(
                        &branch,
                        "table.delete",
                        format!("Delete table {name}"),
                        |s| async move {
                            if s.table_exists_(&name)? {
                                s.put_entry(&name, None)
                            } else if if_exists {
                                Ok(())
                            } else {
                                Err(Error::TableNotFound {
                                    table: name.to_string(),
                                    at: s.view().label(),
                                })
                            }
                        },
                    )
                    .await?;
                Ok(written(&branch, id))
            },
        )
        .await
    }

    /// Infers a table's schema from the files at `search_uri`, listing conflicts between files.
    pub async fn plan_table(
        &self,
        table: &str,
        ns: Option<&str>,
        search_uri: &str,
        branch: Option<&str>,
        partitioned_by: Option<&str>,
        replace: bool,
    ) -> Result<CreatePlan> {
        let branch = self.ref_or_active(branch)?;
        let name = self.table_name(table, ns)?;
        let files = ingest::discover(search_uri, &self.reach).await?;
        let (schema, conflicts) = ingest::plan_columns(&files).await?;
        let partitions = match partitioned_by {
            Some(p) => parse_partitioning(p)?,
            None => vec![],
        };
        Ok(CreatePlan {
            table: name.to_string(),
            search_uri: search_uri.to_string(),
            branch,
            replace,
            schema,
            partitions,
            conflicts,
            files,
        })
    }

    /// Creates the (empty) table a plan describes, in one commit. Its files are imported by
    /// `import`.
    pub async fn apply_plan(&self, plan: &CreatePlan) -> Result<WriteInfo> {
        let name = TableName::parse(&plan.table, None)?;
        self.audited_async(
            "table.create",
            &name.to_string(),
            json!({"branch": plan.branch, "search_uri": plan.search_uri, "replace": plan.replace}),
            async {
                if !plan.conflicts.is_empty() {
                    let cols: Vec<&str> = plan.conflicts.iter().map(|c| c.column.as_str()).collect();
                    return Err(Error::InvalidOperation {
                        op: format!("create table {name}"),
                        reason: format!(
                            "the files disagree on the type of column(s) {}: save the plan with `table create-plan --save-plan FILE`, set each column's type, delete its entry under `conflicts`, then `table create-plan-apply --plan FILE`",
                            cols.join(", ")
                        ),
                    });
                }
                let schema = schema_from_columns(&plan.schema)?;
                let spec = partition_spec(&schema, &plan.partitions)?;
                let verb = if plan.replace { "Replace" } else { "Create" };
                let (_, id) = self
                    .write(&plan.branch, "table.create", format!("{verb} table {name}"), |s| async move {
                        s.create(&name, schema, spec, HashMap::new(), plan.replace)
                            .await
                            .map(|_| ())
                    })
                    .await?;
                Ok(written(&plan.branch, id))
            },
        )
        .await
    }

    /// Imports the files at `search_uri` into an existing table: one commit, or nothing.
    pub async fn import(
        &self,
        table: &str,
        ns: Option<&str>,
        search_uri: &str,
        branch: Option<&str>,
        opts: &ImportOptions,
        progress: ProgressFn,
    ) -> Result<(ImportReport, WriteInfo)> {
        let branch = self.ref_or_active(branch)?;
        let name = self.table_name(table, ns)?;
        self.audited_async(
            "table.import",
            &name.to_string(),
            json!({"branch": branch, "search_uri": search_uri,
                   "continue_on_error": opts.continue_on_error,
                   "import_duplicate_files": opts.import_duplicate_files}),
            async {
                let files = ingest::discover(search_uri, &self.reach).await?;
                let (report, id) = self
                    .write(
                        &branch,
                        "table.import",
                        format!("Import {search_uri} into {name}"),
                        |s| {
                            let name = name.clone();
                            async move { ingest::import(&s, &name, files, opts, progress).await }
                        },
                    )
                    .await?;
                Ok((report, written(&branch, id)))
            },
        )
        .await
    }

    /// Makes `into_branch`'s table what it is at `source_ref` (no file is copied).
    pub async fn revert_table(
        &self,
        table: &str,
        ns: Option<&str>,
        source_ref: &str,
        into_branch: Option<&str>,
    ) -> Result<WriteInfo> {
        let into = self.ref_or_active(into_branch)?;
        let name = self.table_name(table, ns)?;
        self.audited_async(
            "table.revert",
            &name.to_string(),
            json!({"source_ref": source_ref, "into_branch": into}),
            async {
                let source = self.catalog.resolve_str(source_ref)?.commit;
                let entry = match self.catalog.entry(&source, &name.key())? {
                    Some(e @ Entry::Table(_)) => e,
                    _ => {
                        return Err(Error::TableNotFound {
                            table: name.to_string(),
                            at: source_ref.to_string(),
                        })
                    }
                };
                let (_, id) = self
                    .write(
                        &into,
                        "table.revert",
                        format!("Revert table {name} to {source_ref}"),
                        |s| async move {
                            if s.current(&name.key())?.as_ref() == Some(&entry) {
                                return Err(Error::InvalidOperation {
                                    op: format!("revert {name}"),
                                    reason: format!("it is already identical to {source_ref}"),
                                });
                            }
                            if !s.namespace_exists_(&name.namespace)? {
                                s.create_namespace_(&name.namespace)?;
                            }
                            s.put_entry(&name, Some(entry))
                        },
                    )
                    .await?;
                Ok(written(&into, id))
            },
        )
        .await
    }
}
