//! Python environments built with `uv`, one per (interpreter, packages), cached by a hash.
//!
//! `<cache_dir>/<key[..16]>/` is a virtual environment with a completion marker
//! (`.lakeplan-env.json`). An environment with its marker is reused without running anything
//! (the warm path). A missing one is built in a temporary folder next to it (`uv venv
//! --relocatable`, then `uv pip compile` of the requested set to exact versions and `uv pip
//! sync` of that resolution), marked, and renamed into place; a lock file (`<key[..16]>.lock`,
//! created with `create_new`) makes concurrent builders of one key wait for each other instead
//! of installing twice.
//!
//! The key names the *request* (interpreter and declared requirements, plus the pyarrow floor);
//! the marker records the *resolution* (every installed `name==version`), and so does
//! [`PreparedEnv::resolved`], on a cache hit too. A cached environment keeps the resolution made
//! when it was built: a later build of the same request elsewhere may pick newer releases of what
//! the function left unpinned (the run log of a build lists what it installed).
//!
//! Resolution: pyarrow is not pinned. The function's packages get `pyarrow>=PYARROW_FLOOR`
//! (unless they declare a pyarrow of their own, which must not be older than the floor), so uv
//! picks the newest pyarrow that fits them. Two facts that package metadata does not state are
//! applied on top: pyarrow 26 and newer refuse to import with numpy 1.x, so a resolution with
//! numpy 1.x is redone with `pyarrow<26`; and wheels built against numpy 1.x (pandas before
//! 2.2.2, pyarrow before 16, ...) fail to import with numpy 2, so when an import of pyarrow or of
//! a declared package fails with numpy's binary-incompatibility error, the resolution is redone
//! with `numpy<2` (as a user of pip would have to). That import check runs in the sandbox,
//! without network, once per build.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_ctx, Result, RuntimeError};
use crate::python::{self, Interpreter, Resolved};
use crate::worker::{run_worker, Stream, WorkerSpec};

/// The oldest pyarrow an environment may have: lakeplan's worker (`python/lakeplan/_worker.py`
/// and the package it imports) needs `pyarrow.Table.from_pylist` (7.0) and the IPC file API,
/// and its test suite (tests/python/test_worker.py) passes on 10.0.1, the first pyarrow with
/// CPython 3.11 wheels.
pub const PYARROW_FLOOR: &str = "10.0.1";

/// The first pyarrow major version that refuses to import with numpy 1.x ("pyarrow requires
/// NumPy 2.0 or newer"), which its metadata does not declare.
const PYARROW_NEEDS_NUMPY2: u64 = 26;

/// The completion marker inside a finished environment.
const MARKER: &str = ".lakeplan-env.json";
/// Bumped when the layout or the way environments are built changes.
const FORMAT: u32 = 2;
const LOCK_POLL: Duration = Duration::from_millis(200);

/// What a function declares: `@python("3.11", pip={"polars": "1.37"})`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSpec {
    /// `"3.11"`; `None` means the default `python3`.
    pub python: Option<String>,
    /// Package name -> version: `"1.37"` (pinned as `==1.37`), a specifier such as
    /// `">=1.0,<2"`, or `"*"` / `""` for any version.
    pub pip: BTreeMap<String, String>,
}

/// A ready environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedEnv {
    /// The environment's `bin/python`.
    pub python: PathBuf,
    /// The environment's folder.
    pub root: PathBuf,
    /// sha256 hex of the interpreter and the sorted requested requirements.
    pub key: String,
    /// E.g. the substitution of a Python version that is not installed.
    pub warnings: Vec<String>,
    /// True when this call built the environment, false when it was reused.
    pub installed: bool,
    /// The interpreter's version, `"3.11.7"`.
    pub python_version: String,
    /// The interpreter's installation (`sys.base_prefix`); the sandbox binds it read-only.
    pub base_prefix: PathBuf,
    /// The requested requirements (the declared packages and the pyarrow floor), sorted.
    pub requirements: Vec<String>,
    /// What is installed, `name==version` for every package, as resolved when the environment
    /// was built (read from its marker on a cache hit).
    pub resolved: Vec<String>,
    /// How the resolution departed from the plain request (e.g. `pyarrow<26` added because the
    /// packages need numpy 1.x), when it did.
    pub resolution_notes: Vec<String>,
}

/// An environment's key ([`EnvManager::key`]), for an environment that may be built elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvKey {
    /// The key [`PreparedEnv::key`] has once it is built.
    pub key: String,
    /// E.g. the substitution of a Python version that is not installed.
    pub warnings: Vec<String>,
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A PEP 508 name: ASCII letters and digits, with `.`, `_`, `-` inside.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A PEP 440-ish version: starts with a digit; letters, digits, `.`, `+`, `!`, `_`, `-`; an
/// optional trailing `.*` when `wildcard`.
fn valid_version(v: &str, wildcard: bool) -> bool {
    let v = match v.strip_suffix(".*") {
        Some(rest) if wildcard => rest,
        _ => v,
    };
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'!' | b'_' | b'-'))
}

