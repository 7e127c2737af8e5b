use iceberg::ErrorKind;
use lakeplan_core::Error;

/// Maps an iceberg error to lakeplan's, keeping the message (which carries iceberg's context).
pub fn from_iceberg(e: iceberg::Error) -> Error {
    match e.kind() {
        ErrorKind::CatalogCommitConflicts | ErrorKind::PreconditionFailed => {
            Error::InvalidOperation {
                op: "commit table change".into(),
                reason: e.to_string(),
            }
        }
        ErrorKind::DataInvalid => Error::InvalidInput(e.to_string()),
        _ => Error::Storage(e.to_string()),
    }
}

/// Maps lakeplan's error to iceberg's, for the `Catalog` trait.
pub fn to_iceberg(e: Error) -> iceberg::Error {
    let kind = match &e {
        Error::NamespaceNotFound(_) => ErrorKind::NamespaceNotFound,
        Error::NamespaceExists(_) => ErrorKind::NamespaceAlreadyExists,
        Error::TableNotFound { .. } => ErrorKind::TableNotFound,
        Error::TableExists(_) => ErrorKind::TableAlreadyExists,
        Error::Conflict { .. } | Error::RequirementFailed { .. } => {
            ErrorKind::CatalogCommitConflicts
        }
        Error::InvalidName { .. } | Error::InvalidInput(_) | Error::InvalidData { .. } => {
            ErrorKind::DataInvalid
        }
        Error::NotAWriteBranch(_) | Error::InvalidOperation { .. } => ErrorKind::FeatureUnsupported,
        _ => ErrorKind::Unexpected,
    };
    iceberg::Error::new(kind, e.to_string())
}
