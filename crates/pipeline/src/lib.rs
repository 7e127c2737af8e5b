//! Pipeline projects: from a folder of Python and SQL models to a validated, ordered plan.
//!
//! This crate never imports or runs user code. The steps, one module each:
//!
//! 1. [`project`]: the project file (`lakeplan_project.yml`, or Bauplan's `bauplan_project.yml` /
//!    `.yaml`), typed parameters ([`resolve_parameters`], [`set_parameter`], [`remove_parameter`])
//!    and the list of Python and SQL files (`include_paths`).
//! 2. [`analyze`]: the Python files are parsed by the embedded `_analyze.py` (Python's `ast`, in
//!    a short-lived `python3 -I` process; `$LAKEPLAN_PYTHON` picks the interpreter) into decorated
//!    functions, inputs, schemas and code hashes (docs/pipelines-internals.md, section 1).
//! 3. [`sql`]: each `.sql` file is a model; header comments set options, `$param`s become typed
//!    literals, the relations it reads (CTE names aside) are its inputs.
//! 4. [`dag`]: names are resolved against the other models and the lake ([`CatalogView`]), and
//!    every mistake (cycles, unknown inputs, columns, parameters, bad filters, duplicate models,
//!    materialization options...) is a [`PipelineError`] pointing at `file:line`.
//! 5. [`plan`]: the [`Plan`]: nodes in topological order and in parallel levels, scans with their
//!    pushed-down columns and filters, cache keys, and [`Plan::render_ascii`] for `--dry-run`.
//!
//! [`load_and_plan`] runs all of it; it is what `lakeplan run` calls. [`scaffold`] writes the
//! example project of `lakeplan init`.
//!
//! Decisions where Bauplan is silent or where lakeplan differs:
//! - `Model("t", ref="...")` (0.1.x) is rejected: every input is read at the run's ref.
//! - A bare input name is a model of the project when one has that name, else a table in the run's
//!   namespace ([`namespace`]: `-n`, the project file, the lake's setting, `bauplan` for a Bauplan
//!   project, else `default`); `ns.t` with `ns` the run's namespace is also the model `t`. So a model that reads
//!   the lake table of its own name is a cycle ("Graph contains a cycle", as in Bauplan).
//! - Columns of a model input are checked against the upstream's output schema (or its
//!   `@model(columns=...)`) when it declares one; SQL models declare none, so nothing is checked.
//! - A parameter without `type` takes its default's YAML type (str when there is no default);
//!   a `secret` parameter's default is a ciphertext (and `key`), opened by the lake at run time
//!   for the Python models that declare it; SQL models cannot use it; `vault` is not supported.
//! - `overwrite_filter` without `OVERWRITE_PARTITIONS` is an error, not silently ignored.
//! - Memory units are powers of 1024 (`2GB` = `2GiB`), as in Docker.

pub mod analyze;
pub mod dag;
pub mod error;
pub mod filter;
pub mod namespace;
pub mod plan;
pub mod project;
pub mod scaffold;
pub mod sql;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub use analyze::{analyze_files, ANALYZER_SOURCE};
pub use dag::{CatalogView, TableInfo};
pub use error::{Location, PipelineError, Result, UnknownColumns, UnknownInput};
pub use namespace::{NamespaceFrom, NamespaceRule};
pub use plan::{
    CacheStrategy, Field, InputSource, Materialization, NodeKind, Plan, PlanInput, PlanNode,
    Resources,
};
pub use project::{
    remove_parameter, resolve_parameters, set_parameter, set_secret_parameter, ParamSpec,
    ParamType, ParamValue, Project, SealedSecret, SECRET_MASK,
};
pub use scaffold::scaffold;

/// Loads the project in `dir`, resolves its parameters (defaults overridden by `overrides`,
/// `--param name=value`), analyzes its Python and SQL models and plans them against `catalog`.
/// The run's namespace is chosen by `ns` ([`namespace`]).
pub fn load_and_plan(
    dir: &Path,
    catalog: &dyn CatalogView,
    overrides: &[(String, String)],
    ns: &NamespaceRule<'_>,
) -> Result<(Project, Plan)> {
    load_and_plan_with(dir, catalog, overrides, ns, &analyze::analyzer_python())
}

/// [`load_and_plan`] with the interpreter that runs the analyzer (any Python >= 3.9: it only
/// parses).
pub fn load_and_plan_with(
    dir: &Path,
    catalog: &dyn CatalogView,
    overrides: &[(String, String)],
    ns: &NamespaceRule<'_>,
    python: &str,
) -> Result<(Project, Plan)> {
    let project = Project::load(dir)?;
    let values = resolve_parameters(&project, overrides)?;
    let plan = plan_project_with(&project, catalog, &values, ns, python)?;
    Ok((project, plan))
}

/// Plans an already loaded project with given parameter values.
pub fn plan_project(
    project: &Project,
    catalog: &dyn CatalogView,
    values: &BTreeMap<String, ParamValue>,
    ns: &NamespaceRule<'_>,
) -> Result<Plan> {
    plan_project_with(project, catalog, values, ns, &analyze::analyzer_python())
}

fn plan_project_with(
    project: &Project,
    catalog: &dyn CatalogView,
    values: &BTreeMap<String, ParamValue>,
    ns: &NamespaceRule<'_>,
    python: &str,
) -> Result<Plan> {
    let declared: BTreeSet<String> = project.parameters.keys().cloned().collect();
    let python = analyze::analyze_files_with(python, &project.python_files)?;
    let (namespace, namespace_from) = namespace::choose(ns, project, &python);
    let sql = project
        .sql_files
        .iter()
        .map(|p| sql::load_sql_model(p, &project.display_path(p), &declared, values))
        .collect::<Result<Vec<_>>>()?;
    dag::build_plan(
        &dag::DagInput {
            project_dir: &project.dir,
            python: &python,
            sql: &sql,
            declared: &declared,
            values,
            namespace: &namespace,
            namespace_from,
        },
        catalog,
    )
}
