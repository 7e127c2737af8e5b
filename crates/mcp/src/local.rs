//! The tools over a lake in this process (`lakeplan mcp` in embedded mode): each [`Op`] is one
//! call into the service layer, acting as the lake handle's user with client `mcp`.

use lakeplan_core::{Error, RefKind, MAIN_BRANCH};
use lakeplan_lake::ops::{self, Service};
use lakeplan_lake::{Lake, LogFilter};
use serde_json::Value;

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

    /// Job `id` once it ended (a tool answers a run when it is over), without the folders of
    /// the machine that ran it.
    async fn finished_job(&self, id: String) -> Result<Value, Error> {
        loop {
            let job = self.service.call(ops::GetJob { id: id.clone() }).await?;
            if job.status.is_finished() {
                let mut v = to_json(job)?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("project_dir");
                    o.remove("log_path");
                }
                return Ok(v);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    fn at(at: &Option<String>) -> String {
        at.clone().unwrap_or_else(|| MAIN_BRANCH.to_string())
    }

    /// Every tool but `query`: each one operation of the service, which checks the caller's
    /// rights and runs the work on its data plane (the same for a local lake and a server's).
    pub async fn operation(&self, op: Op) -> Result<Value, Error> {
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
            Op::ImportData {
                table,
                search_uri,
                branch,
                namespace,
                create_table,
            } => {
                let op = ops::Import {
                    table,
                    namespace,
                    search_uri,
                    branch: Some(branch),
                    create_table,
                    ..Default::default()
                };
                to_json(self.service.call(op).await?)
            }
            Op::RunPipeline {
                branch,
                files,
                parameters,
                dry_run,
            } => {
                let mut run = ops::RunTask::upload(&lakeplan_lake::zip_files(&files)?, branch);
                run.params = parameters.into_iter().collect();
                run.dry_run = dry_run;
                let id = self.service.call(ops::StartRun { run }).await?;
                self.finished_job(id).await
            }
            op @ Op::Query { .. } => Err(Error::Internal(format!(
                "{op:?} is not an operation of the service"
            ))),
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
            op => self.operation(op).await,
        }
    }

    async fn audit(&self, tool: &str, args: &Value, error: Option<&Error>) {
        record(self.service.lake(), tool, args.clone(), error).await;
    }
}

/// Records a tool call in `lake`'s audit log as `mcp.<tool>`, on the blocking pool (the audit
/// log is in the metastore; the tool's call runs on the runtime's threads).
pub async fn record(lake: &Lake, tool: &str, details: Value, error: Option<&Error>) {
    let (lake, tool) = (lake.clone(), tool.to_string());
    let error = error.map(|e| Error::Remote {
        kind: e.kind().to_string(),
        status: e.http_status(),
        message: e.to_string(),
        context: e.context(),
    });
    let recorded = tokio::task::spawn_blocking(move || {
        lake.record(&format!("mcp.{tool}"), &tool, details, error.as_ref())
    })
    .await;
    if let Err(e) = recorded {
        eprintln!("warning: the audit record of an MCP call was not written: {e}");
    }
}
