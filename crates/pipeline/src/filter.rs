//! Row filters (`Model(..., filter="a > 3")`) and `overwrite_filter`s: parsed with sqlparser's
//! expression parser (the parser DataFusion uses), their column references collected.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, BinaryOperator, Expr, UnaryOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// Parses a filter as one SQL boolean expression (the whole string must be consumed).
pub fn parse_filter(filter: &str) -> Result<Expr, String> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(filter)
        .map_err(|e| e.to_string())?;
    let expr = parser.parse_expr().map_err(|e| e.to_string())?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!("unexpected '{}' after the expression", next.token));
    }
    let mut bad = None;
    let _ = visit_expressions(&expr, |e: &Expr| {
        let what = match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => Some("a subquery"),
            _ => None,
        };
        match what {
            Some(w) => {
                bad = Some(w);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    });
    if let Some(w) = bad {
        return Err(format!(
            "a filter is a row predicate and cannot contain {w}"
        ));
    }
    Ok(expr)
}

/// The column names an expression reads (the last part of compound identifiers).
pub fn filter_columns(expr: &Expr) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let _ = visit_expressions(expr, |e: &Expr| {
        match e {
            Expr::Identifier(id) => {
                out.insert(id.value.clone());
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    out.insert(last.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// Checks an `overwrite_filter`: only `= != < > <= >= AND OR IN NOT IN` (and NOT, parentheses,
/// IS [NOT] NULL) over column references and literals; no functions, no BETWEEN.
pub fn check_overwrite_filter(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => Ok(()),
        Expr::Nested(e) => check_overwrite_filter(e),
        Expr::IsNull(e) | Expr::IsNotNull(e) => check_overwrite_filter(e),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus => {
                check_overwrite_filter(expr)
            }
            other => Err(format!("operator '{other}' is not allowed")),
        },
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::Gt
            | BinaryOperator::LtEq
            | BinaryOperator::GtEq
            | BinaryOperator::And
            | BinaryOperator::Or => {
                check_overwrite_filter(left)?;
                check_overwrite_filter(right)
            }
            other => Err(format!("operator '{other}' is not allowed")),
        },
        Expr::InList { expr, list, .. } => {
            check_overwrite_filter(expr)?;
            list.iter().try_for_each(check_overwrite_filter)
        }
        Expr::Between { .. } => Err("BETWEEN is not allowed".to_string()),
        Expr::Function(f) => Err(format!("function '{}' is not allowed", f.name)),
        other => Err(format!(
            "'{other}' is not allowed (use column references, literals, = != < > <= >= AND OR IN NOT IN)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_collects_columns() {
        let e = parse_filter("a > 3 AND t.b IS NOT NULL OR lower(c) = 'x'").unwrap();
        let cols: Vec<_> = filter_columns(&e).into_iter().collect();
        assert_eq!(cols, ["a", "b", "c"]);
    }

    #[test]
    fn rejects_garbage_and_subqueries() {
        assert!(parse_filter("a >").is_err());
        assert!(parse_filter("a > 1 b").unwrap_err().contains("unexpected"));
        assert!(parse_filter("a IN (SELECT 1)")
            .unwrap_err()
            .contains("subquery"));
    }

    #[test]
    fn overwrite_filter_operators() {
        let ok = |s: &str| check_overwrite_filter(&parse_filter(s).unwrap());
        assert!(ok("d = '2024-01-01' AND (v IN ('a', 'b') OR v NOT IN ('c'))").is_ok());
        assert!(ok("d >= 1 AND d <> 3").is_ok());
        assert!(ok("d BETWEEN 1 AND 2").unwrap_err().contains("BETWEEN"));
        assert!(ok("lower(d) = 'a'").unwrap_err().contains("function"));
        assert!(ok("d + 1 = 2").unwrap_err().contains("not allowed"));
    }
}
