//! Interpreter discovery: the CPython interpreters on `PATH` and the choice of one for a request.
//!
//! Every `python3` and `python3.N` in the `PATH` directories is asked for `sys.executable`,
//! `sys.version_info` and `sys.base_prefix`, so shims (pyenv) and virtual environments resolve to
//! the real binary. Candidates that fail to run (a pyenv shim for a version that is not selected)
//! are skipped. The first interpreter found is the `python3` of `PATH`, the default.

use std::cmp::Reverse;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// How long one interpreter may take to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

const PROBE: &str = "import sys, json; print(json.dumps({'executable': sys.executable, \
'version': list(sys.version_info[:3]), 'prefix': sys.prefix, 'base_prefix': sys.base_prefix, \
'implementation': sys.implementation.name}))";

/// A Python version `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PyVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for PyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One installed CPython interpreter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interpreter {
    /// The real binary (symlinks, shims and virtual environments resolved).
    pub path: PathBuf,
    pub version: PyVersion,
    /// `sys.base_prefix`: the installation the binary belongs to (its standard library).
    pub base_prefix: PathBuf,
}

/// The interpreter chosen for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub path: PathBuf,
    /// `"3.11.7"`.
    pub version: String,
    pub base_prefix: PathBuf,
    /// Set when the requested version is not installed and a neighbour was chosen.
    pub warning: Option<String>,
}

/// A parsed request: `3`, `3.11` or `3.11.7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    major: u32,
    minor: Option<u32>,
    patch: Option<u32>,
}

fn parse_request(requested: &str) -> Result<Request> {
    let invalid = || RuntimeError::InvalidPythonVersion {
        requested: requested.to_string(),
    };
    let parts: Vec<&str> = requested.trim().split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(invalid());
    }
    let mut nums = Vec::with_capacity(3);
    for p in &parts {
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        nums.push(p.parse::<u32>().map_err(|_| invalid())?);
    }
    Ok(Request {
        major: nums[0],
        minor: nums.get(1).copied(),
        patch: nums.get(2).copied(),
    })
}

