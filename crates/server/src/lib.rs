//! Server mode (`lakeplan serve`): the HTTP/JSON API over the service layer, for many users and
//! tenants. See `docs/server.md`.
//!
//! ```text
//! request ─▶ timeout ─▶ body limit ─▶ route ─▶ metrics ─▶ blocking pool ─▶ bearer key → Principal ─▶ handler
//!                                                                                        │
//!                                                        tenant's Lake acting as the user ◀┘ (lakeplan_lake)
//! ```
//!
//! The API routes run on the blocking pool ([`blocking::off_the_runtime`]); `/healthz` and the
//! workers' internal routes stay on the runtime's threads, which no metastore call may hold.

pub mod api;
pub mod auth;
pub mod blocking;
pub mod catalog_v0;
pub mod dispatch;
pub mod flight_sql;
pub mod iceberg;
mod internal;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod state;
#[cfg(test)]
mod tests;
pub mod worker;
pub mod workers;

use std::future::Future;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lakeplan_core::Result;
pub use lakeplan_dataplane::{bind, error, results};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

pub use blocking::blocking;
pub use registry::{ApiKey, Principal, Registry, Scope, Tenant, User};
pub use state::{AppState, MetastoreUrl, ServerConfig};

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&state.dispatcher.render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Response {
    Json(openapi::document(api::ROUTES)).into_response()
}

async fn not_found(req: axum::extract::Request) -> Response {
    if is_grpc(req.headers()) {
        return unknown_grpc_service(req.uri().path());
    }
    error::ApiError::NotFound("no such route (see /openapi.json)".into()).into_response()
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...).
fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"))
}

/// A gRPC call of a service this port does not serve (only Arrow Flight SQL is): the status
/// UNIMPLEMENTED, in gRPC's own terms, so that a gRPC client (Bauplan's, for its job API)
/// says what to use instead rather than failing to read a JSON 404.
fn unknown_grpc_service(path: &str) -> Response {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let what = if service.starts_with("bpln_proto.") {
        " (Bauplan's job API)"
    } else {
        ""
    };
    let message = format!(
        "lakeplan does not serve the gRPC service '{service}'{what}: run pipelines and follow \
         jobs with `lakeplan run` / `lakeplan job` or the HTTP API (POST /api/v1/runs, \
         /api/v1/jobs; see /openapi.json). This port serves gRPC only for Arrow Flight SQL."
    );
    tonic::Status::unimplemented(message)
        .into_http::<axum::body::Body>()
        .into_response()
}

/// The whole application: API routes behind the key check, `/healthz` open, every route timed
/// and counted, bodies limited, requests bounded in time.
pub fn router(state: AppState) -> Router {
    let api = api::api_router()
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key))
        .merge(iceberg::router(state.clone()))
        .merge(mcp::router(state.clone()))
        .merge(catalog_v0::router(state.clone()))
        // Handlers that call the synchronous service layer run off the runtime's threads: a
        // slow metastore delays them, not `/healthz` nor the workers' routes (added below).
        .route_layer(axum::middleware::from_fn(blocking::off_the_runtime))
        .merge(internal::router().route_layer(from_fn_with_state(
            state.clone(),
            internal::require_worker_token,
        )))
        .route("/healthz", get(healthz))
        .route_layer(from_fn_with_state(state.clone(), metrics::track));
    let flight_sql = flight_sql::routes(state.clone());
    api.fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state.clone())
        .merge(flight_sql)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
}

/// HTTP/2's connection preface: a connection that opens with it speaks gRPC (Flight SQL).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a new connection speaks HTTP/2 (prior knowledge, as gRPC clients do): `None` if it
/// did not say within `wait` (a slow client, disconnected).
async fn speaks_h2(stream: &tokio::net::TcpStream, wait: std::time::Duration) -> Option<bool> {
    let mut buf = [0u8; 24];
    tokio::time::timeout(wait, async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if !H2_PREFACE.starts_with(&buf[..n]) {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .ok()
    .flatten()
}

/// Sets a request's [`flight_sql::CONNECTION_HEADER`] to its connection's number, or removes it
/// (HTTP/1.1), whatever the client sent.
fn connection(
    mut req: axum::http::Request<hyper::body::Incoming>,
    id: Option<u64>,
) -> axum::http::Request<hyper::body::Incoming> {
    let headers = req.headers_mut();
    headers.remove(flight_sql::CONNECTION_HEADER);
    if let Some(id) = id {
        headers.insert(flight_sql::CONNECTION_HEADER, id.into());
    }
    req
}

/// Serves `state` on `listener` until `shutdown` completes. Each connection is HTTP/1.1 with
/// keep-alive, or HTTP/2 for gRPC clients (Flight SQL); a client that does not finish sending
/// its headers within the configured time is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let header_timeout = state.config.header_timeout;
    let sessions = state.flight_sessions.clone();
    let app = router(state);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: keep serving the open connections.
                    Err(e) => {
                        eprintln!("warning: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    match speaks_h2(&stream, header_timeout).await {
                        None => {}
                        Some(true) => {
                            // Every call says its connection, for Flight SQL's sessions.
                            let id = sessions.open();
                            let svc = hyper_util::service::TowerToHyperService::new(
                                app.map_request(move |req| connection(req, Some(id))),
                            );
                            let conn = hyper::server::conn::http2::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .timer(hyper_util::rt::TokioTimer::new())
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                            let _ = conn.await;
                            sessions.close(id);
                        }
                        Some(false) => {
                            let svc = hyper_util::service::TowerToHyperService::new(
                                app.map_request(|req| connection(req, None)),
                            );
                            let conn = hyper::server::conn::http1::Builder::new()
                                .timer(hyper_util::rt::TokioTimer::new())
                                .header_read_timeout(header_timeout)
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                            let _ = conn.await;
                        }
                    }
                });
            }
            _ = &mut shutdown => return Ok(()),
        }
    }
}
