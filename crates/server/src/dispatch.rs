//! The control plane's side of the data plane (DESIGN §8): queries, table plans (schema
//! inference), imports and pipeline runs are tasks that data-plane workers (crate
//! `lakeplan-dataplane`) pull, run and answer; the control plane never reads table data itself.
//!
//! ```text
//! worker ── POST /internal/v1/workers ─────────────▶ registered: an id, how to open lakes
//!        ── POST /internal/v1/workers/{id}/next ───▶ a task (long poll; 204 when none came)
//!        ── POST /internal/v1/workers/{id}/heartbeat (every second or two)
//!        ── POST /internal/v1/tasks/{id}/result ───▶ the task's answer or its error
//! ```
//!
//! The bodies are the types of [`lakeplan_dataplane::protocol`]. A worker's answer is decoded
//! as the answer its task's work gives ([`Dispatcher::report`]); one that is not fails the task
//! with 502, naming the worker and what was wrong.
//!
//! A worker not heard from for `worker_timeout` is lost: the tasks it held fail with 503 (they
//! may be retried; nothing they would have committed was), and a run it held is marked failed
//! through the task's `on_lost`. While no worker is connected, a task waits `pickup_timeout`,
//! then fails with 503.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lakeplan_dataplane::protocol::{AnswerKind, TaskReport};
pub use lakeplan_dataplane::protocol::{RunProject, RunTask, Task, TaskKind, Work};
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::error::{ApiError, WireError};

/// What a task answers, as the API relays it: its answer's JSON (a checked
/// [`lakeplan_dataplane::Answer`]), or the API error it ended with.
pub type Outcome = Result<Value, WireError>;

/// Called with the lost worker's id when a task's worker is lost mid-task.
pub type OnLost = Box<dyn FnOnce(&str) + Send>;

struct WorkerEntry {
    endpoint: String,
    last_seen: Instant,
    tasks: Vec<String>,
    /// The kinds of task it takes (every kind when empty).
    kinds: Vec<TaskKind>,
}

/// The job of a run task.
fn job_of(task: &Task) -> Option<String> {
    match &task.work {
        Work::Run(r) => Some(r.job_id.clone()),
        Work::Node(n) => Some(n.job_id.clone()),
        _ => None,
    }
}

struct Queued {
    task: Task,
    reply: oneshot::Sender<Outcome>,
    on_lost: Option<OnLost>,
    queued_at: Instant,
}

struct InFlight {
    worker: String,
    /// What its answer must be.
    answer: AnswerKind,
    /// The job, for a run task.
    job: Option<String>,
    reply: oneshot::Sender<Outcome>,
    on_lost: Option<OnLost>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Queued>,
    workers: HashMap<String, WorkerEntry>,
    in_flight: HashMap<String, InFlight>,
    /// Tasks each worker is asked to stop (told with its next heartbeat).
    cancels: HashMap<String, Vec<String>>,
}

/// Timing of the data plane.
#[derive(Clone, Copy, Debug)]
pub struct DispatchConfig {
    /// A worker silent this long is lost.
    pub worker_timeout: Duration,
    /// A task no worker has taken after this long fails.
    pub pickup_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            worker_timeout: Duration::from_secs(10),
            pickup_timeout: Duration::from_secs(30),
        }
    }
}

/// The task queue and the registered workers.
pub struct Dispatcher {
    inner: Mutex<Inner>,
    ready: Notify,
    config: DispatchConfig,
}

fn not_held(task: &str, worker: &str) -> ApiError {
    ApiError::NotFound(format!("task '{task}' is not held by worker '{worker}'"))
}

fn unavailable(m: String) -> WireError {
    ApiError::Unavailable(m).into()
}

impl Dispatcher {
    /// A dispatcher with a thread of its own that finds lost workers and stale tasks; the thread
    /// ends with the dispatcher.
    pub fn start(config: DispatchConfig) -> Arc<Dispatcher> {
        let d = Arc::new(Dispatcher {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            config,
        });
        let weak: Weak<Dispatcher> = Arc::downgrade(&d);
        std::thread::Builder::new()
            .name("lakeplan-reaper".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                match weak.upgrade() {
                    Some(d) => d.reap(),
                    None => return,
                }
            })
            .ok();
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a worker that serves results at `endpoint` and takes tasks of `kinds` (all
    /// when empty); returns its id.
    pub fn register(&self, endpoint: String, kinds: Vec<TaskKind>) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        self.lock().workers.insert(
            id.clone(),
            WorkerEntry {
                endpoint,
                last_seen: Instant::now(),
                tasks: Vec::new(),
                kinds,
            },
        );
        id
    }

