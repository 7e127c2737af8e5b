//! A data-plane worker (`lakeplan worker --control-plane URL`): it connects out to the control
//! plane, pulls tasks (queries, imports, pipeline runs), runs them on the tenant's lake, and
//! serves query results itself, so that no table data passes through the control plane.
//!
//! ```text
//! control plane ◀── register / next task / heartbeat / result ── worker
//! client ── Arrow Flight DoGet(ticket) ──────────────────────────▶ worker  (gRPC)
//! client ── GET /results/{ticket} (JSON rows or Arrow IPC) ───────▶ worker  (HTTP, same port)
//! ```
//!
//! A query task is planned on the worker (so SQL errors answer at once) and its rows wait,
//! unexecuted, under a ticket: 256 random bits, good for one fetch within [`TICKET_TTL`], and
//! only with the API key that ran the query (the fetch sends it as a bearer key, which the
//! worker checks in the server's registry through its [`Directory`]): no key is 401, another
//! tenant's key finds no such ticket (404), another key of the tenant is refused (403). A refused
//! fetch does not spend it.
//!
//! Table plans and imports read source files only within the tenant's reach
//! ([`Directory::reach`]), checked on each file as this machine resolves it.
//!
//! Every message to and from the control plane is a type of [`crate::protocol`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lakeplan_core::{Error, Result};
use lakeplan_lake::ops::{DataPlane, InProcess};
use lakeplan_lake::{Lake, LakeConfig, Nodes, RunOptions};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use crate::directory::{Directory, OpenDirectory};
use crate::error::{ApiError, ErrorBody, WireError};
use crate::nodes::{output_stream, OutputStore, WorkerNodes, OUTPUT_TICKET_PREFIX, RELEASE_ACTION};
use crate::protocol::{
    Answer, Column, HeartbeatReply, NewTask, ProtocolError, QuerySchema, QueryTicket, Register,
    Registered, RunAnswer, RunTask, Task, TaskKind, TaskOutcome, TaskReply, TaskReport, Work,
};
use crate::results::{self, ARROW_STREAM};
use crate::tenants::{MetastoreUrl, Tenants};

/// How long a query's result waits for its fetch.
pub const TICKET_TTL: Duration = Duration::from_secs(300);

/// How `lakeplan worker` runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The control plane's base URL (`http://127.0.0.1:8080`).
    pub control_plane: String,
    /// The shared secret of the control plane's internal routes.
    pub token: String,
    /// Where results are served (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The URL clients use to reach `listen`, when it differs (a worker behind NAT, say).
    pub advertise: Option<String>,
    /// Tasks run at once.
    pub max_tasks: usize,
    /// The kinds of task taken (all when empty).
    pub tasks: Vec<TaskKind>,
    /// This worker's local folder (job folders, node cache) with a PostgreSQL metastore, in
    /// place of the server's (a worker on another machine); a SQLite metastore is the
    /// server's folder itself, so it is ignored there.
    pub state_dir: Option<std::path::PathBuf>,
}

/// A query plan waiting for its fetch, by the key that asked for it.
struct Pending {
    stream: SendableRecordBatchStream,
    max_rows: Option<usize>,
    expires: Instant,
    tenant: String,
    key_id: String,
}

/// Tickets and the results they stand for.
struct ResultStore {
    pending: Mutex<HashMap<String, Pending>>,
    /// The server's registry, once registered with the control plane: fetches are
    /// authenticated against it.
    directory: Mutex<Option<Arc<dyn Directory>>>,
    ttl: Duration,
}

impl Default for ResultStore {
    fn default() -> Self {
        ResultStore::with_ttl(TICKET_TTL)
    }
}

fn spent() -> ApiError {
    ApiError::NotFound("unknown, spent or expired ticket: run the query again".into())
}

