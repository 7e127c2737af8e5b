use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};
use lakeplan_core::{Entry, Result, TableName, TreeView};
use lakeplan_storage::{load_table, Warehouse};

use crate::scan::LakeTable;

pub(crate) const DEFAULT_CATALOG: &str = "lake";
const SYSTEM_SCHEMA: &str = "system";

/// Turns a ref expression (a catalog name in SQL) into the tree it points at.
pub trait RefResolver: Send + Sync {
    fn resolve(&self, expr: &str) -> Result<Arc<dyn TreeView>>;
}

pub(crate) struct LakeCatalogList {
    default: Arc<RefCatalog>,
    warehouse: Warehouse,
    resolver: Arc<dyn RefResolver>,
    others: Mutex<HashMap<String, Arc<RefCatalog>>>,
}

impl std::fmt::Debug for LakeCatalogList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LakeCatalogList")
    }
}

impl LakeCatalogList {
    pub(crate) fn new(
        view: Arc<dyn TreeView>,
        warehouse: Warehouse,
        resolver: Arc<dyn RefResolver>,
        system_tables: Vec<(String, Arc<dyn TableProvider>)>,
        overlay: HashMap<String, Arc<dyn TableProvider>>,
    ) -> Self {
        let system = Arc::new(SystemSchema {
            tables: system_tables.into_iter().collect(),
        });
        LakeCatalogList {
            default: Arc::new(RefCatalog {
                view,
                warehouse: warehouse.clone(),
                system: Some(system),
                overlay: Arc::new(overlay),
            }),
            warehouse,
            resolver,
            others: Mutex::new(HashMap::new()),
        }
    }
}

impl CatalogProviderList for LakeCatalogList {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = vec![DEFAULT_CATALOG.to_string()];
        if let Ok(others) = self.others.lock() {
            names.extend(others.keys().cloned());
        }
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if name == DEFAULT_CATALOG {
            return Some(self.default.clone());
        }
        let mut others = self.others.lock().ok()?;
        if let Some(c) = others.get(name) {
            return Some(c.clone());
        }
        // Any other catalog name is a ref expression; one that does not resolve is an unknown
        // catalog to DataFusion (which then says so).
        let view = self.resolver.resolve(name).ok()?;
        let c = Arc::new(RefCatalog {
            view,
            warehouse: self.warehouse.clone(),
            system: None,
            overlay: Arc::new(HashMap::new()),
        });
        others.insert(name.to_string(), c.clone());
        Some(c)
    }
}

/// The namespaces of one tree, as DataFusion schemas.
struct RefCatalog {
    view: Arc<dyn TreeView>,
    warehouse: Warehouse,
    system: Option<Arc<SystemSchema>>,
    /// Tables that shadow the tree's, keyed `namespace.name`: a pipeline run's in-memory model
    /// outputs, which its SQL models read by name.
    overlay: Arc<HashMap<String, Arc<dyn TableProvider>>>,
}

impl std::fmt::Debug for RefCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefCatalog({})", self.view.label())
    }
}

impl CatalogProvider for RefCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .view
            .entries()
            .map(|all| {
                all.into_iter()
                    .filter(|(_, e)| matches!(e, Entry::Namespace))
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        if self.system.is_some() {
            names.push(SYSTEM_SCHEMA.into());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return self.system.clone().map(|s| s as Arc<dyn SchemaProvider>);
        }
        let prefix = format!("{name}.");
        let in_overlay = self.overlay.keys().any(|k| k.starts_with(&prefix));
        match self.view.entry(name) {
            Ok(Some(Entry::Namespace)) => {}
            _ if in_overlay => {}
            _ => return None,
        }
        Some(Arc::new(NamespaceSchema {
            view: self.view.clone(),
            warehouse: self.warehouse.clone(),
            namespace: name.to_string(),
            overlay: self.overlay.clone(),
        }))
    }
}

/// The tables of one namespace; each is opened (one metadata read) only when a query names it.
struct NamespaceSchema {
    view: Arc<dyn TreeView>,
    warehouse: Warehouse,
    namespace: String,
    overlay: Arc<HashMap<String, Arc<dyn TableProvider>>>,
}

impl std::fmt::Debug for NamespaceSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamespaceSchema({})", self.namespace)
    }
}

