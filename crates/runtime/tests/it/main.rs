//! End-to-end tests of the runtime with the real `uv` and `bwrap` (scripts/setup.sh installs
//! both). One environment (pyarrow only) is built once under the target directory and shared by
//! every test (and reused across runs).

mod env;
mod sandbox;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lakeplan_runtime::{
    run_worker, EnvManager, EnvSpec, PreparedEnv, SandboxOptions, Stream, WorkerOutcome, WorkerSpec,
};

/// The uv of scripts/setup.sh (the repository's .venv) unless found by `locate_uv`.
pub fn uv() -> PathBuf {
    EnvManager::locate_uv().unwrap_or_else(|_| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/uv");
        assert!(
            p.is_file(),
            "uv not found: run scripts/setup.sh or set LAKEPLAN_UV"
        );
        p
    })
}

/// A folder under target/ (outside every sandbox bind, unlike /tmp which the sandbox hides).
pub fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

pub fn shared_cache_dir() -> PathBuf {
    target_tmp().join("runtime-envs")
}

static SHARED: tokio::sync::OnceCell<PreparedEnv> = tokio::sync::OnceCell::const_new();

/// The shared environment (default python, pyarrow only).
pub async fn shared_env() -> PreparedEnv {
    SHARED
        .get_or_init(|| async {
            EnvManager::new(shared_cache_dir(), uv())
                .ensure(&EnvSpec::default(), false)
                .await
                .expect("building the shared test environment")
        })
        .await
        .clone()
}

/// Runs `python -c script` in the shared environment; returns the outcome and every line.
pub async fn run_py(
    script: &str,
    sandbox: SandboxOptions,
    configure: impl FnOnce(&mut WorkerSpec),
) -> (WorkerOutcome, Vec<(Stream, String)>) {
    let mut spec = WorkerSpec::new(
        "test_node",
        shared_env().await,
        vec!["-c".into(), script.into()],
    );
    spec.sandbox = sandbox;
    spec.timeout = Some(Duration::from_secs(120));
    configure(&mut spec);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let outcome = run_worker(&spec, move |node, stream, line| {
        assert_eq!(node, "test_node");
        sink.lock().unwrap().push((stream, line.to_string()));
    })
    .await
    .expect("running the worker");
    let lines = lines.lock().unwrap().clone();
    (outcome, lines)
}

pub fn stderr_of(lines: &[(Stream, String)]) -> String {
    lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