impl ResultStore {
    fn with_ttl(ttl: Duration) -> ResultStore {
        ResultStore {
            pending: Mutex::default(),
            directory: Mutex::default(),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_directory(&self, directory: Arc<dyn Directory>) {
        *self.directory.lock().unwrap_or_else(|p| p.into_inner()) = Some(directory);
    }

    /// Keeps `stream` for one fetch by the key that asked (its tenant and key id); answers
    /// its ticket and how long it is good for.
    fn put(
        &self,
        (tenant, key_id): (String, String),
        stream: SendableRecordBatchStream,
        max_rows: Option<usize>,
    ) -> (String, Duration) {
        let ticket = new_ticket();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, p| p.expires > now);
        map.insert(
            ticket.clone(),
            Pending {
                stream,
                max_rows,
                expires: now + self.ttl,
                tenant,
                key_id,
            },
        );
        (ticket, self.ttl)
    }

    /// The result of `ticket`, once, for the key that asked for it (`secret`, the fetch's
    /// bearer key): a ticket is spent by its fetch. A refused fetch leaves it as it was.
    fn take(&self, ticket: &str, secret: Option<&str>) -> std::result::Result<Pending, ApiError> {
        let secret = secret.ok_or(ApiError::Unauthorized)?;
        let directory = self
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(spent)?;
        let who = directory.key_owner(secret)?.ok_or(ApiError::Unauthorized)?;
        let mut map = self.lock();
        let p = map.get(ticket).ok_or_else(spent)?;
        if p.expires <= Instant::now() {
            map.remove(ticket);
            return Err(spent());
        }
        // Another tenant's ticket is not there for this key.
        if p.tenant != who.tenant {
            return Err(spent());
        }
        if p.key_id != who.key_id {
            return Err(ApiError::Forbidden(format!(
                "this ticket was issued to another API key than {}: fetch it with the key \
                 that ran the query",
                who.key_id
            )));
        }
        map.remove(ticket).ok_or_else(spent)
    }
}

/// The bearer key of a request's `authorization` header (HTTP) or metadata (gRPC).
fn bearer(value: Option<&str>) -> Option<&str> {
    value?.strip_prefix("Bearer ").map(str::trim)
}

/// A refused fetch, as Flight says it.
fn flight_status(e: ApiError) -> Status {
    let (status, _, message, _) = e.parts();
    match status {
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::FORBIDDEN => Status::permission_denied(message),
        StatusCode::NOT_FOUND => Status::not_found(message),
        _ => Status::internal(message),
    }
}

/// 256 random bits, in hex: a ticket nobody can guess.
pub(crate) fn new_ticket() -> String {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(16) {
        chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    hex::encode(bytes)
}

/// At most `max_rows` rows of `stream` (all with `None`); `truncated` is set if rows were cut.
/// The stream ends after an error.
fn limited(
    stream: SendableRecordBatchStream,
    max_rows: Option<usize>,
    truncated: Arc<AtomicBool>,
) -> BoxStream<'static, Result<RecordBatch>> {
    // `left`: rows still wanted; `None` once the stream has ended or failed.
    let left = Some(max_rows.unwrap_or(usize::MAX));
    futures::stream::unfold((stream, left), move |(mut s, left)| {
        let truncated = truncated.clone();
        async move {
            let left = left?;
            loop {
                match s.next().await? {
                    Err(e) => return Some((Err(Error::Sql(e.to_string())), (s, None))),
                    Ok(b) if b.num_rows() == 0 => continue,
                    Ok(b) if left == 0 => {
                        truncated.store(true, Ordering::Relaxed);
                        drop(b);
                        return None;
                    }
                    Ok(b) if b.num_rows() > left => {
                        truncated.store(true, Ordering::Relaxed);
                        return Some((Ok(b.slice(0, left)), (s, None)));
                    }
                    Ok(b) => {
                        let n = b.num_rows();
                        return Some((Ok(b), (s, Some(left - n))));
                    }
                }
            }
        }
    })
    .boxed()
}

/// What the worker's tasks share.
struct WorkerCtx {
    tenants: Tenants,
    /// The server's registry: the tenants, for the reach of a tenant's imports.
    directory: Arc<dyn Directory>,
    results: Arc<ResultStore>,
    /// Node outputs this worker serves.
    outputs: Arc<OutputStore>,
    /// This worker process, across registrations (the outputs it holds stay readable as files).
    instance: String,
    cp: Arc<ControlPlane>,
    endpoint: String,
    /// Runs in progress, by task id: a send stops the run.
    stops: Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>,
}

fn wire(e: Error) -> WireError {
    ApiError::from(e).into()
}

impl WorkerCtx {
    async fn execute(&self, task: Task) -> TaskOutcome {
        let extras = task.commit.clone();
        let mut lake = self
            .tenants
            .lake(&task.tenant)
            .map_err(wire)?
            .acting_as(LakeConfig {
                actor: task.user.clone(),
                client: "api".into(),
            })
            .with_commit_extras(task.commit)
            .map_err(wire)?;
        if matches!(task.work, Work::PlanTable(_) | Work::Import(_)) {
            // Source files are resolved here, so their reach is checked here, on this
            // machine's paths.
            let reach = self
                .directory
                .reach(&task.tenant, self.tenants.state_dir())
                .map_err(wire)?;
            lake = lake.within(reach);
        }
        let asker = (task.tenant.name.clone(), task.key_id.clone());
        match task.work {
            Work::Query {
                sql,
                at,
                namespace,
                max_rows,
                describe,
            } => {
                let stream = lake
                    .query_stream(&sql, Some(&at), namespace.as_deref())
                    .await
                    .map_err(wire)?;
                let schema = stream.schema();
                let schema_ipc = base64::engine::general_purpose::STANDARD
                    .encode(results::ipc(&schema, &[]).map_err(wire)?);
                if describe {
                    return Ok(Answer::Schema(QuerySchema {
                        columns: Column::all(&schema),
                        schema: schema_ipc,
                    }));
                }
                let columns = Column::all(&schema);
                let (ticket, ttl) = self.results.put(asker, stream, max_rows);
                let expires_at =
                    chrono::Utc::now() + chrono::Duration::milliseconds(ttl.as_millis() as i64);
                Ok(Answer::Rows(QueryTicket {
                    endpoint: self.endpoint.clone(),
                    ticket,
                    expires_at,
                    columns,
                    schema: schema_ipc,
                }))
            }
            // Source files are read as they would be in the user's own process, within the
            // tenant's reach.
            Work::PlanTable(req) => Ok(Answer::Plan(
                InProcess::default()
                    .plan_table(&lake, req)
                    .await
                    .map_err(wire)?,
            )),
            Work::Import(req) => Ok(Answer::Import(
                InProcess::default()
                    .import(&lake, req)
                    .await
                    .map_err(wire)?,
            )),
            Work::Run(run) => {
                let (stop, stopped) = tokio::sync::oneshot::channel();
                self.stops_lock().insert(task.id.clone(), stop);
                let nodes = Nodes(Arc::new(WorkerNodes {
                    cp: self.cp.clone(),
                    outputs: self.outputs.clone(),
                    instance: self.instance.clone(),
                    endpoint: self.endpoint.clone(),
                    tenant: task.tenant.clone(),
                    user: task.user.clone(),
                    commit: extras,
                }));
                let out = run_task(lake, run, nodes, stopped).await;
                self.stops_lock().remove(&task.id);
                out
            }
            Work::Node(node) => {
                let (stop, stopped) = tokio::sync::oneshot::channel();
                self.stops_lock().insert(task.id.clone(), stop);
                let out = crate::nodes::run_node(
                    lake,
                    *node,
                    self.outputs.clone(),
                    &self.instance,
                    &self.endpoint,
                    stopped,
                )
                .await;
                self.stops_lock().remove(&task.id);
                out
            }
        }
    }

