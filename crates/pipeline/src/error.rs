//! The one error type of the crate. Every error about user input names the file (relative to the
//! project, `./models.py`) and, when known, the line: `./models.py:12: ...`.

use std::fmt;
use std::path::PathBuf;

/// Where something is in the project: `./models.py:12` or `./trips.sql`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Path relative to the project directory, starting with `./`.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl Location {
    pub fn new(file: impl Into<String>, line: Option<usize>) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }

    pub fn at(file: impl Into<String>, line: usize) -> Self {
        Location::new(file, Some(line))
    }

    pub fn file(file: impl Into<String>) -> Self {
        Location::new(file, None)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => write!(f, "{}", self.file),
        }
    }
}

/// Errors of project loading, analysis and planning.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no project file in {}: expected lakeplan_project.yml or bauplan_project.yml (run `lakeplan init`)", .dir.display())]
    NoProjectFile { dir: PathBuf },
    #[error("two project files in {}: {first} and {second}; keep one", .dir.display())]
    ProjectFileAmbiguous {
        dir: PathBuf,
        first: String,
        second: String,
    },
    /// A malformed or invalid project file (YAML syntax, wrong types, bad include_paths, bad defaults).
    #[error("{at}: {message}")]
    ProjectFile { at: Location, message: String },
    #[error("unknown parameter '{name}'; the project declares: {}", list_or_none(.known))]
    UnknownParameter { name: String, known: Vec<String> },
    #[error("parameter '{name}' is a {expected}, but the value '{value}' is not")]
    ParameterType {
        name: String,
        expected: String,
        value: String,
    },
    #[error("parameter '{name}' is required: pass --param {name}=...")]
    ParameterRequired { name: String },
    /// `--param` given for a secret: its value comes from the project file, sealed.
    #[error("parameter '{name}' is a secret: its value comes from the project file, sealed by the lake; change it with `lakeplan parameter set {name} VALUE --type secret`, not --param")]
    SecretOverride { name: String },
    #[error("parameter '{name}' is a required secret without a value: set it with `lakeplan parameter set {name} VALUE --type secret`")]
    SecretUnset { name: String },
    /// The analyzer could not be run or returned something unreadable.
    #[error("the Python analyzer failed: {0}")]
    Analyzer(String),
    #[error("{at}: syntax error: {message}")]
    Syntax { at: Location, message: String },
    /// A problem the analyzer found (missing decorator, non-literal argument, unknown schema...).
    #[error("{at}: {message}")]
    Problem { at: Location, message: String },
    #[error("{at}: SQL model: {message}")]
    Sql { at: Location, message: String },
    #[error("{at}: Graph contains a cycle: {}{}", .cycle.join(" -> "), .hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Cycle {
        at: Location,
        cycle: Vec<String>,
        hint: Option<String>,
    },
    #[error("{at}: input '{input}' of '{node}' is neither a model of this project nor a table at {ref_label}{}", .hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownInput {
        at: Location,
        node: String,
        input: String,
        ref_label: String,
        /// Where bare names were looked up, and a table of that name in another namespace.
        hint: Option<String>,
    },
    #[error("Duplicate definition of '{name}' in {first} and {second}")]
    DuplicateModel {
        name: String,
        first: Location,
        second: Location,
    },
    #[error("{0}")]
    UnknownColumn(Box<UnknownColumns>),
    #[error("{at}: bad filter {filter:?} of '{node}': {message}")]
    BadFilter {
        at: Location,
        node: String,
        filter: String,
        message: String,
    },
    #[error("{at}: '{node}' uses unknown parameter '{name}'; the project declares: {}", list_or_none(.known))]
    UnknownNodeParameter {
        at: Location,
        node: String,
        name: String,
        known: Vec<String>,
    },
    #[error("{at}: '{node}' uses parameter '{name}', which has no value: give it a default or pass --param {name}=...")]
    ParameterWithoutValue {
        at: Location,
        node: String,
        name: String,
    },
    /// Any other invalid model declaration (materialization options, names, resources, refs...).
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

/// Columns asked for in an input that its source does not have.
#[derive(Debug, thiserror::Error)]
#[error("{at}: unknown column(s) {} in input '{input}' of '{node}'; {source_name} has: {}", quoted(.columns), list_or_none(.available))]
pub struct UnknownColumns {
    pub at: Location,
    pub node: String,
    pub input: String,
    pub columns: Vec<String>,
    /// `table default.trips` or `model 'up'`.
    pub source_name: String,
    pub available: Vec<String>,
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PipelineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(at: Location, message: impl Into<String>) -> Self {
        PipelineError::Invalid {
            at,
            message: message.into(),
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_displays_file_and_line() {
        assert_eq!(Location::at("./models.py", 3).to_string(), "./models.py:3");
        assert_eq!(Location::file("./m.sql").to_string(), "./m.sql");
        let e = PipelineError::DuplicateModel {
            name: "m".into(),
            first: Location::at("./models.py", 34),
            second: Location::file("./m.sql"),
        };
        assert_eq!(
            e.to_string(),
            "Duplicate definition of 'm' in ./models.py:34 and ./m.sql"
        );
    }
}
