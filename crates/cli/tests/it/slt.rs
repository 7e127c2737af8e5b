//! SQL behaviour in sqllogictest files (`tests/slt/*.slt`). A statement that starts with
//! `lakeplan ` runs the real binary on the file's lake (`$DATA` is the sample data folder,
//! `$SLT` the folder of the .slt files and their own data); anything else is SQL run at the
//! lake's active branch.

use std::path::{Path, PathBuf};

use arrow::util::display::{ArrayFormatter, FormatOptions};
use lakeplan_lake::{Lake, LakeConfig};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::util::bin;

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

struct LakeDb {
    lake: PathBuf,
    data: String,
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for LakeDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let sql = sql.trim();
        if let Some(cmd) = sql.strip_prefix("lakeplan ") {
            let cmd = cmd
                .replace("$DATA", &self.data)
                .replace("$SLT", &slt_dir().display().to_string());
            let args = shell_words::split(&cmd).map_err(|e| SltError(e.to_string()))?;
            let out = std::process::Command::new(bin())
                .env("LAKEPLAN_LAKE", &self.lake)
                .env("LAKEPLAN_USER", "slt")
                .args(&args)
                .output()
                .map_err(|e| SltError(e.to_string()))?;
            if !out.status.success() {
                return Err(SltError(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        let lake =
            Lake::open(&self.lake, LakeConfig::default()).map_err(|e| SltError(e.to_string()))?;
        let res = lake
            .query(sql, None, None, None)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for b in &res.batches {
            let fmts = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for r in 0..b.num_rows() {
                rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; res.schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt")
}

fn slt_files() -> Vec<PathBuf> {
    let dir = slt_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[test]
fn sqllogictest_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for file in files {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lake = tmp.path().join("lake");
        let data = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data")
            .canonicalize()
            .expect("data")
            .display()
            .to_string();
        let mut runner = sqllogictest::Runner::new(move || {
            let lake = lake.clone();
            let data = data.clone();
            async move { Ok(LakeDb { lake, data }) }
        });
        rt.block_on(runner.run_file_async(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}
