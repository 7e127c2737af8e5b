use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The branch every lake has.
pub const MAIN_BRANCH: &str = "main";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefKind {
    Branch,
    Tag,
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        })
    }
}

/// Checks a branch or tag name against git's rules (`git check-ref-format`), plus a 255-byte limit.
pub fn validate_ref_name(name: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::InvalidRefName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return fail("a ref name cannot be empty");
    }
    if name.len() > 255 {
        return fail("a ref name is at most 255 bytes");
    }
    if name.contains("..") {
        return fail("'..' is not allowed");
    }
    if name.contains("@{") || name == "@" {
        return fail("'@{' and a lone '@' are not allowed");
    }
    if name.contains('@') {
        return fail("'@' is reserved for ref@commit expressions");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || " ~^:?*[\\".contains(*c))
    {
        return fail(&format!("character {c:?} is not allowed"));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return fail("a ref name cannot start or end with '/' or contain '//'");
    }
    if name.ends_with('.') {
        return fail("a ref name cannot end with '.'");
    }
    if name.ends_with(".lock") {
        return fail("a ref name cannot end with '.lock'");
    }
    if name.starts_with('-') {
        return fail("a ref name cannot start with '-'");
    }
    if name.split('/').any(|c| c.starts_with('.')) {
        return fail("a path component cannot start with '.'");
    }
    if name == "HEAD" {
        return fail("'HEAD' is reserved (as in git)");
    }
    Ok(())
}

/// A point on a ref: its head, a given commit on it, or its head as of a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefPoint {
    Head,
    Commit(String),
    AsOf(DateTime<Utc>),
}

/// A ref expression as users write it:
/// `main`, `v1` (tag), `main@<hash>`, `@<hash>` (detached, unique prefix of ≥ 8 hex),
/// `main*2026-11-25T10:00:00Z` (head of `main` as of that time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefExpr {
    Named { name: String, at: RefPoint },
    Detached(String),
}

impl RefExpr {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidRef {
            expr: s.to_string(),
            reason: reason.to_string(),
        };
        let s_trim = s.trim();
        if s_trim.is_empty() {
            return Err(bad("empty ref"));
        }
        if let Some((name, hash)) = s_trim.split_once('@') {
            if hash.contains('@') {
                return Err(bad("at most one '@'"));
            }
            let hash = validate_hash_prefix(hash).map_err(|r| bad(&r))?;
            if name.is_empty() {
                return Ok(RefExpr::Detached(hash));
            }
            validate_ref_name(name)?;
            return Ok(RefExpr::Named {
                name: name.to_string(),
                at: RefPoint::Commit(hash),
            });
        }
        if let Some((name, ts)) = s_trim.split_once('*') {
            validate_ref_name(name)?;
            let t = DateTime::parse_from_rfc3339(ts)
                .map_err(|e| bad(&format!("timestamp '{ts}' is not RFC 3339 ({e})")))?;
            return Ok(RefExpr::Named {
                name: name.to_string(),
                at: RefPoint::AsOf(t.with_timezone(&Utc)),
            });
        }
        validate_ref_name(s_trim)?;
        Ok(RefExpr::Named {
            name: s_trim.to_string(),
            at: RefPoint::Head,
        })
    }

    /// The branch or tag this expression names, if any.
    pub fn ref_name(&self) -> Option<&str> {
        match self {
            RefExpr::Named { name, .. } => Some(name),
            RefExpr::Detached(_) => None,
        }
    }
}

impl fmt::Display for RefExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefExpr::Named { name, at } => match at {
                RefPoint::Head => write!(f, "{name}"),
                RefPoint::Commit(h) => write!(f, "{name}@{h}"),
                RefPoint::AsOf(t) => write!(f, "{name}*{}", t.to_rfc3339()),
            },
            RefExpr::Detached(h) => write!(f, "@{h}"),
        }
    }
}

fn validate_hash_prefix(h: &str) -> std::result::Result<String, String> {
    if h.len() < 8 || h.len() > 64 {
        return Err("a commit hash (prefix) has 8 to 64 hex characters".into());
    }
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{h}' is not hexadecimal"));
    }
    Ok(h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_ref_rules() {
        for ok in ["main", "alice.dev", "feature/x-1", "v1.0", "a_b"] {
            validate_ref_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "x.lock", "x.", "/x",
            "x/", "a//b", ".hidden", "a/.b", "-x", "a@b", "@", "a\u{7}", "HEAD",
        ] {
            assert!(
                validate_ref_name(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(validate_ref_name(&"a".repeat(256)).is_err());
        assert!(validate_ref_name(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn ref_expressions() {
        assert_eq!(
            RefExpr::parse("main").unwrap(),
            RefExpr::Named {
                name: "main".into(),
                at: RefPoint::Head
            }
        );
        assert_eq!(
            RefExpr::parse("main@ABCDEF12").unwrap(),
            RefExpr::Named {
                name: "main".into(),
                at: RefPoint::Commit("abcdef12".into())
            }
        );
        assert_eq!(
            RefExpr::parse("@abcdef1234").unwrap(),
            RefExpr::Detached("abcdef1234".into())
        );
        match RefExpr::parse("dev*2026-11-25T10:00:00Z").unwrap() {
            RefExpr::Named {
                name,
                at: RefPoint::AsOf(t),
            } => {
                assert_eq!(name, "dev");
                assert_eq!(t.to_rfc3339(), "2026-11-25T10:00:00+00:00");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "@abc",
            "main@xyzxyzxyz",
            "a@b@c",
            "main*yesterday",
            "",
            "a..b@abcdef12",
        ] {
            assert!(RefExpr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = RefExpr::parse("main@abcdef12").unwrap();
        assert_eq!(RefExpr::parse(&e.to_string()).unwrap(), e);
    }
}
