//! The tools over a lake in this process (`lakeplan mcp` in embedded mode): each [`Op`] is one
//! call into the service layer, acting as the lake handle's user with client `mcp`.

use std::sync::Arc;

use lakeplan_core::{Error, RefKind, MAIN_BRANCH};
use lakeplan_lake::ops::{self, Service};
use lakeplan_lake::{ImportOptions, Lake, LogFilter, RunOptions};
use serde_json::{json, Value};

use crate::{Backend, Op};

/// A lake as one caller sees it: in this process (every tool allowed), or a server's tenant
/// under a key's rights (the server makes the service with the key's policy).
pub struct LocalBackend {
    pub service: Service,
}

fn to_json<T: serde::Serialize>(v: T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("a tool's answer: {e}")))
}

impl LocalBackend {
    /// A lake in this process: every tool allowed.
    pub fn open(lake: Lake) -> LocalBackend {
        LocalBackend {
            service: Service::open(lake),
        }
    }

    fn at(at: &Option<String>) -> String {
        at.clone().unwrap_or_else(|| MAIN_BRANCH.to_string())
    }

    /// The catalog's tools: each one operation of the service, which checks the caller's rights
    /// (the same for a local lake and a server's).
    pub async fn metadata(&self, op: Op) -> Result<Value, Error> {
        let svc = &self.service;
        match op {
            Op::ListBranches => to_json(
                svc.call(ops::ListRefs {
                    kind: RefKind::Branch,
                })
                .await?,
            ),
            Op::ListTags => to_json(svc.call(ops::ListRefs { kind: RefKind::Tag }).await?),
            Op::ListNamespaces { at } => {
                let at = Some(Self::at(&at));
                to_json(svc.call(ops::ListNamespaces { at }).await?)
            }
            Op::ListTables { at, namespace } => {
                let at = Some(Self::at(&at));
                to_json(svc.call(ops::ListTables { at, namespace }).await?)
            }
            Op::GetTable {
                table,
                at,
                namespace,
            } => {
                let at = Some(Self::at(&at));
                to_json(
                    svc.call(ops::GetTable {
                        table,
                        namespace,
                        at,
                    })
                    .await?,
                )
            }
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
                let op = ops::Commits {
                    at: Some(Self::at(&at)),
                    filter,
                    limit: Some(limit),
                };
                to_json(svc.call(op).await?)
            }
            Op::Diff { from, to } => to_json(svc.call(ops::Diff { from, to: Some(to) }).await?),
            Op::CreateBranch { name, from_ref } => to_json(
                svc.call(ops::CreateRef {
                    name,
                    kind: RefKind::Branch,
                    from: Some(from_ref.unwrap_or_else(|| MAIN_BRANCH.to_string())),
                    if_not_exists: false,
                })
                .await?,
            ),
            Op::Merge { source, into } => to_json(
                svc.call(ops::Merge {
                    source,
                    into: Some(into),
                    ..Default::default()
                })
                .await?,
            ),
            op => Err(Error::Internal(format!("{op:?} is not a metadata tool"))),
        }
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn call(&self, op: Op) -> Result<Value, Error> {
        let lake = self.service.lake();
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
        self.service
            .lake()
            .record(&format!("mcp.{tool}"), tool, args.clone(), error);
    }
}
