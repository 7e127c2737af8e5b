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

/// The column references of an expression that are not among `available`: a quoted name must
/// be one exactly, an unquoted one must match exactly one ignoring case (as the filter does when
/// it runs: see lakeplan-sql). An unquoted name that matches several is an error naming them.
pub fn unknown_columns(expr: &Expr, available: &[String]) -> Result<Vec<String>, String> {
    let mut refs = BTreeSet::new();
    let _ = visit_expressions(expr, |e: &Expr| {
        let id = match e {
            Expr::Identifier(id) => Some(id),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(id) = id {
            refs.insert((id.value.clone(), id.quote_style.is_some()));
        }
        ControlFlow::<()>::Continue(())
    });
    let mut unknown = Vec::new();
    for (name, quoted) in refs {
        if quoted {
            if !available.contains(&name) {
                unknown.push(name);
            }
            continue;
        }
        let k = name.to_lowercase();
        let matches: BTreeSet<&String> =
            available.iter().filter(|a| a.to_lowercase() == k).collect();
        match matches.len() {
            0 => unknown.push(name),
            1 => {}
            _ => {
                let list: Vec<String> = matches.iter().map(|m| format!("\"{m}\"")).collect();
                return Err(format!(
                    "column name {name} is ambiguous: unquoted names match ignoring case, and it matches {}; quote the one you mean",
                    list.join(", ")
                ));
            }
        }
    }
    Ok(unknown)
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
        assert_eq!(unknown_columns(&e, &[]).unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn unquoted_columns_match_ignoring_case() {
        let avail: Vec<String> = ["PULocationID", "a", "A"].map(String::from).into();
        let unknown = |s: &str| unknown_columns(&parse_filter(s).unwrap(), &avail);
        assert_eq!(
            unknown("pulocationid > 1 AND t.PULOCATIONID < 9").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(unknown("\"pulocationid\" > 1").unwrap(), ["pulocationid"]);
        assert_eq!(
            unknown("\"a\" = 1 AND \"A\" = 2 OR nope").unwrap(),
            ["nope"]
        );
        let err = unknown("a = 1").unwrap_err();
        assert!(
            err.contains("\"A\", \"a\"") && err.contains("quote"),
            "{err}"
        );
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
