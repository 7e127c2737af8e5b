//! Sandboxed Python workers (see docs/pipelines-internals.md, section 3).
//!
//! - [`python`]: the CPython interpreters on `PATH` and the choice of one for a requested version.
//! - [`env`]: `uv` environments, one per (interpreter, packages), cached by a hash; the warm path
//!   runs no subprocess.
//! - [`sandbox`]: the bubblewrap command line (read-only system, chosen binds, no network unless
//!   allowed, cleared environment).
//! - [`pids`]: a `pids` cgroup that caps the processes of one sandbox.
//! - [`worker`]: running `python <args>` in the sandbox with a timeout, a memory limit and a process limit,
//!   streaming its output line by line; the shared-memory job folder.
//!
//! Running a node end to end:
//!
//! ```text
//! let envs = EnvManager::new(lake.join("runtime/envs"), EnvManager::locate_uv()?);
//! let env = envs.ensure(&EnvSpec { python: Some("3.11".into()), pip }, false).await?;
//! for w in &env.warnings { log(w) }
//! let job = ShmJobDir::create(&job_id)?;  // inputs (Arrow IPC) and task.json in job.input_dir()
//! let sandbox = SandboxOptions::new()
//!     .ro(&python_runtime_dir).pythonpath(&python_runtime_dir)   // lakeplan/_worker.py
//!     .ro_at(&project_dir, "/project")
//!     .ro_at(job.input_dir(), "/job/in")
//!     .rw_at(job.output_dir(), "/job/out")
//!     .network(internet_access);
//! let mut spec = WorkerSpec::new("clean_trips", env,
//!     vec!["-m".into(), "lakeplan._worker".into(), "/job/in/task.json".into()]);
//! spec.sandbox = sandbox;
//! spec.timeout = Some(Duration::from_secs(60));
//! spec.memory_bytes = Some(2 << 30);
//! spec.result_file = Some(job.output_dir().join("clean_trips.result.json"));
//! let outcome = run_worker(&spec, |node, stream, line| log_line(node, stream, line)).await?;
//! if !outcome.success() { /* outcome.timed_out, exit_code, result["error"] */ }
//! ```

pub mod env;
mod error;
pub mod pids;
pub mod python;
pub mod sandbox;
pub mod worker;

pub use env::{EnvKey, EnvManager, EnvSpec, PreparedEnv, PYARROW_FLOOR};
pub use error::{Result, RuntimeError};
pub use python::{resolve, Interpreter, PyVersion, Resolved};
pub use sandbox::{bwrap_available, Bind, SandboxOptions};
pub use worker::{run_worker, ShmJobDir, Stream, WorkerOutcome, WorkerSpec};
