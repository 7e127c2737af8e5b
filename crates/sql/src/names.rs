//! Names as Bauplan users write them: an unquoted identifier finds the namespace, table or
//! column whose name matches it ignoring case, when exactly one does. A quoted identifier
//! stays exact; an unquoted one that matches several names (`a` when both `a` and `A` exist)
//! is an error naming the candidates, whichever spelling was written.
//!
//! DataFusion folds unquoted identifiers to lower case and then matches exactly, so
//! `SELECT PULocationID FROM trips` would look for `pulocationid`. Before a statement is
//! planned, [`resolve`] looks up the tables it reads (case-insensitively) and rewrites every
//! unquoted identifier whose lower case is the lower case of one of their names into that
//! name, quoted. The rewrite is one spelling per lower-case name across the statement, applied
//! to references and definitions alike (select aliases, CTE and table aliases), so names the
//! statement defines itself keep matching ignoring case as in standard SQL: `count(*) AS
//! Total ... ORDER BY total` works whether or not a column `TOTAL` exists. Names that match
//! nothing are left to DataFusion, which folds them as before. Function names and keywords
//! are never rewritten.

use datafusion::execution::context::SessionState;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableWithJoins,
    Visit, VisitMut, Visitor, VisitorMut, WildcardAdditionalOptions,
};
use lakeplan_core::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

/// Rewrites the unquoted names of `statement` to the names of the lake they match ignoring
/// case (see the module documentation). Names that match nothing are left as written.
pub(crate) async fn resolve(state: &SessionState, statement: &mut DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => resolve_sql(state, s.as_mut()).await,
        DFStatement::Explain(e) => Box::pin(resolve(state, &mut e.statement)).await,
        DFStatement::CopyTo(_) | DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => {
            Ok(())
        }
    }
}

async fn resolve_sql(state: &SessionState, statement: &mut Statement) -> Result<()> {
    let mut found = Relations::default();
    let _ = Visit::visit(&*statement, &mut found);
    let mut names = Names::default();
    let mut rewrites = Vec::with_capacity(found.relations.len());
    let mut columns = Vec::with_capacity(found.relations.len());
    for relation in &found.relations {
        let (rewrite, cols) = resolve_relation(state, relation, &found.ctes, &mut names).await?;
        rewrites.push(rewrite);
        columns.push(cols);
    }
    // A table's alias qualifies the table's columns.
    for (i, alias) in found.aliases {
        if let Some(cols) = &columns[i] {
            names
                .by_qualifier
                .entry(alias)
                .or_default()
                .extend(cols.iter().cloned());
        }
    }
    let mut rewriter = Rewriter {
        names,
        relations: rewrites.into_iter(),
    };
    match VisitMut::visit(statement, &mut rewriter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// DataFusion's reading of an identifier: unquoted ones fold to ASCII lower case.
fn folded(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_ascii_lowercase(),
    }
}

fn key(s: &str) -> String {
    s.to_lowercase()
}

/// The names that match `id` ignoring case among `candidates`: the one to use (`None` when
/// `id` is quoted, nothing matches, or the match is what DataFusion reads anyway), or an error
/// naming them when several do.
fn pick<'a>(
    id: &Ident,
    what: &str,
    candidates: impl IntoIterator<Item = &'a String>,
) -> Result<Option<String>> {
    if id.quote_style.is_some() {
        return Ok(None);
    }
    let k = key(&id.value);
    let matches: BTreeSet<&String> = candidates.into_iter().filter(|c| key(c) == k).collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches
            .into_iter()
            .next()
            .filter(|m| **m != folded(id))
            .cloned()),
        _ => Err(ambiguous(id, what, matches)),
    }
}

fn ambiguous<'a>(id: &Ident, what: &str, matches: impl IntoIterator<Item = &'a String>) -> Error {
    let list: Vec<String> = matches.into_iter().map(|m| format!("\"{m}\"")).collect();
    Error::Sql(format!(
        "{what} name {} is ambiguous: unquoted names match ignoring case, and it matches {}; \
         quote the one you mean (e.g. {})",
        id.value,
        list.join(", "),
        list[0]
    ))
}

fn quoted(name: String, like: &Ident) -> Ident {
    Ident {
        value: name,
        quote_style: Some('"'),
        span: like.span,
    }
}

/// The relations a statement reads, in visiting order, the names of its CTEs (which shadow
/// tables of the same name) and the aliases of its tables (with the index of their relation).
#[derive(Default)]
struct Relations {
    relations: Vec<ObjectName>,
    ctes: BTreeSet<String>,
    aliases: Vec<(usize, String)>,
}

