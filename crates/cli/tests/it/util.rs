use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary lake driven through the real binary.
pub struct Lake {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lakeplan")
}

/// The repo's sample data folder.
pub fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
        .canonicalize()
        .expect("sample data exists")
        .display()
        .to_string()
}

impl Lake {
    pub fn new() -> Self {
        Lake {
            dir: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
        }
    }

    /// Whether commands go to a server (a profile is set: see `server::remote_lake`).
    pub fn is_remote(&self) -> bool {
        self.env.iter().any(|(k, _)| k == "LAKEPLAN_PROFILE")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// A file path inside the test's temporary folder (outside the lake).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let p = self.file(name);
        std::fs::write(&p, content).expect("write test file");
        p.display().to_string()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.env("LAKEPLAN_LAKE", self.path())
            .env("LAKEPLAN_USER", "tester")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run lakeplan")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "lakeplan {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and expects failure with a one-line error; returns stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "lakeplan {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(stderr.starts_with("error: "), "stderr: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one-line error expected: {stderr}"
        );
        stderr
    }

    /// Runs with `-O json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-O", "json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// One query's rows as JSON objects.
    pub fn rows(&self, sql: &str, extra: &[&str]) -> Vec<Value> {
        let mut a = vec!["query", sql, "--all-rows"];
        a.extend_from_slice(extra);
        match self.json(&a) {
            Value::Array(v) => v,
            other => panic!("expected rows, got {other}"),
        }
    }

    /// A single integer from a query.
    pub fn count(&self, sql: &str, extra: &[&str]) -> i64 {
        let rows = self.rows(sql, extra);
        let row = rows.first().and_then(Value::as_object).expect("one row");
        row.values()
            .next()
            .and_then(Value::as_i64)
            .expect("an integer")
    }

    pub fn head(&self, branch: &str) -> String {
        let v = self.json(&["branch", "get", branch]);
        v["branch"]["hash"].as_str().expect("hash").to_string()
    }

    /// `table create` + `table import` of one file.
    pub fn load(&self, table: &str, file: &str, extra: &[&str]) {
        let mut a = vec!["table", "create", table, "--search-uri", file];
        a.extend_from_slice(extra);
        self.ok(&a);
        let mut a = vec!["table", "import", table, "--search-uri", file];
        a.extend_from_slice(extra);
        self.ok(&a);
    }

    pub fn log_len(&self, r: &str) -> usize {
        self.json(&["commit", r, "-n", "100000"])
            .as_array()
            .expect("commits")
            .len()
    }
}
