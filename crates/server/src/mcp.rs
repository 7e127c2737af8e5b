//! `/mcp`: the MCP tools (`lakeplan-mcp`) over streamable HTTP, each call acting under the
//! request's API key, with the rights of the rest of the API: the zone rule, or the key's branch
//! glob (an agent's key writes only `agent.*` and never merges into `main`); read keys only
//! read. Queries, imports and runs go to data-plane workers as every other route's do; a query's
//! rows (at most `lakeplan_mcp::MAX_ROWS`) come back through the control plane because a tool
//! answers them inline. Every call is in the tenant's audit log as `mcp.<tool>`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use lakeplan_core::{Error, MAIN_BRANCH};
use lakeplan_lake::LakeConfig;
use lakeplan_mcp::{Backend, LocalBackend, Op};
use serde_json::{json, Value};

use crate::api::{answer, check_run, check_source, plan_on_worker, submit_run, task};
use crate::auth::Caller;
use crate::dispatch::{RunProject, RunTask, Work};
use crate::error::ApiError;
use crate::registry::Principal;
use crate::state::AppState;

/// The `/mcp` route, behind the key check.
pub fn router(state: AppState) -> axum::Router<AppState> {
    let connect_state = state.clone();
    let connect: lakeplan_mcp::Connect = Arc::new(move |ctx| {
        let parts = lakeplan_mcp::http_parts(ctx)
            .ok_or_else(|| Error::Internal("an MCP call without its HTTP request".into()))?;
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Error::InvalidInput("a valid API key is required".into()))?;
        // The worker serves a query's rows only to the key that ran it: this one.
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .cloned()
            .ok_or_else(|| Error::InvalidInput("a valid API key is required".into()))?;
        Ok(Arc::new(backend(&connect_state, principal, key)?) as Arc<dyn Backend>)
    });
    axum::Router::new()
        .nest_service("/mcp", lakeplan_mcp::http_service(connect))
        .route_layer(axum::middleware::from_fn(session_closed))
        .route_layer(from_fn_with_state(state, crate::auth::require_key))
}

