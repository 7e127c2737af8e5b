//! A throw-away PostgreSQL server for tests, this crate's and other crates' (they enable this
//! module with `lakeplan-catalog = { workspace = true, features = ["test-support"] }` in their
//! `[dev-dependencies]`).
//!
//! [`TestPostgres::start`] runs `initdb` into a fresh temporary directory and starts a server that
//! listens only on 127.0.0.1, on a free port, with its unix socket in that directory, and trusts
//! every connection as user `postgres`. Dropping the value stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory. [`TestPostgres::shared`] is one server
//! for the whole test process, started on first use; each test then takes a schema of its own
//! ([`TestPostgres::fresh_schema`], [`TestPostgres::fresh_metastore`]).
//!
//! A static is never dropped, and a test process can end in ways that run no destructor at all
//! (a panic in another thread, a timeout's SIGKILL), so the stopping is left to a watchdog: a
//! small shell process, started with the server in a process group of its own (so that signals
//! meant for the tests' group leave it alone), that reads a pipe whose only writer is the test
//! process. The kernel closes the pipe when the process ends, however it ends; the watchdog sees
//! end-of-file, stops the server and removes the directory. Dropping a `TestPostgres` closes the
//! pipe on purpose and waits for the watchdog.
//!
//! The binaries are looked for in `$LAKEPLAN_PG_BIN`, then in `/usr/lib/postgresql/*/bin` (the
//! newest version; Debian's `postgresql` package, which `scripts/setup.sh` installs), then on
//! `PATH`. PostgreSQL refuses to run as root, so when the tests run as root `initdb` and `pg_ctl`
//! run as the `postgres` system user (`runuser -u postgres --`; Debian's package creates it), and
//! the directory is handed to that user.
//!
//! [`SlowProxy`] puts a delay in front of such a server, to test and measure what a slow
//! PostgreSQL does to its callers.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use lakeplan_core::{Error, Result};

use crate::postgres::PostgresMetastore;

mod slow_proxy;
pub use slow_proxy::SlowProxy;

/// The user the server runs as and every test connects as (trusted: no password).
pub const USER: &str = "postgres";

/// How many ports to try when the free port found is taken before the server binds it.
const START_ATTEMPTS: usize = 5;

/// Stops the server and removes its directory once standard input ends. Arguments: the data
/// directory, the directory to remove, then the `pg_ctl` command (with `runuser` before it as
/// root).
const WATCHDOG: &str = r#"data=$1; dir=$2; shift 2
while read -r _; do :; done
"$@" stop -D "$data" -m immediate -w -t 30 >/dev/null 2>&1
rm -rf "$dir"
"#;

/// Settings appended to the server's `postgresql.conf`: loopback only, and no durability (the
/// data is thrown away).
const SERVER_CONF: &str = "
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
";

fn fail(reason: impl Into<String>) -> Error {
    Error::InvalidOperation {
        op: "start a test PostgreSQL server".into(),
        reason: reason.into(),
    }
}

/// A PostgreSQL server of its own for tests. See the module docs.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    /// Whether the tools run as the `postgres` user (the tests run as root).
    as_postgres: bool,
    /// Holds `data/` (the cluster), the server log and the unix socket.
    dir: PathBuf,
    port: u16,
    /// Its standard input is the pipe whose end stops the server.
    watchdog: Option<Child>,
    schemas: AtomicUsize,
}

impl TestPostgres {
    /// Starts a new server. Fails, saying to run `scripts/setup.sh`, if PostgreSQL is not
    /// installed.
    pub fn start() -> Result<TestPostgres> {
        Self::try_start().map_err(fail)
    }

