//! The namespace of a run: where its bare table names resolve and its models are written.
//!
//! The first of these that says something wins:
//! 1. the run's own `-n/--namespace` (`namespace` over HTTP and in the SDK);
//! 2. the project file's `project.namespace`;
//! 3. the lake's `default_namespace` setting (`lakeplan lake config default_namespace NS`);
//! 4. Bauplan's default namespace, `bauplan`, for a Bauplan project: one whose project file is
//!    `bauplan_project.yml`/`.yaml`, or one of whose Python files imports `bauplan`;
//! 5. `default`.
//!
//! What the project states (2) is about that code; what the lake states (3) is an explicit
//! choice of its owner and so beats the convention Bauplan code was written under (4).

use serde::{Deserialize, Serialize};

use lakeplan_core::{BAUPLAN_NAMESPACE, DEFAULT_NAMESPACE};

use crate::analyze::AnalyzedFile;
use crate::project::Project;

/// Where a run's namespace came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceFrom {
    /// The run named it (`-n`).
    Run,
    /// The project file's `project.namespace`.
    ProjectFile,
    /// The lake's `default_namespace` setting.
    Lake,
    /// Bauplan's default for a Bauplan project.
    BauplanProject,
    /// Nothing named one.
    #[default]
    Default,
}

impl NamespaceFrom {
    /// For the run's log and messages: "set by the project file", ...
    pub fn describe(self) -> &'static str {
        match self {
            NamespaceFrom::Run => "given to the run",
            NamespaceFrom::ProjectFile => "the project file's project.namespace",
            NamespaceFrom::Lake => "the lake's default_namespace setting",
            NamespaceFrom::BauplanProject => "Bauplan's default namespace, for a Bauplan project",
            NamespaceFrom::Default => "the default",
        }
    }
}

/// What the caller knows of the namespace before the project is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct NamespaceRule<'a> {
    /// The run's `-n/--namespace`.
    pub explicit: Option<&'a str>,
    /// The lake's `default_namespace` setting, if it has one.
    pub lake: Option<&'a str>,
}

/// Whether the project was written for Bauplan: its project file is Bauplan's, or a Python file
/// imports `bauplan`.
pub fn is_bauplan_project(project: &Project, python: &[AnalyzedFile]) -> bool {
    project.file_name.starts_with("bauplan_project.")
        || python
            .iter()
            .any(|f| f.libraries.iter().any(|l| l == "bauplan"))
}

/// The run's namespace and where it came from (see the module docs for the order).
pub fn choose(
    rule: &NamespaceRule<'_>,
    project: &Project,
    python: &[AnalyzedFile],
) -> (String, NamespaceFrom) {
    if let Some(ns) = rule.explicit {
        return (ns.to_string(), NamespaceFrom::Run);
    }
    if let Some(ns) = &project.namespace {
        return (ns.clone(), NamespaceFrom::ProjectFile);
    }
    if let Some(ns) = rule.lake {
        return (ns.to_string(), NamespaceFrom::Lake);
    }
    if is_bauplan_project(project, python) {
        return (BAUPLAN_NAMESPACE.to_string(), NamespaceFrom::BauplanProject);
    }
    (DEFAULT_NAMESPACE.to_string(), NamespaceFrom::Default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn project(file: &str, namespace: Option<&str>) -> Project {
        Project {
            dir: PathBuf::from("/p"),
            file_name: file.to_string(),
            id: None,
            name: None,
            description: None,
            namespace: namespace.map(str::to_string),
            parameters: BTreeMap::new(),
            include_paths: vec![],
            python_files: vec![],
            sql_files: vec![],
        }
    }

    fn file(libraries: &[&str]) -> AnalyzedFile {
        AnalyzedFile {
            path: PathBuf::from("/p/models.py"),
            error: None,
            functions: vec![],
            schemas: BTreeMap::new(),
            problems: vec![],
            libraries: libraries.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_that_says_something_wins() {
        let bp = project("bauplan_project.yml", None);
        let none = NamespaceRule::default();
        let lake = NamespaceRule {
            explicit: None,
            lake: Some("silver"),
        };
        let run = NamespaceRule {
            explicit: Some("gold"),
            lake: Some("silver"),
        };
        assert_eq!(
            choose(&none, &bp, &[]),
            ("bauplan".into(), NamespaceFrom::BauplanProject)
        );
        assert_eq!(
            choose(&lake, &bp, &[]),
            ("silver".into(), NamespaceFrom::Lake)
        );
        assert_eq!(choose(&run, &bp, &[]), ("gold".into(), NamespaceFrom::Run));
        let named = project("bauplan_project.yml", Some("raw"));
        assert_eq!(
            choose(&lake, &named, &[]),
            ("raw".into(), NamespaceFrom::ProjectFile)
        );
        assert_eq!(
            choose(&run, &named, &[]),
            ("gold".into(), NamespaceFrom::Run)
        );
    }

    #[test]
    fn a_lakeplan_project_is_bauplan_when_its_code_imports_bauplan() {
        let lp = project("lakeplan_project.yml", None);
        let none = NamespaceRule::default();
        assert_eq!(
            choose(&none, &lp, &[file(&["lakeplan"])]),
            ("default".into(), NamespaceFrom::Default)
        );
        assert_eq!(
            choose(&none, &lp, &[file(&["lakeplan"]), file(&["bauplan"])]),
            ("bauplan".into(), NamespaceFrom::BauplanProject)
        );
    }
}