    fn stops_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::sync::oneshot::Sender<()>>> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the runs of these tasks (the control plane asked, for `job stop`).
    fn stop(&self, tasks: &[String]) {
        let mut stops = self.stops_lock();
        for t in tasks {
            if let Some(s) = stops.remove(t) {
                let _ = s.send(());
            }
        }
    }
}

/// Runs a pipeline to its end, or until `stopped`; its job record (in the lake's local folder,
/// which the control plane reads too) tells the client how it went. A stopped run's sandboxes
/// end with it (they are killed when the run is dropped), and its target branch is untouched.
async fn run_task(
    lake: Lake,
    run: RunTask,
    nodes: Nodes,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> TaskOutcome {
    let id = run.job_id.clone();
    let (opts, upload) = run.options(&lake).map_err(wire)?;
    let opts = RunOptions {
        // The worker serves other tasks: its process must never be signalled to stop a run.
        shared_process: true,
        // Its Python nodes are tasks of their own, for any worker.
        nodes: Some(nodes),
        ..opts
    };
    lakeplan_lake::ops::data::drive_run(lake, opts, upload, stopped)
        .await
        .map_err(wire)?;
    Ok(Answer::Run(RunAnswer { job_id: id }))
}

/// The worker's Arrow Flight service: `DoGet` with a ticket streams that result or node
/// output; `DoAction(release)` frees a node output.
#[derive(Clone)]
struct Flight {
    results: Arc<ResultStore>,
    outputs: Arc<OutputStore>,
}

fn unsupported<T>(what: &str) -> std::result::Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what}: a lakeplan worker serves results by DoGet with a ticket from the control plane"
    )))
}