    /// Notes that `worker` is alive; answers the tasks it is asked to stop. A worker declared
    /// lost must register again.
    pub fn heartbeat(&self, worker: &str) -> Result<Vec<String>, ApiError> {
        let mut inner = self.lock();
        match inner.workers.get_mut(worker) {
            Some(w) => w.last_seen = Instant::now(),
            None => {
                return Err(ApiError::NotFound(format!(
                    "worker '{worker}' is not registered (lost?): register again"
                )))
            }
        }
        Ok(inner.cancels.remove(worker).unwrap_or_default())
    }

    /// Asks the workers running job `job` (its run and its nodes) to stop it; its queued
    /// nodes are dropped. False if no worker runs that job.
    pub fn cancel_run(&self, job: &str) -> bool {
        let mut inner = self.lock();
        inner
            .queue
            .retain(|q| job_of(&q.task).as_deref() != Some(job));
        let held: Vec<(String, String)> = inner
            .in_flight
            .iter()
            .filter(|(_, f)| f.job.as_deref() == Some(job))
            .map(|(t, f)| (t.clone(), f.worker.clone()))
            .collect();
        for (task, worker) in &held {
            inner
                .cancels
                .entry(worker.clone())
                .or_default()
                .push(task.clone());
        }
        !held.is_empty()
    }

    /// Gives up one task: dropped if queued, its worker asked to stop it if running.
    pub fn cancel_task(&self, task: &str) {
        let mut inner = self.lock();
        inner.queue.retain(|q| q.task.id != task);
        if let Some(worker) = inner.in_flight.get(task).map(|f| f.worker.clone()) {
            inner
                .cancels
                .entry(worker)
                .or_default()
                .push(task.to_string());
        }
    }

