//! Builds and validates the DAG: analyzed Python functions and SQL models become nodes, their
//! inputs are resolved against the other models and the lake (through [`CatalogView`]), and every
//! mistake is rejected with the file and line it comes from.
//!
//! Name resolution: an input `ns.table` or bare `table`. A bare name is a model of that name if
//! the project has one, else a table of the run's namespace. `ns.table` where `ns` is the run's
//! namespace and `table` a model is that model (materialized models are tables of the run's
//! namespace, so a model cannot read the lake table of its own name: that is a cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::analyze::{AnalyzedFile, AnalyzedFunction, AnalyzedInput, FunctionKind};
use crate::error::{Location, PipelineError, Result, UnknownColumns, UnknownInput};
use crate::filter::{check_overwrite_filter, parse_filter, unknown_columns};
use crate::namespace::NamespaceFrom;
use crate::plan::{
    CacheStrategy, Field, InputSource, Materialization, NodeKind, Plan, PlanInput, PlanNode,
    Resources,
};
use crate::project::{display_path, ParamValue};
use crate::sql::SqlModel;

/// A table as the catalog sees it at the run's ref.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableInfo {
    /// Column names and Arrow type displays (`Int64`, `Utf8`, `Timestamp(Microsecond, None)`...).
    pub columns: Vec<(String, String)>,
    /// Current snapshot, None for a table without data.
    pub snapshot_id: Option<i64>,
}

/// What the planner needs to know about the lake at the run's ref.
pub trait CatalogView {
    /// The table `namespace.name` at the ref, if it exists.
    fn table(&self, namespace: &str, name: &str) -> Option<TableInfo>;
    /// The names of the namespaces at the ref.
    fn namespaces(&self) -> Vec<String>;
    /// The names of the tables of `namespace` at the ref.
    fn table_names(&self, namespace: &str) -> Vec<String>;
    /// The ref, for messages: `branch 'main'`, `commit 1a2b3c`.
    fn ref_label(&self) -> String;
}

/// Everything the DAG builder reads.
pub struct DagInput<'a> {
    pub project_dir: &'a Path,
    pub python: &'a [AnalyzedFile],
    pub sql: &'a [SqlModel],
    /// Declared parameter names.
    pub declared: &'a BTreeSet<String>,
    /// Parameter values for this run.
    pub values: &'a BTreeMap<String, ParamValue>,
    /// The run's namespace: bare names resolve here and materialized models are written here.
    pub namespace: &'a str,
    pub namespace_from: NamespaceFrom,
}

enum Body<'a> {
    Python {
        file: &'a AnalyzedFile,
        func: &'a AnalyzedFunction,
    },
    Sql(&'a SqlModel),
}

struct Def<'a> {
    name: String,
    kind: NodeKind,
    path: PathBuf,
    display: String,
    line: Option<usize>,
    body: Body<'a>,
}

impl Def<'_> {
    fn at(&self, line: Option<usize>) -> Location {
        Location::new(self.display.clone(), line.or(self.line))
    }

    /// Columns the node's output is declared to have (output schema or `@model(columns=...)`).
    fn output_columns(&self) -> Option<Vec<String>> {
        match &self.body {
            Body::Python { file, func } => {
                if let Some(schema) = func
                    .output_schema
                    .as_ref()
                    .and_then(|s| file.schemas.get(s))
                {
                    return Some(schema.fields.iter().map(|f| f.name.clone()).collect());
                }
                func.model.as_ref().and_then(|m| m.columns.clone())
            }
            Body::Sql(_) => None,
        }
    }
}

enum Resolved {
    Model(usize),
    Table {
        namespace: String,
        table: String,
        info: TableInfo,
    },
}

