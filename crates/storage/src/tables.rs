use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use lakeplan_core::{Result, TableEntry, TableName};

use crate::from_iceberg;

pub fn table_ident(name: &TableName) -> TableIdent {
    TableIdent::new(
        NamespaceIdent::new(name.namespace.clone()),
        name.name.clone(),
    )
}

/// Opens the table that a tree entry points at (one read of its metadata file).
pub async fn load_table(file_io: &FileIO, name: &TableName, entry: &TableEntry) -> Result<Table> {
    let metadata = TableMetadata::read_from(file_io, &entry.metadata_location)
        .await
        .map_err(from_iceberg)?;
    build_table(
        metadata,
        &entry.metadata_location,
        table_ident(name),
        file_io,
    )
    .map_err(from_iceberg)
}

/// A writable `Table` handle for a metadata file already read.
pub(crate) fn build_table(
    metadata: TableMetadata,
    metadata_location: &str,
    ident: TableIdent,
    file_io: &FileIO,
) -> iceberg::Result<Table> {
    Table::builder()
        .metadata(metadata)
        .metadata_location(metadata_location.to_string())
        .identifier(ident)
        .file_io(file_io.clone())
        .runtime(iceberg::Runtime::try_current()?)
        .build()
}

/// The tree entry that describes `table` at its metadata location.
pub fn entry_for(table: &Table) -> Result<TableEntry> {
    let md = table.metadata();
    let records = md
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get("total-records"))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(TableEntry {
        metadata_location: table
            .metadata_location_result()
            .map_err(from_iceberg)?
            .to_string(),
        table_uuid: md.uuid().to_string(),
        snapshot_id: md.current_snapshot_id(),
        schema_id: md.current_schema_id(),
        records,
    })
}