    /// The next task for `worker`, waiting up to `wait` for one.
    pub async fn next_task(&self, worker: &str, wait: Duration) -> Result<Option<Task>, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a task queued in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                let Inner {
                    queue,
                    workers,
                    in_flight,
                    ..
                } = &mut *inner;
                let w = workers.get_mut(worker).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "worker '{worker}' is not registered: register again"
                    ))
                })?;
                w.last_seen = Instant::now();
                // The client gave up waiting (a dropped request): nothing to run.
                queue.retain(|q| !q.reply.is_closed());
                let takes = |q: &Queued| {
                    w.kinds.is_empty() || w.kinds.contains(&TaskKind::of(&q.task.work))
                };
                if let Some(q) = queue.iter().position(takes).and_then(|i| queue.remove(i)) {
                    w.tasks.push(q.task.id.clone());
                    in_flight.insert(
                        q.task.id.clone(),
                        InFlight {
                            worker: worker.to_string(),
                            answer: AnswerKind::of(&q.task.work),
                            job: job_of(&q.task),
                            reply: q.reply,
                            on_lost: q.on_lost,
                        },
                    );
                    return Ok(Some(q.task));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Queues `task`; the receiver gets its outcome (or a 503 if no worker takes it in time, or
    /// its worker is lost).
    pub fn submit(&self, task: Task, on_lost: Option<OnLost>) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.lock().queue.push_back(Queued {
            task,
            reply,
            on_lost,
            queued_at: Instant::now(),
        });
        // Every waiting worker looks: the first may not take this kind of task.
        self.ready.notify_waiters();
        rx
    }

    /// A worker's report for `task`, its answer decoded as the task's work answers. A malformed
    /// report fails the task (with 502, naming the worker and what was wrong) and is refused
    /// with 400, so that the worker logs it too.
    pub fn report(&self, task: &str, report: TaskReport) -> Result<(), ApiError> {
        let worker = report.worker_id.clone();
        let kind = match self.lock().in_flight.get(task) {
            Some(f) if f.worker == worker => f.answer,
            _ => return Err(not_held(task, &worker)),
        };
        let outcome = report.outcome(kind).and_then(|o| match o {
            Ok(answer) => answer.to_json().map(Ok),
            Err(e) => Ok(Err(e)),
        });
        match outcome {
            Ok(outcome) => self.complete(&worker, task, outcome),
            Err(e) => {
                let message = format!("the data-plane worker {worker} answered wrongly: {e}");
                eprintln!("warning: task {task}: {message}");
                self.complete(
                    &worker,
                    task,
                    Err(WireError {
                        status: 502,
                        kind: "BadGateway".into(),
                        message,
                        context: serde_json::json!({}),
                    }),
                )?;
                Err(ApiError::BadRequest(e.to_string()))
            }
        }
    }

    /// A worker's answer for `task`. Answers for tasks the worker no longer holds (it was
    /// declared lost meanwhile) are refused, so the worker learns its work was abandoned.
    pub fn complete(&self, worker: &str, task: &str, outcome: Outcome) -> Result<(), ApiError> {
        let mut inner = self.lock();
        match inner.in_flight.get(task) {
            Some(f) if f.worker == worker => {}
            _ => return Err(not_held(task, worker)),
        }
        let Some(f) = inner.in_flight.remove(task) else {
            return Ok(());
        };
        if let Some(w) = inner.workers.get_mut(worker) {
            w.tasks.retain(|t| t != task);
            w.last_seen = Instant::now();
        }
        drop(inner);
        let _ = f.reply.send(outcome);
        Ok(())
    }

    /// Fails the tasks of lost workers and the tasks nobody took in time.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut failed: Vec<(InFlight, String)> = Vec::new();
        let mut stale: Vec<Queued> = Vec::new();
        {
            let mut inner = self.lock();
            let lost: Vec<String> = inner
                .workers
                .iter()
                .filter(|(_, w)| now.duration_since(w.last_seen) > self.config.worker_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in lost {
                let Some(w) = inner.workers.remove(&id) else {
                    continue;
                };
                inner.cancels.remove(&id);
                eprintln!(
                    "warning: worker {id} ({}) lost; failing its {} task(s)",
                    w.endpoint,
                    w.tasks.len()
                );
                for t in w.tasks {
                    if let Some(f) = inner.in_flight.remove(&t) {
                        failed.push((f, id.clone()));
                    }
                }
            }
            // With workers connected that take them, tasks wait for a free one (bounded by the
            // request's own timeout); with none, they fail after the pickup timeout.
            let timeout = self.config.pickup_timeout;
            let kinds: Vec<Vec<TaskKind>> =
                inner.workers.values().map(|w| w.kinds.clone()).collect();
            let (keep, old): (VecDeque<Queued>, VecDeque<Queued>) =
                inner.queue.drain(..).partition(|q| {
                    let kind = TaskKind::of(&q.task.work);
                    let taker = kinds.iter().any(|k| k.is_empty() || k.contains(&kind));
                    taker || now.duration_since(q.queued_at) <= timeout
                });
            inner.queue = keep;
            stale.extend(old);
        }
        for (f, worker) in failed {
            if let Some(on_lost) = f.on_lost {
                on_lost(&worker);
            }
            let _ = f.reply.send(Err(unavailable(format!(
                "the data-plane worker {worker} was lost while running this task; nothing it \
                 had not committed was kept: retry"
            ))));
        }
        for q in stale {
            let _ = q.reply.send(Err(unavailable(format!(
                "no data-plane worker took the task within {} s: start workers with \
                 `lakeplan serve --workers N` or `lakeplan worker --control-plane URL`",
                self.config.pickup_timeout.as_secs()
            ))));
        }
    }

    /// Gauges of the data plane, in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let inner = self.lock();
        format!(
            "# HELP lakeplan_workers Data-plane workers connected.\n\
             # TYPE lakeplan_workers gauge\n\
             lakeplan_workers {}\n\
             # HELP lakeplan_tasks_running Tasks running on workers.\n\
             # TYPE lakeplan_tasks_running gauge\n\
             lakeplan_tasks_running {}\n\
             # HELP lakeplan_tasks_queued Tasks waiting for a worker.\n\
             # TYPE lakeplan_tasks_queued gauge\n\
             lakeplan_tasks_queued {}\n",
            inner.workers.len(),
            inner.in_flight.len(),
            inner.queue.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Tenant;

    fn task(id: &str) -> Task {
        Task {
            id: id.into(),
            tenant: Tenant {
                name: "t".into(),
                warehouse: "/w".into(),
                created_at: chrono::Utc::now(),
            },
            user: "u".into(),
            key_id: "k".into(),
            work: Work::Query {
                sql: "SELECT 1".into(),
                at: "main".into(),
                namespace: None,
                max_rows: None,
                describe: false,
            },
            commit: Default::default(),
        }
    }

    fn quick() -> DispatchConfig {
        DispatchConfig {
            worker_timeout: Duration::from_millis(300),
            pickup_timeout: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn a_task_goes_to_one_worker_and_its_answer_back() {
        let d = Dispatcher::start(quick());
        let w = d.register("http://127.0.0.1:1".into(), vec![]);
        let rx = d.submit(task("a"), None);
        let got = d.next_task(&w, Duration::from_secs(1)).await.expect("poll");
        assert_eq!(got.map(|t| t.id), Some("a".to_string()));
        assert!(d
            .next_task(&w, Duration::from_millis(50))
            .await
            .expect("poll")
            .is_none());
        // Another worker cannot answer for it.
        let other = d.register("http://127.0.0.1:2".into(), vec![]);
        assert!(d.complete(&other, "a", Ok(Value::Null)).is_err());
        d.complete(&w, "a", Ok(serde_json::json!(7)))
            .expect("complete");
        assert_eq!(rx.await.expect("outcome"), Ok(serde_json::json!(7)));
    }

    #[tokio::test]
    async fn a_lost_worker_fails_its_tasks_and_must_register_again() {
        let d = Dispatcher::start(quick());
        let w = d.register("http://127.0.0.1:1".into(), vec![]);
        let lost = Arc::new(Mutex::new(None));
        let seen = lost.clone();
        let rx = d.submit(
            task("b"),
            Some(Box::new(move |worker: &str| {
                *seen.lock().expect("lock") = Some(worker.to_string());
            })),
        );
        assert!(d
            .next_task(&w, Duration::from_secs(1))
            .await
            .expect("poll")
            .is_some());
        let err = rx.await.expect("outcome").expect_err("lost");
        assert_eq!(err.status, 503);
        assert!(err.message.contains("lost"), "{}", err.message);
        assert_eq!(lost.lock().expect("lock").as_deref(), Some(w.as_str()));
        assert!(d.heartbeat(&w).is_err());
        assert!(d.complete(&w, "b", Ok(Value::Null)).is_err());
    }

    #[tokio::test]
    async fn a_task_nobody_takes_fails_with_503() {
        let d = Dispatcher::start(quick());
        let err = d
            .submit(task("c"), None)
            .await
            .expect("outcome")
            .expect_err("no worker");
        assert_eq!(err.status, 503);
        assert!(err.message.contains("--workers"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_report_is_read_as_its_tasks_answer() {
        let d = Dispatcher::start(quick());
        let w = d.register("http://127.0.0.1:1".into(), vec![]);
        let report = |ok: Value| TaskReport {
            worker_id: w.clone(),
            ok: Some(ok),
            error: None,
        };
        let ticket = serde_json::json!({
            "endpoint": "http://127.0.0.1:1",
            "ticket": "t",
            "expires_at": "2026-12-07T22:00:00Z",
            "columns": [{"name": "n", "type": "Int64"}],
            "schema": "",
        });
        let good = d.submit(task("good"), None);
        let bad = d.submit(task("bad"), None);
        for _ in 0..2 {
            d.next_task(&w, Duration::from_secs(1))
                .await
                .expect("poll")
                .expect("a task");
        }
        let other = TaskReport {
            worker_id: "nobody".into(),
            ..report(ticket.clone())
        };
        assert_eq!(d.report("good", other).expect_err("not its").parts().0, 404);
        d.report("good", report(ticket.clone())).expect("report");
        assert_eq!(good.await.expect("outcome"), Ok(ticket));

        let refused = d
            .report("bad", report(serde_json::json!({"job_id": "j"})))
            .expect_err("a run's answer to a query");
        assert_eq!(refused.parts().0, 400);
        let err = bad.await.expect("outcome").expect_err("failed");
        assert_eq!((err.status, err.kind.as_str()), (502, "BadGateway"));
        assert!(
            err.message.contains(&format!("worker {w}"))
                && err.message.contains("missing field `endpoint`"),
            "{}",
            err.message
        );
    }
}
