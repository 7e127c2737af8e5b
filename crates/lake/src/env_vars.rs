//! Numbers an operator sets in the environment (`LAKEPLAN_NODE_CACHE_*`,
//! `LAKEPLAN_FUNCTION_*`): one reading, one error naming the variable.

use lakeplan_core::{Error, Result};

/// The smallest value a variable takes.
#[derive(Clone, Copy)]
pub(crate) enum AtLeast {
    Zero,
    /// greater than 0
    Positive,
}

/// `name`'s value as given by `var`, or `default` when unset or empty; a value that is not a
/// finite number in range is an error naming the variable and the value.
pub(crate) fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
    at_least: AtLeast,
) -> Result<f64> {
    let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    let (ok, expected): (fn(f64) -> bool, &str) = match at_least {
        AtLeast::Zero => (|n| n >= 0.0, "a number that is 0 or more"),
        AtLeast::Positive => (|n| n > 0.0, "a number greater than 0"),
    };
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && ok(*n))
        .ok_or_else(|| Error::InvalidInput(format!("{name}='{v}': expected {expected}")))
}
