//! Pipeline nodes across workers: a run's coordinator queues its Python nodes through the
//! control plane ([`WorkerNodes`]), any worker runs one ([`run_node`]) and keeps its output in
//! shared memory, served over Arrow Flight under a ticket ([`OutputStore`]) to the workers and
//! the coordinator that read it.
//!
//! ```text
//! coordinator ── POST /internal/v1/tasks {work: node} ──▶ control plane ──▶ worker B
//!   (waits for the answer: its output's endpoint + ticket)                  │ inputs: DoGet from
//! worker C ── Flight DoGet(node-output-…) ─────────────────────────────────▶│ the producer, or
//! coordinator ── DoAction(release) at the run's end ────────────────────────▶│ its file if local
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{ApiError, WireError};
use crate::protocol::{Answer, AnswerKind, NewTask, TaskOutcome, Work};
use crate::tenants::Tenant;
use crate::worker::ControlPlane;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightData, Ticket};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lakeplan_core::{Error, Result};
use lakeplan_lake::{
    CommitExtras, Lake, NodeDispatch, NodeTask, NodeTaskResult, RemoteOutput, ShmJobDir,
};

/// Tickets of node outputs start with this (query tickets are plain hex).
pub const OUTPUT_TICKET_PREFIX: &str = "node-output-";

/// How long an output is kept when its run never releases it (its coordinator was lost).
const OUTPUT_TTL: Duration = Duration::from_secs(12 * 3600);

/// The name of the Flight action that releases an output.
pub const RELEASE_ACTION: &str = "release";

/// How often a node whose worker was lost (or that no worker took) is queued again.
const NODE_RETRIES: usize = 2;

struct Held {
    path: PathBuf,
    /// The node task's folder, removed when the output is released.
    _dir: Option<ShmJobDir>,
    expires: Instant,
}

/// The outputs this worker serves.
#[derive(Default)]
pub struct OutputStore {
    held: Mutex<HashMap<String, Held>>,
}

impl OutputStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `path` (kept with `dir`, if given) under a new ticket.
    pub fn put(&self, path: PathBuf, dir: Option<ShmJobDir>) -> String {
        let ticket = format!("{OUTPUT_TICKET_PREFIX}{}", crate::worker::new_ticket());
        let now = Instant::now();
        let mut held = self.lock();
        held.retain(|_, h| h.expires > now);
        held.insert(
            ticket.clone(),
            Held {
                path,
                _dir: dir,
                expires: now + OUTPUT_TTL,
            },
        );
        ticket
    }

    /// The file behind a ticket (not spent: several nodes may read one output).
    pub fn path(&self, ticket: &str) -> Option<PathBuf> {
        let held = self.lock();
        let h = held.get(ticket)?;
        (h.expires > Instant::now()).then(|| h.path.clone())
    }

    /// Stops serving an output and frees its folder.
    pub fn release(&self, ticket: &str) -> bool {
        let gone = self.lock().remove(ticket);
        gone.is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The largest Flight message a node output is sent in (and so that [`fetch`] accepts): a batch
/// of up to this size goes whole, as pyarrow sends it, rather than in Flight's default 2 MiB
/// slices.
const OUTPUT_MESSAGE_BYTES: usize = 64 << 20;

/// The receive windows of a [`fetch`]'s HTTP/2 connection: large enough that the sender is
/// never waiting for a window update on loopback or a LAN (the default is 64 KiB).
const FETCH_WINDOW_BYTES: u32 = 64 << 20;

/// An Arrow IPC file as Flight data, read a batch ahead of the sender on a blocking thread (so
/// that reading overlaps sending and at most two batches are in memory).
pub async fn output_stream(
    path: PathBuf,
) -> Result<futures::stream::BoxStream<'static, std::result::Result<FlightData, FlightError>>> {
    let read_failed = |path: &Path, e: &dyn std::fmt::Display| {
        Error::Internal(format!("reading {}: {e}", path.display()))
    };
    let open = {
        let path = path.clone();
        move || -> Result<_> {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(path.display(), e))?;
            arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
                .map_err(|e| read_failed(&path, &e))
        }
    };
    let reader = tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())))??;
    let schema = reader.schema();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        for batch in reader {
            let batch =
                batch.map_err(|e| FlightError::ExternalError(Box::new(read_failed(&path, &e))));
            if tx.blocking_send(batch).is_err() {
                break; // the reader went away
            }
        }
    });
    let batches =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Ok(FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(OUTPUT_MESSAGE_BYTES)
        .build(batches)
        .boxed())
}