#[tonic::async_trait]
impl FlightService for Flight {
    type HandshakeStream = BoxStream<'static, std::result::Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, std::result::Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, std::result::Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, std::result::Result<ActionType, Status>>;

    async fn do_get(
        &self,
        request: GrpcRequest<Ticket>,
    ) -> std::result::Result<GrpcResponse<Self::DoGetStream>, Status> {
        let ticket = String::from_utf8_lossy(&request.get_ref().ticket).to_string();
        if ticket.starts_with(OUTPUT_TICKET_PREFIX) {
            let path = self
                .outputs
                .path(&ticket)
                .ok_or_else(|| Status::not_found("unknown, released or expired node output"))?;
            let out = output_stream(path)
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(Status::from);
            return Ok(GrpcResponse::new(out.boxed()));
        }
        let key = bearer(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        );
        let p = self.results.take(&ticket, key).map_err(flight_status)?;
        let schema = p.stream.schema();
        // An error while the rows stream (a cast that fails on some row, say) is the query's:
        // INVALID_ARGUMENT, as the HTTP route answers it 400.
        let rows = limited(p.stream, p.max_rows, Arc::default()).map_err(|e| {
            FlightError::Tonic(Box::new(match e {
                Error::Sql(m) => Status::invalid_argument(m),
                e => Status::internal(e.to_string()),
            }))
        });
        let out = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(rows)
            .map_err(Status::from);
        Ok(GrpcResponse::new(out.boxed()))
    }

    async fn handshake(
        &self,
        _: GrpcRequest<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<GrpcResponse<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn list_flights(
        &self,
        _: GrpcRequest<Criteria>,
    ) -> std::result::Result<GrpcResponse<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: GrpcRequest<FlightDescriptor>,
    ) -> std::result::Result<GrpcResponse<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: GrpcRequest<FlightDescriptor>,
    ) -> std::result::Result<GrpcResponse<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: GrpcRequest<FlightDescriptor>,
    ) -> std::result::Result<GrpcResponse<SchemaResult>, Status> {
        unsupported("GetSchema")
    }
    async fn do_put(
        &self,
        _: GrpcRequest<Streaming<FlightData>>,
    ) -> std::result::Result<GrpcResponse<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }
    async fn do_exchange(
        &self,
        _: GrpcRequest<Streaming<FlightData>>,
    ) -> std::result::Result<GrpcResponse<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
    async fn do_action(
        &self,
        request: GrpcRequest<Action>,
    ) -> std::result::Result<GrpcResponse<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != RELEASE_ACTION {
            return unsupported(&format!("DoAction '{}'", action.r#type));
        }
        let ticket = String::from_utf8_lossy(&action.body).to_string();
        if !self.outputs.release(&ticket) {
            return Err(Status::not_found(
                "unknown, released or expired node output",
            ));
        }
        Ok(GrpcResponse::new(futures::stream::empty().boxed()))
    }
    async fn list_actions(
        &self,
        _: GrpcRequest<Empty>,
    ) -> std::result::Result<GrpcResponse<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }
}

