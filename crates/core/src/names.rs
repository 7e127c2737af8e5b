use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The namespace a table lands in when none is given (and the lake sets no default of its own).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Bauplan's default namespace: where a Bauplan project's bare names resolve.
pub const BAUPLAN_NAMESPACE: &str = "bauplan";

/// Checks a namespace or table name: 1 to 255 characters of ASCII letters, digits and `_`, not
/// starting with a digit. This keeps every name a valid SQL identifier and a safe path segment
/// (no `/`, `..`, or control characters can reach the warehouse).
pub fn validate_identifier(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("a name cannot be empty")
    } else if name.len() > 255 {
        Some("a name is at most 255 characters")
    } else if name.as_bytes()[0].is_ascii_digit() {
        Some("a name cannot start with a digit")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some("use only letters, digits and '_'")
    } else {
        None
    };
    match reason {
        Some(r) => Err(Error::InvalidName {
            name: name.to_string(),
            reason: r.to_string(),
        }),
        None => Ok(()),
    }
}

/// A table's name: `namespace.table`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    pub namespace: String,
    pub name: String,
}

impl TableName {
    pub fn new(namespace: &str, name: &str) -> Result<Self> {
        validate_identifier(namespace)?;
        validate_identifier(name)?;
        Ok(TableName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `table` or `namespace.table`; a bare name takes `default_ns`. Giving a namespace
    /// both in the name and as `default_ns` is fine: the name wins.
    pub fn parse(s: &str, default_ns: Option<&str>) -> Result<Self> {
        match s.split_once('.') {
            Some((ns, name)) => {
                if name.contains('.') {
                    return Err(Error::InvalidName {
                        name: s.to_string(),
                        reason: "a table name is 'table' or 'namespace.table'".into(),
                    });
                }
                TableName::new(ns, name)
            }
            None => TableName::new(default_ns.unwrap_or(DEFAULT_NAMESPACE), s),
        }
    }

    /// The key of this table in a commit's tree.
    pub fn key(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(validate_identifier("trips_2024").is_ok());
        assert!(validate_identifier("_x").is_ok());
        for bad in [
            "",
            "1abc",
            "../etc",
            "a/b",
            "a b",
            "a.b",
            "é",
            &"x".repeat(256),
        ] {
            assert!(
                validate_identifier(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn table_names() {
        let t = TableName::parse("trips", None).unwrap();
        assert_eq!(t.key(), "default.trips");
        let t = TableName::parse("bronze.trips", Some("x")).unwrap();
        assert_eq!(t.to_string(), "bronze.trips");
        assert_eq!(
            TableName::parse("t", Some("silver")).unwrap().namespace,
            "silver"
        );
        assert!(TableName::parse("a.b.c", None).is_err());
        assert!(TableName::parse("../../etc", None).is_err());
    }
}