/// Builds the validated plan.
pub fn build_plan(input: &DagInput<'_>, catalog: &dyn CatalogView) -> Result<Plan> {
    let defs = collect_defs(input)?;
    let by_name: BTreeMap<&str, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let ns = input.namespace.to_string();

    let mut nodes = Vec::with_capacity(defs.len());
    let mut edges: Vec<Vec<(usize, Option<usize>)>> = Vec::with_capacity(defs.len());
    for def in &defs {
        let (node, deps) = build_node(def, &defs, &by_name, input, catalog, &ns)
            .map_err(|e| with_namespace_hint(e, input, catalog))?;
        nodes.push(node);
        edges.push(deps);
    }
    check_cycles(&defs, &edges, catalog, &ns)?;
    let mut plan = Plan::new(nodes, ns, catalog.ref_label());
    plan.namespace_from = input.namespace_from;
    Ok(plan)
}

fn collect_defs<'a>(input: &DagInput<'a>) -> Result<Vec<Def<'a>>> {
    let mut defs: Vec<Def<'a>> = Vec::new();
    for file in input.python {
        let display = display_path(input.project_dir, &file.path);
        if let Some(e) = &file.error {
            return Err(PipelineError::Syntax {
                at: Location::at(display, e.line),
                message: e.message.clone(),
            });
        }
        if let Some(p) = file.problems.first() {
            return Err(PipelineError::Problem {
                at: Location::at(display, p.line),
                message: p.message.clone(),
            });
        }
        for func in &file.functions {
            let (name, kind) = match func.kind {
                FunctionKind::Model => (
                    func.model
                        .as_ref()
                        .and_then(|m| m.name.clone())
                        .unwrap_or_else(|| func.name.clone()),
                    NodeKind::PythonModel,
                ),
                FunctionKind::Expectation => (func.name.clone(), NodeKind::Expectation),
            };
            defs.push(Def {
                name,
                kind,
                path: file.path.clone(),
                display: display.clone(),
                line: Some(func.line),
                body: Body::Python { file, func },
            });
        }
    }
    for m in input.sql {
        defs.push(Def {
            name: m.name.clone(),
            kind: NodeKind::SqlModel,
            path: m.path.clone(),
            display: m.display.clone(),
            line: m.header.name.as_ref().map(|(_, l)| *l),
            body: Body::Sql(m),
        });
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in defs.iter().enumerate() {
        if let Err(e) = lakeplan_core::validate_identifier(&d.name) {
            return Err(PipelineError::invalid(
                d.at(None),
                format!("'{}' cannot name a model: {e}", d.name),
            ));
        }
        if let Some(&j) = seen.get(d.name.as_str()) {
            return Err(PipelineError::DuplicateModel {
                name: d.name.clone(),
                first: defs[j].at(None),
                second: d.at(None),
            });
        }
        seen.insert(&d.name, i);
    }
    Ok(defs)
}

fn resolve(
    name: &str,
    by_name: &BTreeMap<&str, usize>,
    catalog: &dyn CatalogView,
    ns: &str,
) -> std::result::Result<Option<Resolved>, String> {
    let parts: Vec<&str> = name.split('.').collect();
    let (namespace, table) = match parts.as_slice() {
        [t] => {
            if let Some(&i) = by_name.get(t) {
                return Ok(Some(Resolved::Model(i)));
            }
            (ns, *t)
        }
        [n, t] => {
            if *n == ns {
                if let Some(&i) = by_name.get(t) {
                    return Ok(Some(Resolved::Model(i)));
                }
            }
            (*n, *t)
        }
        _ => {
            return Err(format!(
                "input '{name}' must be `table`, `namespace.table` or a model name"
            ))
        }
    };
    if namespace.is_empty() || table.is_empty() {
        return Err(format!("input '{name}' is not a valid table name"));
    }
    Ok(catalog.table(namespace, table).map(|info| Resolved::Table {
        namespace: namespace.to_string(),
        table: table.to_string(),
        info,
    }))
}