fn df_err(e: lakeplan_core::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let prefix = format!("{}.", self.namespace);
        let mut names: Vec<String> = self
            .view
            .entries()
            .map(|all| {
                all.into_iter()
                    .filter(|(_, e)| matches!(e, Entry::Table(_)))
                    .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for k in self.overlay.keys() {
            if let Some(n) = k.strip_prefix(&prefix) {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.overlay.get(&format!("{}.{name}", self.namespace)) {
            return Ok(Some(t.clone()));
        }
        let Ok(tn) = TableName::new(&self.namespace, name) else {
            return Ok(None);
        };
        let entry = match self.view.entry(&tn.key()).map_err(df_err)? {
            Some(Entry::Table(t)) => t,
            _ => return Ok(None),
        };
        // Table metadata files are immutable: a table loaded once (with the manifests its
        // scans read, cached in it) serves every later session of the process on the same
        // runtime (an iceberg `Table` spawns its reads on the runtime it was loaded on).
        let key = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| (h.id(), tn.key(), entry.metadata_location.clone()));
        if let Some(t) = key.as_ref().and_then(loaded_tables::get) {
            return Ok(Some(t));
        }
        let table = load_table(self.warehouse.file_io(), &tn, &entry)
            .await
            .map_err(df_err)?;
        let table = Arc::new(LakeTable::try_new(table)?);
        if let Some(k) = key {
            loaded_tables::put(k, table.clone());
        }
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        if self
            .overlay
            .contains_key(&format!("{}.{name}", self.namespace))
        {
            return true;
        }
        TableName::new(&self.namespace, name)
            .ok()
            .and_then(|tn| self.view.entry(&tn.key()).ok().flatten())
            .is_some_and(|e| matches!(e, Entry::Table(_)))
    }
}

/// lakeplan's own tables (`system.audit`), given by the caller.
#[derive(Debug)]
struct SystemSchema {
    tables: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.get(name).cloned())
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// The process-wide cache of loaded tables: the most recently used [`loaded_tables::CAPACITY`]
/// (runtime, table, metadata file) triples.
mod loaded_tables {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex, OnceLock};

    use crate::scan::LakeTable;

    pub(super) type Key = (tokio::runtime::Id, String, String);
    pub(super) const CAPACITY: usize = 256;

    /// A small LRU map (linear recency updates: it holds a few hundred entries).
    pub(super) struct Lru<V> {
        capacity: usize,
        values: HashMap<Key, V>,
        /// Least recently used first.
        order: VecDeque<Key>,
    }

    impl<V: Clone> Lru<V> {
        pub(super) fn new(capacity: usize) -> Self {
            Lru {
                capacity,
                values: HashMap::new(),
                order: VecDeque::new(),
            }
        }

        fn touch(&mut self, key: &Key) {
            if let Some(i) = self.order.iter().position(|k| k == key) {
                if let Some(k) = self.order.remove(i) {
                    self.order.push_back(k);
                }
            }
        }

        pub(super) fn get(&mut self, key: &Key) -> Option<V> {
            let v = self.values.get(key).cloned()?;
            self.touch(key);
            Some(v)
        }

        pub(super) fn put(&mut self, key: Key, value: V) {
            if self.values.insert(key.clone(), value).is_some() {
                self.touch(&key);
                return;
            }
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.values.remove(&old);
                }
            }
        }
    }

    fn cache() -> &'static Mutex<Lru<Arc<LakeTable>>> {
        static CACHE: OnceLock<Mutex<Lru<Arc<LakeTable>>>> = OnceLock::new();
        CACHE.get_or_init(|| Mutex::new(Lru::new(CAPACITY)))
    }

    pub(super) fn get(key: &Key) -> Option<Arc<LakeTable>> {
        cache().lock().ok()?.get(key)
    }

    pub(super) fn put(key: Key, table: Arc<LakeTable>) {
        if let Ok(mut c) = cache().lock() {
            c.put(key, table);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn least_recently_used_goes_first() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let k = |n: &str| (rt.handle().id(), n.to_string(), format!("{n}.json"));
            let mut lru = Lru::new(2);
            lru.put(k("a"), 1);
            lru.put(k("b"), 2);
            assert_eq!(lru.get(&k("a")), Some(1)); // a is now the most recent
            lru.put(k("c"), 3); // evicts b
            assert_eq!(lru.get(&k("b")), None);
            assert_eq!(lru.get(&k("a")), Some(1));
            assert_eq!(lru.get(&k("c")), Some(3));
            lru.put(k("c"), 4); // replaces, evicts nothing
            assert_eq!((lru.get(&k("a")), lru.get(&k("c"))), (Some(1), Some(4)));
            // another runtime is another key
            let rt2 = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            assert_eq!(
                lru.get(&(rt2.handle().id(), "a".into(), "a.json".into())),
                None
            );
        }
    }
}
