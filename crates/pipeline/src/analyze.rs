//! Runs the static Python analyzer (`python/lakeplan/_analyze.py`, embedded in the binary) on the
//! project's Python files and reads its JSON answer (docs/pipelines-internals.md, section 1).
//! User code is parsed with Python's `ast` module; it is never imported or executed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// The analyzer's source, embedded so the binary is self-contained.
pub const ANALYZER_SOURCE: &str = include_str!("../../../python/lakeplan/_analyze.py");

/// Environment variable naming the Python interpreter used for the analyzer (default `python3`).
pub const PYTHON_ENV: &str = "LAKEPLAN_PYTHON";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AnalyzerOutput {
    pub files: Vec<AnalyzedFile>,
}

/// One Python file as the analyzer saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AnalyzedFile {
    pub path: PathBuf,
    /// A syntax error (or an unreadable file): nothing else is filled.
    pub error: Option<SyntaxErrorInfo>,
    #[serde(default)]
    pub functions: Vec<AnalyzedFunction>,
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaDef>,
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// The authoring libraries the file imports at top level: `bauplan`, `lakeplan`.
    #[serde(default)]
    pub libraries: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SyntaxErrorInfo {
    pub line: usize,
    #[serde(default)]
    pub col: usize,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    Model,
    Expectation,
}

/// A decorated function.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AnalyzedFunction {
    pub name: String,
    /// Line of the `def`.
    pub line: usize,
    pub kind: FunctionKind,
    /// The literal arguments of `@model` (None for expectations).
    pub model: Option<ModelArgs>,
    pub python: Option<PythonArgs>,
    pub resources: Option<ResourcesArgs>,
    #[serde(default)]
    pub inputs: Vec<AnalyzedInput>,
    /// Name of the `TableSchema` class of the return annotation.
    pub output_schema: Option<String>,
    pub code_hash: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelArgs {
    pub name: Option<String>,
    pub columns: Option<Vec<String>>,
    pub partitioned_by: Option<Vec<String>>,
    pub materialization_strategy: Option<String>,
    pub cache_strategy: Option<String>,
    pub overwrite_filter: Option<String>,
    pub internet_access: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PythonArgs {
    pub version: Option<String>,
    pub pip: Option<BTreeMap<String, String>>,
}

/// `@resources` literals as written (`memory` may be an int or a string like "2GB").
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourcesArgs {
    pub cpus: Option<serde_json::Value>,
    pub memory: Option<serde_json::Value>,
    pub timeout: Option<serde_json::Value>,
}

/// A function parameter: `Model(...)` or `Parameter(...)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AnalyzedInput {
    Model {
        param: String,
        line: usize,
        name: String,
        columns: Option<Vec<String>>,
        projection_schema: Option<String>,
        filter: Option<String>,
        #[serde(rename = "ref")]
        ref_: Option<String>,
    },
    Parameter {
        param: String,
        line: usize,
        name: String,
    },
}

impl AnalyzedInput {
    pub fn param(&self) -> &str {
        match self {
            AnalyzedInput::Model { param, .. } | AnalyzedInput::Parameter { param, .. } => param,
        }
    }