/// `GET /results/{ticket}`: the rows as JSON (the body of `/api/v1/query`), or an Arrow IPC
/// stream with `Accept: application/vnd.apache.arrow.stream`.
async fn http_result(
    State(store): State<Arc<ResultStore>>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let p = match store.take(&ticket, key) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let schema = p.stream.schema();
    let truncated = Arc::new(AtomicBool::new(false));
    let batches: Result<Vec<RecordBatch>> = limited(p.stream, p.max_rows, truncated.clone())
        .try_collect()
        .await;
    let batches = match batches {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let truncated = truncated.load(Ordering::Relaxed);
    encode(&headers, &schema, &batches, truncated).unwrap_or_else(|e| e.into_response())
}

fn encode(
    headers: &HeaderMap,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    truncated: bool,
) -> std::result::Result<Response, ApiError> {
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    if wants_arrow {
        return Ok((
            [
                (header::CONTENT_TYPE, ARROW_STREAM.to_string()),
                (
                    header::HeaderName::from_static("x-lakeplan-truncated"),
                    truncated.to_string(),
                ),
            ],
            results::ipc(schema, batches)?,
        )
            .into_response());
    }
    Ok(axum::Json(results::json_rows(schema, batches, truncated)?).into_response())
}

/// The worker's port: Flight (gRPC over HTTP/2) and the HTTP routes.
fn router(results: Arc<ResultStore>, outputs: Arc<OutputStore>) -> axum::Router {
    let http = axum::Router::new()
        .route("/results/{ticket}", axum::routing::get(http_result))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(results.clone());
    tonic::service::Routes::new(FlightServiceServer::new(Flight { results, outputs }))
        .into_axum_router()
        .merge(http)
}

/// The control plane's internal routes, as the worker calls them.
pub struct ControlPlane {
    http: reqwest::Client,
    base: String,
    token: String,
}

enum Polled {
    Task(Box<Task>),
    Nothing,
    /// The control plane no longer knows this worker (it was declared lost): register again.
    Unknown,
}

impl ControlPlane {
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn register(
        &self,
        endpoint: &str,
        kinds: &[TaskKind],
    ) -> std::result::Result<Registered, String> {
        let body = Register {
            endpoint: endpoint.to_string(),
            tasks: kinds.to_vec(),
        };
        let resp = self
            .post("/internal/v1/workers")
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!(
                "{}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ));
        }
        reply(resp, "registering").await.map_err(|e| e.to_string())
    }

    async fn next(&self, worker: &str) -> std::result::Result<Polled, String> {
        let resp = self
            .post(&format!("/internal/v1/workers/{worker}/next"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match resp.status() {
            StatusCode::OK => Ok(Polled::Task(Box::new(
                reply(resp, "a poll for tasks")
                    .await
                    .map_err(|e| e.to_string())?,
            ))),
            StatusCode::NO_CONTENT => Ok(Polled::Nothing),
            StatusCode::NOT_FOUND => Ok(Polled::Unknown),
            s => Err(format!("{s}: {}", resp.text().await.unwrap_or_default())),
        }
    }

    /// The tasks the control plane asks to stop; `None` if it no longer knows this worker. A
    /// lost connection asks for nothing (the worker is declared lost if it lasts).
    async fn heartbeat(
        &self,
        worker: &str,
    ) -> std::result::Result<Option<Vec<String>>, ProtocolError> {
        match self
            .post(&format!("/internal/v1/workers/{worker}/heartbeat"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => Ok(None),
            Ok(r) => Ok(Some(
                reply::<HeartbeatReply>(r, "a heartbeat").await?.cancel,
            )),
            Err(_) => Ok(Some(Vec::new())),
        }
    }

    async fn report(&self, worker: &str, task: &str, outcome: &TaskOutcome) {
        let body = match TaskReport::new(worker, outcome) {
            Ok(b) => b,
            // The task fails with why its answer could not be sent.
            Err(e) => TaskReport {
                worker_id: worker.to_string(),
                ok: None,
                error: Some(wire(e.into())),
            },
        };
        // A lost connection is retried briefly; an answer the control plane refuses (the task
        // was given up, or the answer was malformed: the task failed with that) is dropped.
        for _ in 0..20 {
            match self
                .post(&format!("/internal/v1/tasks/{task}/result"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status() == StatusCode::BAD_REQUEST => {
                    let why = match r.json::<ErrorBody>().await {
                        Ok(b) => b.error.message,
                        Err(e) => e.to_string(),
                    };
                    eprintln!(
                        "warning: the control plane refused the answer of task {task}: {why}"
                    );
                    return;
                }
                Ok(_) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        eprintln!("warning: could not report task {task} to the control plane");
    }

    /// Queues a task for any worker and waits for its answer, as a task of `kind` answers it
    /// (or its error, with the status the control plane gave it).
    pub(crate) async fn submit<T: serde::de::DeserializeOwned>(
        &self,
        task: &NewTask,
        kind: crate::protocol::AnswerKind,
    ) -> Result<std::result::Result<T, WireError>> {
        const CALL: &str = "queueing a task";
        let resp = self
            .post("/internal/v1/tasks")
            .json(task)
            .send()
            .await
            .map_err(|e| Error::Internal(format!("{CALL}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            // The control plane's own error (its body is the API's).
            let body: ErrorBody = reply(resp, CALL).await?;
            return Ok(Err(body.into_wire(status.as_u16())));
        }
        Ok(reply::<TaskReply>(resp, CALL).await?.outcome(kind)?)
    }
}

/// The body of the control plane's answer to `call`, as the protocol says it is.
async fn reply<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    call: &'static str,
) -> std::result::Result<T, ProtocolError> {
    let status = resp.status().as_u16();
    let malformed = |reason: String| ProtocolError::MalformedReply {
        call,
        status,
        reason,
    };
    let bytes = resp.bytes().await.map_err(|e| malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))
}

/// A running worker: its result endpoint, and the tasks that run it (stopped on drop).
pub struct WorkerHandle {
    pub endpoint: String,
    pub local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds the result port, then keeps a connection to the control plane in the background;
/// `directory` opens the server's registry once the control plane has named its metastore.
pub async fn start(opts: WorkerOptions, directory: OpenDirectory) -> Result<WorkerHandle> {
    let listener = crate::bind(&opts.listen).await?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("worker address: {e}")))?;
    let endpoint = opts
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{local_addr}"));
    let results = Arc::new(ResultStore::default());
    let outputs = Arc::new(OutputStore::default());
    let app = router(results.clone(), outputs.clone());
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("error: the worker's result server stopped: {e}");
        }
    });
    let cp = Arc::new(ControlPlane {
        http: reqwest::Client::new(),
        base: opts.control_plane.trim_end_matches('/').to_string(),
        token: opts.token.clone(),
    });
    let shared = Shared {
        results,
        outputs,
        instance: uuid::Uuid::new_v4().simple().to_string(),
        kinds: opts.tasks.clone(),
        state_dir: opts.state_dir.clone(),
        directory,
    };
    let control = tokio::spawn(control_loop(cp, endpoint.clone(), shared, opts.max_tasks));
    Ok(WorkerHandle {
        endpoint,
        local_addr,
        tasks: vec![serve, control],
    })
}

/// Runs a worker until `shutdown`.
pub async fn run(
    opts: WorkerOptions,
    directory: OpenDirectory,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let handle = start(opts, directory).await?;
    println!("lakeplan worker serving results at {}", handle.endpoint);
    shutdown.await;
    drop(handle);
    Ok(())
}

/// What outlives the worker's registrations.
struct Shared {
    results: Arc<ResultStore>,
    outputs: Arc<OutputStore>,
    instance: String,
    kinds: Vec<TaskKind>,
    state_dir: Option<std::path::PathBuf>,
    directory: OpenDirectory,
}

/// Register, then pull tasks; register again whenever the control plane has forgotten us.
async fn control_loop(cp: Arc<ControlPlane>, endpoint: String, shared: Shared, max_tasks: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_tasks.max(1)));
    let mut warned = false;
    loop {
        let reg = match cp.register(&endpoint, &shared.kinds).await {
            Ok(r) => r,
            Err(e) => {
                if !warned {
                    eprintln!(
                        "warning: cannot register with the control plane at {} ({e}); retrying",
                        cp.base
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        warned = false;
        let id = reg.worker_id;
        let metastore = match (reg.metastore, &shared.state_dir) {
            (MetastoreUrl::Postgres { url, .. }, Some(dir)) => MetastoreUrl::Postgres {
                url,
                state_dir: dir.clone(),
            },
            (m @ MetastoreUrl::Sqlite { .. }, Some(_)) => {
                eprintln!(
                    "warning: --state-dir is ignored: the server's metastore is SQLite, whose \
                     folder holds the catalogs (a worker on it shares the server's machine)"
                );
                m
            }
            (m, None) => m,
        };
        let directory = match (shared.directory)(&metastore) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("warning: cannot open the server's registry ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        shared.results.set_directory(directory.clone());
        let ctx = Arc::new(WorkerCtx {
            directory,
            tenants: Tenants::new(metastore),
            results: shared.results.clone(),
            outputs: shared.outputs.clone(),
            instance: shared.instance.clone(),
            cp: cp.clone(),
            endpoint: endpoint.clone(),
            stops: Mutex::default(),
        });
        let beat = {
            let (cp, id, ctx) = (cp.clone(), id.clone(), ctx.clone());
            tokio::spawn(async move {
                loop {
                    match cp.heartbeat(&id).await {
                        Ok(Some(stop)) => ctx.stop(&stop),
                        Ok(None) => return,
                        Err(e) => eprintln!("warning: {e}"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match cp.next(&id).await {
                Ok(Polled::Task(task)) => {
                    let (cp, ctx, id) = (cp.clone(), ctx.clone(), id.clone());
                    // A run's coordinator mostly waits for its nodes, which are tasks of their
                    // own: it holds no slot, or a worker with one slot could never run them.
                    let permit = (!matches!(task.work, Work::Run(_))).then_some(permit);
                    tokio::spawn(async move {
                        let task_id = task.id.clone();
                        let outcome = ctx.execute(*task).await;
                        cp.report(&id, &task_id, &outcome).await;
                        drop(permit);
                    });
                }
                Ok(Polled::Nothing) => {}
                Ok(Polled::Unknown) => break,
                Err(e) => {
                    eprintln!("warning: polling the control plane: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        beat.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::datatypes::Schema;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use lakeplan_lake::Reach;

    use super::*;
    use crate::directory::KeyOwner;
    use crate::tenants::Tenant;

    /// Keys by secret, as the server's registry answers them.
    struct Keys(HashMap<&'static str, KeyOwner>);

    impl Directory for Keys {
        fn key_owner(&self, secret: &str) -> Result<Option<KeyOwner>> {
            Ok(self.0.get(secret).cloned())
        }
        fn reach(&self, _: &Tenant, _: &std::path::Path) -> Result<Reach> {
            Err(Error::Internal("no reach in this test".into()))
        }
    }

    fn rows() -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::new(Schema::empty()),
            futures::stream::empty(),
        ))
    }

    #[tokio::test]
    async fn a_ticket_is_its_keys_once_and_expires() {
        let owner = |tenant: &str, key_id: &str| KeyOwner {
            tenant: tenant.into(),
            key_id: key_id.into(),
        };
        let (alice, other, eve) = ("lpk_alice", "lpk_alice_2", "lpk_eve");
        let keys = Keys(HashMap::from([
            (alice, owner("acme", "k_alice")),
            (other, owner("acme", "k_alice_2")),
            (eve, owner("globex", "k_eve")),
        ]));
        let store = ResultStore::with_ttl(Duration::from_millis(200));
        store.set_directory(Arc::new(keys));
        let asker = || ("acme".to_string(), "k_alice".to_string());
        let status = |r: std::result::Result<Pending, ApiError>| match r {
            Ok(_) => 200,
            Err(e) => e.parts().0.as_u16(),
        };

        let (t, ttl) = store.put(asker(), rows(), None);
        assert_eq!(ttl, Duration::from_millis(200));
        assert_eq!(status(store.take(&t, None)), 401);
        assert_eq!(status(store.take(&t, Some("lpk_nope"))), 401);
        assert_eq!(status(store.take(&t, Some(eve))), 404);
        assert_eq!(status(store.take(&t, Some(other))), 403);
        assert_eq!(status(store.take(&t, Some(alice))), 200);
        assert_eq!(status(store.take(&t, Some(alice))), 404, "spent");

        let (t, _) = store.put(asker(), rows(), None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(store.take(&t, Some(alice))), 404, "expired");
        // A task of no key (a worker's own) mints a ticket no key redeems.
        let (t, _) = store.put(("acme".into(), String::new()), rows(), None);
        assert_eq!(status(store.take(&t, Some(alice))), 403);
    }
}