/// The name a SQL model's relation resolves to, as [`resolve`] takes it: each unquoted part
/// finds the model, namespace or table it matches ignoring case when exactly one does (models
/// before tables, as in [`resolve`]), as the query will when it runs; a quoted part is exact;
/// an unquoted part that matches several is an error naming them. A part that matches nothing
/// is folded to lower case, as DataFusion reads it.
fn resolve_sql_relation(
    rel: &crate::sql::SqlRelation,
    by_name: &BTreeMap<&str, usize>,
    catalog: &dyn CatalogView,
    ns: &str,
) -> std::result::Result<String, String> {
    fn pick(
        written: &str,
        quoted: bool,
        what: &str,
        candidates: &[String],
    ) -> std::result::Result<Option<String>, String> {
        if quoted {
            return Ok(candidates.iter().find(|c| *c == written).cloned());
        }
        let k = written.to_lowercase();
        let mut matches: Vec<&String> = candidates
            .iter()
            .filter(|c| c.to_lowercase() == k)
            .collect();
        matches.sort();
        matches.dedup();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(format!(
                "{what} name {written} is ambiguous: unquoted names match ignoring case, and it matches {}; quote the one you mean",
                many.iter()
                    .map(|m| format!("\"{m}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    let fold = |written: &str, quoted: bool| match quoted {
        true => written.to_string(),
        false => written.to_ascii_lowercase(),
    };
    let namespace = match &rel.namespace {
        None => None,
        Some(n) => {
            let mut known = catalog.namespaces();
            known.push(ns.to_string());
            Some(
                pick(n, rel.namespace_quoted, "namespace", &known)?
                    .unwrap_or_else(|| fold(n, rel.namespace_quoted)),
            )
        }
    };
    if namespace.as_deref().is_none_or(|n| n == ns) {
        let models: Vec<String> = by_name.keys().map(|k| k.to_string()).collect();
        if let Some(model) = pick(&rel.name, rel.name_quoted, "model", &models)? {
            return Ok(model);
        }
    }
    let in_ns = namespace.as_deref().unwrap_or(ns);
    let table = pick(
        &rel.name,
        rel.name_quoted,
        "table",
        &catalog.table_names(in_ns),
    )?
    .unwrap_or_else(|| fold(&rel.name, rel.name_quoted));
    Ok(match namespace {
        Some(n) => format!("{n}.{table}"),
        None => table,
    })
}

type Deps = Vec<(usize, Option<usize>)>;

#[allow(clippy::too_many_arguments)]
fn build_node(
    def: &Def<'_>,
    defs: &[Def<'_>],
    by_name: &BTreeMap<&str, usize>,
    input: &DagInput<'_>,
    catalog: &dyn CatalogView,
    ns: &str,
) -> Result<(PlanNode, Deps)> {
    let mut inputs = Vec::new();
    let mut deps = Vec::new();
    let mut node = PlanNode {
        name: def.name.clone(),
        kind: def.kind,
        file: def.path.clone(),
        display_file: def.display.clone(),
        line: def.line,
        function: None,
        sql: None,
        inputs: Vec::new(),
        materialization: Materialization::None,
        partitioned_by: Vec::new(),
        overwrite_filter: None,
        cache_strategy: CacheStrategy::Default,
        internet_access: false,
        python: None,
        pip: BTreeMap::new(),
        resources: Resources::default(),
        output_schema: None,
        code_hash: String::new(),
        cache_key: String::new(),
    };

    match &def.body {
        Body::Python { file, func } => {
            node.function = Some(func.name.clone());
            node.code_hash = func.code_hash.clone();
            if let Some(py) = &func.python {
                node.python = py.version.clone();
                node.pip = py.pip.clone().unwrap_or_default();
            }
            if let Some(r) = &func.resources {
                node.resources = parse_resources(r).map_err(|m| {
                    PipelineError::invalid(
                        def.at(None),
                        format!("@resources of '{}': {m}", func.name),
                    )
                })?;
            }
            if let Some(schema) = func
                .output_schema
                .as_ref()
                .and_then(|s| file.schemas.get(s))
            {
                node.output_schema = Some(
                    schema
                        .fields
                        .iter()
                        .map(|f| Field {
                            name: f.name.clone(),
                            ty: f.ty.clone(),
                            nullable: f.nullable,
                        })
                        .collect(),
                );
            }
            if let Some(m) = &func.model {
                let line = def.line.unwrap_or(1);
                node.internet_access = m.internet_access.unwrap_or(false);
                apply_options(
                    &mut node,
                    def,
                    Opt::new(m.materialization_strategy.as_deref(), line),
                    m.partitioned_by.as_ref().map(|p| (p.clone(), line)),
                    Opt::new(m.overwrite_filter.as_deref(), line),
                    Opt::new(m.cache_strategy.as_deref(), line),
                )?;
            }
            for inp in &func.inputs {
                match inp {
                    AnalyzedInput::Parameter { param, line, name } => {
                        let value = param_value(def, name, *line, input)?;
                        inputs.push(PlanInput {
                            param: param.clone(),
                            line: Some(*line),
                            source: InputSource::Param {
                                name: name.clone(),
                                value,
                            },
                        });
                    }
                    AnalyzedInput::Model {
                        param,
                        line,
                        name,
                        columns,
                        filter,
                        ref_,
                        ..
                    } => {
                        let at = def.at(Some(*line));
                        if let Some(r) = ref_ {
                            return Err(PipelineError::invalid(
                                at,
                                format!(
                                    "Model('{name}', ref='{r}'): reading an input at another ref is not supported; every input is read at the run's ref ({})",
                                    catalog.ref_label()
                                ),
                            ));
                        }
                        let source = resolve_input(
                            def, defs, by_name, catalog, ns, name, *line, columns, filter,
                            &mut deps,
                        )?;
                        inputs.push(PlanInput {
                            param: param.clone(),
                            line: Some(*line),
                            source,
                        });
                    }
                }
            }
        }
        Body::Sql(m) => {
            node.sql = Some(m.sql.clone());
            node.code_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                m.normalized.as_bytes(),
            ));
            let h = &m.header;
            let opt = |o: &Option<(String, usize)>| match o {
                Some((v, l)) => Opt {
                    value: Some(v.clone()),
                    line: *l,
                },
                None => Opt::none(),
            };
            apply_options(
                &mut node,
                def,
                opt(&h.materialization_strategy),
                h.partitioned_by.clone(),
                opt(&h.overwrite_filter),
                opt(&h.cache_strategy),
            )?;
            for rel in &m.relations {
                let name = resolve_sql_relation(rel, by_name, catalog, ns)
                    .map_err(|m| PipelineError::invalid(def.at(Some(rel.line)), m))?;
                let source = resolve_input(
                    def, defs, by_name, catalog, ns, &name, rel.line, &None, &None, &mut deps,
                )?;
                inputs.push(PlanInput {
                    param: rel.written(),
                    line: Some(rel.line),
                    source,
                });
            }
            for (name, value) in &m.params {
                inputs.push(PlanInput {
                    param: format!("${name}"),
                    line: None,
                    source: InputSource::Param {
                        name: name.clone(),
                        value: value.clone(),
                    },
                });
            }
        }
    }
    node.inputs = inputs;
    Ok((node, deps))
}

fn param_value(def: &Def<'_>, name: &str, line: usize, input: &DagInput<'_>) -> Result<ParamValue> {
    if !input.declared.contains(name) {
        return Err(PipelineError::UnknownNodeParameter {
            at: def.at(Some(line)),
            node: def.name.clone(),
            name: name.to_string(),
            known: input.declared.iter().cloned().collect(),
        });
    }
    input
        .values
        .get(name)
        .cloned()
        .ok_or_else(|| PipelineError::ParameterWithoutValue {
            at: def.at(Some(line)),
            node: def.name.clone(),
            name: name.to_string(),
        })
}

/// An unknown bare input says which namespace it was looked up in and why, and names a table
/// of that name in the other usual namespaces (`default`, `bauplan`, the lake's), which is what
/// a project written for another default namespace runs into.
fn with_namespace_hint(
    e: PipelineError,
    input: &DagInput<'_>,
    catalog: &dyn CatalogView,
) -> PipelineError {
    let PipelineError::UnknownInput(mut u) = e else {
        return e;
    };
    if u.hint.is_some() || u.input.contains('.') {
        return PipelineError::UnknownInput(u);
    }
    let ns = input.namespace;
    let mut h = format!(
        "bare names are looked up in namespace '{ns}': {}",
        input.namespace_from.describe()
    );
    let elsewhere = [
        lakeplan_core::DEFAULT_NAMESPACE,
        lakeplan_core::BAUPLAN_NAMESPACE,
    ]
    .into_iter()
    .find(|other| *other != ns && catalog.table(other, &u.input).is_some());
    if let Some(other) = elsewhere {
        h.push_str(&format!(
            "; {other}.{} exists: run with -n {other}, or set project.namespace in the project file",
            u.input
        ));
    }
    u.hint = Some(h);
    PipelineError::UnknownInput(u)
}

#[allow(clippy::too_many_arguments)]
fn resolve_input(
    def: &Def<'_>,
    defs: &[Def<'_>],
    by_name: &BTreeMap<&str, usize>,
    catalog: &dyn CatalogView,
    ns: &str,
    name: &str,
    line: usize,
    columns: &Option<Vec<String>>,
    filter: &Option<String>,
    deps: &mut Deps,
) -> Result<InputSource> {
    let at = def.at(Some(line));
    let resolved = resolve(name, by_name, catalog, ns)
        .map_err(|m| PipelineError::invalid(at.clone(), m))?
        .ok_or_else(|| {
            PipelineError::UnknownInput(Box::new(UnknownInput {
                at: at.clone(),
                node: def.name.clone(),
                input: name.to_string(),
                ref_label: catalog.ref_label(),
                hint: None,
            }))
        })?;
    let (available, source_name): (Option<Vec<String>>, String) = match &resolved {
        Resolved::Model(i) => {
            let up = &defs[*i];
            if up.kind == NodeKind::Expectation {
                return Err(PipelineError::invalid(
                    at,
                    format!(
                        "'{}' is an expectation: its result is a check, not a table, and cannot be an input of '{}'",
                        up.name, def.name
                    ),
                ));
            }
            (up.output_columns(), format!("model '{}'", up.name))
        }
        Resolved::Table {
            namespace,
            table,
            info,
        } => (
            Some(info.columns.iter().map(|(c, _)| c.clone()).collect()),
            format!("table {namespace}.{table}"),
        ),
    };
    if let (Some(cols), Some(avail)) = (columns, &available) {
        let unknown: Vec<String> = cols
            .iter()
            .filter(|c| !avail.contains(c))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(PipelineError::UnknownColumn(Box::new(UnknownColumns {
                at,
                node: def.name.clone(),
                input: name.to_string(),
                columns: unknown,
                source_name,
                available: avail.clone(),
            })));
        }
    }
    if let Some(f) = filter {
        let bad = |message: String| PipelineError::BadFilter {
            at: at.clone(),
            node: def.name.clone(),
            filter: f.clone(),
            message,
        };
        let expr = parse_filter(f).map_err(bad)?;
        if let Some(avail) = &available {
            let unknown = unknown_columns(&expr, avail).map_err(bad)?;
            if !unknown.is_empty() {
                return Err(bad(format!(
                    "unknown column(s) {} ({source_name} has: {})",
                    unknown.join(", "),
                    avail.join(", ")
                )));
            }
        }
    }
    let filter = filter.as_ref().map(|f| f.trim().to_string());
    Ok(match resolved {
        Resolved::Model(i) => {
            deps.push((i, Some(line)));
            InputSource::Upstream {
                node: defs[i].name.clone(),
                columns: columns.clone(),
                filter,
            }
        }
        Resolved::Table {
            namespace,
            table,
            info,
        } => InputSource::Scan {
            namespace,
            table,
            columns: columns.clone(),
            filter,
            snapshot_id: info.snapshot_id,
        },
    })
}

struct Opt {
    value: Option<String>,
    line: usize,
}

impl Opt {
    fn new(value: Option<&str>, line: usize) -> Opt {
        Opt {
            value: value.map(str::to_string),
            line,
        }
    }
    fn none() -> Opt {
        Opt {
            value: None,
            line: 0,
        }
    }
}

fn apply_options(
    node: &mut PlanNode,
    def: &Def<'_>,
    strategy: Opt,
    partitioned_by: Option<(Vec<String>, usize)>,
    overwrite_filter: Opt,
    cache: Opt,
) -> Result<()> {
    let at = |line: usize| def.at((line > 0).then_some(line));
    if let Some(s) = &strategy.value {
        node.materialization = Materialization::parse(s).ok_or_else(|| {
            PipelineError::invalid(
                at(strategy.line),
                format!(
                    "materialization_strategy '{s}' of '{}' is not one of {}",
                    def.name,
                    Materialization::ALL.join(", ")
                ),
            )
        })?;
    }
    if let Some(s) = &cache.value {
        node.cache_strategy = CacheStrategy::parse(s).ok_or_else(|| {
            PipelineError::invalid(
                at(cache.line),
                format!(
                    "cache_strategy '{s}' of '{}' is not one of DEFAULT, NONE",
                    def.name
                ),
            )
        })?;
    }
    let part_line = partitioned_by.as_ref().map_or(strategy.line, |(_, l)| *l);
    node.partitioned_by = partitioned_by.map(|(p, _)| p).unwrap_or_default();
    if let Some(out_cols) = def.output_columns() {
        if let Some(missing) = node
            .partitioned_by
            .iter()
            .find(|p| is_plain_identifier(p) && !out_cols.contains(p))
        {
            return Err(PipelineError::invalid(
                at(part_line),
                format!(
                    "partitioned_by column '{missing}' of '{}' is not in its output columns ({})",
                    def.name,
                    out_cols.join(", ")
                ),
            ));
        }
    }
    match (&overwrite_filter.value, node.materialization) {
        (Some(f), Materialization::OverwritePartitions) => {
            let bad = |message: String| PipelineError::BadFilter {
                at: at(overwrite_filter.line),
                node: def.name.clone(),
                filter: f.clone(),
                message,
            };
            if node.partitioned_by.is_empty() {
                return Err(PipelineError::invalid(
                    at(strategy.line),
                    format!(
                        "'{}' uses OVERWRITE_PARTITIONS without partitioned_by",
                        def.name
                    ),
                ));
            }
            let expr = parse_filter(f).map_err(bad)?;
            check_overwrite_filter(&expr).map_err(|m| bad(format!("overwrite_filter: {m}")))?;
            let outside = unknown_columns(&expr, &node.partitioned_by).map_err(bad)?;
            if !outside.is_empty() {
                return Err(bad(format!(
                    "overwrite_filter may only use partition columns ({}), not {}",
                    node.partitioned_by.join(", "),
                    outside.join(", ")
                )));
            }
            node.overwrite_filter = Some(f.trim().to_string());
        }
        (None, Materialization::OverwritePartitions) => {
            return Err(PipelineError::invalid(
                at(strategy.line),
                format!(
                    "'{}' uses OVERWRITE_PARTITIONS without an overwrite_filter",
                    def.name
                ),
            ))
        }
        (Some(_), other) => {
            return Err(PipelineError::invalid(
                at(overwrite_filter.line),
                format!(
                    "'{}' has an overwrite_filter but materialization_strategy {}; it is only used with OVERWRITE_PARTITIONS",
                    def.name,
                    other.as_str()
                ),
            ))
        }
        (None, _) => {}
    }
    Ok(())
}

fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_resources(r: &crate::analyze::ResourcesArgs) -> std::result::Result<Resources, String> {
    use serde_json::Value;
    let cpus = match &r.cpus {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if c > 0.0 && c.is_finite() => Some(c),
            _ => return Err(format!("cpus must be a positive number, not {n}")),
        },
        Some(other) => return Err(format!("cpus must be a number, not {other}")),
    };
    let memory_bytes = match &r.memory {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(b) => Some(b),
            None => return Err(format!("memory must be a whole number of bytes, not {n}")),
        },
        Some(Value::String(s)) => Some(parse_memory(s)?),
        Some(other) => return Err(format!("memory must be like \"2GB\" or bytes, not {other}")),
    };
    if let Some(b) = memory_bytes {
        if b < 16 * 1024 * 1024 {
            return Err(format!("memory of {b} bytes is below the 16MiB minimum"));
        }
    }
    let timeout_secs = match &r.timeout {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t > 0.0 && t.is_finite() => Some(t.ceil() as u64),
            _ => {
                return Err(format!(
                    "timeout must be a positive number of seconds, not {n}"
                ))
            }
        },
        Some(Value::String(s)) => Some(parse_duration(s)?),
        Some(other) => return Err(format!("timeout must be seconds, not {other}")),
    };
    Ok(Resources {
        cpus,
        memory_bytes,
        timeout_secs,
    })
}

