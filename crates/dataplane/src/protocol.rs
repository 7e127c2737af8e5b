//! What the control plane and its workers say to each other, typed once for both sides. Every
//! body of the internal routes (worker token only, not in `/openapi.json`) is a struct here:
//!
//! ```text
//! worker ── POST /internal/v1/workers {Register} ─────────────▶ Registered
//!        ── POST /internal/v1/workers/{id}/next ─────────────▶ Task (204: none came)
//!        ── POST /internal/v1/workers/{id}/heartbeat ────────▶ HeartbeatReply
//!        ── POST /internal/v1/tasks/{id}/result {TaskReport} ▶ 204
//!        ── POST /internal/v1/tasks {NewTask} ───────────────▶ TaskReply (a run's node task)
//! ```
//!
//! A task's answer depends on its work ([`AnswerKind::of`]): the control plane decodes what a
//! worker reports as the [`Answer`] its task gives, and a report that is not one is a
//! [`ProtocolError`] naming what was wrong, never a default.

use std::fmt;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use lakeplan_lake::{CommitExtras, CreatePlan, NodeTaskResult};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WireError;
use crate::tenants::{MetastoreUrl, Tenant};

/// One unit of data-plane work, run as `user` on `tenant`'s lake.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub tenant: Tenant,
    pub user: String,
    /// The id of the API key that asked: a query's ticket is redeemed with that key only.
    #[serde(default)]
    pub key_id: String,
    pub work: Work,
    /// Added to the commits the task's writes make.
    #[serde(default)]
    pub commit: lakeplan_lake::CommitExtras,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Plan one read-only statement; the answer is a short-lived ticket for its rows and their
    /// schema (with `describe`, the schema only: nothing is kept for a fetch).
    Query {
        sql: String,
        at: String,
        namespace: Option<String>,
        max_rows: Option<usize>,
        #[serde(default)]
        describe: bool,
    },
    /// Infer a new table's schema and partitioning from files (the answer is the plan).
    PlanTable(lakeplan_lake::ops::PlanTable),
    /// Append files to a table: one commit, or nothing (the service's request, bound: its
    /// branch is set).
    Import(lakeplan_lake::ops::Import),
    /// A whole pipeline run: the worker taking it coordinates it, and its Python nodes come
    /// back to the queue as [`Work::Node`] tasks.
    Run(RunTask),
    /// One Python node of a run, in a sandbox of the worker that takes it; its output stays
    /// there, served over Arrow Flight.
    Node(Box<lakeplan_lake::NodeTask>),
}

/// A pipeline run and where its code comes from: the service's request types, sent as they are.
pub use lakeplan_lake::ops::{RunProject, RunTask};

/// The kinds of task a worker may be limited to (`lakeplan worker --tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Queries (and their schemas).
    Query,
    /// Table plans and imports.
    Import,
    /// Pipeline runs: the worker coordinates them.
    Run,
    /// Pipeline nodes: Python functions in sandboxes.
    Node,
}

impl TaskKind {
    pub const ALL: [&'static str; 4] = ["query", "import", "run", "node"];

    pub fn parse(s: &str) -> Option<TaskKind> {
        match s.trim() {
            "query" => Some(TaskKind::Query),
            "import" => Some(TaskKind::Import),
            "run" => Some(TaskKind::Run),
            "node" => Some(TaskKind::Node),
            _ => None,
        }
    }

    pub fn of(work: &Work) -> TaskKind {
        match work {
            Work::Query { .. } => TaskKind::Query,
            Work::PlanTable(_) | Work::Import(_) => TaskKind::Import,
            Work::Run(_) => TaskKind::Run,
            Work::Node(_) => TaskKind::Node,
        }
    }
}

/// What a task of some work answers, for decoding a worker's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// A query planned: [`QueryTicket`].
    Rows,
    /// A query described: [`QuerySchema`].
    Schema,
    /// A table's plan: [`CreatePlan`].
    Plan,
    /// An import: [`ImportAnswer`].
    Import,
    /// A pipeline run: [`RunAnswer`].
    Run,
    /// A run's node: [`NodeTaskResult`].
    Node,
}

