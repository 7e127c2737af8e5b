//! Limits on the SQL a user may send, so that no statement can crash the process that parses,
//! plans or runs it.
//!
//! The SQL parser bounds its own recursion (nested parentheses, subqueries), but a chain of
//! infix operators (`1+1+...+1`, `a OR b OR ...`) is parsed in a loop into an expression tree as
//! deep as the chain is long; planning, optimizing, evaluating and even dropping that tree are
//! recursive. So every statement is parsed on a thread with a large stack ([`parse_within_limits`]),
//! its expression depth is checked there ([`check_expression_depth`]), and only statements
//! within [`MAX_EXPRESSION_DEPTH`] go on to be planned (on threads with [`PLANNER_STACK_BYTES`]).

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Visit, Visitor};

use crate::Error;

/// The deepest expression a statement may hold (DuckDB's default `max_expression_depth`).
pub const MAX_EXPRESSION_DEPTH: usize = 1000;

/// The longest SQL text accepted, in bytes: it bounds how deep a tree the parser can build
/// before the depth check refuses it.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The stack of the thread that parses (and drops refused statements): a refused statement of
/// [`MAX_SQL_BYTES`] is a tree up to half a million levels deep. Reserved, not committed: only
/// the pages a parse touches are memory.
pub const PARSER_STACK_BYTES: usize = 1 << 30;

/// The stack that planning and running a statement within [`MAX_EXPRESSION_DEPTH`] needs, with
/// a wide margin in a debug build: what every async runtime thread of lakeplan gets.
pub const PLANNER_STACK_BYTES: usize = 64 << 20;

/// Refuses SQL longer than [`MAX_SQL_BYTES`].
fn check_sql_size(sql: &str) -> Result<(), Error> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::Sql(format!(
            "the statement is {} bytes long; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    Ok(())
}

/// Refuses a statement (or query) whose expressions nest deeper than [`MAX_EXPRESSION_DEPTH`].
/// The walk stops at the first expression past the limit, so it never recurses deeper than
/// that itself.
pub fn check_expression_depth(statement: &impl Visit) -> Result<(), Error> {
    struct Depth {
        now: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now += 1;
            if self.now > MAX_EXPRESSION_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Depth { now: 0 }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Sql(format!(
            "an expression nests more than {MAX_EXPRESSION_DEPTH} levels deep (a long chain of \
             operators such as a+b+...); split it, e.g. into several columns or a table of values"
        ))),
    }
}

/// Refuses `sql` longer than [`MAX_SQL_BYTES`], then runs `parse` (which parses `sql`) on a
/// thread of its own with a [`PARSER_STACK_BYTES`] stack and returns what it returned (an
/// error only for the size or when the thread cannot be had). `parse` should check what it
/// parsed and drop what it refuses before it returns.
pub fn parse_within_limits<R: Send>(
    sql: &str,
    parse: impl FnOnce() -> R + Send,
) -> Result<R, Error> {
    check_sql_size(sql)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("lakeplan-sql-parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, parse)
            .map_err(|e| Error::Internal(format!("starting the SQL parser thread: {e}")))?;
        worker
            .join()
            .map_err(|_| Error::Internal("the SQL parser thread panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    fn parse_checked(sql: &str) -> Result<usize, Error> {
        parse_within_limits(sql, || {
            let statements = Parser::parse_sql(&GenericDialect {}, sql)
                .map_err(|e| Error::Sql(e.to_string()))?;
            for s in &statements {
                check_expression_depth(s)?;
            }
            Ok(statements.len())
        })?
    }

    fn sum_of(terms: usize) -> String {
        format!("SELECT {} AS x", vec!["1"; terms].join("+"))
    }

    #[test]
    fn deep_chains_are_refused_with_a_clear_error() {
        // 1000 terms nest 999 additions + 1000 literals... the tree is 1000 deep: accepted.
        assert_eq!(parse_checked(&sum_of(MAX_EXPRESSION_DEPTH)).unwrap(), 1);
        let err = parse_checked(&sum_of(MAX_EXPRESSION_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("more than 1000 levels"), "{err}");
        // A chain as long as the size limit allows is refused, not a crash.
        let longest = (MAX_SQL_BYTES - 20) / 2;
        let err = parse_checked(&sum_of(longest)).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
        let err = parse_checked(&sum_of(MAX_SQL_BYTES)).unwrap_err();
        assert!(err.to_string().contains("at most 1048576"), "{err}");
    }

    #[test]
    fn wide_statements_are_not_deep() {
        let cols: Vec<String> = (0..5000).map(|i| format!("a{i} + 1 AS c{i}")).collect();
        let sql = format!("SELECT {} FROM t WHERE (x = 1 OR y = 2)", cols.join(", "));
        assert_eq!(parse_checked(&sql).unwrap(), 1);
    }
}