/// `"2GB"`, `"512MiB"`, `"1.5g"`, `"1048576"`: units are powers of 1024 (Docker's convention).
pub fn parse_memory(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("memory '{s}' is not like \"2GB\" or \"512MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "memory '{s}' has an unknown unit (use KB, MB, GB, MiB, GiB)"
            ))
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("memory '{s}' is out of range"));
    }
    Ok(bytes as u64)
}

/// `"90"`, `"90s"`, `"5m"`, `"1h"` -> seconds.
fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok((v * mult).ceil() as u64),
        _ => Err(format!("timeout '{s}' is not like 60, \"90s\" or \"5m\"")),
    }
}

fn check_cycles(
    defs: &[Def<'_>],
    edges: &[Deps],
    catalog: &dyn CatalogView,
    ns: &str,
) -> Result<()> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; defs.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn dfs(
        v: usize,
        edges: &[Deps],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, Option<usize>)> {
        state[v] = 1;
        stack.push(v);
        for &(w, line) in &edges[v] {
            if state[w] == 1 {
                let start = stack.iter().position(|&x| x == w).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(w);
                // The line of the edge that closes the cycle is where we point when the cycle is
                // a self-reference; else the first node's def line.
                return Some((cycle, if w == v { line } else { None }));
            }
            if state[w] == 0 {
                if let Some(c) = dfs(w, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state[v] = 2;
        None
    }
    for v in 0..defs.len() {
        if state[v] != 0 {
            continue;
        }
        if let Some((cycle, line)) = dfs(v, edges, &mut state, &mut stack) {
            let first = &defs[cycle[0]];
            let names: Vec<String> = cycle.iter().map(|&i| defs[i].name.clone()).collect();
            let hint = if cycle.len() == 2 && catalog.table(ns, &first.name).is_some() {
                Some(format!(
                    "'{0}' is also a table in namespace '{ns}': a model's output is the table of its name in the run's namespace, so '{0}' cannot read that table; rename the model",
                    first.name
                ))
            } else if cycle.len() == 2 {
                Some(format!("'{}' reads its own output", first.name))
            } else {
                None
            };
            return Err(PipelineError::Cycle {
                at: first.at(line),
                cycle: names,
                hint,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_durations() {
        assert_eq!(parse_memory("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_memory("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("1048576").unwrap(), 1 << 20);
        assert!(parse_memory("2 parsecs").is_err());
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert!(parse_duration("-1").is_err());
    }
}
