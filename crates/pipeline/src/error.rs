//! The one error type of the crate. Every error about user input names the file (relative to the
//! project, `./models.py`) and, when known, the line: `./models.py:12: ...`; [`PipelineError::shown_as`]
//! names them as the user named the project folder (`my_project/models.py:12`).

use std::fmt;
use std::path::{Path, PathBuf};

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
    #[error("{0}")]
    UnknownInput(Box<UnknownInput>),
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

/// An input that is neither a model of the project nor a table at the run's ref.
#[derive(Debug, thiserror::Error)]
#[error("{at}: input '{input}' of '{node}' is neither a model of this project nor a table at {ref_label}{}", .hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct UnknownInput {
    pub at: Location,
    pub node: String,
    pub input: String,
    pub ref_label: String,
    /// Where bare names were looked up, and a table of that name in another namespace.
    pub hint: Option<String>,
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

impl PipelineError {
    /// The places in the project the error is about (two for a duplicate definition: the
    /// first, then the second).
    fn locations_mut(&mut self) -> Vec<&mut Location> {
        match self {
            PipelineError::ProjectFile { at, .. }
            | PipelineError::Syntax { at, .. }
            | PipelineError::Problem { at, .. }
            | PipelineError::Sql { at, .. }
            | PipelineError::Cycle { at, .. }
            | PipelineError::BadFilter { at, .. }
            | PipelineError::UnknownNodeParameter { at, .. }
            | PipelineError::ParameterWithoutValue { at, .. }
            | PipelineError::Invalid { at, .. } => vec![at],
            PipelineError::UnknownInput(u) => vec![&mut u.at],
            PipelineError::UnknownColumn(u) => vec![&mut u.at],
            PipelineError::DuplicateModel { first, second, .. } => vec![first, second],
            PipelineError::Io { .. }
            | PipelineError::NoProjectFile { .. }
            | PipelineError::ProjectFileAmbiguous { .. }
            | PipelineError::UnknownParameter { .. }
            | PipelineError::ParameterType { .. }
            | PipelineError::ParameterRequired { .. }
            | PipelineError::SecretOverride { .. }
            | PipelineError::SecretUnset { .. }
            | PipelineError::Analyzer(_) => vec![],
        }
    }

    /// As the service layer's error: [`lakeplan_core::Error::Plan`], with the place as data (the
    /// last place it names: a duplicate definition's second).
    pub fn into_plan_error(mut self) -> lakeplan_core::Error {
        let (file, line) = match self.locations_mut().pop() {
            Some(at) => (Some(at.file.clone()), at.line),
            None => (None, None),
        };
        lakeplan_core::Error::Plan {
            file,
            line,
            message: self.to_string(),
        }
    }

    /// The error with its paths named as the user named the project folder: `my_project/models.py:31`
    /// for `-p my_project`, `./models.py:31` for `-p .`, where planning names them relative to
    /// the project (`./models.py`) or by the folder it read (`dir`, absolute, or a server's
    /// temporary folder for an uploaded project).
    pub fn shown_as(mut self, dir: &Path, shown: &str) -> Self {
        let shown = match shown.trim_end_matches('/') {
            "" if shown.starts_with('/') => "/",
            "" => ".",
            s => s,
        };
        let relabel = |l: &mut Location| {
            if let Some(rest) = l.file.strip_prefix("./") {
                l.file = Path::new(shown).join(rest).display().to_string();
            }
        };
        let repath = |p: &mut PathBuf| {
            if let Ok(rest) = p.strip_prefix(dir) {
                *p = if rest.as_os_str().is_empty() {
                    PathBuf::from(shown)
                } else {
                    Path::new(shown).join(rest)
                };
            }
        };
        match &mut self {
            PipelineError::Io { path, .. } => repath(path),
            PipelineError::NoProjectFile { dir }
            | PipelineError::ProjectFileAmbiguous { dir, .. } => repath(dir),
            e => e.locations_mut().into_iter().for_each(relabel),
        }
        self
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

    #[test]
    fn paths_are_shown_as_the_user_named_the_project() {
        let dup = || PipelineError::DuplicateModel {
            name: "m".into(),
            first: Location::at("./models.py", 34),
            second: Location::file("./sub/m.sql"),
        };
        let dir = Path::new("/tmp/upload-1/project");
        for (shown, want) in [
            (
                "my_project",
                "my_project/models.py:34 and my_project/sub/m.sql",
            ),
            (
                "my_project/",
                "my_project/models.py:34 and my_project/sub/m.sql",
            ),
            (".", "./models.py:34 and ./sub/m.sql"),
            ("", "./models.py:34 and ./sub/m.sql"),
            (
                "/home/a/p",
                "/home/a/p/models.py:34 and /home/a/p/sub/m.sql",
            ),
            ("../p", "../p/models.py:34 and ../p/sub/m.sql"),
        ] {
            let e = dup().shown_as(dir, shown).to_string();
            assert!(e.ends_with(want), "{shown:?}: {e}");
        }
        let e = PipelineError::NoProjectFile {
            dir: dir.to_path_buf(),
        }
        .shown_as(dir, "my_project");
        assert!(
            e.to_string().starts_with("no project file in my_project:"),
            "{e}"
        );
        // A location outside the project (an absolute path) is left as it is.
        let e = PipelineError::invalid(Location::at("/etc/x.py", 1), "m").shown_as(dir, "p");
        assert_eq!(e.to_string(), "/etc/x.py:1: m");
    }
}