impl AnswerKind {
    pub fn of(work: &Work) -> AnswerKind {
        match work {
            Work::Query { describe: true, .. } => AnswerKind::Schema,
            Work::Query { .. } => AnswerKind::Rows,
            Work::PlanTable(_) => AnswerKind::Plan,
            Work::Import(_) => AnswerKind::Import,
            Work::Run(_) => AnswerKind::Run,
            Work::Node(_) => AnswerKind::Node,
        }
    }
}

impl fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnswerKind::Rows => "query",
            AnswerKind::Schema => "query schema",
            AnswerKind::Plan => "table plan",
            AnswerKind::Import => "import",
            AnswerKind::Run => "run",
            AnswerKind::Node => "node",
        })
    }
}

/// One column of a result: `{"name", "type"}` (the type as Arrow prints it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl Column {
    pub fn all(schema: &SchemaRef) -> Vec<Column> {
        schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect()
    }
}

/// A query planned on a worker: its rows wait there under `ticket` until `expires_at`, for
/// Arrow Flight `DoGet` or `GET {endpoint}/results/{ticket}` (the body of `/api/v1/query` with
/// `Accept: application/vnd.lakeplan.flight+json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryTicket {
    pub endpoint: String,
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
    pub columns: Vec<Column>,
    /// The rows' Arrow schema: an IPC stream of no batches, in base64.
    pub schema: String,
}

/// A query described: its columns and schema only (nothing waits for a fetch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuerySchema {
    pub columns: Vec<Column>,
    /// An Arrow IPC stream of no batches, in base64.
    pub schema: String,
}

/// An import's answer: the service's own.
pub use lakeplan_lake::ops::Imported as ImportAnswer;

/// A pipeline run that ended: its job record says how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunAnswer {
    pub job_id: String,
}

/// What a worker answers for a task; its JSON is the answer's own (no tag: the task's work
/// says which it is, see [`Answer::decode`]).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Rows(QueryTicket),
    Schema(QuerySchema),
    Plan(CreatePlan),
    Import(ImportAnswer),
    Run(RunAnswer),
    Node(Box<NodeTaskResult>),
}

/// A task's answer, or the API error it ended with.
pub type TaskOutcome = Result<Answer, WireError>;

impl Answer {
    pub fn kind(&self) -> AnswerKind {
        match self {
            Answer::Rows(_) => AnswerKind::Rows,
            Answer::Schema(_) => AnswerKind::Schema,
            Answer::Plan(_) => AnswerKind::Plan,
            Answer::Import(_) => AnswerKind::Import,
            Answer::Run(_) => AnswerKind::Run,
            Answer::Node(_) => AnswerKind::Node,
        }
    }

    /// `v` as the answer of a task of `kind`.
    pub fn decode(kind: AnswerKind, v: Value) -> Result<Answer, ProtocolError> {
        Ok(match kind {
            AnswerKind::Rows => Answer::Rows(decode(kind, v)?),
            AnswerKind::Schema => Answer::Schema(decode(kind, v)?),
            AnswerKind::Plan => Answer::Plan(decode(kind, v)?),
            AnswerKind::Import => Answer::Import(decode(kind, v)?),
            AnswerKind::Run => Answer::Run(decode(kind, v)?),
            AnswerKind::Node => Answer::Node(decode(kind, v)?),
        })
    }

    /// The answer as JSON, as the API relays it.
    pub fn to_json(&self) -> Result<Value, ProtocolError> {
        serde_json::to_value(self).map_err(|e| ProtocolError::Encoding {
            kind: self.kind(),
            reason: e.to_string(),
        })
    }
}

/// `v` as the answer of a task of `kind`, in its own type.
pub fn decode<T: DeserializeOwned>(kind: AnswerKind, v: Value) -> Result<T, ProtocolError> {
    serde_json::from_value(v).map_err(|e| ProtocolError::MalformedAnswer {
        kind,
        reason: e.to_string(),
    })
}

/// What was wrong with a message of the protocol.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// An answer that is not what a task of its kind answers.
    #[error("the answer to a {kind} task is malformed: {reason}")]
    MalformedAnswer { kind: AnswerKind, reason: String },
    /// A task's report or reply with neither an answer nor an error.
    #[error("a task result needs 'ok' or 'error'")]
    NoOutcome,
    /// An answer of the control plane to a worker's call that is not what the call answers.
    #[error("the control plane's answer to {call} (status {status}) is malformed: {reason}")]
    MalformedReply {
        call: &'static str,
        status: u16,
        reason: String,
    },
    /// An answer that cannot be written as JSON.
    #[error("writing a {kind} answer: {reason}")]
    Encoding { kind: AnswerKind, reason: String },
}