/// `"name[extra]"`, `"version spec"` -> (normalised name, requirement string, specifier
/// clauses).
fn requirement(name: &str, version: &str) -> Result<(String, String, Vec<String>)> {
    let invalid = |reason: &str| RuntimeError::InvalidPackage {
        name: name.to_string(),
        version: version.to_string(),
        reason: reason.to_string(),
    };
    let (base, extras) = match name.split_once('[') {
        Some((base, rest)) => {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| invalid("unclosed '[' in the package name"))?;
            let mut extras = Vec::new();
            for e in inner.split(',') {
                if !valid_name(e) {
                    return Err(invalid("invalid extra name"));
                }
                extras.push(normalize_name(e));
            }
            extras.sort();
            extras.dedup();
            (base, format!("[{}]", extras.join(",")))
        }
        None => (name, String::new()),
    };
    if !valid_name(base) {
        return Err(invalid(
            "not a valid package name (letters, digits, '.', '_', '-'; starting and ending with a letter or digit)",
        ));
    }
    let norm = normalize_name(base);
    let v = version.trim();
    let clauses = if v.is_empty() || v == "*" {
        Vec::new()
    } else if v.as_bytes()[0].is_ascii_digit() {
        if !valid_version(v, true) {
            return Err(invalid("not a valid version"));
        }
        vec![format!("=={v}")]
    } else {
        const OPS: [&str; 8] = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"];
        let mut clauses = Vec::new();
        for clause in v.split(',') {
            let clause = clause.trim();
            let op = OPS
                .iter()
                .find(|op| clause.starts_with(**op))
                .ok_or_else(|| {
                    invalid(
                        "expected a version like \"1.37\", \"*\", or a specifier like \">=1.0,<2\"",
                    )
                })?;
            let ver = clause[op.len()..].trim();
            if !valid_version(ver, matches!(*op, "==" | "!=")) {
                return Err(invalid("not a valid version"));
            }
            clauses.push(format!("{op}{ver}"));
        }
        clauses
    };
    Ok((
        norm.clone(),
        format!("{norm}{extras}{}", clauses.join(",")),
        clauses,
    ))
}

/// The numeric release segments of a version, `"10.0.1rc1"` -> `[10, 0, 1]` (what comparisons
/// with [`PYARROW_FLOOR`] and major versions need).
fn release(v: &str) -> Vec<u64> {
    let v = v.split_once('!').map_or(v, |(_, rest)| rest);
    let mut out = Vec::new();
    for seg in v.split('.') {
        let digits: String = seg.chars().take_while(|c| c.is_ascii_digit()).collect();
        match digits.parse() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if digits.len() != seg.len() {
            break;
        }
    }
    out
}

