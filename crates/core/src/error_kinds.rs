//! The one table from an error's kind to how every surface answers it: the HTTP status of the
//! API, the CLI's exit code, and the Python SDK's exception class (`python/lakeplan/exceptions.py`
//! maps the same kinds to the same classes; a test holds them together). MCP tools answer the
//! kind itself (`{"error": {"type", "message", "context"}}`), as the HTTP API's body does.
//!
//! Exit codes, by what the user can do about the error:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | internal: lakeplan, its storage or its metastore failed (the message says which) |
//! | 2 | usage: the command line itself is wrong (clap's own code) |
//! | 3 | invalid request: a bad name, ref, value or operation |
//! | 4 | not found: a ref, commit, namespace, table or job that is not there |
//! | 5 | conflict: something exists already, or changed concurrently; nothing was written |
//! | 6 | bad data: files whose contents or schema cannot be taken |
//! | 7 | SQL: the statement does not parse, plan or run |
//! | 8 | denied: no valid key, or a key without the right |
//! | 9 | pipeline plan: the project does not plan (file and line in the message) |
//! | 10 | unavailable: the server cannot take the work now; retry later |

/// How one kind of error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorKind {
    /// [`crate::Error::kind`]'s name, the `type` of an API error body.
    pub kind: &'static str,
    pub http_status: u16,
    pub exit_code: u8,
    /// The Python SDK's exception class for it (`lakeplan.exceptions`).
    pub python: &'static str,
}

pub const EXIT_INTERNAL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INVALID: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;
pub const EXIT_CONFLICT: u8 = 5;
pub const EXIT_DATA: u8 = 6;
pub const EXIT_SQL: u8 = 7;
pub const EXIT_DENIED: u8 = 8;
pub const EXIT_PLAN: u8 = 9;
pub const EXIT_UNAVAILABLE: u8 = 10;

macro_rules! kinds {
    ($( $kind:literal => $http:literal, $exit:ident, $py:literal; )*) => {
        /// Every kind of error, once.
        pub const ERROR_KINDS: &[ErrorKind] = &[
            $( ErrorKind { kind: $kind, http_status: $http, exit_code: $exit, python: $py } ),*
        ];
    };
}

kinds! {
    "InvalidRef" => 400, EXIT_INVALID, "InvalidRefError";
    "InvalidName" => 400, EXIT_INVALID, "InvalidNameError";
    "AmbiguousCommit" => 400, EXIT_INVALID, "InvalidRefError";
    "NotAWriteBranch" => 400, EXIT_INVALID, "NotAWriteBranchRefError";
    "NamespaceNotEmpty" => 400, EXIT_INVALID, "NamespaceIsNotEmptyError";
    "InvalidOperation" => 400, EXIT_INVALID, "InvalidOperationError";
    "InvalidInput" => 400, EXIT_INVALID, "BadRequestError";
    "BadRequest" => 400, EXIT_INVALID, "BadRequestError";
    "PayloadTooLarge" => 413, EXIT_INVALID, "PayloadTooLargeError";
    "RefNotFound" => 404, EXIT_NOT_FOUND, "BranchNotFoundError";
    "CommitNotFound" => 404, EXIT_NOT_FOUND, "RefNotFoundError";
    "NamespaceNotFound" => 404, EXIT_NOT_FOUND, "NamespaceNotFoundError";
    "TableNotFound" => 404, EXIT_NOT_FOUND, "TableNotFoundError";
    "JobNotFound" => 404, EXIT_NOT_FOUND, "JobNotFoundError";
    "NotFound" => 404, EXIT_NOT_FOUND, "NotFoundError";
    "RefExists" => 409, EXIT_CONFLICT, "RefExistsError";
    "Exists" => 409, EXIT_CONFLICT, "ConflictError";
    "NamespaceExists" => 409, EXIT_CONFLICT, "NamespaceExistsError";
    "TableExists" => 409, EXIT_CONFLICT, "TableExistsError";
    "Conflict" => 409, EXIT_CONFLICT, "BranchHeadChangedError";
    "MergeConflict" => 409, EXIT_CONFLICT, "MergeConflictError";
    "RequirementFailed" => 409, EXIT_CONFLICT, "UpdateConflictError";
    "RevertUnchanged" => 409, EXIT_CONFLICT, "UpdateConflictError";
    "InvalidData" => 400, EXIT_DATA, "InvalidDataError";
    "SchemaConflict" => 400, EXIT_DATA, "SchemaConflictError";
    "Sql" => 400, EXIT_SQL, "SqlError";
    "Unauthorized" => 401, EXIT_DENIED, "UnauthorizedError";
    "Forbidden" => 403, EXIT_DENIED, "ForbiddenError";
    "PlanError" => 400, EXIT_PLAN, "PlanError";
    "ServiceUnavailable" => 503, EXIT_UNAVAILABLE, "ServiceUnavailableError";
    "BadGateway" => 502, EXIT_INTERNAL, "BadGatewayError";
    "Storage" => 500, EXIT_INTERNAL, "InternalError";
    "Metastore" => 500, EXIT_INTERNAL, "InternalError";
    "Io" => 500, EXIT_INTERNAL, "InternalError";
    "Internal" => 500, EXIT_INTERNAL, "InternalError";
}

/// The row of `kind`.
pub fn error_kind(kind: &str) -> Option<&'static ErrorKind> {
    ERROR_KINDS.iter().find(|k| k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn each_kind_once_and_codes_distinct_by_meaning() {
        let kinds: HashSet<_> = ERROR_KINDS.iter().map(|k| k.kind).collect();
        assert_eq!(kinds.len(), ERROR_KINDS.len());
        for k in ERROR_KINDS {
            assert_ne!(k.exit_code, 0, "{k:?}");
            assert_ne!(k.exit_code, EXIT_USAGE, "{k:?}: 2 is clap's");
        }
        // A code means one class of HTTP answer (4xx by its meaning, or 5xx).
        let mut by_code: BTreeMap<u8, HashSet<u16>> = BTreeMap::new();
        for k in ERROR_KINDS {
            by_code
                .entry(k.exit_code)
                .or_default()
                .insert(k.http_status / 100);
        }
        assert!(by_code.values().all(|s| s.len() == 1), "{by_code:?}");
    }

    /// The Python SDK's `_BY_TYPE` names the class of each kind as this table does.
    #[test]
    fn the_python_sdk_maps_each_kind_to_the_same_class() {
        let src = include_str!("../../../python/lakeplan/exceptions.py");
        let table = src
            .split("_BY_TYPE = {")
            .nth(1)
            .and_then(|s| s.split('}').next())
            .expect("_BY_TYPE in exceptions.py");
        let mut python = BTreeMap::new();
        for line in table.lines() {
            // `"Kind": Class,` (rows refined by a ref's kind start with `(`).
            let Some(rest) = line.trim().strip_prefix('"') else {
                continue;
            };
            if let Some((kind, class)) = rest.split_once("\": ") {
                python.insert(kind.to_string(), class.trim_end_matches(',').to_string());
            }
        }
        for k in ERROR_KINDS {
            assert_eq!(
                python.get(k.kind).map(String::as_str),
                Some(k.python),
                "{}: python/lakeplan/exceptions.py _BY_TYPE",
                k.kind
            );
        }
        for kind in python.keys() {
            assert!(error_kind(kind).is_some(), "{kind} is not a kind here");
        }
    }
}