impl From<ProtocolError> for lakeplan_core::Error {
    fn from(e: ProtocolError) -> Self {
        lakeplan_core::Error::Internal(e.to_string())
    }
}

/// `POST /internal/v1/workers`: a worker offers itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Register {
    /// Where it serves results (`http://HOST:PORT`).
    pub endpoint: String,
    /// The kinds of task the worker takes (all when absent or empty).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tasks: Vec<TaskKind>,
}

/// The answer to [`Register`]: the worker's id, and how to open tenants' lakes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub worker_id: String,
    pub metastore: MetastoreUrl,
}

/// The answer to a heartbeat: the tasks the worker is asked to stop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub cancel: Vec<String>,
}

/// `POST /internal/v1/tasks`: a task a worker queues for another (a run's node), as a
/// [`Task`] less its id.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NewTask {
    #[schemars(with = "Value")]
    pub tenant: Tenant,
    pub user: String,
    #[schemars(with = "Value")]
    pub work: Work,
    #[serde(default)]
    pub commit: CommitExtras,
}

/// `POST /internal/v1/tasks/{id}/result`: a worker's answer for a task it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskReport {
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Value>")]
    pub error: Option<WireError>,
}

impl TaskReport {
    pub fn new(worker_id: &str, outcome: &TaskOutcome) -> Result<TaskReport, ProtocolError> {
        let (ok, error) = match outcome {
            Ok(answer) => (Some(answer.to_json()?), None),
            Err(e) => (None, Some(e.clone())),
        };
        Ok(TaskReport {
            worker_id: worker_id.to_string(),
            ok,
            error,
        })
    }

    /// What it reports, its answer decoded as a task of `kind` answers.
    pub fn outcome(self, kind: AnswerKind) -> Result<TaskOutcome, ProtocolError> {
        Ok(match split(self.ok, self.error)? {
            Ok(v) => Ok(Answer::decode(kind, v)?),
            Err(e) => Err(e),
        })
    }
}

/// The answer to [`NewTask`] once the task ended (always 200: an error is the task's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl TaskReply {
    pub fn new(outcome: Result<Value, WireError>) -> TaskReply {
        match outcome {
            Ok(v) => TaskReply {
                ok: Some(v),
                error: None,
            },
            Err(e) => TaskReply {
                ok: None,
                error: Some(e),
            },
        }
    }

    /// The task's answer, as a task of `kind` answers it, or its error.
    pub fn outcome<T: DeserializeOwned>(
        self,
        kind: AnswerKind,
    ) -> Result<Result<T, WireError>, ProtocolError> {
        Ok(match split(self.ok, self.error)? {
            Ok(v) => Ok(decode(kind, v)?),
            Err(e) => Err(e),
        })
    }
}