    /// The one server of this test process, started by the first call.
    pub fn shared() -> Result<&'static TestPostgres> {
        static SHARED: OnceLock<std::result::Result<TestPostgres, String>> = OnceLock::new();
        match SHARED.get_or_init(Self::try_start) {
            Ok(pg) => Ok(pg),
            Err(reason) => Err(fail(reason.clone())),
        }
    }

    fn try_start() -> std::result::Result<TestPostgres, String> {
        let bin = find_bin_dir()?;
        let as_postgres = effective_uid()? == 0;
        let dir = make_dir(as_postgres)?;
        let mut pg = TestPostgres {
            bin,
            as_postgres,
            dir,
            port: 0,
            watchdog: None,
            schemas: AtomicUsize::new(0),
        };
        // Once the watchdog runs, dropping `pg` (on any error below) stops and removes all.
        match pg.spawn_watchdog() {
            Ok(watchdog) => pg.watchdog = Some(watchdog),
            Err(e) => {
                let _ = std::fs::remove_dir(&pg.dir);
                return Err(e);
            }
        }
        pg.initdb()?;
        pg.start_server()?;
        Ok(pg)
    }

    /// The URL of the server's `postgres` database, as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A schema name no one has used on this server yet (the schema itself is created by the
    /// first metastore that connects to it).
    pub fn fresh_schema(&self) -> String {
        let n = self.schemas.fetch_add(1, Ordering::SeqCst);
        format!("test_{}_{n}", std::process::id())
    }

    /// A metastore in a fresh schema of this server.
    pub fn fresh_metastore(&self) -> Result<PostgresMetastore> {
        PostgresMetastore::connect(&self.url(), &self.fresh_schema())
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `tool` from the PostgreSQL bin directory, as the `postgres` user when running as root.
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The tools may chdir back to where they started: somewhere the `postgres` user can read.
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn spawn_watchdog(&self) -> std::result::Result<Child, String> {
        let pg_ctl = self.command("pg_ctl");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WATCHDOG, "lakeplan-pg-watchdog"])
            .arg(self.data_dir())
            .arg(&self.dir)
            .arg(pg_ctl.get_program())
            .args(pg_ctl.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn()
            .map_err(|e| format!("starting the watchdog shell (sh): {e}"))
    }

    fn initdb(&self) -> std::result::Result<(), String> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "--auth=trust",
            "--username",
            USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut cmd, "initdb")?;
        let socket_dir = self.dir.display().to_string().replace('\'', "''");
        let conf = format!("{SERVER_CONF}unix_socket_directories = '{socket_dir}'\n");
        let path = self.data_dir().join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Starts the server on a free port and waits until it accepts connections (`pg_ctl -w`).
    fn start_server(&mut self) -> std::result::Result<(), String> {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"));
            match run(&mut cmd, "pg_ctl start") {
                Ok(_) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => {
                    let log = self.log();
                    last = format!("{e}\nserver log:\n{log}");
                    // Someone took the port between our probe and the server's bind: try another.
                    if !log.contains("could not bind") && !log.contains("already in use") {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing its standard input tells the watchdog to stop the server and clean up.
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// Runs `cmd`, returning its standard output, or its output and status as the error.
fn run(cmd: &mut Command, what: &str) -> std::result::Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {what} ({:?}): {e}", cmd.get_program()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        if stdout.trim().is_empty() {
            String::new()
        } else {
            format!("\n{}", stdout.trim())
        }
    ))
}

/// The directory with `initdb` and `pg_ctl`.
fn find_bin_dir() -> std::result::Result<PathBuf, String> {
    find_bin_dir_in(
        std::env::var_os("LAKEPLAN_PG_BIN"),
        Path::new("/usr/lib/postgresql"),
        std::env::var_os("PATH"),
    )
}

/// The directory with `initdb` and `pg_ctl`: `pinned` if set, else the newest
/// `<debian_root>/<major>/bin`, else the first directory of `path` that has both.
fn find_bin_dir_in(
    pinned: Option<OsString>,
    debian_root: &Path,
    path: Option<OsString>,
) -> std::result::Result<PathBuf, String> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = pinned {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "LAKEPLAN_PG_BIN={} has no initdb and pg_ctl: point it at PostgreSQL's bin \
                 directory, or unset it and run scripts/setup.sh",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    path.and_then(|p| std::env::split_paths(&p).find(|d| has_tools(d)))
        .ok_or_else(|| {
            format!(
                "PostgreSQL's server binaries (initdb, pg_ctl) were not found in \
                 $LAKEPLAN_PG_BIN, {}/*/bin or on PATH: run scripts/setup.sh, which installs \
                 Debian's postgresql package",
                debian_root.display()
            )
        })
}

fn effective_uid() -> std::result::Result<u32, String> {
    id(&["-u"])
}

/// `id ARGS` as a number.
fn id(args: &[&str]) -> std::result::Result<u32, String> {
    let out = run(
        Command::new("id").args(args),
        &format!("id {}", args.join(" ")),
    )?;
    out.trim().parse().map_err(|e| {
        format!(
            "id {}: unexpected output '{}': {e}",
            args.join(" "),
            out.trim()
        )
    })
}