fn describe(installed: &[Interpreter]) -> String {
    if installed.is_empty() {
        return "none found on PATH".to_string();
    }
    installed
        .iter()
        .map(|i| format!("{} at {}", i.version, i.path.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolved(i: &Interpreter, warning: Option<String>) -> Resolved {
    Resolved {
        path: i.path.clone(),
        version: i.version.to_string(),
        base_prefix: i.base_prefix.clone(),
        warning,
    }
}

/// Chooses an interpreter among `installed` (ordered by preference, the default first).
///
/// - `None` (or an empty string): the first one, normally `python3` on `PATH`.
/// - `"3.N"`: the first installed 3.N; else, unless `strict`, the nearest minor of the same
///   major (ties go to the newer one) with a warning naming both versions.
/// - `"3.N.P"`: as `"3.N"`, preferring exactly 3.N.P; another patch release is a warning.
pub fn select(
    installed: &[Interpreter],
    requested: Option<&str>,
    strict: bool,
) -> Result<Resolved> {
    let requested = requested.map(str::trim).filter(|r| !r.is_empty());
    let Some(requested) = requested else {
        return installed.first().map(|i| resolved(i, None)).ok_or_else(|| {
            RuntimeError::PythonNotFound {
                requested: "3".to_string(),
                installed: describe(installed),
            }
        });
    };
    let req = parse_request(requested)?;
    let not_found = || RuntimeError::PythonNotFound {
        requested: requested.to_string(),
        installed: describe(installed),
    };
    let same_major: Vec<&Interpreter> = installed
        .iter()
        .filter(|i| i.version.major == req.major)
        .collect();
    let Some(minor) = req.minor else {
        return same_major
            .first()
            .map(|i| resolved(i, None))
            .ok_or_else(not_found);
    };
    let same_minor: Vec<&Interpreter> = same_major
        .iter()
        .copied()
        .filter(|i| i.version.minor == minor)
        .collect();
    if let Some(first) = same_minor.first() {
        let Some(patch) = req.patch else {
            return Ok(resolved(first, None));
        };
        if let Some(exact) = same_minor.iter().find(|i| i.version.patch == patch) {
            return Ok(resolved(exact, None));
        }
        if strict {
            return Err(not_found());
        }
        let warning = format!(
            "python {requested} requested by the function, running on {}: {requested} is not installed",
            first.version
        );
        return Ok(resolved(first, Some(warning)));
    }
    if strict {
        return Err(not_found());
    }
    let nearest = same_major
        .iter()
        .min_by_key(|i| (i.version.minor.abs_diff(minor), Reverse(i.version.minor)))
        .ok_or_else(not_found)?;
    let warning = format!(
        "python {requested} requested by the function, running on {}: {requested} is not installed",
        nearest.version
    );
    Ok(resolved(nearest, Some(warning)))
}

/// The candidate executables of a `PATH` value, in preference order: every `python3` first (in
/// `PATH` order), then every `python3.N` (per directory, newest first).
pub fn candidates(path_var: &OsStr) -> Vec<PathBuf> {
    let mut plain = Vec::new();
    let mut versioned = Vec::new();
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(path_var) {
        if dir.as_os_str().is_empty() || !dir.is_absolute() || seen_dirs.contains(&dir) {
            continue;
        }
        seen_dirs.push(dir.clone());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut in_dir: Vec<(u32, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == "python3" {
                plain.push(entry.path());
            } else if let Some(minor) = name.strip_prefix("python3.") {
                if let Ok(minor) = minor.parse::<u32>() {
                    in_dir.push((minor, entry.path()));
                }
            }
        }
        in_dir.sort_by_key(|(minor, _)| Reverse(*minor));
        versioned.extend(in_dir.into_iter().map(|(_, p)| p));
    }
    plain.extend(versioned);
    plain
}

#[derive(Deserialize)]
struct ProbeOutput {
    executable: String,
    version: Vec<u32>,
    prefix: String,
    base_prefix: String,
    implementation: String,
}

/// Runs one candidate; `None` when it does not run or is not CPython.
async fn probe(candidate: PathBuf) -> Option<Interpreter> {
    let mut cmd = tokio::process::Command::new(&candidate);
    cmd.args(["-I", "-c", PROBE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(PROBE_TIMEOUT, cmd.output())
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let p: ProbeOutput = serde_json::from_slice(&out.stdout).ok()?;
    if p.implementation != "cpython" || p.version.len() != 3 || p.executable.is_empty() {
        return None;
    }
    let version = PyVersion {
        major: p.version[0],
        minor: p.version[1],
        patch: p.version[2],
    };
    let base_prefix = PathBuf::from(&p.base_prefix);
    let exe = if p.prefix == p.base_prefix {
        PathBuf::from(&p.executable)
    } else {
        // A virtual environment: find the base installation's binary.
        let bin = base_prefix.join("bin");
        [
            format!("python{}.{}", version.major, version.minor),
            format!("python{}", version.major),
        ]
        .iter()
        .map(|n| bin.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(&p.executable))
    };
    let path = std::fs::canonicalize(&exe).ok()?;
    Some(Interpreter {
        path,
        version,
        base_prefix,
    })
}

/// Probes the candidates of a `PATH` value (concurrently) and returns the CPython interpreters,
/// each real binary once, in preference order.
pub async fn discover_in(path_var: &OsStr) -> Vec<Interpreter> {
    let cands = candidates(path_var);
    let mut set = tokio::task::JoinSet::new();
    for (idx, c) in cands.into_iter().enumerate() {
        set.spawn(async move { (idx, probe(c).await) });
    }
    let mut found: Vec<(usize, Interpreter)> = Vec::new();
    while let Some(res) = set.join_next().await {
        if let Ok((idx, Some(i))) = res {
            found.push((idx, i));
        }
    }
    found.sort_by_key(|(idx, _)| *idx);
    let mut out: Vec<Interpreter> = Vec::new();
    for (_, i) in found {
        if !out.iter().any(|o| o.path == i.path) {
            out.push(i);
        }
    }
    out
}

/// The interpreters on this process's `PATH`.
pub async fn discover() -> Vec<Interpreter> {
    discover_in(&std::env::var_os("PATH").unwrap_or_default()).await
}

/// What the interpreters on `PATH` depend on, cheaply (no subprocess): `PATH` itself, the
/// modification times of its directories, and pyenv's selection.
fn fingerprint(path_var: &OsStr) -> String {
    let mut parts: Vec<String> = vec![path_var.to_string_lossy().into_owned()];
    let mtime = |p: &Path| -> String {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default()
    };
    for dir in std::env::split_paths(path_var) {
        parts.push(mtime(&dir));
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv_root {
        parts.push(mtime(&root.join("version")));
    }
    parts.push(std::env::var("PYENV_VERSION").ok().unwrap_or_default());
    if let Ok(cwd) = std::env::current_dir() {
        parts.push(mtime(&cwd.join(".python-version")));
    }
    parts.join("\u{1f}")
}

#[derive(Serialize, Deserialize)]
struct DiscoveryCache {
    fingerprint: String,
    interpreters: Vec<Interpreter>,
}

/// [`discover`], remembered in `cache_file` as long as `PATH`, its directories and pyenv's
/// selection do not change, so a warm start runs no subprocess. Cache write failures are ignored.
pub async fn discover_cached(cache_file: &Path) -> Vec<Interpreter> {
    let path_var: OsString = std::env::var_os("PATH").unwrap_or_default();
    let fp = fingerprint(&path_var);
    if let Ok(bytes) = std::fs::read(cache_file) {
        if let Ok(c) = serde_json::from_slice::<DiscoveryCache>(&bytes) {
            if c.fingerprint == fp && c.interpreters.iter().all(|i| i.path.is_file()) {
                return c.interpreters;
            }
        }
    }
    let interpreters = discover_in(&path_var).await;
    let cache = DiscoveryCache {
        fingerprint: fp,
        interpreters,
    };
    if let Ok(bytes) = serde_json::to_vec(&cache) {
        if let Some(dir) = cache_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = cache_file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, cache_file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    cache.interpreters
}

/// Discovers the interpreters on `PATH` and chooses one (see [`select`]).
pub async fn resolve(requested: Option<&str>, strict: bool) -> Result<Resolved> {
    select(&discover().await, requested, strict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(v: (u32, u32, u32), path: &str) -> Interpreter {
        Interpreter {
            path: PathBuf::from(path),
            version: PyVersion {
                major: v.0,
                minor: v.1,
                patch: v.2,
            },
            base_prefix: PathBuf::from("/opt/py"),
        }
    }

    fn installed() -> Vec<Interpreter> {
        vec![
            interp((3, 11, 7), "/opt/py/bin/python3.11"),
            interp((3, 11, 2), "/usr/bin/python3.11"),
            interp((3, 9, 18), "/opt/py39/bin/python3.9"),
        ]
    }

    #[test]
    fn default_is_first() {
        let r = select(&installed(), None, true).unwrap();
        assert_eq!(r.version, "3.11.7");
        assert!(r.warning.is_none());
        let r = select(&installed(), Some(" "), true).unwrap();
        assert_eq!(r.version, "3.11.7");
    }

    #[test]
    fn exact_minor_and_patch() {
        let r = select(&installed(), Some("3.11"), true).unwrap();
        assert_eq!(r.path, PathBuf::from("/opt/py/bin/python3.11"));
        assert!(r.warning.is_none());
        let r = select(&installed(), Some("3.11.2"), true).unwrap();
        assert_eq!(r.path, PathBuf::from("/usr/bin/python3.11"));
        let r = select(&installed(), Some("3.9"), true).unwrap();
        assert_eq!(r.version, "3.9.18");
        let r = select(&installed(), Some("3"), true).unwrap();
        assert_eq!(r.version, "3.11.7");
    }

    #[test]
    fn nearest_with_warning() {
        let r = select(&installed(), Some("3.12"), false).unwrap();
        assert_eq!(r.version, "3.11.7");
        assert_eq!(
            r.warning.as_deref(),
            Some("python 3.12 requested by the function, running on 3.11.7: 3.12 is not installed")
        );
        // 3.10 is as far from 3.9 as from 3.11: the newer wins.
        let r = select(&installed(), Some("3.10"), false).unwrap();
        assert_eq!(r.version, "3.11.7");
        let r = select(&installed(), Some("3.8"), false).unwrap();
        assert_eq!(r.version, "3.9.18");
        let r = select(&installed(), Some("3.11.99"), false).unwrap();
        assert_eq!(r.version, "3.11.7");
        assert!(r.warning.unwrap().contains("3.11.99"));
    }

    #[test]
    fn strict_errors() {
        let e = select(&installed(), Some("3.12"), true).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RuntimeError::PythonNotFound { .. }));
        assert!(msg.contains("python 3.12 is not installed"), "{msg}");
        assert!(msg.contains("3.11.7 at /opt/py/bin/python3.11"), "{msg}");
        assert!(select(&installed(), Some("3.11.99"), true).is_err());
        // Another major is never substituted.
        assert!(select(&installed(), Some("2.7"), false).is_err());
        assert!(select(&[], None, false).is_err());
    }

    #[test]
    fn invalid_requests() {
        for bad in ["abc", "3.x", "3..1", "3.11.7.1", "-3", "3.11 ", "99999.1"] {
            let r = select(&installed(), Some(bad), false);
            // "3.11 " is trimmed and valid.
            if bad == "3.11 " {
                assert!(r.is_ok());
            } else {
                assert!(
                    matches!(r, Err(RuntimeError::InvalidPythonVersion { .. })),
                    "{bad}"
                );
            }
        }
    }

    #[test]
    fn candidate_order() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        for n in [
            "python3.9",
            "python3",
            "python3.11",
            "python3-config",
            "python3.11-config",
        ] {
            std::fs::write(d1.path().join(n), "").unwrap();
        }
        std::fs::write(d2.path().join("python3"), "").unwrap();
        let pv = std::env::join_paths([d1.path(), d2.path(), d1.path()]).unwrap();
        let c = candidates(&pv);
        assert_eq!(
            c,
            vec![
                d1.path().join("python3"),
                d2.path().join("python3"),
                d1.path().join("python3.11"),
                d1.path().join("python3.9"),
            ]
        );
    }

    /// A cache whose fingerprint matches is used as is: no interpreter is probed (the fake
    /// "interpreter" below is not Python at all). A changed fingerprint means a new discovery.
    #[tokio::test]
    async fn discovery_cache_is_used_when_fresh() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("interpreters.json");
        let fake = interp((3, 42, 0), "/bin/sh");
        let fp = fingerprint(&std::env::var_os("PATH").unwrap_or_default());
        let write = |fp: &str| {
            let c = DiscoveryCache {
                fingerprint: fp.to_string(),
                interpreters: vec![fake.clone()],
            };
            std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
        };
        write(&fp);
        assert_eq!(discover_cached(&file).await, vec![fake.clone()]);
        write("stale");
        let found = discover_cached(&file).await;
        assert!(!found.contains(&fake));
        let c: DiscoveryCache = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(c.fingerprint, fp);
        assert_eq!(c.interpreters, found);
    }

    /// Real discovery on this machine's PATH: there is at least one python3, and asking for
    /// its own minor version resolves exactly, without a warning.
    #[tokio::test]
    async fn discovers_real_interpreters() {
        let found = discover().await;
        assert!(!found.is_empty(), "no python3 on PATH");
        for i in &found {
            assert!(i.path.is_absolute() && i.path.is_file(), "{i:?}");
            assert!(i.base_prefix.is_dir(), "{i:?}");
        }
        let first = &found[0];
        let req = format!("{}.{}", first.version.major, first.version.minor);
        let r = resolve(Some(&req), true).await.unwrap();
        assert!(r.version.starts_with(&format!("{req}.")), "{r:?}");
        assert!(r.warning.is_none());
        // A version that does not exist: nearest with a warning, or an error when strict.
        let r = select(&found, Some("3.99"), false).unwrap();
        let w = r.warning.unwrap();
        assert!(
            w.contains("python 3.99 requested") && w.contains(&r.version),
            "{w}"
        );
        assert!(select(&found, Some("3.99"), true).is_err());
    }
}
