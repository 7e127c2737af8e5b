//! The physical plan the orchestrator executes: nodes in topological order, grouped in levels of
//! nodes that can run in parallel, each with its resolved inputs (scans with pushed-down columns and
//! filters, upstream nodes, parameter values), options and cache key. Also the ASCII DAG of
//! `lakeplan run --dry-run`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Location;
use crate::namespace::NamespaceFrom;
use crate::project::ParamValue;

/// What a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    PythonModel,
    SqlModel,
    Expectation,
}

impl NodeKind {
    pub fn label(self) -> &'static str {
        match self {
            NodeKind::PythonModel => "python model",
            NodeKind::SqlModel => "sql model",
            NodeKind::Expectation => "expectation",
        }
    }
}

/// How a model's output is written to the run's branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Materialization {
    /// In memory only (the default).
    #[default]
    None,
    Replace,
    Append,
    OverwritePartitions,
}

impl Materialization {
    pub const ALL: [&'static str; 4] = ["NONE", "REPLACE", "APPEND", "OVERWRITE_PARTITIONS"];

    pub fn parse(s: &str) -> Option<Materialization> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NONE" => Some(Materialization::None),
            "REPLACE" => Some(Materialization::Replace),
            "APPEND" => Some(Materialization::Append),
            "OVERWRITE_PARTITIONS" => Some(Materialization::OverwritePartitions),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::None => "NONE",
            Materialization::Replace => "REPLACE",
            Materialization::Append => "APPEND",
            Materialization::OverwritePartitions => "OVERWRITE_PARTITIONS",
        }
    }
}

/// `cache_strategy`: DEFAULT (use the cache) or NONE (always run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStrategy {
    #[default]
    Default,
    None,
}

impl CacheStrategy {
    pub fn parse(s: &str) -> Option<CacheStrategy> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEFAULT" => Some(CacheStrategy::Default),
            "NONE" => Some(CacheStrategy::None),
            _ => None,
        }
    }
}

/// Where an input comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputSource {
    /// A lake table at the run's ref, with the pushdowns to apply to the scan.
    Scan {
        namespace: String,
        table: String,
        columns: Option<Vec<String>>,
        filter: Option<String>,
        snapshot_id: Option<i64>,
    },
    /// Another node's output (a model), with the projection/filter the consumer asked for.
    Upstream {
        node: String,
        columns: Option<Vec<String>>,
        filter: Option<String>,
    },
    /// A project parameter's value.
    Param { name: String, value: ParamValue },
}

/// One input of a node. `param` is the Python parameter name, or for SQL models the relation as
/// written in the query (`trips`, `default.trips`) or `$name` for a template parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    pub param: String,
    pub line: Option<usize>,
    pub source: InputSource,
}

/// `@resources` limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub timeout_secs: Option<u64>,
}

/// A column of an output contract (`-> Annotated[pyarrow.Table, Schema]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// The field type name: Int64, Float64, String, TimestampMicroUTC...
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
}

/// A node of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    pub name: String,
    pub kind: NodeKind,
    /// Absolute path of the file that defines it.
    pub file: PathBuf,
    /// The file as shown to users: `./models.py`.
    pub display_file: String,
    /// Line of the `def` (None for SQL models).
    pub line: Option<usize>,
    /// The Python function (Python models and expectations).
    pub function: Option<String>,
    /// The SQL with `$param`s substituted (SQL models).
    pub sql: Option<String>,
    pub inputs: Vec<PlanInput>,
    pub materialization: Materialization,
    pub partitioned_by: Vec<String>,
    pub overwrite_filter: Option<String>,
    pub cache_strategy: CacheStrategy,
    pub internet_access: bool,
    /// The declared Python version (`@python("3.11")`), if any.
    pub python: Option<String>,
    pub pip: BTreeMap<String, String>,
    pub resources: Resources,
    pub output_schema: Option<Vec<Field>>,
    /// Analyzer code hash (Python) or sha256 of the normalized SQL.
    pub code_hash: String,
    /// sha256 over code, environment, inputs (snapshots or upstream keys), parameters and
    /// materialization options: an unchanged key means the output can be reused.
    pub cache_key: String,
}

impl PlanNode {
    /// `./models.py:12` or `./m.sql`.
    pub fn location(&self) -> Location {
        Location::new(self.display_file.clone(), self.line)
    }

    /// Upstream node names, in input order.
    pub fn upstream(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter_map(|i| match &i.source {
            InputSource::Upstream { node, .. } => Some(node.as_str()),
            _ => None,
        })
    }

    /// True for models whose output is written to the run's branch.
    pub fn materializes(&self) -> bool {
        self.kind != NodeKind::Expectation && self.materialization != Materialization::None
    }
}

