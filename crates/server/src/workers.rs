//! The server's [`DataPlane`]: the half of an operation that reads source files or runs code
//! goes to the data-plane workers as a task, run as the caller (its tenant, user and key).
//! The control plane never reads those files or runs that code itself.

use lakeplan_core::{Error, Result};
use lakeplan_lake::ops::data::{await_job_end, await_job_record};
use lakeplan_lake::ops::{DataPlane, Import, Imported, PlanTable, RunTask};
use lakeplan_lake::{CommitExtras, CreatePlan, JobRecord, JobStatus, Lake};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::dispatch::{OnLost, Outcome, Task, Work};
use crate::registry::Principal;
use crate::state::AppState;

/// The data-plane workers, for one caller.
pub struct Workers {
    pub state: AppState,
    pub principal: Principal,
}

/// A worker's answer, or the error it answered (its kind, status and context kept).
async fn outcome(rx: tokio::sync::oneshot::Receiver<Outcome>) -> Result<Value> {
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Error::Unavailable(
            "the data plane dropped the task: retry".into(),
        )),
    }
}

fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Internal(format!("a worker's {what}: {e}")))
}

impl Workers {
    /// `work` as a task of the caller's.
    pub(crate) fn task(&self, work: Work) -> Task {
        Task {
            id: uuid::Uuid::new_v4().simple().to_string(),
            tenant: self.principal.tenant.clone(),
            user: self.principal.user.name.clone(),
            key_id: self.principal.key_id.clone(),
            work,
            commit: CommitExtras::default(),
        }
    }

    /// Hands `work` to the data plane; its answer.
    pub(crate) async fn submit(&self, work: Work) -> Result<Value> {
        outcome(self.state.dispatcher.submit(self.task(work), None)).await
    }
}

#[async_trait::async_trait]
impl DataPlane for Workers {
    async fn plan_table(&self, _: &Lake, req: PlanTable) -> Result<CreatePlan> {
        decode("table plan", self.submit(Work::PlanTable(req)).await?)
    }

    async fn import(&self, _: &Lake, req: Import) -> Result<Imported> {
        decode("import", self.submit(Work::Import(req)).await?)
    }

    /// The run goes on on the worker that takes it; if that worker is lost, the job is
    /// recorded failed.
    async fn start_run(&self, lake: &Lake, run: RunTask) -> Result<String> {
        let id = run.job_id.clone();
        let on_lost: OnLost = {
            let lake = lake.clone();
            let id = id.clone();
            Box::new(move |worker: &str| {
                let why = format!(
                    "the data-plane worker {worker} running this job was lost; nothing was published"
                );
                if let Err(e) = lake.end_job(&id, JobStatus::Failed, &why) {
                    eprintln!("warning: job {id}: {e}");
                }
            })
        };
        let done = self
            .state
            .dispatcher
            .submit(self.task(Work::Run(run)), Some(on_lost));
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = ended_tx.send(outcome(done).await.map(|_| ()));
        });
        await_job_record(lake, &id, ended).await
    }

    async fn cancel_run(&self, lake: &Lake, job: &JobRecord) -> Result<JobRecord> {
        // The worker running it stops it and records the job cancelled.
        if !self.state.dispatcher.cancel_run(&job.id) {
            return Err(Error::InvalidOperation {
                op: format!("stop job {}", job.id),
                reason:
                    "no worker is running it now (it may have just ended, or its worker was lost)"
                        .into(),
            });
        }
        await_job_end(lake, &job.id).await
    }
}
