//! The bubblewrap (`bwrap`) command line of a sandbox.
//!
//! The sandbox sees a read-only system (`/usr` and the `/bin`, `/lib*`, `/sbin` links or folders,
//! a few harmless files of `/etc`), fresh `/proc` and `/dev`, an empty tmpfs `/tmp`, and only the
//! binds it is given: nothing else of the host (`/root`, `/home`, the project's repository...) is
//! visible. Every namespace is unshared (no network unless allowed), all capabilities are
//! dropped, the environment is cleared, and the sandbox dies with its parent.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// System folders bound read-only (or recreated as the same symlink) when they exist.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Harmless files of `/etc`, bound read-only when they exist.
const ETC_FILES: [&str; 12] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
];
/// `/etc` files bound only when the network is allowed.
const ETC_NET_FILES: [&str; 4] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// A host path mounted in the sandbox at `dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub src: PathBuf,
    pub dest: PathBuf,
}

impl Bind {
    /// `path` mounted at the same path.
    pub fn same(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Bind {
            src: path.clone(),
            dest: path,
        }
    }

    /// `src` mounted at `dest`.
    pub fn new(src: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        Bind {
            src: src.into(),
            dest: dest.into(),
        }
    }
}

/// What a sandbox may see and do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Read-only binds, mounted after the system and `/tmp`.
    pub ro_binds: Vec<Bind>,
    /// Writable binds, mounted last (so one may sit inside a read-only bind).
    pub rw_binds: Vec<Bind>,
    /// Keep the host network (`--share-net`) and its resolver files.
    pub network: bool,
    /// `PYTHONPATH` entries (paths inside the sandbox).
    pub pythonpath: Vec<PathBuf>,
    /// Prepended to `PATH` (`/usr/local/bin:/usr/bin:/bin`).
    pub path: Vec<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The working directory inside the sandbox (default `/tmp`).
    pub cwd: Option<PathBuf>,
}

/// Returns the `bwrap` binary on `PATH` (or `/usr/bin/bwrap`).
pub fn bwrap_available() -> Result<PathBuf> {
    find_program("bwrap").ok_or(RuntimeError::BwrapNotFound)
}

/// `name` in a `PATH` directory, else in `/usr/bin` or `/bin`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .filter(|d| d.is_absolute())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn check_abs(what: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(RuntimeError::Sandbox(format!(
            "{what} {} must be an absolute path without '..'",
            p.display()
        )));
    }
    Ok(())
}

fn check_bind(kind: &str, b: &Bind) -> Result<()> {
    check_abs(&format!("{kind} source"), &b.src)?;
    check_abs(&format!("{kind} destination"), &b.dest)?;
    if b.src == Path::new("/") || b.dest == Path::new("/") {
        return Err(RuntimeError::Sandbox(format!(
            "{kind} {} -> {}: binding / would expose the whole host",
            b.src.display(),
            b.dest.display()
        )));
    }
    if !b.src.exists() {
        return Err(RuntimeError::Sandbox(format!(
            "{kind} source {} does not exist",
            b.src.display()
        )));
    }
    Ok(())
}

