//! The lake as iceberg-rust sees it at a ref: what the server's Iceberg REST catalog
//! (`/iceberg/v1/{ref}/...`) serves. Reads take any ref expression (a branch's head, a tag, a
//! commit); writes take a branch and become one lakeplan commit each, made like every other
//! write (compare-and-swap of the head, rebased over concurrent commits to other tables, a
//! conflict for the same table) and recorded in the audit log.

use std::future::Future;
use std::sync::Arc;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use lakeplan_core::{Error, Result, TableName};
use lakeplan_storage::StagedCatalog;
use serde_json::json;

use crate::{Lake, WriteInfo};

/// A table as the Iceberg REST catalog answers it: where its metadata file is, and the metadata.
#[derive(Clone, Debug)]
pub struct IcebergTable {
    pub metadata_location: String,
    pub metadata: Arc<TableMetadata>,
}

impl IcebergTable {
    pub fn of(t: &Table) -> Result<IcebergTable> {
        Ok(IcebergTable {
            metadata_location: t
                .metadata_location()
                .ok_or_else(|| {
                    Error::Internal(format!("table {} has no metadata file", t.identifier()))
                })?
                .to_string(),
            metadata: t.metadata_ref(),
        })
    }
}

/// One table's change of an Iceberg commit: the requirements the table at the branch's head must
/// meet, and the metadata updates (a new snapshot, a schema, properties, ...).
#[derive(Clone, Debug)]
pub struct IcebergChange {
    pub table: TableName,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

impl Lake {
    /// An iceberg-rust catalog over ref expression `r`, for reads (it refuses writes).
    pub fn iceberg_reader(&self, r: &str) -> Result<StagedCatalog> {
        let view = self.view(r)?;
        Ok(StagedCatalog::read_only(view, self.warehouse.clone(), r))
    }

    /// Runs `f` on an iceberg-rust catalog of `branch`'s head and commits what it staged as one
    /// commit (none if it staged nothing); audited as `op` on `target`.
    pub async fn iceberg_write<T, F, Fut>(
        &self,
        branch: &str,
        op: &str,
        target: &str,
        message: String,
        f: F,
    ) -> Result<(T, WriteInfo)>
    where
        F: FnOnce(Arc<StagedCatalog>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let details = json!({"branch": branch, "via": "iceberg-rest"});
        self.audited_async(op, target, details, async {
            let (out, id) = self.write(branch, op, message, f).await?;
            let hash = match id {
                Some(c) => c.to_string(),
                None => self.catalog.branch_head(branch)?.to_string(),
            };
            Ok((
                out,
                WriteInfo {
                    branch: branch.to_string(),
                    hash: Some(hash),
                },
            ))
        })
        .await
    }

    /// Commits Iceberg table changes (the REST catalog's table commit, or its multi-table
    /// transaction) as one lakeplan commit on `branch`: each table's requirements are checked
    /// against the table at the head, then its updates make a new metadata version. If any
    /// requirement fails, nothing is written.
    pub async fn iceberg_commit(
        &self,
        branch: &str,
        changes: Vec<IcebergChange>,
    ) -> Result<(Vec<IcebergTable>, WriteInfo)> {
        let names: Vec<String> = changes.iter().map(|c| c.table.to_string()).collect();
        let message = match names.as_slice() {
            [one] => format!("Commit {one} through the Iceberg REST catalog"),
            many => format!(
                "Commit {} tables through the Iceberg REST catalog: {}",
                many.len(),
                many.join(", ")
            ),
        };
        // A commit may add files of its own naming (a snapshot's manifest list): each must be
        // within the lake's reach, as an import's source files are.
        let reach = self.reach.clone();
        self.iceberg_write(
            branch,
            "iceberg.commit",
            &names.join(","),
            message,
            |s| async move {
                let mut out = Vec::with_capacity(changes.len());
                for c in changes {
                    let current = s.load(&c.table).await?;
                    for r in &c.requirements {
                        r.check(Some(current.metadata())).map_err(|e| {
                            Error::RequirementFailed {
                                table: c.table.to_string(),
                                reason: e.message().to_string(),
                            }
                        })?;
                    }
                    let new = s.apply_updates(&current, c.updates).await?;
                    reach
                        .check_table(&c.table.to_string(), &new, Some(&current))
                        .await?;
                    out.push(IcebergTable::of(&new)?);
                }
                Ok(out)
            },
        )
        .await
    }
}