impl Visitor for Relations {
    type Break = ();
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(key(&cte.alias.name.value));
            }
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // Its name is the next relation visited.
        if let TableFactor::Table { alias: Some(a), .. } = factor {
            self.aliases
                .push((self.relations.len(), key(&a.name.value)));
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(relation.clone());
        ControlFlow::Continue(())
    }
}

/// What the tables a statement reads are called.
#[derive(Default)]
struct Names {
    /// Namespaces and tables the statement names, as the lake spells them.
    relations: BTreeSet<String>,
    /// The columns of every table read.
    columns: BTreeSet<String>,
    /// The columns of each table read, by the lower case of its name and of its aliases.
    by_qualifier: HashMap<String, BTreeSet<String>>,
}

/// The part of an object name that is an identifier (not a table function call).
fn ident(part: &ObjectNamePart) -> Option<&Ident> {
    match part {
        ObjectNamePart::Identifier(id) => Some(id),
        ObjectNamePart::Function(_) => None,
    }
}

/// A relation's rewritten name (when it needs one) and its columns (when it is a table).
type Resolved = (Option<ObjectName>, Option<BTreeSet<String>>);

/// Looks up `relation` in the session's catalogs, ignoring the case of its unquoted
/// namespace and table, and records its columns in `names`. A relation that is a CTE or
/// matches no table is left to DataFusion.
async fn resolve_relation(
    state: &SessionState,
    relation: &ObjectName,
    ctes: &BTreeSet<String>,
    names: &mut Names,
) -> Result<Resolved> {
    let none = Ok((None, None));
    let Some(parts) = relation
        .0
        .iter()
        .map(ident)
        .collect::<Option<Vec<&Ident>>>()
    else {
        return none;
    };
    let options = state.config().options();
    let (catalog, schema, table) = match parts.as_slice() {
        [t] if ctes.contains(&key(&t.value)) => return none,
        [t] => (None, None, *t),
        [s, t] => (None, Some(*s), *t),
        [c, s, t] => (Some(*c), Some(*s), *t),
        _ => return none,
    };
    let catalog_name = catalog.map_or(options.catalog.default_catalog.clone(), folded);
    let Some(catalog_provider) = state.catalog_list().catalog(&catalog_name) else {
        return none;
    };
    let (schema_name, new_schema) = match schema {
        None => (options.catalog.default_schema.clone(), None),
        Some(s) => match pick(s, "namespace", &catalog_provider.schema_names())? {
            Some(name) => (name.clone(), Some(name)),
            None => (folded(s), None),
        },
    };
    let Some(schema_provider) = catalog_provider.schema(&schema_name) else {
        return none;
    };
    let (table_name, new_table) = match pick(table, "table", &schema_provider.table_names())? {
        Some(name) => (name.clone(), Some(name)),
        None => (folded(table), None),
    };
    let Some(provider) = schema_provider
        .table(&table_name)
        .await
        .map_err(|e| Error::Sql(e.to_string()))?
    else {
        return none;
    };
    let columns: BTreeSet<String> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    names.columns.extend(columns.iter().cloned());
    names
        .by_qualifier
        .entry(key(&table_name))
        .or_default()
        .extend(columns.iter().cloned());
    names.relations.insert(table_name);
    names.relations.insert(schema_name);
    if new_schema.is_none() && new_table.is_none() {
        return Ok((None, Some(columns)));
    }
    let mut out = relation.clone();
    let n = out.0.len();
    if let Some(name) = new_table {
        out.0[n - 1] = ObjectNamePart::Identifier(quoted(name, table));
    }
    if let (Some(name), Some(s)) = (new_schema, schema) {
        out.0[n - 2] = ObjectNamePart::Identifier(quoted(name, s));
    }
    Ok((Some(out), Some(columns)))
}

/// The second pass: rewrites each unquoted identifier to the one spelling of its lower case.
struct Rewriter {
    names: Names,
    /// The rewritten name of each relation, in the order the first pass saw them.
    relations: std::vec::IntoIter<Option<ObjectName>>,
}

impl Rewriter {
    /// An identifier that names a column (or an alias of one).
    fn column(&self, id: &mut Ident, qualifier: Option<&Ident>) -> Result<()> {
        let own = qualifier.and_then(|q| self.names.by_qualifier.get(&key(&q.value)));
        let columns = own.unwrap_or(&self.names.columns);
        if let Some(name) = pick(id, "column", columns)? {
            *id = quoted(name, id);
        }
        Ok(())
    }