async fn flight_client(endpoint: &str) -> Result<FlightClient> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| Error::InvalidInput(format!("worker endpoint '{endpoint}': {e}")))?
        .initial_stream_window_size(FETCH_WINDOW_BYTES)
        .initial_connection_window_size(FETCH_WINDOW_BYTES)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Error::Internal(format!("connecting to the worker at {endpoint}: {e}")))?;
    // Room for a whole message of OUTPUT_MESSAGE_BYTES and its IPC framing.
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(OUTPUT_MESSAGE_BYTES + (1 << 20));
    Ok(FlightClient::new_from_inner(inner))
}

/// Copies a node output from the worker that holds it into `dest` (an Arrow IPC file, written
/// whole or not at all); returns its rows.
pub async fn fetch(output: &RemoteOutput, dest: &Path) -> Result<u64> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::Internal(format!(
            "fetching a node output from the worker at {}: {e}",
            output.endpoint
        ))
    };
    let mut client = flight_client(&output.endpoint).await?;
    let mut stream = client
        .do_get(Ticket::new(output.ticket.clone()))
        .await
        .map_err(|e| failed(&e))?;
    // The file is written on a blocking thread while the next batch arrives.
    let tmp = dest.with_extension("arrow.part");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(1);
    let writer = tokio::task::spawn_blocking({
        let tmp = tmp.clone();
        move || write_pieces(&tmp, rx)
    });
    let mut rows = 0u64;
    let mut received: Result<()> = Ok(());
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(batch) => {
                rows += batch.num_rows() as u64;
                if tx.send(Piece::Batch(batch)).is_err() {
                    break; // the writer failed: its error is the answer
                }
            }
            Err(e) => {
                received = Err(failed(&e));
                break;
            }
        }
    }
    if received.is_ok() {
        match stream.schema().cloned() {
            Some(schema) => {
                let _ = tx.send(Piece::End(schema));
            }
            None => received = Err(failed(&"the stream had no schema")),
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| failed(&e))
        .and_then(|w| w.map_err(|e| failed(&e)));
    let done = received.and(written).and_then(|complete| {
        if complete {
            std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest.display(), e))
        } else {
            Err(failed(&"the stream ended early"))
        }
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done.map(|()| rows)
}

/// What [`fetch`] hands its writer: a batch, or the end of the stream (with its schema, for an
/// output of no batches).
enum Piece {
    Batch(RecordBatch),
    End(arrow::datatypes::SchemaRef),
}