/// A new private directory under the system temp dir, owned by the `postgres` user when the tools
/// run as that user.
fn make_dir(as_postgres: bool) -> std::result::Result<PathBuf, String> {
    static DIRS: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "lakeplan-pg-{}-{}-{nanos}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if as_postgres {
        let owner = id(&["-u", USER])
            .and_then(|uid| Ok((uid, id(&["-g", USER])?)))
            .map_err(|e| {
                format!(
                    "running as root, the server must run as the '{USER}' user, which was not \
                     found ({e}): run scripts/setup.sh, which installs Debian's postgresql package"
                )
            });
        let chowned = owner.and_then(|(uid, gid)| {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to '{USER}': {e}", dir.display()))
        });
        if let Err(e) = chowned {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    }
    Ok(dir)
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> std::result::Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::Metastore;

    fn tools_in(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for tool in ["initdb", "pg_ctl"] {
            std::fs::write(dir.join(tool), "").unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn binaries_are_found_newest_first_or_the_error_says_to_run_setup() {
        let root = tempfile::tempdir().unwrap();
        let debian = root.path().join("lib");
        let e = find_bin_dir_in(None, &debian, None).unwrap_err();
        assert!(e.contains("run scripts/setup.sh"), "{e}");
        let on_path = tools_in(&root.path().join("path"));
        let path = std::env::join_paths([root.path().join("empty"), on_path.clone()]).ok();
        assert_eq!(find_bin_dir_in(None, &debian, path.clone()), Ok(on_path));
        tools_in(&debian.join("9/bin"));
        let v15 = tools_in(&debian.join("15/bin"));
        std::fs::create_dir_all(debian.join("16/bin")).unwrap(); // no tools in it
        assert_eq!(find_bin_dir_in(None, &debian, path.clone()), Ok(v15));
        let pinned = tools_in(&root.path().join("pinned"));
        assert_eq!(
            find_bin_dir_in(Some(pinned.clone().into()), &debian, path.clone()),
            Ok(pinned)
        );
        let e = find_bin_dir_in(Some(root.path().join("empty").into()), &debian, path).unwrap_err();
        assert!(e.contains("LAKEPLAN_PG_BIN"), "{e}");
    }

    fn accepts(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// Waits up to 10 s for the server on `port` and its directory to be gone (an immediate stop
    /// takes well under a second).
    fn assert_gone(port: u16, dir: &Path) {
        let started = Instant::now();
        while (accepts(port) || dir.exists()) && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!accepts(port), "the server on port {port} still runs");
        assert!(!dir.exists(), "{} is still there", dir.display());
    }

    #[test]
    fn a_server_listens_on_loopback_and_drop_stops_it_and_removes_its_files() {
        let pg = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        let (port, dir) = (pg.port(), pg.dir.clone());
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        let schema = pg.fresh_schema();
        let m = PostgresMetastore::connect(&pg.url(), &schema).unwrap();
        m.execute_raw(&format!(
            "INSERT INTO \"{schema}\".settings \
             SELECT 'listen', current_setting('listen_addresses')"
        ))
        .unwrap();
        assert_eq!(
            m.get_setting("listen").unwrap().as_deref(),
            Some("127.0.0.1")
        );
        assert!(pg.log().contains("listening on IPv4 address \"127.0.0.1\""));
        drop(m);
        drop(pg);
        // Drop waits for the watchdog: gone at once.
        assert!(!accepts(port), "the server still runs after drop");
        assert!(!dir.exists());
    }

    /// In a child process (this test binary run again): starts a server, writes its port and
    /// directory to the file named by the variable, and waits to be killed.
    const CHILD_VAR: &str = "LAKEPLAN_TEST_PG_CHILD_REPORT";

    #[test]
    fn a_killed_test_process_leaves_no_server_behind() {
        if let Some(report) = std::env::var_os(CHILD_VAR) {
            let pg = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
            let line = format!("{} {}\n", pg.port(), pg.dir.display());
            std::fs::write(report, line).unwrap();
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let report = scratch.path().join("report");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "testing::tests::a_killed_test_process_leaves_no_server_behind",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_VAR, &report)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let line = loop {
            match std::fs::read_to_string(&report) {
                Ok(line) if line.ends_with('\n') => break line,
                _ if started.elapsed() > Duration::from_secs(60) => {
                    let _ = child.kill();
                    panic!("the child did not start a server within 60 s");
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let (port, dir) = line.trim().split_once(' ').unwrap();
        let port: u16 = port.parse().unwrap();
        assert!(accepts(port), "the child's server runs");
        child.kill().unwrap(); // SIGKILL: no destructor runs
        child.wait().unwrap();
        assert_gone(port, Path::new(dir));
    }
}
