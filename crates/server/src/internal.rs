//! The control plane's internal routes, for data-plane workers only (see [`crate::dispatch`]).
//! They take the server's worker token, not an API key, and are not in `/openapi.json`; their
//! bodies are the types of [`lakeplan_dataplane::protocol`], which the worker uses too.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use lakeplan_dataplane::protocol::{
    HeartbeatReply, NewTask, Register, Registered, TaskReply, TaskReport,
};
use sha2::{Digest, Sha256};

use crate::api::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a worker's `next` waits for a task before answering 204.
const LONG_POLL: Duration = Duration::from_secs(20);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/workers", post(register))
        .route("/internal/v1/workers/{id}/next", post(next))
        .route("/internal/v1/workers/{id}/heartbeat", post(heartbeat))
        .route("/internal/v1/tasks", post(submit))
        .route("/internal/v1/tasks/{id}/result", post(result))
}

/// Compares digests, so the time taken does not tell how much of the token matched.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Only callers with the worker token pass.
pub async fn require_worker_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if state.config.worker_token.is_empty() || !same_secret(presented, &state.config.worker_token) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

async fn register(State(state): State<AppState>, Body(b): Body<Register>) -> Response {
    if !(b.endpoint.starts_with("http://") || b.endpoint.starts_with("https://")) {
        return ApiError::BadRequest(format!(
            "endpoint '{}': expected http://HOST:PORT",
            b.endpoint
        ))
        .into_response();
    }
    let worker_id = state.dispatcher.register(b.endpoint, b.tasks);
    Json(Registered {
        worker_id,
        metastore: state.config.metastore.clone(),
    })
    .into_response()
}

async fn next(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.dispatcher.next_task(&id, LONG_POLL).await {
        Ok(Some(task)) => Json(task).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn heartbeat(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.dispatcher.heartbeat(&id) {
        Ok(cancel) => Json(HeartbeatReply { cancel }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Gives up the task when the request that waits for it goes away (the run stopped).
struct CancelOnDrop<'a> {
    dispatcher: &'a crate::dispatch::Dispatcher,
    task: String,
    done: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.dispatcher.cancel_task(&self.task);
        }
    }
}

/// `POST /internal/v1/tasks`: queues a task and answers its outcome when it ends, as a worker
/// reports it (`{"ok": ...}` or `{"error": ...}`, always 200: the error is the task's).
async fn submit(State(state): State<AppState>, Body(b): Body<NewTask>) -> Response {
    let task = crate::dispatch::Task {
        id: uuid::Uuid::new_v4().simple().to_string(),
        tenant: b.tenant,
        user: b.user,
        // A worker's own task (a run's node): it mints no query ticket.
        key_id: String::new(),
        work: b.work,
        commit: b.commit,
    };
    let mut guard = CancelOnDrop {
        dispatcher: &state.dispatcher,
        task: task.id.clone(),
        done: false,
    };
    let outcome = state.dispatcher.submit(task, None).await;
    guard.done = true;
    match outcome {
        Ok(outcome) => Json(TaskReply::new(outcome)).into_response(),
        Err(_) => ApiError::Unavailable("the task's answer was lost: retry".into()).into_response(),
    }
}

/// `POST /internal/v1/tasks/{id}/result`: a worker's answer, checked against what its task
/// answers (see [`crate::dispatch::Dispatcher::report`]).
async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<TaskReport>,
) -> Response {
    match state.dispatcher.report(&id, b) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