/// Writes the pieces into an Arrow IPC file at `tmp`; returns whether the stream's end came.
fn write_pieces(tmp: &Path, pieces: std::sync::mpsc::Receiver<Piece>) -> Result<bool> {
    let io = |e: &dyn std::fmt::Display| Error::Internal(format!("writing {}: {e}", tmp.display()));
    let open = |schema: &arrow::datatypes::Schema| {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io(tmp.display(), e))?;
        arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), schema)
            .map_err(|e| io(&e))
    };
    let mut writer = None;
    for piece in pieces {
        match piece {
            Piece::Batch(batch) => {
                if writer.is_none() {
                    writer = Some(open(&batch.schema())?);
                }
                if let Some(w) = writer.as_mut() {
                    w.write(&batch).map_err(|e| io(&e))?;
                }
            }
            Piece::End(schema) => {
                let mut w = match writer.take() {
                    Some(w) => w,
                    None => open(&schema)?,
                };
                w.finish().map_err(|e| io(&e))?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A coordinator's way to its run's nodes: through the control plane's queue to any worker.
pub struct WorkerNodes {
    pub cp: Arc<ControlPlane>,
    pub outputs: Arc<OutputStore>,
    pub instance: String,
    pub endpoint: String,
    pub tenant: Tenant,
    pub user: String,
    pub commit: CommitExtras,
}

impl NodeDispatch for WorkerNodes {
    fn run(&self, task: NodeTask) -> BoxFuture<'static, Result<NodeTaskResult>> {
        let cp = self.cp.clone();
        let body = NewTask {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            commit: self.commit.clone(),
            work: Work::Node(Box::new(task)),
        };
        async move {
            let mut retried = Vec::new();
            loop {
                let error = match cp.submit::<NodeTaskResult>(&body, AnswerKind::Node).await? {
                    Ok(mut answer) => {
                        answer.retried = retried;
                        return Ok(answer);
                    }
                    Err(e) => e,
                };
                // A worker lost, or none took it: queued again (a few times).
                if error.status == 503 && retried.len() < NODE_RETRIES {
                    retried.push(error.message);
                    continue;
                }
                return Err(Error::InvalidOperation {
                    op: "run a node task".into(),
                    reason: error.message,
                });
            }
        }
        .boxed()
    }

    fn fetch(&self, output: RemoteOutput, dest: PathBuf) -> BoxFuture<'static, Result<u64>> {
        async move { fetch(&output, &dest).await }.boxed()
    }

    fn share(&self, path: &Path) -> Result<RemoteOutput> {
        if !path.is_file() {
            return Err(Error::Internal(format!(
                "sharing {}: no such output",
                path.display()
            )));
        }
        Ok(RemoteOutput {
            endpoint: self.endpoint.clone(),
            ticket: self.outputs.put(path.to_path_buf(), None),
            instance: self.instance.clone(),
            path: path.to_path_buf(),
        })
    }

    fn release(&self, outputs: Vec<RemoteOutput>) {
        let mut elsewhere: HashMap<String, Vec<String>> = HashMap::new();
        for o in outputs {
            if o.instance == self.instance {
                self.outputs.release(&o.ticket);
            } else {
                elsewhere.entry(o.endpoint).or_default().push(o.ticket);
            }
        }
        if elsewhere.is_empty() {
            return;
        }
        // Best effort: an output never released expires with its ticket.
        tokio::spawn(async move {
            for (endpoint, tickets) in elsewhere {
                let Ok(mut client) = flight_client(&endpoint).await else {
                    continue;
                };
                for t in tickets {
                    let action = Action::new(RELEASE_ACTION, t.into_bytes());
                    if let Ok(s) = client.do_action(action).await {
                        let _ = s.try_collect::<Vec<_>>().await;
                    }
                }
            }
        });
    }

    fn instance(&self) -> String {
        self.instance.clone()
    }
}

/// Runs one node task here: fetches the inputs other workers hold, runs the function in a
/// sandbox, and serves its output under a ticket of [`OutputStore`]. `stopped` ends it early
/// (its sandbox is killed with it).
pub async fn run_node(
    lake: Lake,
    task: NodeTask,
    outputs: Arc<OutputStore>,
    instance: &str,
    endpoint: &str,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> TaskOutcome {
    let wire = |e: Error| WireError::from(ApiError::from(e));
    let label = format!(
        "{}-{}-{}",
        &task.job_id[..task.job_id.len().min(12)],
        task.node.name,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let dir = ShmJobDir::create(&label).map_err(|e| wire(Error::Internal(e.to_string())))?;
    let mut inputs = HashMap::new();
    let mut notes = Vec::new();
    let mut lost = Vec::new();
    for (up, loc) in &task.upstream {
        if loc.instance == instance && loc.path.is_file() {
            inputs.insert(up.clone(), loc.path.clone());
            continue;
        }
        let dest = dir.input_dir().join(format!("{up}.upstream.arrow"));
        let started = Instant::now();
        match fetch(loc, &dest).await {
            Ok(rows) => notes.push(format!(
                "input '{up}': {rows} rows fetched over Arrow Flight from {} in {:.3} s",
                loc.endpoint,
                started.elapsed().as_secs_f64()
            )),
            Err(e) => lost.push((up.clone(), e)),
        }
        inputs.insert(up.clone(), dest);
    }
    if !lost.is_empty() {
        // The node does not run: its coordinator computes the lost inputs again and resends it.
        let answer = NodeTaskResult {
            result: None,
            error: Some(
                lost.iter()
                    .map(|(up, e)| format!("input '{up}' could not be read ({e})"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            output: None,
            lines: notes.into_iter().map(|n| (false, n)).collect(),
            worker: endpoint.to_string(),
            retried: Vec::new(),
            lost_inputs: lost.into_iter().map(|(up, _)| up).collect(),
        };
        return Ok(Answer::Node(Box::new(answer)));
    }
    // As a run: its future is driven on a blocking thread (pipeline code paths need not be
    // Send), and dropped (killing the sandbox) when stopped.
    let handle = tokio::runtime::Handle::current();
    let worker = endpoint.to_string();
    let ran = tokio::task::spawn_blocking(move || {
        handle.block_on(async {
            tokio::select! {
                r = lake.run_node_task(&task, inputs, dir, &worker, &notes) => Some(r),
                Ok(()) = stopped => None,
            }
        })
    })
    .await
    .map_err(|e| wire(Error::Internal(format!("a node task: {e}"))))?;
    let Some(ran) = ran else {
        return Err(wire(Error::InvalidOperation {
            op: "run the node".into(),
            reason: "its run was stopped".into(),
        }));
    };
    let run = ran.map_err(wire)?;
    let mut result = run.result;
    if let Some(path) = run.output {
        result.output = Some(RemoteOutput {
            endpoint: endpoint.to_string(),
            ticket: outputs.put(path.clone(), Some(run.dir)),
            instance: instance.to_string(),
            path,
        });
    }
    Ok(Answer::Node(Box::new(result)))
}