    /// An identifier that names a namespace or table (or an alias of one).
    fn relation(&self, id: &mut Ident) -> Result<()> {
        if let Some(name) = pick(id, "table", &self.names.relations)? {
            *id = quoted(name, id);
        }
        Ok(())
    }

    fn alias(&mut self, alias: &mut TableAlias) -> Result<()> {
        self.relation(&mut alias.name)?;
        for c in &mut alias.columns {
            self.column(&mut c.name, None)?;
        }
        Ok(())
    }

    fn set_expr(&mut self, body: &mut SetExpr) -> Result<()> {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    match item {
                        SelectItem::ExprWithAlias { alias, .. } => self.column(alias, None)?,
                        SelectItem::Wildcard(options) => self.wildcard(options)?,
                        SelectItem::QualifiedWildcard(kind, options) => {
                            if let SelectItemQualifiedWildcardKind::ObjectName(name) = kind {
                                for part in &mut name.0 {
                                    if let ObjectNamePart::Identifier(id) = part {
                                        self.relation(id)?;
                                    }
                                }
                            }
                            self.wildcard(options)?;
                        }
                        SelectItem::UnnamedExpr(_) => {}
                    }
                }
                for from in &mut select.from {
                    self.joins(from)?;
                }
                Ok(())
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            _ => Ok(()),
        }
    }

    fn wildcard(&mut self, options: &mut WildcardAdditionalOptions) -> Result<()> {
        use datafusion::sql::sqlparser::ast::ExcludeSelectItem;
        if let Some(exclude) = &mut options.opt_exclude {
            match exclude {
                ExcludeSelectItem::Single(id) => self.column(id, None)?,
                ExcludeSelectItem::Multiple(ids) => {
                    for id in ids {
                        self.column(id, None)?;
                    }
                }
            }
        }
        if let Some(except) = &mut options.opt_except {
            self.column(&mut except.first_element, None)?;
            for id in &mut except.additional_elements {
                self.column(id, None)?;
            }
        }
        Ok(())
    }

    /// `USING (...)` columns of the joins of a FROM item.
    fn joins(&mut self, from: &mut TableWithJoins) -> Result<()> {
        for join in &mut from.joins {
            let constraint = match &mut join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c)
                | JoinOperator::StraightJoin(c)
                | JoinOperator::AsOf { constraint: c, .. } => c,
                JoinOperator::CrossApply | JoinOperator::OuterApply => continue,
            };
            if let JoinConstraint::Using(columns) = constraint {
                for name in columns {
                    if let Some(ObjectNamePart::Identifier(id)) = name.0.last_mut() {
                        self.column(id, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn done(r: Result<()>) -> ControlFlow<Error> {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }
}

impl VisitorMut for Rewriter {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                done(self.alias(&mut cte.alias))?;
            }
        }
        done(self.set_expr(&mut query.body))
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Error> {
        if let Some(Some(name)) = self.relations.next() {
            *relation = name;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let alias = match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. } => alias,
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                done(self.joins(table_with_joins))?;
                alias
            }
            _ => return ControlFlow::Continue(()),
        };
        match alias {
            Some(a) => done(self.alias(a)),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        match expr {
            Expr::Identifier(id) => done(self.column(id, None)),
            Expr::CompoundIdentifier(parts) => {
                let Some((last, qualifiers)) = parts.split_last_mut() else {
                    return ControlFlow::Continue(());
                };
                done(self.column(last, qualifiers.last()))?;
                for q in qualifiers {
                    done(self.relation(q))?;
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    fn table(columns: &[&str], rows: &[i64]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Int64, false))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| {
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r * 10 + i as i64),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// `public.trips (PULocationID, Fare_Amount)`, `Bauplan.amountStatsTable (PULocationID,
    /// Total)`, `public.clash (a, A)`, and the tables `public.Zones` and `public.zones`.
    fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_table("trips", table(&["PULocationID", "Fare_Amount"], &[1, 2, 3]))
            .unwrap();
        ctx.register_table("clash", table(&["a", "A"], &[1]))
            .unwrap();
        ctx.register_table("\"Zones\"", table(&["x"], &[1]))
            .unwrap();
        ctx.register_table("zones", table(&["x"], &[1, 2])).unwrap();
        let bauplan = Arc::new(MemorySchemaProvider::new());
        bauplan
            .register_table(
                "amountStatsTable".into(),
                table(&["PULocationID", "Total"], &[2, 3]),
            )
            .unwrap();
        ctx.catalog("datafusion")
            .unwrap()
            .register_schema("Bauplan", bauplan)
            .unwrap();
        ctx
    }

    /// The column names and the rows (as text) of `sql`, or its error.
    async fn run(sql: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let (schema, batches, _) = crate::query(&ctx(), sql, None)
            .await
            .map_err(|e| e.to_string())?;
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let rows = text
            .lines()
            .skip(3)
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        Ok((names, rows))
    }

    #[tokio::test]
    async fn unquoted_names_match_ignoring_case() {
        let (names, rows) = run(
            "SELECT PULocationID, fare_amount FROM Trips WHERE PULOCATIONID > 10 ORDER BY PULocationID",
        )
        .await
        .unwrap();
        assert_eq!(names, ["PULocationID", "Fare_Amount"]);
        assert_eq!(rows, ["20,21", "30,31"]);
        // namespace and table, and qualified columns through the table's name or alias
        let (names, rows) = run(
            "SELECT s.total, S.PULocationID FROM bauplan.amountstatstable AS s \
             ORDER BY s.pulocationid DESC",
        )
        .await
        .unwrap();
        assert_eq!(names, ["Total", "PULocationID"]);
        assert_eq!(rows, ["31,30", "21,20"]);
        let (names, _) = run("SELECT AMOUNTSTATSTABLE.total FROM BAUPLAN.AmountStatsTable")
            .await
            .unwrap();
        assert_eq!(names, ["Total"]);
    }

    #[tokio::test]
    async fn names_the_statement_defines_match_ignoring_case() {
        // an alias, in ORDER BY, and a CTE with its own column names
        let (names, rows) = run(
            "WITH Stats AS (SELECT PULocationID AS Loc, Fare_Amount FROM trips) \
             SELECT loc, FARE_AMOUNT * 2 AS Total FROM stats ORDER BY total DESC LIMIT 1",
        )
        .await
        .unwrap();
        assert_eq!(names, ["loc", "total"]);
        assert_eq!(rows, ["30,62"]);
        // an alias spelled like a column of another case, in a subquery
        let (names, rows) = run("SELECT sum(FARE_AMOUNT) AS fare_amount FROM \
             (SELECT * FROM trips t JOIN bauplan.amountStatsTable USING (pulocationid)) \
             ORDER BY Fare_amount")
        .await
        .unwrap();
        assert_eq!(names, ["Fare_Amount"]);
        assert_eq!(rows, ["52"]);
        // function names are not column names
        let (_, rows) = run("SELECT COUNT(*), Sum(PULocationID) FROM trips")
            .await
            .unwrap();
        assert_eq!(rows, ["3,60"]);
    }

    #[tokio::test]
    async fn quoted_names_stay_exact() {
        let (names, _) = run("SELECT \"PULocationID\" FROM \"trips\"").await.unwrap();
        assert_eq!(names, ["PULocationID"]);
        let err = run("SELECT \"pulocationid\" FROM trips").await.unwrap_err();
        assert!(err.contains("pulocationid"), "{err}");
        let err = run("SELECT * FROM \"Trips\"").await.unwrap_err();
        assert!(err.contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn ambiguous_names_are_errors_naming_the_candidates() {
        for sql in ["SELECT a FROM clash", "SELECT clash.A FROM clash"] {
            let err = run(sql).await.unwrap_err();
            assert!(
                err.contains("column name")
                    && err.contains("\"A\", \"a\"")
                    && err.contains("quote"),
                "{err}"
            );
        }
        let (names, rows) = run("SELECT \"a\", \"A\" FROM clash").await.unwrap();
        assert_eq!(
            (names, rows),
            (vec!["a".into(), "A".into()], vec!["10,11".into()])
        );
        let err = run("SELECT count(*) FROM zones").await.unwrap_err();
        assert!(
            err.contains("table name zones") && err.contains("\"Zones\", \"zones\""),
            "{err}"
        );
        let (_, rows) = run("SELECT count(*) FROM \"zones\"").await.unwrap();
        assert_eq!(rows, ["2"]);
    }

    #[tokio::test]
    async fn names_that_match_nothing_are_left_to_datafusion() {
        let err = run("SELECT nothing FROM trips").await.unwrap_err();
        assert!(err.contains("nothing"), "{err}");
        let err = run("SELECT 1 FROM nowhere").await.unwrap_err();
        assert!(err.contains("nowhere"), "{err}");
    }
}