/// An answer or an error: the error when both came, as the control plane always read them.
fn split(
    ok: Option<Value>,
    error: Option<WireError>,
) -> Result<Result<Value, WireError>, ProtocolError> {
    match (ok, error) {
        (_, Some(e)) => Ok(Err(e)),
        (Some(v), None) => Ok(Ok(v)),
        (None, None) => Err(ProtocolError::NoOutcome),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;

    use super::*;
    use lakeplan_lake::{ImportReport, WriteInfo};

    fn ticket() -> QueryTicket {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        QueryTicket {
            endpoint: "http://127.0.0.1:9000".into(),
            ticket: "ab".repeat(32),
            expires_at: DateTime::parse_from_rfc3339("2026-12-07T22:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
            columns: Column::all(&schema),
            schema: "c2NoZW1h".into(),
        }
    }

    fn node() -> NodeTaskResult {
        NodeTaskResult {
            result: Some(json!({"rows": 3})),
            error: None,
            output: None,
            lines: vec![(false, "ran".into())],
            worker: "http://127.0.0.1:9000".into(),
            retried: Vec::new(),
            lost_inputs: Vec::new(),
        }
    }

    fn wire_error() -> WireError {
        WireError {
            status: 400,
            kind: "Sql".into(),
            message: "no such column".into(),
            context: json!({}),
        }
    }

    #[test]
    fn a_query_ticket_is_the_json_clients_read() {
        let v = Answer::Rows(ticket()).to_json().expect("json");
        assert_eq!(
            v,
            json!({
                "endpoint": "http://127.0.0.1:9000",
                "ticket": "ab".repeat(32),
                "expires_at": "2026-12-07T22:00:00Z",
                "columns": [{"name": "n", "type": "Int64"}],
                "schema": "c2NoZW1h",
            })
        );
        let Answer::Rows(back) = Answer::decode(AnswerKind::Rows, v).expect("decode") else {
            panic!("not rows");
        };
        assert_eq!(back, ticket());
    }

    #[test]
    fn every_answer_decodes_as_its_kind_and_as_no_other() {
        let answers = [
            Answer::Rows(ticket()),
            Answer::Schema(QuerySchema {
                columns: ticket().columns,
                schema: "c2NoZW1h".into(),
            }),
            Answer::Import(ImportAnswer {
                report: ImportReport::default(),
                commit: WriteInfo {
                    branch: "main".into(),
                    hash: None,
                },
            }),
            Answer::Run(RunAnswer {
                job_id: "j1".into(),
            }),
            Answer::Node(Box::new(node())),
        ];
        for a in answers {
            let v = a.to_json().expect("json");
            let back = Answer::decode(a.kind(), v.clone()).expect("decode");
            assert_eq!(back.kind(), a.kind());
            assert_eq!(back.to_json().expect("json"), v, "{}", a.kind());
        }
        // A run's answer is not a node's.
        let run = Answer::Run(RunAnswer { job_id: "j".into() });
        let err = Answer::decode(AnswerKind::Node, run.to_json().expect("json"))
            .expect_err("a run is no node");
        assert!(matches!(
            err,
            ProtocolError::MalformedAnswer {
                kind: AnswerKind::Node,
                ..
            }
        ));
    }

    #[test]
    fn a_malformed_answer_says_what_was_wrong() {
        let mut v = Answer::Rows(ticket()).to_json().expect("json");
        v.as_object_mut().expect("object").remove("ticket");
        let err = Answer::decode(AnswerKind::Rows, v).expect_err("no ticket");
        assert_eq!(
            err.to_string(),
            "the answer to a query task is malformed: missing field `ticket`"
        );
        let err = Answer::decode(AnswerKind::Run, json!(7)).expect_err("a number");
        assert!(
            err.to_string()
                .starts_with("the answer to a run task is malformed: invalid type: integer `7`"),
            "{err}"
        );
        let err = Answer::decode(AnswerKind::Rows, json!({"endpoint": 1, "ticket": "t"}))
            .expect_err("a number for a URL");
        assert!(
            err.to_string().contains("invalid type: integer `1`"),
            "{err}"
        );
        let err = decode::<NodeTaskResult>(AnswerKind::Node, json!({"worker": "w"}))
            .expect_err("no lines");
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn a_report_carries_an_answer_or_an_error() {
        let ok = TaskReport::new("w1", &Ok(Answer::Run(RunAnswer { job_id: "j".into() })))
            .expect("report");
        assert_eq!(
            serde_json::to_value(&ok).expect("json"),
            json!({"worker_id": "w1", "ok": {"job_id": "j"}})
        );
        let Ok(Answer::Run(r)) = ok.outcome(AnswerKind::Run).expect("outcome") else {
            panic!("not a run");
        };
        assert_eq!(r.job_id, "j");

        let failed = TaskReport::new("w1", &Err(wire_error())).expect("report");
        assert_eq!(
            serde_json::to_value(&failed).expect("json"),
            json!({"worker_id": "w1", "error": {
                "status": 400, "type": "Sql", "message": "no such column", "context": {}
            }})
        );
        let back: TaskReport =
            serde_json::from_value(serde_json::to_value(&failed).expect("json")).expect("read");
        let outcome = back.outcome(AnswerKind::Rows).expect("outcome");
        assert_eq!(outcome.map(|a| a.kind()), Err(wire_error()));

        // Neither: an error, not a default.
        let empty: TaskReport =
            serde_json::from_value(json!({"worker_id": "w1", "ok": null})).expect("read");
        assert_eq!(
            empty.outcome(AnswerKind::Run).map(|o| o.is_ok()),
            Err(ProtocolError::NoOutcome)
        );
        // Both: the error wins, as the control plane always read it.
        let both = TaskReport {
            worker_id: "w1".into(),
            ok: Some(json!({"job_id": "j"})),
            error: Some(wire_error()),
        };
        assert!(both.outcome(AnswerKind::Run).expect("outcome").is_err());
        // A report whose answer is not its task's.
        let wrong = TaskReport {
            worker_id: "w1".into(),
            ok: Some(json!({"job_id": "j"})),
            error: None,
        };
        assert!(matches!(
            wrong.outcome(AnswerKind::Rows),
            Err(ProtocolError::MalformedAnswer {
                kind: AnswerKind::Rows,
                ..
            })
        ));
    }

    #[test]
    fn a_reply_to_a_queued_task_is_its_answer_or_error() {
        let v = serde_json::to_value(node()).expect("json");
        let reply = TaskReply::new(Ok(v));
        let json = serde_json::to_value(&reply).expect("json");
        assert!(json.get("error").is_none(), "{json}");
        let back: TaskReply = serde_json::from_value(json).expect("read");
        let got: NodeTaskResult = back
            .outcome(AnswerKind::Node)
            .expect("outcome")
            .expect("answer");
        assert_eq!(got.lines, node().lines);

        let reply = TaskReply::new(Err(wire_error()));
        assert_eq!(
            reply
                .outcome::<NodeTaskResult>(AnswerKind::Node)
                .expect("outcome")
                .map(|n| n.worker),
            Err(wire_error())
        );
        let malformed = TaskReply {
            ok: Some(json!({"result": null})),
            error: None,
        };
        assert!(matches!(
            malformed.outcome::<NodeTaskResult>(AnswerKind::Node),
            Err(ProtocolError::MalformedAnswer { .. })
        ));
    }

    #[test]
    fn registration_and_heartbeats_read_as_written() {
        let r: Register =
            serde_json::from_value(json!({"endpoint": "http://127.0.0.1:1"})).expect("read");
        assert!(r.tasks.is_empty(), "all kinds when absent");
        let r: Register = serde_json::from_value(
            json!({"endpoint": "http://127.0.0.1:1", "tasks": ["query", "node"]}),
        )
        .expect("read");
        assert_eq!(r.tasks, [TaskKind::Query, TaskKind::Node]);
        assert!(serde_json::from_value::<Register>(
            json!({"endpoint": "http://127.0.0.1:1", "tasks": ["sql"]})
        )
        .is_err());

        let reg = Registered {
            worker_id: "w1".into(),
            metastore: MetastoreUrl::Sqlite {
                dir: "/srv/lakeplan".into(),
            },
        };
        let v = serde_json::to_value(&reg).expect("json");
        assert_eq!(
            v,
            json!({"worker_id": "w1", "metastore": {"kind": "sqlite", "dir": "/srv/lakeplan"}})
        );
        assert_eq!(serde_json::from_value::<Registered>(v).expect("read"), reg);

        let beat: HeartbeatReply = serde_json::from_value(json!({"cancel": ["t1"]})).expect("read");
        assert_eq!(beat.cancel, ["t1"]);
        // Never read as "nothing to stop".
        assert!(serde_json::from_value::<HeartbeatReply>(json!({"cancel": "t1"})).is_err());
        assert!(serde_json::from_value::<HeartbeatReply>(json!({})).is_err());
    }

    #[test]
    fn a_task_says_what_it_answers() {
        let query = |describe| Work::Query {
            sql: "SELECT 1".into(),
            at: "main".into(),
            namespace: None,
            max_rows: None,
            describe,
        };
        assert_eq!(AnswerKind::of(&query(false)), AnswerKind::Rows);
        assert_eq!(AnswerKind::of(&query(true)), AnswerKind::Schema);
        let task = NewTask {
            tenant: Tenant {
                name: "acme".into(),
                warehouse: "/w".into(),
                created_at: Utc::now(),
            },
            user: "alice".into(),
            work: query(false),
            commit: CommitExtras::default(),
        };
        let v = serde_json::to_value(&task).expect("json");
        assert_eq!(v["work"]["kind"], "query");
        let back: NewTask = serde_json::from_value(v).expect("read");
        assert_eq!(back.user, "alice");
        assert_eq!(AnswerKind::of(&back.work), AnswerKind::Rows);
    }
}