fn valid_env_name(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn join_paths(paths: &[PathBuf]) -> Result<OsString> {
    std::env::join_paths(paths)
        .map_err(|e| RuntimeError::Sandbox(format!("cannot join paths {paths:?}: {e}")))
}

impl SandboxOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a read-only bind of `path` at the same path.
    pub fn ro(mut self, path: impl Into<PathBuf>) -> Self {
        self.ro_binds.push(Bind::same(path));
        self
    }

    /// Adds a read-only bind of `src` at `dest`.
    pub fn ro_at(mut self, src: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        self.ro_binds.push(Bind::new(src, dest));
        self
    }

    /// Adds a writable bind of `path` at the same path.
    pub fn rw(mut self, path: impl Into<PathBuf>) -> Self {
        self.rw_binds.push(Bind::same(path));
        self
    }

    /// Adds a writable bind of `src` at `dest`.
    pub fn rw_at(mut self, src: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        self.rw_binds.push(Bind::new(src, dest));
        self
    }

    pub fn network(mut self, allowed: bool) -> Self {
        self.network = allowed;
        self
    }

    pub fn pythonpath(mut self, path: impl Into<PathBuf>) -> Self {
        self.pythonpath.push(path.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The `bwrap` arguments before the command (which follows them directly).
    pub fn bwrap_args(&self) -> Result<Vec<OsString>> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            a.extend(items.iter().map(|s| s.as_ref().to_os_string()));
        };
        // The command is the sandbox's pid 1 (no bwrap init above it): when it exits, the
        // kernel ends every process of the namespace, so nothing the function started or
        // stopped can keep the sandbox alive after the function returned. (With an init, a
        // function that ptrace-stopped it left its node running until the timeout.)
        push(&[&"--unshare-all", &"--as-pid-1"]);
        if self.network {
            push(&[&"--share-net"]);
        }
        push(&[
            &"--die-with-parent",
            &"--new-session",
            &"--cap-drop",
            &"ALL",
            &"--clearenv",
        ]);

        // Environment.
        let mut path = self.path.clone();
        for p in &path {
            check_abs("PATH entry", p)?;
        }
        path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        let path = join_paths(&path)?;
        push(&[&"--setenv", &"PATH", &path]);
        for (k, v) in [
            ("HOME", "/tmp"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("PYTHONUNBUFFERED", "1"),
            ("LANG", "C.UTF-8"),
        ] {
            push(&[&"--setenv", &k, &v]);
        }
        if !self.pythonpath.is_empty() {
            for p in &self.pythonpath {
                check_abs("PYTHONPATH entry", p)?;
            }
            let pp = join_paths(&self.pythonpath)?;
            push(&[&"--setenv", &"PYTHONPATH", &pp]);
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) || v.contains('\0') {
                return Err(RuntimeError::Sandbox(format!(
                    "invalid environment variable {k:?}"
                )));
            }
            push(&[&"--setenv", k, v]);
        }

        // The system, read-only.
        for dir in SYSTEM_DIRS {
            let p = Path::new(dir);
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(p) {
                    push(&[&"--symlink", &target, &p]);
                }
            } else if meta.is_dir() {
                push(&[&"--ro-bind", &p, &p]);
            }
        }
        let net_files: &[&str] = if self.network { &ETC_NET_FILES } else { &[] };
        for f in ETC_FILES.iter().chain(net_files) {
            if Path::new(f).exists() {
                push(&[&"--ro-bind", f, f]);
            }
        }
        push(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--tmpfs", &"/tmp"]);

        for b in &self.ro_binds {
            check_bind("read-only bind", b)?;
            push(&[&"--ro-bind", &b.src, &b.dest]);
        }
        for b in &self.rw_binds {
            check_bind("writable bind", b)?;
            push(&[&"--bind", &b.src, &b.dest]);
        }
        let cwd = self.cwd.clone().unwrap_or_else(|| PathBuf::from("/tmp"));
        check_abs("working directory", &cwd)?;
        push(&[&"--chdir", &cwd]);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    /// Finds `flag a b` in the argument list.
    fn has(a: &[String], flag: &str, x: &str, y: &str) -> bool {
        a.windows(3).any(|w| w[0] == flag && w[1] == x && w[2] == y)
    }

    #[test]
    fn default_args_isolate() {
        let a = strs(&SandboxOptions::new().bwrap_args().unwrap());
        assert!(a.contains(&"--unshare-all".to_string()));
        assert!(a.contains(&"--as-pid-1".to_string()));
        assert!(!a.contains(&"--share-net".to_string()));
        assert!(a.contains(&"--die-with-parent".to_string()));
        assert!(a.contains(&"--new-session".to_string()));
        assert!(a.contains(&"--clearenv".to_string()));
        assert!(has(&a, "--ro-bind", "/usr", "/usr"));
        assert!(has(&a, "--setenv", "HOME", "/tmp"));
        assert!(has(&a, "--setenv", "LANG", "C.UTF-8"));
        assert!(!a.iter().any(|s| s == "/etc/resolv.conf"));
        assert!(!a
            .iter()
            .any(|s| s == "/root" || s == "/work" || s == "/home"));
        assert_eq!(
            a[a.len() - 2..],
            ["--chdir".to_string(), "/tmp".to_string()]
        );
        // /bin is either a bind or the same symlink as on the host.
        if let Ok(t) = std::fs::read_link("/bin") {
            assert!(has(&a, "--symlink", &t.to_string_lossy(), "/bin"));
        }
        // tmpfs /tmp comes before the user binds so binds under /tmp stay visible.
        let tmp = a.iter().position(|s| s == "--tmpfs").unwrap();
        let usr = a.iter().position(|s| s == "/usr").unwrap();
        assert!(usr < tmp);
    }

    #[test]
    fn binds_env_and_network() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().to_string_lossy().into_owned();
        let o = SandboxOptions::new()
            .ro(d.path())
            .rw_at(d.path(), "/job/out")
            .network(true)
            .pythonpath("/py")
            .pythonpath("/project")
            .env("MY_VAR", "x y")
            .cwd("/project");
        let a = strs(&o.bwrap_args().unwrap());
        assert!(a.contains(&"--share-net".to_string()));
        assert!(has(&a, "--ro-bind", &p, &p));
        assert!(has(&a, "--bind", &p, "/job/out"));
        assert!(has(&a, "--setenv", "PYTHONPATH", "/py:/project"));
        assert!(has(&a, "--setenv", "MY_VAR", "x y"));
        if Path::new("/etc/resolv.conf").exists() {
            assert!(has(&a, "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"));
        }
        let tmp = a.iter().position(|s| s == "--tmpfs").unwrap();
        let bind = a.iter().position(|s| s == "--bind").unwrap();
        assert!(tmp < bind);
    }

    #[test]
    fn bad_options_are_rejected() {
        let bad = [
            SandboxOptions::new().ro("relative/path"),
            SandboxOptions::new().ro("/"),
            SandboxOptions::new().rw_at("/tmp", "/"),
            SandboxOptions::new().ro("/definitely/not/here/xyz"),
            SandboxOptions::new().ro("/usr/../root"),
            SandboxOptions::new().env("A=B", "1"),
            SandboxOptions::new().env("1A", "1"),
            SandboxOptions::new().cwd("rel"),
            SandboxOptions::new().pythonpath("rel"),
        ];
        for o in bad {
            let e = o.bwrap_args().unwrap_err();
            assert!(matches!(e, RuntimeError::Sandbox(_)), "{o:?}: {e}");
        }
    }

    #[test]
    fn bwrap_missing_message() {
        assert_eq!(
            RuntimeError::BwrapNotFound.to_string(),
            "bubblewrap (bwrap) not found: run scripts/setup.sh (apt-get install bubblewrap)"
        );
    }
}