/// `a` compared with `b`, missing segments being 0.
fn cmp_release(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// A declared pyarrow's specifier: its clauses plus `>=PYARROW_FLOOR` (an exact pin at or above
/// the floor stays as it is). A declaration that only admits versions below the floor is
/// refused.
fn pyarrow_specifier(name: &str, version: &str, clauses: &[String]) -> Result<String> {
    let floor = release(PYARROW_FLOOR);
    let too_old = || {
        RuntimeError::InvalidPackage {
        name: name.to_string(),
        version: version.to_string(),
        reason: format!(
            "lakeplan's worker needs pyarrow {PYARROW_FLOOR} or newer: declare a newer pyarrow, or none to get the newest that fits the other packages"
        ),
    }
    };
    let mut exact = false;
    for c in clauses {
        let (op, ver) = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"]
            .iter()
            .find_map(|op| c.strip_prefix(op).map(|v| (*op, v)))
            .unwrap_or(("", c.as_str()));
        let below = match op {
            "==" | "===" if ver.ends_with(".*") => {
                let prefix = release(ver.trim_end_matches(".*"));
                let n = prefix.len().min(floor.len());
                cmp_release(&prefix, &floor[..n]).is_lt()
            }
            "==" | "===" => {
                exact = true;
                cmp_release(&release(ver), &floor).is_lt()
            }
            "<" => cmp_release(&release(ver), &floor).is_le(),
            "<=" => cmp_release(&release(ver), &floor).is_lt(),
            _ => false,
        };
        if below {
            return Err(too_old());
        }
    }
    let mut all: Vec<String> = clauses.to_vec();
    if !exact {
        all.push(format!(">={PYARROW_FLOOR}"));
    }
    Ok(all.join(","))
}

impl EnvSpec {
    /// The requirements to resolve, validated and sorted: the declared packages, and pyarrow
    /// with the floor the worker needs (`pyarrow>=PYARROW_FLOOR`, added to a declared pyarrow's
    /// own specifier).
    pub fn requirements(&self) -> Result<Vec<String>> {
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for (name, version) in &self.pip {
            let (norm, mut req, clauses) = requirement(name, version)?;
            if norm == "pyarrow" {
                // `pyarrow[extras]` followed by the clauses: keep the first part.
                let head = req.len() - clauses.join(",").len();
                req = format!(
                    "{}{}",
                    &req[..head],
                    pyarrow_specifier(name, version, &clauses)?
                );
            }
            if by_name.insert(norm.clone(), req).is_some() {
                return Err(RuntimeError::InvalidPackage {
                    name: name.clone(),
                    version: version.clone(),
                    reason: format!("package {norm:?} is declared twice"),
                });
            }
        }
        by_name
            .entry("pyarrow".to_string())
            .or_insert_with(|| format!("pyarrow>={PYARROW_FLOOR}"));
        let mut reqs: Vec<String> = by_name.into_values().collect();
        reqs.sort();
        Ok(reqs)
    }
}

/// The cache key of an environment.
pub fn env_key(interpreter: &Resolved, requirements: &[String]) -> String {
    let material = serde_json::json!({
        "format": FORMAT,
        "python": interpreter.version,
        "interpreter": interpreter.path,
        "requirements": requirements,
    });
    hex::encode(Sha256::digest(material.to_string().as_bytes()))
}

#[derive(Serialize, Deserialize)]
struct Marker {
    key: String,
    spec: EnvSpec,
    python_version: String,
    interpreter: PathBuf,
    base_prefix: PathBuf,
    /// The requested requirements.
    requirements: Vec<String>,
    /// `uv pip compile`'s resolution, what `uv pip sync` installed.
    resolved: Vec<String>,
    resolution_notes: Vec<String>,
    /// When the resolution was made (seconds since the epoch).
    resolved_at: u64,
}

/// The marker of a finished environment, when there is one that can be read.
fn read_marker(root: &Path) -> Option<Marker> {
    let text = std::fs::read(root.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The exact `name==version` lines of `uv pip compile`'s output.
fn lock_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .map(String::from)
        .collect()
}

/// The release of `name` in a resolution (`name==1.2.3` -> `[1, 2, 3]`).
fn locked_release(lock: &[String], name: &str) -> Option<Vec<u64>> {
    lock.iter().find_map(|l| {
        let (n, v) = l.split_once("==")?;
        let n = n.split('[').next().unwrap_or(n).trim();
        (normalize_name(n) == name).then(|| release(v.split(';').next().unwrap_or(v).trim()))
    })
}

/// The major version of `name` in a resolution.
fn locked_major(lock: &[String], name: &str) -> Option<u64> {
    locked_release(lock, name).and_then(|r| r.first().copied())
}

/// Imports pyarrow and the top-level modules of the distributions named as arguments; prints
/// the first failure that is numpy's binary incompatibility (a wheel built against numpy 1.x
/// under numpy 2) as one JSON line, and nothing otherwise.
const NUMPY_ABI_PROBE: &str = r#"
import importlib, importlib.metadata as md, json, sys
mods = ["pyarrow"]
for dist in sys.argv[1:]:
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        continue
    top = (d.read_text("top_level.txt") or "").split()
    if not top:
        for f in d.files or []:
            first = f.parts[0]
            if len(f.parts) == 1 and first.endswith(".py"):
                top.append(first[:-3])
            elif len(f.parts) > 1 and first.isidentifier():
                top.append(first)
    mods += [m for m in top if m.isidentifier() and not m.startswith("_")]
signs = ("numpy.dtype size changed", "compiled using NumPy 1.x", "_ARRAY_API not found",
         "numpy.core.multiarray failed to import", "numpy.core._multiarray_umath failed to import")
for m in dict.fromkeys(mods):
    try:
        importlib.import_module(m)
    except BaseException as e:
        text = f"{type(e).__name__}: {e}"
        if any(s in text for s in signs):
            print(json.dumps({"module": m, "error": text.splitlines()[0]}))
            break
"#;

/// uv's stderr without its informational lines (which name our temporary folder), trimmed.
fn uv_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Using Python ") && !l.starts_with("Using CPython "))
        .collect();
    let msg = kept.join("\n").trim().to_string();
    if msg.is_empty() {
        text.trim().to_string()
    } else {
        msg
    }
}

/// Builds and caches environments.
#[derive(Debug)]
pub struct EnvManager {
    cache_dir: PathBuf,
    uv: PathBuf,
    interpreters: tokio::sync::OnceCell<Vec<Interpreter>>,
    stale_lock_after: Duration,
}

/// Removes the lock file when the build ends (or fails).
struct LockGuard(PathBuf);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Whether `root` is a finished environment whose interpreter still exists.
fn is_ready(root: &Path) -> bool {
    root.join(MARKER).is_file() && root.join("bin/python").is_file()
}

impl EnvManager {
    /// Environments go in `cache_dir` (created on first use); `uv` is the uv binary.
    pub fn new(cache_dir: PathBuf, uv: PathBuf) -> Self {
        EnvManager {
            cache_dir,
            uv,
            interpreters: tokio::sync::OnceCell::new(),
            stale_lock_after: Duration::from_secs(3600),
        }
    }

    /// Uses these interpreters instead of discovering the ones on `PATH`.
    pub fn with_interpreters(self, interpreters: Vec<Interpreter>) -> Self {
        EnvManager {
            interpreters: tokio::sync::OnceCell::new_with(Some(interpreters)),
            ..self
        }
    }

    /// A lock older than this whose owner cannot be checked is taken over (default 1 hour; a
    /// lock whose owning process is gone is taken over at once).
    pub fn with_stale_lock_after(self, after: Duration) -> Self {
        EnvManager {
            stale_lock_after: after,
            ..self
        }
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn uv(&self) -> &Path {
        &self.uv
    }

    /// Finds uv: `$LAKEPLAN_UV`, else `uv` on `PATH`, else `.venv/bin/uv` under the current
    /// directory or a folder above the running binary (where scripts/setup.sh installs it).
    pub fn locate_uv() -> Result<PathBuf> {
        // `.venv/bin/uv` of the current folder, or of a folder holding the running binary
        // (a checkout's `target/debug/lakeplan` finds the checkout's `.venv`).
        let exe = std::env::current_exe().ok();
        let bases: Vec<PathBuf> = std::env::current_dir()
            .ok()
            .into_iter()
            .chain(
                exe.iter()
                    .flat_map(|e| e.ancestors().skip(1).map(Path::to_path_buf)),
            )
            .collect();
        Self::locate_uv_in(
            std::env::var_os("LAKEPLAN_UV"),
            std::env::var_os("PATH"),
            bases,
        )
    }

    fn locate_uv_in(
        explicit: Option<OsString>,
        path_var: Option<OsString>,
        bases: Vec<PathBuf>,
    ) -> Result<PathBuf> {
        if let Some(p) = explicit.filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(RuntimeError::UvNotFound)
            };
        }
        if let Some(pv) = path_var {
            if let Some(p) = std::env::split_paths(&pv)
                .filter(|d| d.is_absolute())
                .map(|d| d.join("uv"))
                .find(|p| p.is_file())
            {
                return Ok(p);
            }
        }
        bases
            .into_iter()
            .map(|d| d.join(".venv/bin/uv"))
            .find(|p| p.is_file())
            .ok_or(RuntimeError::UvNotFound)
    }

    async fn interpreters(&self) -> &[Interpreter] {
        self.interpreters
            .get_or_init(|| async {
                python::discover_cached(&self.cache_dir.join("interpreters.json")).await
            })
            .await
    }

    /// The key `ensure` would give `spec`'s environment, without building it or writing
    /// anything but the interpreter list: what a machine that plans a function run by another
    /// one needs. The interpreter's warning (a substituted version) comes with it.
    pub async fn key(&self, spec: &EnvSpec, strict_python: bool) -> Result<EnvKey> {
        let (interpreter, requirements) = self.resolve(spec, strict_python).await?;
        Ok(EnvKey {
            key: env_key(&interpreter, &requirements),
            warnings: interpreter.warning.into_iter().collect(),
        })
    }

    /// `spec`'s interpreter and requirements (checked), with the cache folder made.
    async fn resolve(
        &self,
        spec: &EnvSpec,
        strict_python: bool,
    ) -> Result<(Resolved, Vec<String>)> {
        let requirements = spec.requirements()?;
        std::fs::create_dir_all(&self.cache_dir).map_err(io_ctx(format!(
            "creating the environment cache {}",
            self.cache_dir.display()
        )))?;
        let interpreter = python::select(
            self.interpreters().await,
            spec.python.as_deref(),
            strict_python,
        )?;
        Ok((interpreter, requirements))
    }

    /// Returns the environment for `spec`, building it when it is not cached yet. With
    /// `strict_python`, a Python version that is not installed is an error instead of a warning.
    pub async fn ensure(&self, spec: &EnvSpec, strict_python: bool) -> Result<PreparedEnv> {
        let (interpreter, requirements) = self.resolve(spec, strict_python).await?;
        let key = env_key(&interpreter, &requirements);
        let short = &key[..16];
        let root = self.cache_dir.join(short);
        let prepared = |installed: bool, marker: Marker| PreparedEnv {
            python: root.join("bin/python"),
            root: root.clone(),
            key: key.clone(),
            warnings: interpreter.warning.iter().cloned().collect(),
            installed,
            python_version: interpreter.version.clone(),
            base_prefix: interpreter.base_prefix.clone(),
            requirements: requirements.clone(),
            resolved: marker.resolved,
            resolution_notes: marker.resolution_notes,
        };
        let ready = || is_ready(&root).then(|| read_marker(&root)).flatten();
        if let Some(marker) = ready() {
            return Ok(prepared(false, marker));
        }
        let lock = self.cache_dir.join(format!("{short}.lock"));
        let guard = self.acquire(&lock, &root).await?;
        if let Some(marker) = ready() {
            // Another builder finished while we waited.
            return Ok(prepared(false, marker));
        }
        let Some(_guard) = guard else {
            return Err(RuntimeError::Io {
                context: format!("environment {}", root.display()),
                source: std::io::Error::other("its builder finished without a readable marker"),
            });
        };
        if root.exists() {
            // A leftover without its marker (or whose interpreter is gone): rebuild.
            std::fs::remove_dir_all(&root).map_err(io_ctx(format!(
                "removing the broken environment {}",
                root.display()
            )))?;
        }
        let tmp = self.cache_dir.join(format!(
            ".tmp-{short}-{}-{}",
            std::process::id(),
            now_nanos()
        ));
        let marker = match self
            .build(&tmp, spec, &interpreter, &key, &requirements)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &root) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Someone else (who took over a stale lock) finished first: use theirs.
            return match ready() {
                Some(theirs) => Ok(prepared(false, theirs)),
                None => Err(io_ctx(format!(
                    "moving the environment to {}",
                    root.display()
                ))(e)),
            };
        }
        Ok(prepared(true, marker))
    }

    async fn build(
        &self,
        tmp: &Path,
        spec: &EnvSpec,
        interpreter: &Resolved,
        key: &str,
        requirements: &[String],
    ) -> Result<Marker> {
        let venv = self
            .uv_command()
            .arg("venv")
            .arg("--relocatable")
            .arg("--python")
            .arg(&interpreter.path)
            .arg(tmp)
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if !venv.status.success() {
            return Err(RuntimeError::Venv {
                python: interpreter.path.clone(),
                message: uv_message(&venv.stderr),
            });
        }
        let mut notes = Vec::new();
        let mut lock = self
            .resolve_lock(tmp, requirements, &[], &mut notes)
            .await?;
        self.sync(tmp, requirements, &lock).await?;
        if locked_major(&lock, "numpy").is_some_and(|m| m >= 2) {
            if let Some(failure) = self.numpy_abi_failure(tmp, interpreter, spec).await {
                // Something built against numpy 1.x: resolve again with numpy 1.x, unless the
                // declared packages cannot have it (then the function reports the import error).
                let mut retry_notes = Vec::new();
                if let Ok(l) = self
                    .resolve_lock(
                        tmp,
                        requirements,
                        &["numpy<2".to_string()],
                        &mut retry_notes,
                    )
                    .await
                {
                    self.sync(tmp, requirements, &l).await?;
                    notes.push(format!(
                        "numpy<2: with numpy {} {failure}",
                        locked_release(&lock, "numpy")
                            .map(|r| r.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
                            .unwrap_or_default()
                    ));
                    notes.extend(retry_notes);
                    lock = l;
                }
            }
        }
        let marker = Marker {
            key: key.to_string(),
            spec: spec.clone(),
            python_version: interpreter.version.clone(),
            interpreter: interpreter.path.clone(),
            base_prefix: interpreter.base_prefix.clone(),
            requirements: requirements.to_vec(),
            resolved: lock,
            resolution_notes: notes,
            resolved_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        };
        let json = serde_json::to_vec_pretty(&marker).map_err(|e| RuntimeError::Io {
            context: "encoding the environment marker".to_string(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(tmp.join(MARKER), json)
            .map_err(io_ctx(format!("writing the marker in {}", tmp.display())))?;
        Ok(marker)
    }

    /// `uv pip compile` of `requirements` plus `extra` for the new environment's interpreter:
    /// the exact versions to install. A resolution with numpy 1.x and a pyarrow that needs
    /// numpy 2 is redone with an older pyarrow (noted in `notes`).
    async fn resolve_lock(
        &self,
        tmp: &Path,
        requirements: &[String],
        extra: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let lock = self.compile(tmp, requirements, extra).await?;
        let numpy1 = locked_major(&lock, "numpy").is_some_and(|m| m < 2);
        if !(numpy1 && locked_major(&lock, "pyarrow").is_some_and(|m| m >= PYARROW_NEEDS_NUMPY2)) {
            return Ok(lock);
        }
        let cap = format!("pyarrow<{PYARROW_NEEDS_NUMPY2}");
        let mut more = extra.to_vec();
        more.push(cap.clone());
        let why = format!(
            "pyarrow {PYARROW_NEEDS_NUMPY2} and newer import only with numpy 2 or newer, and these packages resolve numpy {}",
            lock.iter()
                .find(|l| l.starts_with("numpy=="))
                .map_or("1.x", |l| &l["numpy==".len()..])
        );
        let lock = self
            .compile(tmp, requirements, &more)
            .await
            .map_err(|e| match e {
                RuntimeError::Install { packages, message } => RuntimeError::Install {
                    packages,
                    message: format!("{why}; with {cap}: {message}"),
                },
                other => other,
            })?;
        notes.push(format!("{cap}: {why}"));
        Ok(lock)
    }

    async fn compile(
        &self,
        tmp: &Path,
        requirements: &[String],
        extra: &[String],
    ) -> Result<Vec<String>> {
        let input = tmp.join(".lakeplan-requirements.in");
        let mut text = requirements.join("\n");
        for e in extra {
            text.push('\n');
            text.push_str(e);
        }
        text.push('\n');
        std::fs::write(&input, text).map_err(io_ctx(format!("writing {}", input.display())))?;
        let out = self
            .uv_command()
            .args([
                "pip",
                "compile",
                "--no-header",
                "--no-annotate",
                "--quiet",
                "--python",
            ])
            .arg(tmp.join("bin/python"))
            .arg(&input)
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(RuntimeError::Install {
                packages: requirements.join(" "),
                message: uv_message(&out.stderr),
            });
        }
        let lock = lock_lines(&out.stdout);
        if lock.is_empty() {
            return Err(RuntimeError::Install {
                packages: requirements.join(" "),
                message: format!(
                    "uv pip compile resolved nothing: {}",
                    uv_message(&out.stderr)
                ),
            });
        }
        Ok(lock)
    }

    /// Installs exactly `lock` (`uv pip sync`: anything else is removed), compiled to bytecode:
    /// the sandbox mounts the environment read-only, so a worker could not cache what it
    /// compiles, and would compile pyarrow's (numpy's, pandas'...) modules at every start.
    async fn sync(&self, tmp: &Path, requirements: &[String], lock: &[String]) -> Result<()> {
        let file = tmp.join(".lakeplan-lock.txt");
        std::fs::write(&file, format!("{}\n", lock.join("\n")))
            .map_err(io_ctx(format!("writing {}", file.display())))?;
        let out = self
            .uv_command()
            .args(["pip", "sync", "--compile-bytecode", "--python"])
            .arg(tmp.join("bin/python"))
            .arg(&file)
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(RuntimeError::Install {
                packages: requirements.join(" "),
                message: uv_message(&out.stderr),
            });
        }
        Ok(())
    }

    /// Imports pyarrow and the declared packages in the new environment, in the sandbox without
    /// network; returns the first numpy binary-incompatibility failure ("module: error").
    /// Anything else (another import error, no sandbox here) is left to the function's run.
    async fn numpy_abi_failure(
        &self,
        tmp: &Path,
        interpreter: &Resolved,
        spec: &EnvSpec,
    ) -> Option<String> {
        let env = PreparedEnv {
            python: tmp.join("bin/python"),
            root: tmp.to_path_buf(),
            key: String::new(),
            warnings: vec![],
            installed: true,
            python_version: interpreter.version.clone(),
            base_prefix: interpreter.base_prefix.clone(),
            requirements: vec![],
            resolved: vec![],
            resolution_notes: vec![],
        };
        let mut args = vec![
            "-I".to_string(),
            "-c".to_string(),
            NUMPY_ABI_PROBE.to_string(),
        ];
        args.extend(
            spec.pip
                .keys()
                .map(|n| normalize_name(n.split('[').next().unwrap_or(n)))
                .filter(|n| n != "numpy" && n != "pyarrow"),
        );
        let mut probe = WorkerSpec::new("environment check", env, args);
        probe.timeout = Some(Duration::from_secs(300));
        let mut out = Vec::new();
        run_worker(&probe, |_, stream, line| {
            if stream == Stream::Stdout {
                out.push(line.to_string());
            }
        })
        .await
        .ok()?;
        let found: serde_json::Value = serde_json::from_str(out.last()?).ok()?;
        Some(format!(
            "import {} failed: {}",
            found["module"].as_str()?,
            found["error"].as_str()?
        ))
    }

    fn uv_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.uv);
        cmd.args(["--no-progress", "--color", "never"])
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env_remove("VIRTUAL_ENV")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> RuntimeError {
        if e.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::UvNotFound
        } else {
            io_ctx(format!("running uv ({})", self.uv.display()))(e)
        }
    }

    /// Takes the build lock of one key. `None` when the environment became ready meanwhile.
    async fn acquire(&self, lock: &Path, root: &Path) -> Result<Option<LockGuard>> {
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(lock)
            {
                Ok(mut f) => {
                    // Best effort: the pid only helps to detect a dead owner.
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Some(LockGuard(lock.to_path_buf())));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_ready(root) {
                        return Ok(None);
                    }
                    if self.is_stale(lock) {
                        let _ = std::fs::remove_file(lock);
                        continue;
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(e) => {
                    return Err(io_ctx(format!("creating the lock {}", lock.display()))(e));
                }
            }
        }
    }

    fn is_stale(&self, lock: &Path) -> bool {
        let owner_dead = std::fs::read_to_string(lock)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
            });
        let too_old = std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > self.stale_lock_after);
        owner_dead || too_old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pip: &[(&str, &str)]) -> EnvSpec {
        EnvSpec {
            python: None,
            pip: pip
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn requirements_pin_and_pyarrow_floor() {
        let floor = format!("pyarrow>={PYARROW_FLOOR}");
        let r = spec(&[("Polars", "1.37"), ("requests", "*"), ("numpy", "")])
            .requirements()
            .unwrap();
        assert_eq!(
            r,
            vec![
                "numpy".to_string(),
                "polars==1.37".to_string(),
                floor.clone(),
                "requests".to_string(),
            ]
        );
        // A function that declares nothing still gets pyarrow, with the floor, not a pin.
        assert_eq!(spec(&[]).requirements().unwrap(), vec![floor.clone()]);
        // A declared pyarrow wins: an exact pin stays as it is, a range gets the floor too.
        let r = spec(&[("PyArrow", "25.0.0")]).requirements().unwrap();
        assert_eq!(r, vec!["pyarrow==25.0.0".to_string()]);
        let r = spec(&[("pyarrow", "10.0.1")]).requirements().unwrap();
        assert_eq!(r, vec!["pyarrow==10.0.1".to_string()]);
        let r = spec(&[("pyarrow", ">=14,<20")]).requirements().unwrap();
        assert_eq!(r, vec![format!("pyarrow>=14,<20,>={PYARROW_FLOOR}")]);
        let r = spec(&[("pyarrow", "14.*")]).requirements().unwrap();
        assert_eq!(r, vec![format!("pyarrow==14.*,>={PYARROW_FLOOR}")]);
        let r = spec(&[("pyarrow", "*")]).requirements().unwrap();
        assert_eq!(r, vec![floor.clone()]);
        let r = spec(&[("pyarrow[pandas]", "<=10.0.1")])
            .requirements()
            .unwrap();
        assert_eq!(
            r,
            vec![format!("pyarrow[pandas]<=10.0.1,>={PYARROW_FLOOR}")]
        );
        // ...but not below the floor.
        for v in [
            "9.0.0",
            "10.0.0",
            "==8.*",
            "<10.0.1",
            "<=10",
            ">=5,<10",
            "=== 7.0.0",
        ] {
            let e = spec(&[("pyarrow", v)]).requirements().unwrap_err();
            assert!(
                matches!(&e, RuntimeError::InvalidPackage { reason, .. }
                    if reason.contains(&format!("pyarrow {PYARROW_FLOOR} or newer"))),
                "{v}: {e}"
            );
        }
        let r = spec(&[("moto[Server,s3]", ">=5.0, <6"), ("zope.interface", "7.*")])
            .requirements()
            .unwrap();
        assert!(r.contains(&"moto[s3,server]>=5.0,<6".to_string()), "{r:?}");
        assert!(r.contains(&"zope-interface==7.*".to_string()), "{r:?}");
    }

    #[test]
    fn releases_compare_numerically() {
        assert_eq!(release("10.0.1"), vec![10, 0, 1]);
        assert_eq!(release("1!2.3rc1"), vec![2, 3]);
        assert_eq!(release("26.0.1.post1"), vec![26, 0, 1]);
        assert!(cmp_release(&release("9.0.0"), &release("10.0.1")).is_lt());
        assert!(cmp_release(&release("10"), &release("10.0.0")).is_eq());
        let lock = vec![
            "numpy==1.26.4".to_string(),
            "pandas==2.2.0".to_string(),
            "PyArrow==25.0.0".to_string(),
        ];
        assert_eq!(locked_major(&lock, "numpy"), Some(1));
        assert_eq!(locked_major(&lock, "pyarrow"), Some(25));
        assert_eq!(locked_major(&lock, "polars"), None);
        assert_eq!(
            lock_lines(b"numpy==1.26.4\n# via pandas\n\npandas==2.2.0\n"),
            vec!["numpy==1.26.4".to_string(), "pandas==2.2.0".to_string()]
        );
    }

    #[test]
    fn invalid_packages_are_rejected() {
        for (name, version) in [
            ("-e", "1.0"),
            ("--index-url", ""),
            ("polars", "1.0; os_name=='nt'"),
            ("polars", "latest"),
            ("polars", "1.0 2.0"),
            ("pol ars", "1.0"),
            ("polars", "@ https://evil/x.whl"),
            ("", "1.0"),
            ("a[b", "1"),
            ("polars", ">=abc"),
            ("polars", "1.*.2"),
            ("http://x", ""),
        ] {
            let e = spec(&[(name, version)]).requirements().unwrap_err();
            assert!(
                matches!(e, RuntimeError::InvalidPackage { .. }),
                "{name} {version}: {e}"
            );
        }
        let e = spec(&[("Polars", "1"), ("polars", "2")])
            .requirements()
            .unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
    }

    #[test]
    fn key_depends_on_interpreter_and_sorted_requirements() {
        let i = Resolved {
            path: "/usr/bin/python3.11".into(),
            version: "3.11.2".into(),
            base_prefix: "/usr".into(),
            warning: None,
        };
        let a = env_key(&i, &["a==1".into(), "b==2".into()]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, env_key(&i, &["a==1".into(), "b==2".into()]));
        assert_ne!(a, env_key(&i, &["a==1".into(), "b==3".into()]));
        let j = Resolved {
            version: "3.11.7".into(),
            ..i.clone()
        };
        assert_ne!(a, env_key(&j, &["a==1".into(), "b==2".into()]));
    }

    #[test]
    fn uv_message_drops_informational_lines() {
        let m = uv_message(
            b"Using Python 3.11.7 environment at: /c/.tmp-x\nerror: No solution\n  cause: x\n",
        );
        assert_eq!(m, "error: No solution\n  cause: x");
        assert_eq!(uv_message(b" Using CPython 3.11 \n"), "Using CPython 3.11");
    }

    #[test]
    fn locate_uv_order() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(d.path().join(".venv/bin")).unwrap();
        std::fs::write(d.path().join(".venv/bin/uv"), "").unwrap();
        let explicit = d.path().join("myuv");
        std::fs::write(&explicit, "").unwrap();
        let pv = Some(bin.clone().into_os_string());
        let cwd = Some(d.path().to_path_buf());
        let got = EnvManager::locate_uv_in(
            Some(explicit.clone().into()),
            pv.clone(),
            cwd.clone().into_iter().collect(),
        );
        assert_eq!(got.unwrap(), explicit);
        let missing = EnvManager::locate_uv_in(Some(d.path().join("nope").into()), None, vec![]);
        assert!(matches!(missing, Err(RuntimeError::UvNotFound)));
        let got =
            EnvManager::locate_uv_in(None, pv.clone(), cwd.clone().into_iter().collect()).unwrap();
        assert_eq!(got, d.path().join(".venv/bin/uv"));
        std::fs::write(bin.join("uv"), "").unwrap();
        let got = EnvManager::locate_uv_in(None, pv, cwd.into_iter().collect()).unwrap();
        assert_eq!(got, bin.join("uv"));
        let e = EnvManager::locate_uv_in(None, None, vec![]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "uv not found: run scripts/setup.sh or set LAKEPLAN_UV"
        );
    }

    /// A lock held by a live process is waited for; one whose process is gone is taken over.
    #[tokio::test]
    async fn stale_lock_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let m = EnvManager::new(d.path().to_path_buf(), "/nonexistent/uv".into());
        let lock = d.path().join("k.lock");
        let root = d.path().join("k");
        // No process has this pid (above the kernel's pid_max): stale at once.
        std::fs::write(&lock, "999999999").unwrap();
        let g = m.acquire(&lock, &root).await.unwrap();
        assert!(g.is_some());
        drop(g);
        assert!(!lock.exists());
        // Held by us (alive): the waiter returns as soon as the environment is ready.
        std::fs::write(&lock, std::process::id().to_string()).unwrap();
        let root2 = root.clone();
        let maker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::create_dir_all(root2.join("bin")).unwrap();
            std::fs::write(root2.join("bin/python"), "").unwrap();
            std::fs::write(root2.join(MARKER), "{}").unwrap();
        });
        let g = m.acquire(&lock, &root).await.unwrap();
        assert!(g.is_none());
        maker.await.unwrap();
    }

    /// A marked environment is returned without running uv (the uv path does not exist).
    #[tokio::test]
    async fn warm_path_runs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let interp = Interpreter {
            path: "/usr/bin/python3.11".into(),
            version: python::PyVersion {
                major: 3,
                minor: 11,
                patch: 2,
            },
            base_prefix: "/usr".into(),
        };
        let m = EnvManager::new(d.path().to_path_buf(), "/nonexistent/uv".into())
            .with_interpreters(vec![interp]);
        let s = spec(&[("polars", "1.37")]);
        // Cold: uv is missing, so the build fails with the clear error.
        let e = m.ensure(&s, false).await.unwrap_err();
        assert!(matches!(e, RuntimeError::UvNotFound), "{e}");
        assert!(std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".tmp-")));
        // The key alone needs no uv and builds nothing.
        let key = m.key(&s, false).await.unwrap();
        assert!(key.warnings.is_empty());
        let key = key.key;
        assert_eq!(
            key,
            env_key(
                &python::select(m.interpreters().await, None, false).unwrap(),
                &s.requirements().unwrap(),
            )
        );
        assert!(!d.path().join(&key[..16]).exists());
        // A version that is not installed: the neighbour's key, with the warning; strict, an
        // error.
        let other = EnvSpec {
            python: Some("3.12".into()),
            ..s.clone()
        };
        let substituted = m.key(&other, false).await.unwrap();
        assert_eq!(substituted.key, key);
        assert_eq!(substituted.warnings.len(), 1, "{:?}", substituted.warnings);
        assert!(m.key(&other, true).await.is_err());
        // Fake a finished environment at the key's folder.
        let root = d.path().join(&key[..16]);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/python"), "").unwrap();
        let marker = Marker {
            key: key.clone(),
            spec: s.clone(),
            python_version: "3.11.2".into(),
            interpreter: "/usr/bin/python3.11".into(),
            base_prefix: "/usr".into(),
            requirements: s.requirements().unwrap(),
            resolved: vec!["polars==1.37".into(), "pyarrow==25.0.0".into()],
            resolution_notes: vec![],
            resolved_at: 1,
        };
        std::fs::write(root.join(MARKER), serde_json::to_vec(&marker).unwrap()).unwrap();
        let env = m.ensure(&s, false).await.unwrap();
        assert!(!env.installed);
        assert_eq!(env.key, key);
        assert_eq!(env.python, root.join("bin/python"));
        assert_eq!(env.python_version, "3.11.2");
        // A cache hit reports what the build resolved, not the request.
        assert_eq!(env.resolved, marker.resolved);
        assert_eq!(env.requirements, marker.requirements);
        // Invalid specs fail before anything else.
        let e = m
            .ensure(&spec(&[("bad name", "1")]), false)
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::InvalidPackage { .. }));
    }
}
