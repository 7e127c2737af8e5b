//! SQL models: one query per `.sql` file, named after the file (or its `name` header), with
//! options in header comments (`-- lakeplan: materialization_strategy=REPLACE`, Bauplan's
//! `-- bauplan: key = value`) and `$param` templates replaced by typed literals. Parsed with
//! sqlparser (the parser DataFusion uses); the input tables are the relations the query reads,
//! without its CTE names.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, Statement, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use lakeplan_core::sql_limits;

use crate::error::{Location, PipelineError, Result};
use crate::project::ParamValue;

/// The header options of a SQL model, each with the line it is on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqlHeader {
    pub name: Option<(String, usize)>,
    pub materialization_strategy: Option<(String, usize)>,
    pub partitioned_by: Option<(Vec<String>, usize)>,
    pub overwrite_filter: Option<(String, usize)>,
    pub cache_strategy: Option<(String, usize)>,
}

/// A table the query reads, as written. Unquoted parts match names ignoring case (as the
/// query does when it runs: see lakeplan-sql); quoted parts are exact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SqlRelation {
    pub namespace: Option<String>,
    pub namespace_quoted: bool,
    pub name: String,
    pub name_quoted: bool,
    /// Line of the first reference.
    pub line: usize,
}

impl SqlRelation {
    /// The relation as written in the query: `trips` or `default.trips`.
    pub fn written(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A parsed SQL model.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlModel {
    /// The model name: the `name` header or the file stem.
    pub name: String,
    pub path: PathBuf,
    /// `./file.sql` for messages.
    pub display: String,
    pub header: SqlHeader,
    /// The SQL with `$param`s replaced (comments kept).
    pub sql: String,
    /// The query re-printed by sqlparser: no comments, normalized whitespace (for cache keys).
    pub normalized: String,
    /// Tables and models read, deduplicated, in order of first appearance.
    pub relations: Vec<SqlRelation>,
    /// Parameters used, with their values.
    pub params: BTreeMap<String, ParamValue>,
}

const HEADER_KEYS: [&str; 5] = [
    "name",
    "materialization_strategy",
    "partitioned_by",
    "overwrite_filter",
    "cache_strategy",
];

/// Reads and parses a `.sql` model. `declared` are the project's parameter names; `values` their
/// values for this run.
pub fn load_sql_model(
    path: &Path,
    display: &str,
    declared: &BTreeSet<String>,
    values: &BTreeMap<String, ParamValue>,
) -> Result<SqlModel> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    parse_sql_model(path, display, &text, declared, values)
}

/// Parses the text of a `.sql` model (see [`load_sql_model`]).
pub fn parse_sql_model(
    path: &Path,
    display: &str,
    text: &str,
    declared: &BTreeSet<String>,
    values: &BTreeMap<String, ParamValue>,
) -> Result<SqlModel> {
    let err = |line: Option<usize>, message: String| PipelineError::Sql {
        at: Location::new(display, line),
        message,
    };
    let header = parse_header(text, display)?;
    let (sql, params) = substitute_params(text, display, declared, values)?;

    let dialect = GenericDialect {};
    let limit = |e: lakeplan_core::Error| err(None, e.to_string());
    // Parsed on a large stack, and refused there if too long or too deep to plan (sql_limits).
    let statements = sql_limits::parse_within_limits(&sql, || {
        let statements = Parser::parse_sql(&dialect, &sql).map_err(|e| {
            let msg = e.to_string();
            // An error at the end of the input carries no position: point at the last line.
            let line = error_line(&msg).or_else(|| {
                msg.contains("EOF")
                    .then(|| sql.trim_end().lines().count().max(1))
            });
            err(line, msg)
        })?;
        for s in &statements {
            sql_limits::check_expression_depth(s).map_err(limit)?;
        }
        Ok(statements)
    })
    .map_err(limit)??;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err(err(None, "the file holds no query".into())),
        [_, second, ..] => {
            let line = statement_line(second);
            return Err(err(
                line,
                format!(
                    "a SQL model is one query, but the file holds {} statements",
                    statements.len()
                ),
            ));
        }
    };
    let Statement::Query(query) = statement else {
        return Err(err(
            statement_line(statement),
            "a SQL model must be a query (SELECT / WITH ... SELECT), not a statement that changes data".into(),
        ));
    };
    let relations = relations(query).map_err(|(line, m)| err(Some(line), m))?;

    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let name = header.name.as_ref().map(|(n, _)| n.clone()).unwrap_or(stem);
    Ok(SqlModel {
        name,
        path: path.to_path_buf(),
        display: display.to_string(),
        header,
        normalized: query.to_string(),
        sql,
        relations,
        params,
    })
}

fn statement_line(s: &Statement) -> Option<usize> {
    use sqlparser::ast::Spanned;
    let line = s.span().start.line;
    (line > 0).then_some(line as usize)
}

