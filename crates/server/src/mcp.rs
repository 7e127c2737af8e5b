//! `/mcp`: the MCP tools (`lakeplan-mcp`) over streamable HTTP, each call acting under the
//! request's API key, with the rights of the rest of the API: the zone rule, or the key's branch
//! glob (an agent's key writes only `agent.*` and never merges into `main`); read keys only
//! read. Queries, imports and runs go to data-plane workers as every other route's do; a query's
//! rows (at most `lakeplan_mcp::MAX_ROWS`) come back through the control plane because a tool
//! answers them inline. Every call is in the tenant's audit log as `mcp.<tool>`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use lakeplan_core::{Error, MAIN_BRANCH};
use lakeplan_lake::LakeConfig;
use lakeplan_mcp::{Backend, LocalBackend, Op};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::dispatch::Work;
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
        caller: Caller {
            principal,
            lake,
            state: state.clone(),
        },
        key,
    })
}

pub(crate) struct ServerBackend {
    caller: Caller,
    /// The request's `Authorization` header, for the worker that serves a query's rows.
    key: axum::http::HeaderValue,
}

impl ServerBackend {
    fn local(&self) -> LocalBackend {
        LocalBackend {
            service: self.caller.service(),
        }
    }

    async fn query(
        &self,
        sql: String,
        at: Option<String>,
        namespace: Option<String>,
        max_rows: usize,
    ) -> Result<Value, Error> {
        let t = self
            .caller
            .workers()
            .submit(Work::Query {
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
            .map_err(|e| Error::Unavailable(format!("fetching the rows from the worker: {e}")))?;
        let ok = resp.status().is_success();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| Error::Unavailable(format!("the worker's rows: {e}")))?;
        if !ok {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("the query failed");
            return Err(Error::Sql(message.to_string()));
        }
        Ok(body)
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn call(&self, op: Op) -> Result<Value, Error> {
        match op {
            // Its rows come back through the control plane: a tool answers them inline.
            Op::Query {
                sql,
                at,
                namespace,
                max_rows,
            } => self.query(sql, at, namespace, max_rows).await,
            op => self.local().operation(op).await,
        }
    }

    async fn audit(&self, tool: &str, args: &Value, error: Option<&Error>) {
        let details = json!({"arguments": args, "key": self.caller.principal.key_id});
        lakeplan_mcp::record(&self.caller.lake, tool, details, error).await;
    }
}