/// A validated, ordered plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Nodes in topological order (level by level, by name within a level).
    pub nodes: Vec<PlanNode>,
    /// Indexes into `nodes`: every node of a level depends only on earlier levels.
    pub levels: Vec<Vec<usize>>,
    /// The namespace where bare names resolve and materialized models are written.
    pub namespace: String,
    /// Where [`Plan::namespace`] came from ([`crate::namespace`]).
    #[serde(default)]
    pub namespace_from: NamespaceFrom,
    /// The ref the plan was made against, as the catalog view names it.
    pub ref_label: String,
}

impl Plan {
    /// Orders `nodes` (whose upstream names must all be among them and acyclic), computes the
    /// levels and the cache keys.
    pub(crate) fn new(mut nodes: Vec<PlanNode>, namespace: String, ref_label: String) -> Plan {
        let mut level_of: BTreeMap<String, usize> = BTreeMap::new();
        let mut remaining: Vec<PlanNode> = std::mem::take(&mut nodes);
        remaining.sort_by(|a, b| a.name.cmp(&b.name));
        let mut levels = Vec::new();
        let mut ordered: Vec<PlanNode> = Vec::new();
        while !remaining.is_empty() {
            let (ready, rest): (Vec<PlanNode>, Vec<PlanNode>) = remaining
                .into_iter()
                .partition(|n| n.upstream().all(|u| level_of.contains_key(u)));
            if ready.is_empty() {
                // Cycles are rejected before; keep whatever is left rather than loop forever.
                let start = ordered.len();
                levels.push((start..start + rest.len()).collect());
                ordered.extend(rest);
                break;
            }
            let level = levels.len();
            let start = ordered.len();
            for n in &ready {
                level_of.insert(n.name.clone(), level);
            }
            levels.push((start..start + ready.len()).collect());
            ordered.extend(ready);
            remaining = rest;
        }
        let mut plan = Plan {
            nodes: ordered,
            levels,
            namespace,
            namespace_from: NamespaceFrom::default(),
            ref_label,
        };
        plan.compute_cache_keys();
        plan
    }

    pub fn node(&self, name: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Index of a node by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Names of the nodes that read `name`'s output.
    pub fn downstream(&self, name: &str) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.upstream().any(|u| u == name))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Every scanned table `(namespace, table)` with its snapshot id.
    pub fn tables(&self) -> BTreeMap<(String, String), Option<i64>> {
        let mut out = BTreeMap::new();
        for n in &self.nodes {
            for i in &n.inputs {
                if let InputSource::Scan {
                    namespace,
                    table,
                    snapshot_id,
                    ..
                } = &i.source
                {
                    out.insert((namespace.clone(), table.clone()), *snapshot_id);
                }
            }
        }
        out
    }

    fn compute_cache_keys(&mut self) {
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        for idx in 0..self.nodes.len() {
            let node = &self.nodes[idx];
            let key = cache_key(node, &keys);
            keys.insert(node.name.clone(), key.clone());
            self.nodes[idx].cache_key = key;
        }
    }

