//! Workers in the bubblewrap sandbox: isolation, output, exit codes, limits.

use std::time::Duration;

use lakeplan_runtime::{run_worker, SandboxOptions, ShmJobDir, Stream, WorkerSpec};

use crate::{run_py, shared_env, stderr_of, target_tmp};

const CONNECT: &str = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("connected")
except OSError as e:
    print("blocked:", e)
"#;

/// A port held by a listener of the test is unreachable from the sandbox, and reachable when
/// the network is allowed.
#[tokio::test]
async fn network_is_blocked_unless_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    for (network, expect) in [(false, "blocked:"), (true, "connected")] {
        let p = port.clone();
        let (o, lines) = run_py(CONNECT, SandboxOptions::new().network(network), |s| {
            s.args.push(p)
        })
        .await;
        assert!(o.success(), "{o:?} {lines:?}");
        let out: Vec<&str> = lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(out.len(), 1, "{lines:?}");
        assert!(out[0].starts_with(expect), "network={network}: {lines:?}");
    }
}

/// Host files outside the binds are invisible: a file under target/ (in /work or wherever the
/// repository is), and the rest of the home directory.
#[tokio::test]
async fn host_files_outside_binds_are_invisible() {
    let secret = tempfile::NamedTempFile::new_in(target_tmp()).unwrap();
    std::fs::write(secret.path(), "secret").unwrap();
    let script = r#"
import os, sys
try:
    open(sys.argv[1]).read()
    print("READ")
except OSError as e:
    print("hidden:", type(e).__name__)
for d in ["/root", "/home", "/work", "/etc"]:
    print(d, sorted(os.listdir(d)) if os.path.isdir(d) else None)
"#;
    let path = secret.path().to_string_lossy().into_owned();
    let (o, lines) = run_py(script, SandboxOptions::new(), |s| s.args.push(path)).await;
    assert!(o.success(), "{o:?} {lines:?}");
    let out: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(out[0], "hidden: FileNotFoundError", "{out:?}");
    // /home is not bound at all; /root at most holds the path to a bound interpreter.
    assert!(out.contains(&"/home None"), "{out:?}");
    let root = out.iter().find(|l| l.starts_with("/root ")).unwrap();
    assert!(
        *root == "/root None" || *root == "/root ['.pyenv']",
        "{root}"
    );
    // /etc holds only the harmless files.
    let etc = out.iter().find(|l| l.starts_with("/etc ")).unwrap();
    assert!(
        !etc.contains("shadow") && !etc.contains("resolv.conf"),
        "{etc}"
    );
}

/// The writable bind is writable and visible on the host; read-only binds and the system are
/// not writable.
#[tokio::test]
async fn output_dir_is_writable_and_inputs_are_not() {
    let job = ShmJobDir::create(&format!("it-rw-{}", std::process::id())).unwrap();
    std::fs::write(job.input_dir().join("in.txt"), "input").unwrap();
    let script = r#"
import os
print(open("/job/in/in.txt").read())
with open("/job/out/out.txt", "w") as f:
    f.write("written")
for p in ["/job/in/x", "/usr/x", os.path.join(os.path.dirname(os.__file__), "x")]:
    try:
        open(p, "w")
        print("WROTE", p)
    except OSError as e:
        print("ro", type(e).__name__)
"#;
    let sandbox = SandboxOptions::new()
        .ro_at(job.input_dir(), "/job/in")
        .rw_at(job.output_dir(), "/job/out")
        .cwd("/job/out");
    let (o, lines) = run_py(script, sandbox, |_| {}).await;
    assert!(o.success(), "{o:?} {lines:?}");
    let out: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(out[0], "input");
    assert_eq!(out[1..], ["ro OSError"; 3], "{out:?}");
    assert_eq!(
        std::fs::read_to_string(job.output_dir().join("out.txt")).unwrap(),
        "written"
    );
}

/// Lines of both streams arrive in order within each stream, and the result file is read.
#[tokio::test]
async fn streams_lines_in_order_and_reads_result() {
    let job = ShmJobDir::create(&format!("it-lines-{}", std::process::id())).unwrap();
    let script = r#"
import sys, json
for i in range(300):
    print(f"out {i}")
    print(f"err {i}", file=sys.stderr)
print("no newline at the end", end="")
json.dump({"ok": True, "rows": 300}, open("/job/out/r.json", "w"))
"#;
    let result_file = job.output_dir().join("r.json");
    let sandbox = SandboxOptions::new().rw_at(job.output_dir(), "/job/out");
    let (o, lines) = run_py(script, sandbox, |s| s.result_file = Some(result_file)).await;
    assert!(o.success(), "{o:?}");
    let of = |stream: Stream| -> Vec<String> {
        lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.clone())
            .collect()
    };
    let mut want: Vec<String> = (0..300).map(|i| format!("out {i}")).collect();
    want.push("no newline at the end".into());
    assert_eq!(of(Stream::Stdout), want);
    let want: Vec<String> = (0..300).map(|i| format!("err {i}")).collect();
    assert_eq!(of(Stream::Stderr), want);
    assert_eq!(o.result, Some(serde_json::json!({"ok": true, "rows": 300})));
    assert_eq!(o.result_error, None);
}

