//! Worker processes: `[prlimit --as=N --] bwrap <sandbox> <env python> <args>`, with their
//! stdout and stderr streamed line by line, a timeout, and the shared-memory job folder.

use std::future::pending;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::env::PreparedEnv;
use crate::error::{io_ctx, Result, RuntimeError};
use crate::pids::PidsCgroup;
use crate::sandbox::{bwrap_available, find_program, Bind, SandboxOptions};

/// Longer lines are cut into pieces of this many bytes.
const MAX_LINE: usize = 64 * 1024;
/// After a timeout kill, how long to wait for the pipes to close before giving up on them.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One worker run.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The node's name: passed to the line callback and used in errors.
    pub node: String,
    /// The environment whose `bin/python` runs `args`; its folder and the interpreter's
    /// installation are bound read-only automatically.
    pub env: PreparedEnv,
    /// Binds, network, `PYTHONPATH`... of the sandbox.
    pub sandbox: SandboxOptions,
    /// Arguments of python, e.g. `["-m", "lakeplan._worker", "/job/task.json"]`.
    pub args: Vec<String>,
    /// Killed (the whole sandbox) after this long.
    pub timeout: Option<Duration>,
    /// Address-space limit (`RLIMIT_AS`, through `prlimit`) of the whole sandbox.
    pub memory_bytes: Option<u64>,
    /// Most processes and threads the sandbox may have at once: a `pids` cgroup of its own
    /// ([`crate::pids`]), or where none can be made `RLIMIT_NPROC` (which root ignores).
    pub max_processes: Option<u64>,
    /// CPUs the function may use (`@resources(cpus=...)`, rounded up): the sandbox is pinned
    /// to that many cores (`taskset`) and thread pools are sized by `OMP_NUM_THREADS` (which
    /// Arrow reads), `POLARS_MAX_THREADS`, `RAYON_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and
    /// `MKL_NUM_THREADS`. Without cgroups this is an affinity, not a quota: code that resets
    /// its own affinity can widen it.
    pub cpus: Option<f64>,
    /// Working directory inside the sandbox; overrides `sandbox.cwd`.
    pub cwd: Option<PathBuf>,
    /// Host path of the result JSON the worker writes; read into [`WorkerOutcome::result`].
    pub result_file: Option<PathBuf>,
}

impl WorkerSpec {
    /// A spec with no limits, no result file, and the default sandbox.
    pub fn new(node: impl Into<String>, env: PreparedEnv, args: Vec<String>) -> Self {
        WorkerSpec {
            node: node.into(),
            env,
            sandbox: SandboxOptions::default(),
            args,
            timeout: None,
            memory_bytes: None,
            max_processes: None,
            cpus: None,
            cwd: None,
            result_file: None,
        }
    }
}

/// The number of cores a `cpus` request pins to: rounded up, at least 1, at most the
/// machine's.
pub fn cpu_count(cpus: f64) -> usize {
    let have = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = if cpus.is_finite() && cpus > 0.0 {
        cpus.ceil() as usize
    } else {
        1
    };
    want.clamp(1, have)
}

/// How a worker ended.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerOutcome {
    /// The exit code; a process killed by signal N inside the sandbox shows as 128+N (bwrap).
    pub exit_code: Option<i32>,
    /// Set when the sandbox itself was killed by a signal (e.g. 9 after a timeout).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration: Duration,
    /// The parsed result file, when one was given and exists.
    pub result: Option<serde_json::Value>,
    /// Why the result file could not be read or parsed, when it exists but is unusable.
    pub result_error: Option<String>,
    /// A fork was refused because the sandbox had `max_processes` processes.
    pub process_limit_hit: bool,
    /// `max_processes` was asked for but could not be enforced here (no writable `pids`
    /// cgroup, and running as root, whom `RLIMIT_NPROC` does not bind).
    pub process_limit_unenforced: bool,
}

impl WorkerOutcome {
    /// Exit code 0 and no timeout.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Reads lines (lossy UTF-8, without the newline), cutting very long ones. Cancel-safe: a
/// partial line stays in `buf` until the next call.
struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            buf: Vec::new(),
        }
    }

    fn take(&mut self) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        s
    }

    async fn next(&mut self) -> std::io::Result<Option<String>> {
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                return Ok(if self.buf.is_empty() {
                    None
                } else {
                    Some(self.take())
                });
            }
            let room = MAX_LINE - self.buf.len();
            match avail.iter().position(|b| *b == b'\n') {
                Some(i) if i <= room => {
                    self.buf.extend_from_slice(&avail[..i]);
                    self.inner.consume(i + 1);
                    return Ok(Some(self.take()));
                }
                _ => {
                    let n = avail.len().min(room);
                    self.buf.extend_from_slice(&avail[..n]);
                    self.inner.consume(n);
                    if self.buf.len() >= MAX_LINE {
                        return Ok(Some(self.take()));
                    }
                }
            }
        }
    }
}