    /// The DAG as text for `lakeplan run --dry-run`: the tables read, then the nodes level by
    /// level, each with its kind, materialization and inputs (with scan pushdowns).
    pub fn render_ascii(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan at {}, namespace {}: {} node(s) in {} level(s)",
            self.ref_label,
            self.namespace,
            self.nodes.len(),
            self.levels.len()
        );
        let tables = self.tables();
        if !tables.is_empty() {
            out.push_str("\ntables\n");
            for ((ns, t), snap) in &tables {
                let snap = snap.map_or("no snapshot".to_string(), |s| format!("snapshot {s}"));
                let _ = writeln!(out, "  (T) {ns}.{t}  {snap}");
            }
            out.push_str("   |\n   v\n");
        }
        for (li, level) in self.levels.iter().enumerate() {
            if li > 0 {
                out.push_str("   |\n   v\n");
            }
            let _ = writeln!(out, "level {li}");
            for &i in level {
                let n = &self.nodes[i];
                let what = match n.kind {
                    NodeKind::Expectation => "expectation".to_string(),
                    k => {
                        let mut s = format!("{}, {}", k.label(), n.materialization.as_str());
                        if !n.partitioned_by.is_empty() {
                            let _ = write!(s, " by {}", n.partitioned_by.join(", "));
                        }
                        if let Some(f) = &n.overwrite_filter {
                            let _ = write!(s, " where {f}");
                        }
                        s
                    }
                };
                let _ = writeln!(out, "  [{}]  {}  {}", n.name, what, n.location());
                for input in &n.inputs {
                    let _ = write!(out, "      <-- ");
                    match &input.source {
                        InputSource::Scan {
                            namespace,
                            table,
                            columns,
                            filter,
                            ..
                        } => {
                            let _ = write!(out, "(T) {namespace}.{table}");
                            push_pushdowns(&mut out, columns, filter);
                        }
                        InputSource::Upstream {
                            node,
                            columns,
                            filter,
                        } => {
                            let _ = write!(out, "[{node}]");
                            push_pushdowns(&mut out, columns, filter);
                        }
                        InputSource::Param { name, value } => {
                            let _ = write!(out, "${name} = {value}");
                        }
                    }
                    if !input.param.starts_with('$') && !input_matches_param(input) {
                        let _ = write!(out, "  as {}", input.param);
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn input_matches_param(input: &PlanInput) -> bool {
    match &input.source {
        InputSource::Scan {
            namespace, table, ..
        } => input.param == *table || input.param == format!("{namespace}.{table}"),
        InputSource::Upstream { node, .. } => input.param == *node,
        InputSource::Param { .. } => true,
    }
}

fn push_pushdowns(out: &mut String, columns: &Option<Vec<String>>, filter: &Option<String>) {
    if let Some(c) = columns {
        let _ = write!(out, "  columns: {}", c.join(", "));
    }
    if let Some(f) = filter {
        let _ = write!(out, "  filter: {f}");
    }
}

fn cols(c: &Option<Vec<String>>) -> Option<BTreeSet<&str>> {
    c.as_ref().map(|v| v.iter().map(String::as_str).collect())
}

#[derive(Serialize)]
struct KeyMaterial<'a> {
    version: u32,
    name: &'a str,
    kind: NodeKind,
    code: &'a str,
    python: Option<&'a str>,
    pip: &'a BTreeMap<String, String>,
    inputs: Vec<KeyInput<'a>>,
    materialization: Materialization,
    partitioned_by: &'a [String],
    overwrite_filter: Option<&'a str>,
}

#[derive(Serialize)]
enum KeyInput<'a> {
    Scan {
        param: &'a str,
        namespace: &'a str,
        table: &'a str,
        snapshot_id: Option<i64>,
        columns: Option<BTreeSet<&'a str>>,
        filter: Option<&'a str>,
    },
    Upstream {
        param: &'a str,
        key: &'a str,
        columns: Option<BTreeSet<&'a str>>,
        filter: Option<&'a str>,
    },
    Param {
        param: &'a str,
        name: &'a str,
        value: &'a ParamValue,
    },
}

fn cache_key(node: &PlanNode, upstream_keys: &BTreeMap<String, String>) -> String {
    let inputs = node
        .inputs
        .iter()
        .map(|i| match &i.source {
            InputSource::Scan {
                namespace,
                table,
                columns,
                filter,
                snapshot_id,
            } => KeyInput::Scan {
                param: &i.param,
                namespace,
                table,
                snapshot_id: *snapshot_id,
                columns: cols(columns),
                filter: filter.as_deref(),
            },
            InputSource::Upstream {
                node: up,
                columns,
                filter,
            } => KeyInput::Upstream {
                param: &i.param,
                key: upstream_keys.get(up).map(String::as_str).unwrap_or(up),
                columns: cols(columns),
                filter: filter.as_deref(),
            },
            InputSource::Param { name, value } => KeyInput::Param {
                param: &i.param,
                name,
                value,
            },
        })
        .collect();
    let material = KeyMaterial {
        version: 1,
        name: &node.name,
        kind: node.kind,
        code: &node.code_hash,
        python: node.python.as_deref(),
        pip: &node.pip,
        inputs,
        materialization: node.materialization,
        partitioned_by: &node.partitioned_by,
        overwrite_filter: node.overwrite_filter.as_deref(),
    };
    // Serializing plain structs, strings, numbers and maps cannot fail.
    let bytes = serde_json::to_vec(&material).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn node(name: &str, kind: NodeKind, inputs: Vec<PlanInput>) -> PlanNode {
        PlanNode {
            name: name.into(),
            kind,
            file: PathBuf::from(format!("/p/{name}.py")),
            display_file: "./models.py".into(),
            line: Some(3),
            function: Some(name.into()),
            sql: None,
            inputs,
            materialization: Materialization::None,
            partitioned_by: vec![],
            overwrite_filter: None,
            cache_strategy: CacheStrategy::Default,
            internet_access: false,
            python: None,
            pip: BTreeMap::new(),
            resources: Resources::default(),
            output_schema: None,
            code_hash: format!("code-{name}"),
            cache_key: String::new(),
        }
    }

    fn up(n: &str) -> PlanInput {
        PlanInput {
            param: n.into(),
            line: None,
            source: InputSource::Upstream {
                node: n.into(),
                columns: None,
                filter: None,
            },
        }
    }

    #[test]
    fn levels_are_topological_and_sorted() {
        let plan = Plan::new(
            vec![
                node("d", NodeKind::Expectation, vec![up("b"), up("c")]),
                node("c", NodeKind::PythonModel, vec![up("a")]),
                node("b", NodeKind::PythonModel, vec![up("a")]),
                node("a", NodeKind::PythonModel, vec![]),
                node("z", NodeKind::PythonModel, vec![]),
            ],
            "default".into(),
            "main".into(),
        );
        let names: Vec<_> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "z", "b", "c", "d"]);
        assert_eq!(plan.levels, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(plan.downstream("a"), ["b", "c"]);
        assert!(plan.nodes.iter().all(|n| n.cache_key.len() == 64));
    }
}