/// `... at Line: 3, Column: 7` in sqlparser messages.
fn error_line(msg: &str) -> Option<usize> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn parse_header(text: &str, display: &str) -> Result<SqlHeader> {
    let mut h = SqlHeader::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some(comment) = raw.trim_start().strip_prefix("--") else {
            continue;
        };
        let comment = comment.trim_start();
        let rest = comment
            .strip_prefix("lakeplan:")
            .or_else(|| comment.strip_prefix("bauplan:"));
        let Some(rest) = rest else { continue };
        let err = |message: String| PipelineError::Sql {
            at: Location::at(display, line),
            message,
        };
        let Some((key, value)) = rest.split_once('=') else {
            return Err(err(format!("header '{}' must be key=value", rest.trim())));
        };
        let key = key.trim();
        let value = unquote(value.trim());
        if value.is_empty() {
            return Err(err(format!("header '{key}' has no value")));
        }
        let dup = || err(format!("header '{key}' is given twice"));
        match key {
            "name" => {
                if h.name.replace((value.to_string(), line)).is_some() {
                    return Err(dup());
                }
            }
            "materialization_strategy" => {
                if h.materialization_strategy
                    .replace((value.to_string(), line))
                    .is_some()
                {
                    return Err(dup());
                }
            }
            "partitioned_by" => {
                let inner = value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .unwrap_or(value);
                let cols: Vec<String> = inner
                    .split(',')
                    .map(|c| unquote(c.trim()).to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                if h.partitioned_by.replace((cols, line)).is_some() {
                    return Err(dup());
                }
            }
            "overwrite_filter" => {
                if h.overwrite_filter
                    .replace((value.to_string(), line))
                    .is_some()
                {
                    return Err(dup());
                }
            }
            "cache_strategy" => {
                if h.cache_strategy
                    .replace((value.to_string(), line))
                    .is_some()
                {
                    return Err(dup());
                }
            }
            other => {
                return Err(err(format!(
                    "unknown header option '{other}' (expected one of {})",
                    HEADER_KEYS.join(", ")
                )))
            }
        }
    }
    Ok(h)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Replaces `$name` outside strings, quoted identifiers and comments by the parameter's literal.
fn substitute_params(
    text: &str,
    display: &str,
    declared: &BTreeSet<String>,
    values: &BTreeMap<String, ParamValue>,
) -> Result<(String, BTreeMap<String, ParamValue>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut used = BTreeMap::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // Copy the quoted run verbatim (a doubled quote stays inside).
                out.push(c);
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if d == '\n' {
                        line += 1;
                    }
                    if d == c {
                        if i < chars.len() && chars[i] == c {
                            out.push(c);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                out.push_str("/*");
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    out.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    out.push_str("*/");
                    i += 2;
                }
            }
            '$' if chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                if !declared.contains(&name) {
                    return Err(PipelineError::UnknownNodeParameter {
                        at: Location::at(display, line),
                        node: display.to_string(),
                        name,
                        known: declared.iter().cloned().collect(),
                    });
                }
                let Some(value) = values.get(&name) else {
                    return Err(PipelineError::ParameterWithoutValue {
                        at: Location::at(display, line),
                        node: display.to_string(),
                        name,
                    });
                };
                // A SQL model's text is logged, stored with the job and shown in plans.
                let Some(literal) = value.to_sql_literal() else {
                    return Err(PipelineError::Sql {
                        at: Location::at(display, line),
                        message: format!(
                            "parameter '{name}' is a secret, and SQL models cannot use secrets (their SQL is logged and stored); read it in a Python model that declares it"
                        ),
                    });
                };
                out.push_str(&literal);
                used.insert(name, value.clone());
                i = end;
            }
            _ => {
                if c == '\n' {
                    line += 1;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok((out, used))
}

struct RelationCollector {
    ctes: BTreeSet<String>,
    found: Vec<(ObjectName, usize)>,
}

impl Visitor for RelationCollector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(normalize_ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let line = relation
            .0
            .first()
            .and_then(|p| p.as_ident())
            .map(|id| id.span.start.line as usize)
            .unwrap_or(0);
        self.found.push((relation.clone(), line));
        ControlFlow::Continue(())
    }
}

fn normalize_ident(id: &sqlparser::ast::Ident) -> String {
    match id.quote_style {
        None => id.value.to_lowercase(),
        Some(_) => id.value.clone(),
    }
}

/// Tables read by a query (FROM / JOIN, subqueries included), CTE names left out.
fn relations(query: &Query) -> std::result::Result<Vec<SqlRelation>, (usize, String)> {
    let mut c = RelationCollector {
        ctes: BTreeSet::new(),
        found: Vec::new(),
    };
    let _ = query.visit(&mut c);
    let mut out: Vec<SqlRelation> = Vec::new();
    for (name, line) in c.found {
        let mut parts = Vec::new();
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(id) => parts.push(id),
                ObjectNamePart::Function(_) => {
                    return Err((line.max(1), format!("unsupported table reference '{name}'")))
                }
            }
        }
        let key = match parts.as_slice() {
            [t] if c.ctes.contains(&normalize_ident(t)) => continue,
            [t] => (None, *t),
            [ns, t] => (Some(*ns), *t),
            _ => {
                return Err((
                    line.max(1),
                    format!(
                        "table '{name}': use `table` or `namespace.table` (a SQL model reads at the run's ref)"
                    ),
                ))
            }
        };
        let same = |written: &str, quoted: bool, id: &sqlparser::ast::Ident| {
            (quoted == id.quote_style.is_some())
                && match quoted {
                    true => written == id.value,
                    false => written.eq_ignore_ascii_case(&id.value),
                }
        };
        let seen = out.iter().any(|r| {
            same(&r.name, r.name_quoted, key.1)
                && match (&r.namespace, key.0) {
                    (None, None) => true,
                    (Some(n), Some(id)) => same(n, r.namespace_quoted, id),
                    _ => false,
                }
        });
        if !seen {
            out.push(SqlRelation {
                namespace: key.0.map(|id| id.value.clone()),
                namespace_quoted: key.0.is_some_and(|id| id.quote_style.is_some()),
                name: key.1.value.clone(),
                name_quoted: key.1.quote_style.is_some(),
                line: line.max(1),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SqlModel> {
        let declared: BTreeSet<String> = ["day", "min", "flag"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let values: BTreeMap<String, ParamValue> = [
            ("day".to_string(), ParamValue::Str("it's".into())),
            ("min".to_string(), ParamValue::Float(2.0)),
        ]
        .into_iter()
        .collect();
        parse_sql_model(
            Path::new("/p/top_zones.sql"),
            "./top_zones.sql",
            text,
            &declared,
            &values,
        )
    }

    #[test]
    fn inputs_exclude_ctes_and_include_joins() {
        let m = parse(
            "-- lakeplan: materialization_strategy=REPLACE\nWITH big AS (SELECT * FROM trips WHERE fare > $min)\nSELECT z.borough, count(*) FROM big JOIN default.zones z ON big.pickup_zone = z.zone_id\nWHERE z.zone_id IN (SELECT zone_id FROM \"Special\")\nGROUP BY 1",
        )
        .unwrap();
        assert_eq!(m.name, "top_zones");
        let written: Vec<_> = m.relations.iter().map(|r| r.written()).collect();
        assert_eq!(written, ["trips", "default.zones", "Special"]);
        assert_eq!(m.relations[0].line, 2);
        assert_eq!(m.relations[2].line, 4);
        assert!(m.sql.contains("fare > 2.0"));
        assert_eq!(m.params["min"], ParamValue::Float(2.0));
        assert_eq!(
            m.header.materialization_strategy,
            Some(("REPLACE".to_string(), 1))
        );
    }

    #[test]
    fn bauplan_headers_with_spaces() {
        let m = parse("-- bauplan: name = my_zones\n-- bauplan: materialization_strategy = OVERWRITE_PARTITIONS\n-- bauplan: partitioned_by = [borough, day]\n-- bauplan: overwrite_filter = \"day = '1'\"\nSELECT 1 AS x FROM zones").unwrap();
        assert_eq!(m.name, "my_zones");
        assert_eq!(
            m.header.partitioned_by,
            Some((vec!["borough".to_string(), "day".to_string()], 3))
        );
        assert_eq!(m.header.overwrite_filter.as_ref().unwrap().0, "day = '1'");
    }

    #[test]
    fn params_are_quoted_and_not_replaced_in_strings_or_comments() {
        let m = parse("SELECT '$day' AS a, $day AS b -- $nope\nFROM t").unwrap();
        assert!(
            m.sql.contains("'$day' AS a, 'it''s' AS b -- $nope"),
            "{}",
            m.sql
        );
        assert_eq!(m.params.len(), 1);
    }

    #[test]
    fn rejections_have_file_and_line() {
        let cases = [
            (
                "-- lakeplan: colour=red\nSELECT 1",
                "./top_zones.sql:1",
                "unknown header option 'colour'",
            ),
            (
                "SELECT 1\nFROM t WHERE a > $bogus",
                "./top_zones.sql:2",
                "unknown parameter 'bogus'",
            ),
            (
                "SELECT 1\nFROM t WHERE a = $flag",
                "./top_zones.sql:2",
                "no value",
            ),
            ("SELECT 1\nFROM t WHERE", "./top_zones.sql:2", "SQL model"),
            ("SELECT 1;\nSELECT 2", "./top_zones.sql:2", "one query"),
            ("\nDELETE FROM t", "./top_zones.sql:2", "must be a query"),
            (
                "SELECT 1 FROM\n  a.b.c",
                "./top_zones.sql:2",
                "namespace.table",
            ),
        ];
        for (text, at, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(at), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn normalized_text_ignores_comments_and_whitespace() {
        let a = parse("SELECT a\nFROM t -- x").unwrap();
        let b = parse("-- hello\nSELECT   a FROM t").unwrap();
        assert_eq!(a.normalized, b.normalized);
    }
}