fn is_under(p: &Path, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| p.starts_with(d))
}

/// The full command line: `[prlimit --as=N [--nproc=M] --] bwrap <args> <python> <args>`;
/// `nproc` is the process limit when no cgroup carries it.
fn command_line(
    spec: &WorkerSpec,
    bwrap: &Path,
    prlimit: Option<&Path>,
    nproc: Option<u64>,
) -> Result<Vec<std::ffi::OsString>> {
    let mut sandbox = spec.sandbox.clone();
    // What the environment's python needs: the environment, its interpreter's installation, and
    // the directory of the real binary (normally inside that installation).
    let mut covered: Vec<PathBuf> = vec![PathBuf::from("/usr")];
    covered.extend(
        sandbox
            .ro_binds
            .iter()
            .filter(|b| b.src == b.dest)
            .map(|b| b.dest.clone()),
    );
    let mut needed = vec![spec.env.root.clone(), spec.env.base_prefix.clone()];
    if let Ok(real) = std::fs::canonicalize(&spec.env.python) {
        if let Some(dir) = real.parent() {
            needed.push(dir.to_path_buf());
        }
    }
    let mut extra = Vec::new();
    for p in needed {
        if !is_under(&p, &covered) {
            covered.push(p.clone());
            extra.push(Bind::same(p));
        }
    }
    // System-level binds go first so the caller's binds can sit inside them.
    extra.append(&mut sandbox.ro_binds);
    sandbox.ro_binds = extra;
    sandbox.path.insert(0, spec.env.root.join("bin"));
    if let Some(cwd) = &spec.cwd {
        sandbox.cwd = Some(cwd.clone());
    }
    let cores = spec.cpus.map(cpu_count);
    if let Some(n) = cores {
        for var in [
            "OMP_NUM_THREADS",
            "POLARS_MAX_THREADS",
            "RAYON_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
        ] {
            sandbox.env.push((var.to_string(), n.to_string()));
        }
    }
    let mut line = Vec::new();
    if spec.memory_bytes.is_some() || nproc.is_some() {
        let prlimit = prlimit.ok_or(RuntimeError::PrlimitNotFound)?;
        line.push(prlimit.as_os_str().to_os_string());
        if let Some(bytes) = spec.memory_bytes {
            line.push(format!("--as={bytes}").into());
        }
        if let Some(n) = nproc {
            line.push(format!("--nproc={n}").into());
        }
        line.push("--".into());
    }
    if let (Some(n), Some(taskset)) = (cores, find_program("taskset")) {
        line.push(taskset.as_os_str().to_os_string());
        line.push("--cpu-list".into());
        line.push(format!("0-{}", n - 1).into());
    }
    line.push(bwrap.as_os_str().to_os_string());
    line.extend(sandbox.bwrap_args()?);
    line.push(spec.env.python.as_os_str().to_os_string());
    line.extend(spec.args.iter().map(Into::into));
    Ok(line)
}

/// Whether this process's effective user is root (the owner of `/proc/self`).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Kills the worker's process group (bwrap and prlimit; the sandbox's own processes die with
/// bwrap: `--die-with-parent` and the end of its pid namespace), then the child itself.
async fn kill_tree(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.start_kill();
}

enum Event {
    Line(Stream, std::io::Result<Option<String>>),
    Deadline,
    Exit(std::io::Result<std::process::ExitStatus>),
}