/// A session's close (`DELETE /mcp`) answers 204: the MCP SDKs expect 200 or 204 (and warn on
/// anything else), where `rmcp` answers 202.
async fn session_closed(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let delete = req.method() == axum::http::Method::DELETE;
    let resp = next.run(req).await;
    if delete && resp.status() == StatusCode::ACCEPTED {
        let (mut parts, _) = resp.into_parts();
        parts.status = StatusCode::NO_CONTENT;
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    resp
}

/// The tools as `principal` calls them, with `key` (its `Authorization` header) for the worker
/// that serves a query's rows.
pub(crate) fn backend(
    state: &AppState,
    principal: Principal,
    key: axum::http::HeaderValue,
) -> Result<ServerBackend, Error> {
    let lake = state
        .tenants
        .lake(&principal.tenant)?
        .acting_as(LakeConfig {
            actor: principal.user.name.clone(),
            client: "mcp".into(),
        });
    Ok(ServerBackend {
        state: state.clone(),
        caller: Caller { principal, lake },
        key,
    })
}

pub(crate) struct ServerBackend {
    state: AppState,
    caller: Caller,
    /// The request's `Authorization` header, for the worker that serves a query's rows.
    key: axum::http::HeaderValue,
}

/// An API error as the service layer's, for the tool's error result.
fn service(e: ApiError) -> Error {
    match e {
        ApiError::Service(e) => e,
        other => {
            let (status, kind, message, _) = other.parts();
            Error::Remote {
                kind,
                status: status.as_u16(),
                message,
            }
        }
    }
}

impl ServerBackend {
    fn local(&self) -> LocalBackend {
        LocalBackend {
            service: self.caller.service(),
        }
    }

    /// The key's rights for one tool call that is not yet an operation of the service: each
    /// writing tool's own check; a read-only tool is open to every key of the tenant; a catalog
    /// tool is checked by the service's policy when it runs; any other tool is refused.
    fn check(&self, op: &Op) -> Result<(), ApiError> {
        let p = &self.caller.principal;
        match op {
            op if op.is_catalog() => Ok(()),
            Op::ImportData {
                branch, search_uri, ..
            } => {
                p.check_ref_write(branch)?;
                check_source(&self.state, &self.caller, search_uri)
            }
            Op::RunPipeline {
                branch, dry_run, ..
            } => check_run(&self.caller, branch, *dry_run),
            op if op.read_only() => Ok(()),
            // A tool that writes and has no rights check here is closed to every key.
            op => Err(ApiError::Forbidden(format!(
                "the tool '{}' changes the lake and this server has no rights check for it",
                op.tool()
            ))),
        }
    }

    async fn data_plane(&self, work: Work) -> Result<Value, ApiError> {
        answer(self.state.dispatcher.submit(task(&self.caller, work), None)).await
    }

    async fn query(
        &self,
        sql: String,
        at: Option<String>,
        namespace: Option<String>,
        max_rows: usize,
    ) -> Result<Value, ApiError> {
        let t = self
            .data_plane(Work::Query {
                sql,
                at: at.unwrap_or_else(|| MAIN_BRANCH.to_string()),
                namespace,
                max_rows: Some(max_rows),
                describe: false,
            })
            .await?;
        let url = format!(
            "{}/results/{}",
            t["endpoint"].as_str().unwrap_or_default(),
            t["ticket"].as_str().unwrap_or_default()
        );
        let resp = reqwest::Client::new()
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, self.key.clone())
            .send()
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!("fetching the rows from the worker: {e}"))
            })?;
        let ok = resp.status().is_success();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the worker's rows: {e}")))?;
        if !ok {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("the query failed");
            return Err(Error::Sql(message.to_string()).into());
        }
        Ok(body)
    }

    async fn run(
        &self,
        branch: String,
        files: std::collections::BTreeMap<String, String>,
        parameters: std::collections::BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        use base64::Engine;
        let zip = lakeplan_lake::zip_files(&files)?;
        let run = RunTask {
            job_id: uuid::Uuid::new_v4().simple().to_string(),
            project: RunProject::Upload {
                zip_base64: base64::engine::general_purpose::STANDARD.encode(zip),
            },
            target: branch,
            namespace: None,
            params: parameters.into_iter().collect(),
            dry_run,
            no_cache: false,
            strict: true,
            transaction: true,
            strict_python: false,
            preview: None,
            project_shown: None,
            args: Default::default(),
            priority: None,
        };
        let id = submit_run(&self.state, &self.caller, run).await?;
        let jobs = self.caller.lake.jobs()?;
        loop {
            let job = jobs.get(&id)?;
            if job.status.is_finished() {
                let mut v = serde_json::to_value(&job)
                    .map_err(|e| Error::Internal(format!("job {id}: {e}")))?;
                // Not the server's folders (as the job routes show them).
                if let Some(o) = v.as_object_mut() {
                    o.remove("project_dir");
                    o.remove("log_path");
                }
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn call(&self, op: Op) -> Result<Value, Error> {
        self.check(&op).map_err(service)?;
        let out = match op {
            Op::Query {
                sql,
                at,
                namespace,
                max_rows,
            } => self.query(sql, at, namespace, max_rows).await,
            Op::ImportData {
                table,
                search_uri,
                branch,
                namespace,
                create_table,
            } => {
                let lake = &self.caller.lake;
                if create_table && !lake.has_table(&table, namespace.as_deref(), Some(&branch))? {
                    let work = Work::PlanTable {
                        table: table.clone(),
                        namespace: namespace.clone(),
                        search_uri: search_uri.clone(),
                        branch: branch.clone(),
                        partitioned_by: None,
                        replace: false,
                    };
                    let plan = plan_on_worker(&self.state, &self.caller, work)
                        .await
                        .map_err(service)?;
                    lake.apply_plan(&plan).await?;
                }
                self.data_plane(Work::Import {
                    table,
                    namespace,
                    search_uri,
                    branch,
                    continue_on_error: false,
                    import_duplicate_files: false,
                })
                .await
            }
            Op::RunPipeline {
                branch,
                files,
                parameters,
                dry_run,
            } => self.run(branch, files, parameters, dry_run).await,
            op => return self.local().metadata(op).await,
        };
        out.map_err(service)
    }

    fn audit(&self, tool: &str, args: &Value, error: Option<&Error>) {
        let details = json!({"arguments": args, "key": self.caller.principal.key_id});
        self.caller
            .lake
            .record(&format!("mcp.{tool}"), tool, details, error);
    }
}
