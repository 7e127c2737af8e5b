use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::spec::{TableMetadata, TableMetadataBuilder, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{
    Catalog, MetadataLocation, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
    TableUpdate,
};
use lakeplan_core::{
    validate_identifier, Entry, Error, ObjectEntry, Result, TableName, TreeView, OBJECT_KEY_PREFIX,
};

use crate::tables::build_table;
use crate::{entry_for, from_iceberg, load_table, table_ident, to_iceberg, Warehouse};

/// iceberg-rust's `Catalog` over one commit's tree, with every change kept aside.
///
/// Writes create new data and metadata files in the warehouse (never overwriting a file) and
/// record `key -> Some(entry)` or `key -> None` in memory; reads see those changes over the
/// tree. Nothing is visible to anybody else until the owner commits [`StagedCatalog::changes`]
/// to a branch. A `StagedCatalog` made with [`StagedCatalog::read_only`] refuses every write
/// with the reason it was given (a tag or a commit is not a branch).
pub struct StagedCatalog {
    view: Arc<dyn TreeView>,
    warehouse: Warehouse,
    staged: Mutex<BTreeMap<String, Option<Entry>>>,
    read_only: Option<String>,
}

impl std::fmt::Debug for StagedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedCatalog")
            .field("view", &self.view.label())
            .field("warehouse", &self.warehouse.url())
            .finish()
    }
}

impl StagedCatalog {
    pub fn new(view: Arc<dyn TreeView>, warehouse: Warehouse) -> Self {
        StagedCatalog {
            view,
            warehouse,
            staged: Mutex::new(BTreeMap::new()),
            read_only: None,
        }
    }

