//! A cap on the number of processes (and threads) of one sandbox: a cgroup of the `pids`
//! controller made for the worker. The worker's command line starts with a shell that moves
//! itself into the cgroup and then `exec`s the rest ([`PidsCgroup::wrap`]), so bwrap and
//! everything the function forks count against `pids.max` from the first process on.
//!
//! The kernel refuses a `fork` past the cap (`EAGAIN`); [`PidsCgroup::hit`] says afterwards
//! whether that happened, so the node's error can name the limit. Where no `pids` controller
//! can be written (no cgroup file system, or no rights), the cap falls back to `RLIMIT_NPROC`
//! through `prlimit`, which the kernel does not apply to root: [`PidsCgroup::create`] returns
//! `None` and the caller says so in the node's log.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One sandbox's `pids` cgroup; removed on drop (the kernel refuses while a process is in it,
/// which cannot be once the sandbox ended).
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    /// A new cgroup with `pids.max = max` below this process's own `pids` cgroup (cgroup v1's
    /// `pids` hierarchy, or the unified v2 one when it has the controller), or `None` where that
    /// cannot be made.
    pub fn create(max: u64) -> Option<PidsCgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = own_pids_cgroup()?;
        let dir = parent.join(format!(
            "lakeplan-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        let made = PidsCgroup { dir };
        std::fs::write(made.dir.join("pids.max"), max.to_string()).ok()?;
        Some(made)
    }

    /// `line` run inside the cgroup: `sh -c 'echo $$ > <cgroup.procs> && exec "$@"' sh
    /// <line...>` (the shell joins, then becomes the command; nothing runs outside first).
    pub fn wrap(&self, line: Vec<OsString>) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"echo $$ > "$0" && exec "$@""#.into(),
            self.dir.join("cgroup.procs").into_os_string(),
        ];
        out.extend(line);
        out
    }

    /// Whether a fork was refused for the cap (`pids.events`' `max` counter).
    pub fn hit(&self) -> bool {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("max ").map(|n| n.trim().to_string()))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// This process's cgroup directory in a writable `pids` hierarchy.
fn own_pids_cgroup() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            let dir = Path::new("/sys/fs/cgroup/pids").join(path);
            if dir.join("cgroup.procs").exists() {
                return Some(dir);
            }
        }
        if controllers.is_empty() {
            // cgroup v2: the unified hierarchy, if it delegates `pids` to children here.
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = Path::new(root).join(path);
                let enabled =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if enabled.split_whitespace().any(|c| c == "pids") {
                    return Some(dir);
                }
            }
        }
    }
    None
}
