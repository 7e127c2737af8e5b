//! The tools over a lake in this process (`lakeplan mcp` in embedded mode): each [`Op`] is one
//! call into the service layer, acting as the lake handle's user with client `mcp`.

use std::sync::Arc;

use lakeplan_core::{Error, RefKind, MAIN_BRANCH};
use lakeplan_lake::{ImportOptions, Lake, LogFilter, RunOptions};
use serde_json::{json, Value};

use crate::{Backend, Op};

/// A lake in this process.
pub struct LocalBackend {
    pub lake: Lake,
}

fn to_json<T: serde::Serialize>(v: T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("a tool's answer: {e}")))
}

impl LocalBackend {
    fn at(at: &Option<String>) -> String {
        at.clone().unwrap_or_else(|| MAIN_BRANCH.to_string())
    }

    /// The tools that only read or change metadata: the same for a local lake and a server's
    /// (which checks the key's rights first).
    pub async fn metadata(&self, op: Op) -> Result<Value, Error> {
        let lake = &self.lake;
        match op {
            Op::ListBranches => to_json(lake.list_refs(RefKind::Branch)?),
            Op::ListTags => to_json(lake.list_refs(RefKind::Tag)?),
            Op::ListNamespaces { at } => to_json(lake.list_namespaces(Some(&Self::at(&at)))?),
            Op::ListTables { at, namespace } => {
                to_json(lake.list_tables(Some(&Self::at(&at)), namespace.as_deref())?)
            }
            Op::GetTable {
                table,
                at,
                namespace,
            } => to_json(
                lake.get_table(&table, namespace.as_deref(), Some(&Self::at(&at)))
                    .await?,
            ),
            Op::ListCommits {
                at,
                limit,
                message,
                author,
            } => {
                let filter = LogFilter {
                    message: LogFilter::optional("message", message.as_deref())?,
                    author: LogFilter::optional("author", author.as_deref())?,
                    properties: Vec::new(),
                };
                to_json(lake.commits(Some(&Self::at(&at)), &filter, Some(limit))?)
            }
            Op::Diff { from, to } => to_json(lake.diff(&from, Some(&to))?),
            Op::CreateBranch { name, from_ref } => to_json(lake.create_ref(
                &name,
                RefKind::Branch,
                Some(from_ref.as_deref().unwrap_or(MAIN_BRANCH)),
                false,
            )?),
            Op::Merge { source, into } => to_json(lake.merge(&source, Some(&into), None)?),
            op => Err(Error::Internal(format!("{op:?} is not a metadata tool"))),
        }
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn call(&self, op: Op) -> Result<Value, Error> {
        let lake = &self.lake;
        match op {
            Op::Query {
                sql,
                at,
                namespace,
                max_rows,
            } => {
                let r = lake
                    .query(
                        &sql,
                        Some(&Self::at(&at)),
                        namespace.as_deref(),
                        Some(max_rows),
                    )
                    .await?;
                lakeplan_lake::json_rows(&r.schema, &r.batches, r.truncated)
            }
            Op::ImportData {
                table,
                search_uri,
                branch,
                namespace,
                create_table,
            } => {
                let ns = namespace.as_deref();
                if create_table && !lake.has_table(&table, ns, Some(&branch))? {
                    let plan = lake
                        .plan_table(&table, ns, &search_uri, Some(&branch), None, false)
                        .await?;
                    lake.apply_plan(&plan).await?;
                }
                let (report, commit) = lake
                    .import(
                        &table,
                        ns,
                        &search_uri,
                        Some(&branch),
                        &ImportOptions::default(),
                        Arc::new(|_| {}),
                    )
                    .await?;
                Ok(json!({"report": report, "commit": commit}))
            }
            Op::RunPipeline {
                branch,
                files,
                parameters,
                dry_run,
            } => {
                let project = lake.unpack_project(&lakeplan_lake::zip_files(&files)?)?;
                let upload = project.parent().map(std::path::Path::to_path_buf);
                let opts = RunOptions {
                    project_dir: project,
                    target: Some(branch),
                    params: parameters.into_iter().collect(),
                    dry_run,
                    ..Default::default()
                };
                // A run's future is not Send (its sandboxes' handles): it is driven on a blocking
                // thread of its own, as the server's workers drive runs.
                let handle = tokio::runtime::Handle::current();
                let lake = lake.clone();
                let job = tokio::task::spawn_blocking(move || {
                    let job = handle.block_on(lake.run_pipeline(&opts, Arc::new(|_| {})));
                    if let Some(dir) = upload {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    job
                })
                .await
                .map_err(|e| Error::Internal(format!("the run: {e}")))?;
                to_json(job?)
            }
            op => self.metadata(op).await,
        }
    }

    fn audit(&self, tool: &str, args: &Value, error: Option<&Error>) {
        self.lake
            .record(&format!("mcp.{tool}"), tool, args.clone(), error);
    }
}