/// Runs a worker to its end, calling `on_line(node, stream, line)` for every line of its
/// stdout and stderr as it comes (order within each stream is kept).
pub async fn run_worker<F>(spec: &WorkerSpec, mut on_line: F) -> Result<WorkerOutcome>
where
    F: FnMut(&str, Stream, &str) + Send,
{
    let bwrap = bwrap_available()?;
    let prlimit = find_program("prlimit");
    let cgroup = spec.max_processes.and_then(PidsCgroup::create);
    let nproc = spec.max_processes.filter(|_| cgroup.is_none());
    let process_limit_unenforced = nproc.is_some() && running_as_root();
    let mut line = command_line(spec, &bwrap, prlimit.as_deref(), nproc)?;
    if let Some(group) = &cgroup {
        line = group.wrap(line);
    }
    let Some((program, args)) = line.split_first() else {
        return Err(RuntimeError::Sandbox("empty command line".to_string()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let node = spec.node.as_str();
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        node: node.to_string(),
        source,
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_tree(&mut child).await;
        return Err(RuntimeError::Spawn {
            node: node.to_string(),
            source: std::io::Error::other("the worker's pipes are missing"),
        });
    };
    let mut out = LineReader::new(stdout);
    let mut err = LineReader::new(stderr);
    let (mut out_done, mut err_done) = (false, false);
    let mut timer = spec.timeout.map(|t| Box::pin(tokio::time::sleep(t)));
    let mut timed_out = false;

    let status = loop {
        let event = tokio::select! {
            l = out.next(), if !out_done => Event::Line(Stream::Stdout, l),
            l = err.next(), if !err_done => Event::Line(Stream::Stderr, l),
            () = async {
                match timer.as_mut() {
                    Some(t) => t.await,
                    None => pending().await,
                }
            } => Event::Deadline,
            s = child.wait(), if out_done && err_done => Event::Exit(s),
        };
        match event {
            Event::Line(stream, Ok(Some(l))) => on_line(node, stream, &l),
            Event::Line(Stream::Stdout, _) => out_done = true,
            Event::Line(Stream::Stderr, _) => err_done = true,
            Event::Deadline if !timed_out => {
                timed_out = true;
                kill_tree(&mut child).await;
                timer = Some(Box::pin(tokio::time::sleep(KILL_GRACE)));
            }
            Event::Deadline => {
                // Killed, but something still holds the pipes: stop reading them.
                out_done = true;
                err_done = true;
                timer = None;
            }
            Event::Exit(s) => {
                break s.map_err(io_ctx(format!("node {node}: waiting for the worker")))?;
            }
        }
    };
    let duration = started.elapsed();
    let (result, result_error) = match &spec.result_file {
        Some(path) if path.exists() => match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(format!("{}: invalid JSON: {e}", path.display()))),
            },
            Err(e) => (None, Some(format!("{}: {e}", path.display()))),
        },
        _ => (None, None),
    };
    Ok(WorkerOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        duration,
        result,
        result_error,
        process_limit_hit: cgroup.as_ref().is_some_and(PidsCgroup::hit),
        process_limit_unenforced,
    })
}

/// A job's folder for Arrow IPC handoff: `/dev/shm/lakeplan-<job_id>/{in,out}` (or under the
/// temporary directory when `/dev/shm` is unusable). Removed on drop unless [`keep`] was called.
///
/// The folder names its owner (`.owner`: the process id and its start time), so that the
/// folders of a process that was killed, and so never dropped them, are removed by the next
/// [`create`] on the machine ([`ShmJobDir::sweep`]); a kept folder stays a day after its owner
/// ended.
///
/// [`keep`]: ShmJobDir::keep
/// [`create`]: ShmJobDir::create
#[derive(Debug)]
pub struct ShmJobDir {
    root: PathBuf,
    keep: bool,
}

impl ShmJobDir {
    /// Creates the folder in `/dev/shm`, falling back to [`std::env::temp_dir`]. A leftover of
    /// the same job id is replaced.
    pub fn create(job_id: &str) -> Result<Self> {
        let shm = Path::new("/dev/shm");
        match Self::create_in(shm, job_id) {
            Ok(d) => {
                Self::sweep(shm);
                Ok(d)
            }
            Err(RuntimeError::InvalidJobId(id)) => Err(RuntimeError::InvalidJobId(id)),
            Err(_) => {
                let tmp = std::env::temp_dir();
                let d = Self::create_in(&tmp, job_id)?;
                Self::sweep(&tmp);
                Ok(d)
            }
        }
    }