    pub fn line(&self) -> usize {
        match self {
            AnalyzedInput::Model { line, .. } | AnalyzedInput::Parameter { line, .. } => *line,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SchemaDef {
    pub line: usize,
    pub fields: Vec<SchemaField>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
    pub doc: Option<String>,
}

/// The interpreter the analyzer runs with: `$LAKEPLAN_PYTHON` or `python3`.
pub fn analyzer_python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Analyzes `files` (absolute paths) with the embedded analyzer.
pub fn analyze_files(files: &[PathBuf]) -> Result<Vec<AnalyzedFile>> {
    analyze_files_with(&analyzer_python(), files)
}

/// Same as [`analyze_files`] with an explicit interpreter.
pub fn analyze_files_with(python: &str, files: &[PathBuf]) -> Result<Vec<AnalyzedFile>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let request = serde_json::json!({ "files": files });
    // -I: isolated mode (no user site, no PYTHON* variables, no cwd on sys.path) so nothing in
    // the project folder can shadow the standard library modules the analyzer imports.
    let mut child = Command::new(python)
        .arg("-I")
        .arg("-c")
        .arg(ANALYZER_SOURCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(common_dir(files))
        .spawn()
        .map_err(|e| PipelineError::Analyzer(format!("cannot start '{python}': {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .map_err(|e| PipelineError::Analyzer(format!("writing to '{python}': {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PipelineError::Analyzer(format!("waiting for '{python}': {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(PipelineError::Analyzer(format!(
            "'{python}' exited with {}: {}",
            out.status,
            stderr.trim()
        )));
    }
    let parsed: AnalyzerOutput = serde_json::from_slice(&out.stdout)
        .map_err(|e| PipelineError::Analyzer(format!("unreadable answer: {e}")))?;
    if parsed.files.len() != files.len() {
        return Err(PipelineError::Analyzer(format!(
            "asked about {} file(s), got {}",
            files.len(),
            parsed.files.len()
        )));
    }
    Ok(parsed.files)
}

fn common_dir(files: &[PathBuf]) -> &Path {
    files
        .first()
        .and_then(|f| f.parent())
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze_source(src: &str) -> AnalyzedFile {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("models.py");
        std::fs::write(&p, src).unwrap();
        analyze_files(&[p]).unwrap().remove(0)
    }

    #[test]
    fn old_style_defaults_and_alias() {
        let f = analyze_source(
            "import bauplan as bp\n\n@bp.model(materialization_strategy='REPLACE')\n@bp.python('3.11', pip={'polars': '1.37'})\ndef clean(trips=bp.Model('taxi.trips', columns=['a', 'b'], filter='a > 3'), rate=bp.Parameter('rate')):\n    return trips\n",
        );
        assert!(f.error.is_none() && f.problems.is_empty(), "{f:?}");
        let func = &f.functions[0];
        assert_eq!(func.kind, FunctionKind::Model);
        assert_eq!(func.line, 5);
        let model = func.model.as_ref().unwrap();
        assert_eq!(model.materialization_strategy.as_deref(), Some("REPLACE"));
        let py = func.python.as_ref().unwrap();
        assert_eq!(py.version.as_deref(), Some("3.11"));
        assert_eq!(py.pip.as_ref().unwrap()["polars"], "1.37");
        match &func.inputs[0] {
            AnalyzedInput::Model {
                name,
                columns,
                filter,
                ..
            } => {
                assert_eq!(name, "taxi.trips");
                assert_eq!(
                    columns.as_deref(),
                    Some(&["a".to_string(), "b".to_string()][..])
                );
                assert_eq!(filter.as_deref(), Some("a > 3"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&func.inputs[1], AnalyzedInput::Parameter { name, .. } if name == "rate"));
        assert_eq!(func.code_hash.len(), 64);
    }

    #[test]
    fn new_style_annotated_schema_and_bare_decorator() {
        let f = analyze_source(
            "from typing import Annotated, Optional\nimport pyarrow\nfrom bauplan import model, Model, Parameter, TableSchema as TS, TableField, Int64, Float64\n\nclass Cols(TS):\n    a: Annotated[Int64 | None, TableField(doc='x')]\n    b: Optional[Float64]\n    c: Int64 = TableField(name='C')\n\n@model\ndef m(t: Annotated[pyarrow.Table, Model('trips', projection_schema=Cols, filter='a > 1')], r: Annotated[float, Parameter('rate')]) -> Annotated[pyarrow.Table, Cols]:\n    return t\n",
        );
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let s = &f.schemas["Cols"];
        assert_eq!(s.line, 5);
        let names: Vec<_> = s.fields.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "C"]);
        assert!(s.fields[0].nullable && s.fields[1].nullable && !s.fields[2].nullable);
        assert_eq!(s.fields[1].ty, "Float64");
        let func = &f.functions[0];
        assert_eq!(func.output_schema.as_deref(), Some("Cols"));
        match &func.inputs[0] {
            AnalyzedInput::Model {
                columns,
                projection_schema,
                ..
            } => {
                assert_eq!(projection_schema.as_deref(), Some("Cols"));
                assert_eq!(columns.as_ref().unwrap().len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn problems_and_syntax_errors_have_lines() {
        let f = analyze_source(
            "import lakeplan\n\n@lakeplan.python('3.11')\ndef f():\n    pass\n\n@lakeplan.model(name=NAME)\ndef g(x):\n    pass\n",
        );
        let lines: Vec<_> = f.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 7, 8], "{:?}", f.problems);
        assert!(f.problems[0]
            .message
            .contains("neither @model nor @expectation"));
        let f = analyze_source("def f(:\n  pass\n");
        assert_eq!(f.error.as_ref().unwrap().line, 1);
    }

    #[test]
    fn code_hash_ignores_comments_and_follows_helpers() {
        let base = "import bauplan\nK = 1\ndef helper(x):\n    return x + K\n\n@bauplan.model()\ndef m(t=bauplan.Model('t')):\n    return helper(t)\n";
        let h = |src: &str| analyze_source(src).functions[0].code_hash.clone();
        let h0 = h(base);
        assert_eq!(
            h0,
            h(&base.replace("def helper", "# a comment\n\ndef helper"))
        );
        assert_ne!(h0, h(&base.replace("K = 1", "K = 2")));
        assert_eq!(h0, h(&format!("{base}\ndef unrelated():\n    return 3\n")));
    }

    #[test]
    fn bad_interpreter_is_a_clear_error() {
        let e = analyze_files_with("/nonexistent/python", &[PathBuf::from("/x.py")]).unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
    }
}