#[tokio::test]
async fn nonzero_exit_is_captured() {
    let (o, lines) = run_py(
        "import sys; print('bad', file=sys.stderr); sys.exit(7)",
        SandboxOptions::new(),
        |_| {},
    )
    .await;
    assert_eq!(o.exit_code, Some(7));
    assert_eq!(o.signal, None);
    assert!(!o.timed_out && !o.success());
    assert_eq!(stderr_of(&lines), "bad");
    // An exception: exit code 1 and the traceback on stderr.
    let (o, lines) = run_py("raise ValueError('boom')", SandboxOptions::new(), |_| {}).await;
    assert_eq!(o.exit_code, Some(1));
    assert!(stderr_of(&lines).contains("ValueError: boom"));
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A timeout kills the whole sandbox, including a grandchild (`sleep`) of the worker.
#[tokio::test]
async fn timeout_kills_grandchildren() {
    // A unique duration makes the sleep findable in the host's /proc.
    let marker = format!("3600.{}", std::process::id());
    let script = r#"
import subprocess, sys, time
subprocess.Popen(["sleep", sys.argv[1]])
print("started", flush=True)
time.sleep(3600)
"#;
    let mut spec = WorkerSpec::new(
        "sleeper",
        shared_env().await,
        vec!["-c".into(), script.into(), marker.clone()],
    );
    spec.timeout = Some(Duration::from_secs(3));
    // When the worker reports the sleep started, it must be visible from the host (so the
    // check after the timeout is meaningful).
    let mut seen_running = Vec::new();
    let o = run_worker(&spec, |_, stream, line| {
        if stream == Stream::Stdout && line == "started" {
            seen_running = processes_with(&marker);
        }
    })
    .await
    .unwrap();
    assert!(o.timed_out, "{o:?}");
    assert!(!o.success());
    assert_eq!(o.signal, Some(9), "{o:?}");
    assert!(!seen_running.is_empty(), "the sleep was not seen running");
    assert!(o.duration < Duration::from_secs(60), "{o:?}");
    // The kernel ends the sandbox's pid namespace with bwrap; give it a moment.
    let mut left = processes_with(&marker);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = processes_with(&marker);
    }
    assert!(left.is_empty(), "survivors: {left:?}");
}

/// A function that ptrace-attaches the sandbox's pid 1 (which stops it) and returns still ends
/// its worker: the run goes on when the function has finished, not at the timeout.
#[tokio::test]
async fn a_worker_that_stops_pid_1_and_returns_still_ends() {
    let script = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
r = libc.ptrace(PTRACE_ATTACH, 1, 0, 0)
print("attach", r, "as", os.getpid(), flush=True)
"#;
    let mut spec = WorkerSpec::new(
        "tracer",
        shared_env().await,
        vec!["-c".into(), script.into()],
    );
    spec.timeout = Some(Duration::from_secs(30));
    let o = run_worker(&spec, |_, _, _| {}).await.unwrap();
    assert!(
        !o.timed_out,
        "the worker was left running until its timeout: {o:?}"
    );
    assert!(o.success(), "{o:?}");
}

/// `max_processes` caps what a function can fork: a fork bomb is refused past the cap, the
/// outcome says the cap was hit, and nothing of it is left running.
#[tokio::test]
async fn max_processes_caps_a_fork_bomb() {
    let script = r#"
import os, sys, time
children = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    print("forked all", len(children), flush=True)
except BlockingIOError as e:
    print("refused after", len(children), e.errno, flush=True)
    sys.exit(3)
"#;
    let mut spec = WorkerSpec::new(
        "forker",
        shared_env().await,
        vec!["-c".into(), script.into()],
    );
    spec.timeout = Some(Duration::from_secs(60));
    spec.max_processes = Some(32);
    let mut said = Vec::new();
    let o = run_worker(&spec, |_, _, line| said.push(line.to_string()))
        .await
        .unwrap();
    assert!(
        !o.process_limit_unenforced,
        "this machine cannot enforce a process limit (no pids cgroup, running as root)"
    );
    assert_eq!(o.exit_code, Some(3), "{o:?} {said:?}");
    assert!(
        said.iter().any(|l| l.starts_with("refused after")),
        "{said:?}"
    );
    assert!(o.process_limit_hit, "{o:?}");
    // Under the cap, the same code runs.
    spec.max_processes = Some(400);
    let o = run_worker(&spec, |_, _, _| {}).await.unwrap();
    assert!(o.success() && !o.process_limit_hit, "{o:?}");
}

/// `memory_bytes` caps the address space: allocating 2 GB under 512 MB fails, while a small
/// allocation (and importing pyarrow) works under the same limit.
#[tokio::test]
async fn memory_limit_is_enforced() {
    let limit = |s: &mut lakeplan_runtime::WorkerSpec| s.memory_bytes = Some(512 << 20);
    let (o, lines) = run_py(
        "import pyarrow; b = bytearray(50 * 1024**2); print('small ok')",
        SandboxOptions::new(),
        limit,
    )
    .await;
    assert!(o.success(), "{o:?} {lines:?}");
    let (o, lines) = run_py(
        "b = bytearray(2 * 1024**3); print('ALLOCATED')",
        SandboxOptions::new(),
        limit,
    )
    .await;
    assert_eq!(o.exit_code, Some(1), "{o:?} {lines:?}");
    assert!(stderr_of(&lines).contains("MemoryError"), "{lines:?}");
    assert!(!lines.iter().any(|(_, l)| l == "ALLOCATED"));
}

/// `cpus` pins the sandbox to that many cores and sizes thread pools by it.
#[tokio::test]
async fn cpus_pin_the_sandbox_and_size_thread_pools() {
    let (o, lines) = run_py(
        "import os; print(len(os.sched_getaffinity(0)), os.environ.get('OMP_NUM_THREADS'))",
        SandboxOptions::new(),
        |s| s.cpus = Some(0.5),
    )
    .await;
    assert!(o.success(), "{o:?} {}", stderr_of(&lines));
    let out: Vec<&String> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l)
        .collect();
    assert_eq!(out, ["1 1"]);
}