    /// A catalog that refuses writes, saying `ref_label` is not a branch.
    pub fn read_only(view: Arc<dyn TreeView>, warehouse: Warehouse, ref_label: &str) -> Self {
        let mut c = Self::new(view, warehouse);
        c.read_only = Some(ref_label.to_string());
        c
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    pub fn view(&self) -> &Arc<dyn TreeView> {
        &self.view
    }

    /// Every staged change, by key.
    pub fn changes(&self) -> Result<Vec<(String, Option<Entry>)>> {
        Ok(self
            .lock()?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Option<Entry>>>> {
        self.staged
            .lock()
            .map_err(|_| Error::Internal("staged catalog lock poisoned".into()))
    }

    fn check_writable(&self) -> Result<()> {
        match &self.read_only {
            Some(label) => Err(Error::NotAWriteBranch(label.clone())),
            None => Ok(()),
        }
    }

    /// The entry under `key`: staged change first, then the tree.
    pub fn current(&self, key: &str) -> Result<Option<Entry>> {
        if let Some(change) = self.lock()?.get(key) {
            return Ok(change.clone());
        }
        self.view.entry(key)
    }

    /// The tree with the staged changes applied.
    pub fn entries(&self) -> Result<BTreeMap<String, Entry>> {
        let mut all = self.view.entries()?;
        for (k, v) in self.lock()?.iter() {
            match v {
                Some(e) => all.insert(k.clone(), e.clone()),
                None => all.remove(k),
            };
        }
        Ok(all)
    }

    fn stage(&self, key: String, entry: Option<Entry>) -> Result<()> {
        self.check_writable()?;
        self.lock()?.insert(key, entry);
        Ok(())
    }

    pub fn namespace_exists_(&self, ns: &str) -> Result<bool> {
        Ok(matches!(self.current(ns)?, Some(Entry::Namespace)))
    }

    fn require_namespace(&self, ns: &str) -> Result<()> {
        if self.namespace_exists_(ns)? {
            Ok(())
        } else {
            Err(Error::NamespaceNotFound(ns.to_string()))
        }
    }

    pub fn create_namespace_(&self, ns: &str) -> Result<()> {
        validate_identifier(ns)?;
        if ns == "system" {
            return Err(Error::InvalidName {
                name: ns.into(),
                reason: "'system' is reserved for lakeplan's system tables".into(),
            });
        }
        if self.current(ns)?.is_some() {
            return Err(Error::NamespaceExists(ns.to_string()));
        }
        self.stage(ns.to_string(), Some(Entry::Namespace))
    }

    /// Tables in `ns` (after staged changes), sorted.
    pub fn tables_in(&self, ns: &str) -> Result<Vec<TableName>> {
        let prefix = format!("{ns}.");
        let mut out = Vec::new();
        for (k, e) in self.entries()? {
            if let (Some(name), Entry::Table(_)) = (k.strip_prefix(&prefix), &e) {
                out.push(TableName::new(ns, name)?);
            }
        }
        Ok(out)
    }

    pub fn drop_namespace_(&self, ns: &str) -> Result<()> {
        self.require_namespace(ns)?;
        let tables = self.tables_in(ns)?.len();
        if tables > 0 {
            return Err(Error::NamespaceNotEmpty {
                namespace: ns.to_string(),
                tables,
            });
        }
        self.stage(ns.to_string(), None)
    }

    /// Opens a table as of the tree plus staged changes.
    pub async fn load(&self, name: &TableName) -> Result<Table> {
        match self.current(&name.key())? {
            Some(Entry::Table(t)) => load_table(self.warehouse.file_io(), name, &t).await,
            _ => Err(Error::TableNotFound {
                table: name.to_string(),
                at: self.view.label(),
            }),
        }
    }

    pub fn table_exists_(&self, name: &TableName) -> Result<bool> {
        Ok(matches!(self.current(&name.key())?, Some(Entry::Table(_))))
    }

    /// Creates a table: a new metadata file at a fresh location. With `replace`, an existing
    /// table of that name is replaced by this new table (the old version's files stay for the
    /// commits that reference them).
    pub async fn create(
        &self,
        name: &TableName,
        schema: iceberg::spec::Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
        replace: bool,
    ) -> Result<Table> {
        self.check_writable()?;
        self.require_namespace(&name.namespace)?;
        if !replace && self.current(&name.key())?.is_some() {
            return Err(Error::TableExists(name.to_string()));
        }
        let location = self.warehouse.new_table_location(name);
        let mut creation = TableCreation::builder()
            .name(name.name.clone())
            .location(location.clone())
            .schema(schema)
            .properties(properties)
            .build();
        creation.partition_spec = partition_spec;
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .map_err(from_iceberg)?
            .build()
            .map_err(from_iceberg)?
            .metadata;
        self.write_new(name, &location, metadata).await
    }

    async fn write_new(
        &self,
        name: &TableName,
        location: &str,
        metadata: TableMetadata,
    ) -> Result<Table> {
        let loc = MetadataLocation::new_with_metadata(location, &metadata);
        metadata
            .write_to(self.warehouse.file_io(), &loc)
            .await
            .map_err(from_iceberg)?;
        let table = build_table(
            metadata,
            &loc.to_string(),
            table_ident(name),
            self.warehouse.file_io(),
        )
        .map_err(from_iceberg)?;
        self.stage(name.key(), Some(Entry::Table(entry_for(&table)?)))?;
        Ok(table)
    }

    /// Applies metadata updates that iceberg-rust has no transaction action for (for example a
    /// schema whose column types were widened) as a new metadata version of `table`.
    pub async fn apply_updates(&self, table: &Table, updates: Vec<TableUpdate>) -> Result<Table> {
        self.check_writable()?;
        let current = table.metadata_location_result().map_err(from_iceberg)?;
        let mut builder = table
            .metadata()
            .clone()
            .into_builder(Some(current.to_string()));
        for u in updates {
            builder = u.apply(builder).map_err(from_iceberg)?;
        }
        let metadata = builder.build().map_err(from_iceberg)?.metadata;
        let loc = MetadataLocation::from_str(current)
            .map_err(from_iceberg)?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata
            .write_to(self.warehouse.file_io(), &loc)
            .await
            .map_err(from_iceberg)?;
        let name = table_name_of(table.identifier())?;
        let new = build_table(
            metadata,
            &loc.to_string(),
            table.identifier().clone(),
            self.warehouse.file_io(),
        )
        .map_err(from_iceberg)?;
        self.stage(name.key(), Some(Entry::Table(entry_for(&new)?)))?;
        Ok(new)
    }

    /// Stages `entry` for `name` as it is (used by revert: no file is copied).
    pub fn put_entry(&self, name: &TableName, entry: Option<Entry>) -> Result<()> {
        self.stage(name.key(), entry)
    }

    /// Stages the object saved under `key` (a tree key `object:<key>`).
    pub fn put_object(&self, key: &str, entry: ObjectEntry) -> Result<()> {
        if !key.starts_with(OBJECT_KEY_PREFIX) {
            return Err(Error::Internal(format!("'{key}' is not an object's key")));
        }
        self.stage(key.to_string(), Some(Entry::Object(entry)))
    }
}

fn ns_name(ns: &NamespaceIdent) -> Result<String> {
    match ns.as_ref().as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::InvalidName {
            name: ns.to_url_string(),
            reason: "lakeplan namespaces have one level".into(),
        }),
    }
}

fn table_name_of(ident: &TableIdent) -> Result<TableName> {
    TableName::new(&ns_name(ident.namespace())?, ident.name())
}

type IceResult<T> = iceberg::Result<T>;

#[async_trait]
impl Catalog for StagedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> IceResult<Vec<NamespaceIdent>> {
        if parent.is_some() {
            return Ok(vec![]);
        }
        let all = self.entries().map_err(to_iceberg)?;
        Ok(all
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Namespace))
            .map(|(k, _)| NamespaceIdent::new(k.clone()))
            .collect())
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> IceResult<Namespace> {
        if !properties.is_empty() {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::FeatureUnsupported,
                "lakeplan namespaces carry no properties",
            ));
        }
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        self.create_namespace_(&ns).map_err(to_iceberg)?;
        Ok(Namespace::new(namespace.clone()))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> IceResult<Namespace> {
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        self.require_namespace(&ns).map_err(to_iceberg)?;
        Ok(Namespace::new(namespace.clone()))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> IceResult<bool> {
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        self.namespace_exists_(&ns).map_err(to_iceberg)
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> IceResult<()> {
        Err(iceberg::Error::new(
            iceberg::ErrorKind::FeatureUnsupported,
            "lakeplan namespaces carry no properties",
        ))
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> IceResult<()> {
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        self.drop_namespace_(&ns).map_err(to_iceberg)
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> IceResult<Vec<TableIdent>> {
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        self.require_namespace(&ns).map_err(to_iceberg)?;
        Ok(self
            .tables_in(&ns)
            .map_err(to_iceberg)?
            .iter()
            .map(table_ident)
            .collect())
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> IceResult<Table> {
        let ns = ns_name(namespace).map_err(to_iceberg)?;
        let name = TableName::new(&ns, &creation.name).map_err(to_iceberg)?;
        self.create(
            &name,
            creation.schema,
            creation.partition_spec,
            creation.properties,
            false,
        )
        .await
        .map_err(to_iceberg)
    }

    async fn load_table(&self, table: &TableIdent) -> IceResult<Table> {
        let name = table_name_of(table).map_err(to_iceberg)?;
        self.load(&name).await.map_err(to_iceberg)
    }

    async fn drop_table(&self, table: &TableIdent) -> IceResult<()> {
        let name = table_name_of(table).map_err(to_iceberg)?;
        if !self.table_exists_(&name).map_err(to_iceberg)? {
            return Err(to_iceberg(Error::TableNotFound {
                table: name.to_string(),
                at: self.view.label(),
            }));
        }
        self.stage(name.key(), None).map_err(to_iceberg)
    }

    /// Drops the table from this ref. Its files stay: other refs and older commits may read them
    /// (files that nothing reachable references are removed only by garbage collection).
    async fn purge_table(&self, table: &TableIdent) -> IceResult<()> {
        self.drop_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> IceResult<bool> {
        let name = table_name_of(table).map_err(to_iceberg)?;
        self.table_exists_(&name).map_err(to_iceberg)
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> IceResult<()> {
        let from = table_name_of(src).map_err(to_iceberg)?;
        let to = table_name_of(dest).map_err(to_iceberg)?;
        let entry = match self.current(&from.key()).map_err(to_iceberg)? {
            Some(e @ Entry::Table(_)) => e,
            _ => {
                return Err(to_iceberg(Error::TableNotFound {
                    table: from.to_string(),
                    at: self.view.label(),
                }))
            }
        };
        self.require_namespace(&to.namespace).map_err(to_iceberg)?;
        if self.current(&to.key()).map_err(to_iceberg)?.is_some() {
            return Err(to_iceberg(Error::TableExists(to.to_string())));
        }
        self.stage(to.key(), Some(entry)).map_err(to_iceberg)?;
        self.stage(from.key(), None).map_err(to_iceberg)
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> IceResult<Table> {
        let name = table_name_of(table).map_err(to_iceberg)?;
        self.check_writable().map_err(to_iceberg)?;
        self.require_namespace(&name.namespace)
            .map_err(to_iceberg)?;
        if self.current(&name.key()).map_err(to_iceberg)?.is_some() {
            return Err(to_iceberg(Error::TableExists(name.to_string())));
        }
        let metadata =
            TableMetadata::read_from(self.warehouse.file_io(), &metadata_location).await?;
        let t = build_table(
            metadata,
            &metadata_location,
            table.clone(),
            self.warehouse.file_io(),
        )?;
        self.stage(
            name.key(),
            Some(Entry::Table(entry_for(&t).map_err(to_iceberg)?)),
        )
        .map_err(to_iceberg)?;
        Ok(t)
    }

    async fn update_table(&self, commit: TableCommit) -> IceResult<Table> {
        self.check_writable().map_err(to_iceberg)?;
        let current = self.load_table(commit.identifier()).await?;
        let staged = commit.apply(current)?;
        let loc = MetadataLocation::from_str(staged.metadata_location_result()?)?;
        staged.metadata().write_to(staged.file_io(), &loc).await?;
        let name = table_name_of(staged.identifier()).map_err(to_iceberg)?;
        self.stage(
            name.key(),
            Some(Entry::Table(entry_for(&staged).map_err(to_iceberg)?)),
        )
        .map_err(to_iceberg)?;
        Ok(staged)
    }
}