    /// Removes the `lakeplan-*` folders in `base` whose owner process is gone (a kept one, a
    /// day after); returns them. Folders of live processes, and folders that name no owner,
    /// are left. Best effort: a folder that cannot be read or removed is skipped.
    pub fn sweep(base: &Path) -> Vec<PathBuf> {
        const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);
        let Ok(entries) = std::fs::read_dir(base) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("lakeplan-") {
                continue;
            }
            let dir = entry.path();
            let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
                continue;
            };
            if owner_is_alive(owner.trim()) {
                continue;
            }
            let kept_recently = std::fs::metadata(dir.join(KEPT_FILE))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < KEPT_FOR);
            if !kept_recently && std::fs::remove_dir_all(&dir).is_ok() {
                removed.push(dir);
            }
        }
        removed
    }

    /// Creates `<base>/lakeplan-<job_id>/{in,out}`.
    pub fn create_in(base: &Path, job_id: &str) -> Result<Self> {
        let valid = !job_id.is_empty()
            && job_id.len() <= 128
            && !job_id.starts_with('.')
            && job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(RuntimeError::InvalidJobId(job_id.to_string()));
        }
        let root = base.join(format!("lakeplan-{job_id}"));
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        if let Err(e) = builder.create(&root) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(io_ctx(format!("creating {}", root.display()))(e));
            }
            std::fs::remove_dir_all(&root)
                .map_err(io_ctx(format!("removing the leftover {}", root.display())))?;
            builder
                .create(&root)
                .map_err(io_ctx(format!("creating {}", root.display())))?;
        }
        let dir = ShmJobDir { root, keep: false };
        let owner = dir.root.join(OWNER_FILE);
        std::fs::write(
            &owner,
            process_identity(std::process::id()).unwrap_or_default(),
        )
        .map_err(io_ctx(format!("writing {}", owner.display())))?;
        for sub in ["in", "out"] {
            let p = dir.root.join(sub);
            builder
                .create(&p)
                .map_err(io_ctx(format!("creating {}", p.display())))?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<root>/in`: the inputs, bound read-only into sandboxes.
    pub fn input_dir(&self) -> PathBuf {
        self.root.join("in")
    }

    /// `<root>/out`: the outputs.
    pub fn output_dir(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Leaves the folder in place when this value is dropped (for inspection after a failure).
    pub fn keep(&mut self) {
        self.keep = true;
        let _ = std::fs::write(self.root.join(KEPT_FILE), b"");
    }
}

/// In a job folder: its owner, as [`process_identity`] says it.
const OWNER_FILE: &str = ".owner";
/// In a job folder: present when it was kept (its time is when).
const KEPT_FILE: &str = ".kept";

/// A process as `<pid> <start time>` (the start time in clock ticks since boot, from
/// `/proc/<pid>/stat`), which a later process that reuses the id does not share.
fn process_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; field 22 is the
    // start time, the 20th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Whether the process an `.owner` file names still runs. An owner that cannot be read as
/// one (an empty file: `/proc` was not there) counts as alive, so nothing is removed on doubt.
fn owner_is_alive(owner: &str) -> bool {
    let Some(pid) = owner.split(' ').next().and_then(|p| p.parse::<u32>().ok()) else {
        return true;
    };
    process_identity(pid).is_some_and(|now| now == owner)
}

impl Drop for ShmJobDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_ended_processes_are_swept_and_the_living_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let mine = ShmJobDir::create_in(base.path(), "alive").unwrap();
        // A process that has ended: its folder is what a killed worker leaves.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        let dead_identity = process_identity(dead_pid).unwrap_or(format!("{dead_pid} 1"));
        child.wait().unwrap();
        let dead = base.path().join("lakeplan-dead");
        std::fs::create_dir_all(dead.join("out")).unwrap();
        std::fs::write(dead.join("out/output.arrow"), b"x").unwrap();
        std::fs::write(dead.join(OWNER_FILE), &dead_identity).unwrap();
        // Kept by an ended process: stays for a day.
        let kept = base.path().join("lakeplan-kept");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::write(kept.join(OWNER_FILE), &dead_identity).unwrap();
        std::fs::write(kept.join(KEPT_FILE), b"").unwrap();
        // No owner named (an older version's): left alone.
        let unowned = base.path().join("lakeplan-unowned");
        std::fs::create_dir_all(&unowned).unwrap();
        // The id of this process with another start time: a reused id, so ended.
        let reused = base.path().join("lakeplan-reused");
        std::fs::create_dir_all(&reused).unwrap();
        std::fs::write(reused.join(OWNER_FILE), format!("{} 0", std::process::id())).unwrap();

        let removed = ShmJobDir::sweep(base.path());
        assert!(!dead.exists() && !reused.exists(), "{removed:?}");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(mine.path().exists() && kept.exists() && unowned.exists());
        // Dropping the living folder removes it as before.
        let path = mine.path().to_path_buf();
        drop(mine);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn line_reader_splits_and_cuts() {
        let mut data = b"one\r\ntwo\n\nbad \xff utf8\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend(b"\nlast");
        let mut r = LineReader::new(&data[..]);
        let mut lines = Vec::new();
        while let Some(l) = r.next().await.unwrap() {
            lines.push(l);
        }
        assert_eq!(lines[..4], ["one", "two", "", "bad \u{fffd} utf8"]);
        assert_eq!(lines[4].len(), MAX_LINE);
        assert_eq!(lines[5], "x".repeat(10));
        assert_eq!(lines[6], "last");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn job_dir_lifecycle() {
        let base = tempfile::tempdir().unwrap();
        let d = ShmJobDir::create_in(base.path(), "job-1").unwrap();
        let root = d.path().to_path_buf();
        assert_eq!(root, base.path().join("lakeplan-job-1"));
        assert!(d.input_dir().is_dir() && d.output_dir().is_dir());
        std::fs::write(d.output_dir().join("x.arrow"), b"x").unwrap();
        // A leftover of the same id is replaced.
        std::mem::forget(d);
        let d = ShmJobDir::create_in(base.path(), "job-1").unwrap();
        assert!(!d.output_dir().join("x.arrow").exists());
        drop(d);
        assert!(!root.exists());
        let mut d = ShmJobDir::create_in(base.path(), "job-2").unwrap();
        d.keep();
        let kept = d.path().to_path_buf();
        drop(d);
        assert!(kept.is_dir());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(matches!(
                ShmJobDir::create_in(base.path(), bad),
                Err(RuntimeError::InvalidJobId(_))
            ));
        }
    }

    #[test]
    fn shm_job_dir_default_location() {
        let id = format!("unit-{}", std::process::id());
        let d = ShmJobDir::create(&id).unwrap();
        let root = d.path().to_path_buf();
        assert!(root.ends_with(format!("lakeplan-{id}")));
        assert!(root.starts_with("/dev/shm") || root.starts_with(std::env::temp_dir()));
        drop(d);
        assert!(!root.exists());
    }

    fn fake_env(root: &Path) -> PreparedEnv {
        PreparedEnv {
            python: root.join("bin/python"),
            root: root.to_path_buf(),
            key: "k".into(),
            warnings: vec![],
            installed: false,
            python_version: "3.11.7".into(),
            base_prefix: "/usr".into(),
            requirements: vec![],
            resolved: vec![],
            resolution_notes: vec![],
        }
    }

    #[test]
    fn command_line_binds_env_and_limits() {
        let d = tempfile::tempdir().unwrap();
        let mut spec = WorkerSpec::new("n", fake_env(d.path()), vec!["-c".into(), "1".into()]);
        spec.memory_bytes = Some(1 << 29);
        spec.cwd = Some("/job".into());
        let line_with = |nproc| -> Vec<String> {
            command_line(
                &spec,
                Path::new("/usr/bin/bwrap"),
                Some(Path::new("/usr/bin/prlimit")),
                nproc,
            )
            .unwrap()
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
        };
        let line = line_with(None);
        assert_eq!(
            line[..4],
            ["/usr/bin/prlimit", "--as=536870912", "--", "/usr/bin/bwrap"]
        );
        assert_eq!(
            line_with(Some(64))[..5],
            [
                "/usr/bin/prlimit",
                "--as=536870912",
                "--nproc=64",
                "--",
                "/usr/bin/bwrap"
            ]
        );
        let root = d.path().to_string_lossy().into_owned();
        assert!(line.windows(3).any(|w| w == ["--ro-bind", &root, &root]));
        // /usr is a system bind already.
        assert!(!line
            .windows(3)
            .any(|w| w[0] == "--ro-bind" && w[1] == "/usr" && w[2] != "/usr"));
        assert!(line.windows(2).any(|w| w == ["--chdir", "/job"]));
        let path = format!("{root}/bin:/usr/local/bin:/usr/bin:/bin");
        assert!(line.windows(3).any(|w| w == ["--setenv", "PATH", &path]));
        assert_eq!(
            line[line.len() - 3..],
            [format!("{root}/bin/python"), "-c".into(), "1".into()]
        );
        assert!(matches!(
            command_line(&spec, Path::new("/usr/bin/bwrap"), None, None),
            Err(RuntimeError::PrlimitNotFound)
        ));
    }
}
