//! The Iceberg REST catalog's own operations (`/iceberg/v1/{ref}/...`): loading a table's
//! metadata at a ref, and the writes iceberg-rust clients make on a branch (create, register,
//! commit, rename). Each write is one lakeplan commit, audited like every other. Namespaces,
//! table lists and drops are the catalog's operations ([`super::catalog`]).

use std::collections::HashMap;

use iceberg::spec::{Schema, UnboundPartitionSpec};
use lakeplan_core::{Error, Result, TableName};

use super::{Access, Operation, Service};
use crate::{IcebergChange, IcebergTable};

fn ident(name: &TableName) -> iceberg::TableIdent {
    iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(name.namespace.clone()),
        name.name.clone(),
    )
}

/// A table's metadata at a ref expression.
#[derive(Clone, Debug)]
pub struct IcebergLoadTable {
    pub at: String,
    pub table: TableName,
}

impl Operation for IcebergLoadTable {
    type Output = IcebergTable;
    const NAME: &'static str = "iceberg_load_table";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let t = on
            .lake()
            .iceberg_reader(&self.at)?
            .load(&self.table)
            .await?;
        IcebergTable::of(&t)
    }
}

/// Whether a table is there at a ref expression (a missing ref is an error, not `false`).
#[derive(Clone, Debug)]
pub struct IcebergTableExists {
    pub at: String,
    pub table: TableName,
}

impl Operation for IcebergTableExists {
    type Output = bool;
    const NAME: &'static str = "iceberg_table_exists";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        on.lake()
            .iceberg_reader(&self.at)?
            .table_exists_(&self.table)
    }
}

/// A new, empty table with the client's schema and partition spec (its location is the
/// lake's to choose).
#[derive(Clone, Debug)]
pub struct IcebergCreateTable {
    pub branch: String,
    pub table: TableName,
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub properties: HashMap<String, String>,
}

impl Operation for IcebergCreateTable {
    type Output = IcebergTable;
    const NAME: &'static str = "iceberg_create_table";
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(self.branch.clone())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let name = self.table;
        let message = format!("Create table {name} through the Iceberg REST catalog");
        let (t, _) = on
            .lake()
            .iceberg_write(
                &self.branch,
                "iceberg.create_table",
                &name.to_string(),
                message,
                |s| {
                    let name = name.clone();
                    async move {
                        let t = s
                            .create(
                                &name,
                                self.schema,
                                self.partition_spec,
                                self.properties,
                                false,
                            )
                            .await?;
                        IcebergTable::of(&t)
                    }
                },
            )
            .await?;
        Ok(t)
    }
}

/// A table whose metadata file exists already (written by another engine): registered as it
/// is, if every file it names is within the caller's reach.
#[derive(Clone, Debug)]
pub struct IcebergRegisterTable {
    pub branch: String,
    pub table: TableName,
    pub metadata_location: String,
}

/// Errors of `Catalog::register_table`, in lakeplan's terms.
fn register_error(e: iceberg::Error) -> Error {
    match e.kind() {
        iceberg::ErrorKind::TableAlreadyExists => Error::TableExists(e.message().to_string()),
        iceberg::ErrorKind::NamespaceNotFound => Error::NamespaceNotFound(e.message().to_string()),
        iceberg::ErrorKind::FeatureUnsupported => Error::InvalidOperation {
            op: "register a table".into(),
            reason: e.message().to_string(),
        },
        _ => Error::InvalidInput(format!("cannot read the table's metadata file: {e}")),
    }
}

impl Operation for IcebergRegisterTable {
    type Output = IcebergTable;
    const NAME: &'static str = "iceberg_register_table";
    fn access(&self) -> Vec<Access> {
        vec![
            Access::WriteRef(self.branch.clone()),
            Access::ReadSource(self.metadata_location.clone()),
        ]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let reach = on.reach()?;
        let name = self.table;
        let location = self.metadata_location;
        let message =
            format!("Register table {name} from {location} through the Iceberg REST catalog");
        let (t, _) = on
            .lake()
            .iceberg_write(
                &self.branch,
                "iceberg.register_table",
                &name.to_string(),
                message,
                |s| {
                    let name = name.clone();
                    async move {
                        use iceberg::Catalog;
                        let t = s
                            .register_table(&ident(&name), location.clone())
                            .await
                            .map_err(register_error)?;
                        // The metadata may name another tenant's files (a copy of its
                        // metadata, say): each file the table reads must be within reach.
                        reach.check_table(&location, &t, None).await?;
                        IcebergTable::of(&t)
                    }
                },
            )
            .await?;
        Ok(t)
    }
}

/// One or more tables' changes as one lakeplan commit: all of them, or (on any failed
/// requirement) none. The files a change adds must be within the caller's reach.
#[derive(Clone, Debug)]
pub struct IcebergCommit {
    pub branch: String,
    pub changes: Vec<IcebergChange>,
}

impl Operation for IcebergCommit {
    type Output = Vec<IcebergTable>;
    const NAME: &'static str = "iceberg_commit";
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(self.branch.clone())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let (tables, _) = on
            .lake()
            .within(on.reach()?)
            .iceberg_commit(&self.branch, self.changes)
            .await?;
        Ok(tables)
    }
}

/// Renames a table on a branch (within or across namespaces): one commit.
#[derive(Clone, Debug)]
pub struct IcebergRenameTable {
    pub branch: String,
    pub from: TableName,
    pub to: TableName,
}

impl Operation for IcebergRenameTable {
    type Output = ();
    const NAME: &'static str = "iceberg_rename_table";
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(self.branch.clone())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let (from, to) = (self.from, self.to);
        let message = format!("Rename table {from} to {to} through the Iceberg REST catalog");
        let at = self.branch.clone();
        on.lake()
            .iceberg_write(
                &self.branch,
                "iceberg.rename_table",
                &from.to_string(),
                message,
                |s| async move {
                    use iceberg::Catalog;
                    s.rename_table(&ident(&from), &ident(&to))
                        .await
                        .map_err(|e| match e.kind() {
                            iceberg::ErrorKind::TableNotFound => Error::TableNotFound {
                                table: from.to_string(),
                                at,
                            },
                            iceberg::ErrorKind::TableAlreadyExists => {
                                Error::TableExists(to.to_string())
                            }
                            iceberg::ErrorKind::NamespaceNotFound => {
                                Error::NamespaceNotFound(to.namespace.clone())
                            }
                            _ => Error::Storage(e.to_string()),
                        })
                },
            )
            .await?;
        Ok(())
    }
}
