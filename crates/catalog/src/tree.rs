//! Content-addressed commit trees.
//!
//! A tree maps keys (`ns` or `ns.table`) to [`Entry`]s. It is stored as two levels of nodes:
//!
//! * the **root** maps a bucket id to the hash of that bucket's node; only non-empty buckets
//!   appear, so the empty tree is a root with no buckets;
//! * a **bucket** maps the keys that fall in it to their entries. A key's bucket is the first byte
//!   of SHA-256(key), as two hex characters (at most 256 buckets).
//!
//! A node's body is its canonical JSON (fixed field order, maps sorted by key) and its hash is the
//! SHA-256 of the body, so identical nodes are stored once and shared by every commit that has
//! them. Changing one key rewrites one bucket and the root: two new nodes, whatever the tree size.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use lakeplan_core::{sha256_hex, Entry, Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::metastore::Metastore;

/// A decoded tree node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Node {
    Root { buckets: BTreeMap<String, String> },
    Bucket { entries: BTreeMap<String, Entry> },
}

/// A key's bucket id: the first byte of SHA-256(key) in hex.
pub(crate) fn bucket_of(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..1])
}

/// Canonical body and hash of a node.
pub(crate) fn encode(node: &Node) -> Result<(String, Vec<u8>)> {
    let body = serde_json::to_vec(node)
        .map_err(|e| Error::Internal(format!("encoding a tree node: {e}")))?;
    Ok((sha256_hex(&body), body))
}

/// The empty tree's root node.
pub(crate) fn empty_root() -> Result<(String, Vec<u8>)> {
    encode(&Node::Root {
        buckets: BTreeMap::new(),
    })
}

/// One difference between two trees: key, entry before, entry after (never both `None`, never
/// equal).
pub(crate) type KeyChange = (String, Option<Entry>, Option<Entry>);

/// The result of applying changes to a tree: the new root hash and the nodes to store (which may
/// include nodes that exist already; storing is idempotent).
pub(crate) struct NewTree {
    pub root: String,
    pub nodes: Vec<(String, Vec<u8>)>,
}

/// Reads and builds trees over a metastore, caching decoded nodes (they never change).
pub(crate) struct Trees {
    store: Arc<dyn Metastore>,
    cache: Mutex<Cache<String, Arc<Node>>>,
}

/// Budget of the decoded-node cache, in bytes of encoded node bodies.
const NODE_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl Trees {
    pub(crate) fn new(store: Arc<dyn Metastore>) -> Self {
        Trees {
            store,
            cache: Mutex::new(Cache::new(NODE_CACHE_BYTES)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache<String, Arc<Node>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load(&self, hash: &str) -> Result<Arc<Node>> {
        if let Some(n) = self.cache().get(&hash.to_string()) {
            return Ok(n);
        }
        let body = self
            .store
            .get_node(hash)?
            .ok_or_else(|| Error::Metastore(format!("tree node {hash} is missing")))?;
        if sha256_hex(&body) != hash {
            return Err(Error::Metastore(format!(
                "tree node {hash} is corrupt: its content does not match its hash"
            )));
        }
        let node: Node = serde_json::from_slice(&body)
            .map_err(|e| Error::Metastore(format!("tree node {hash} is corrupt: {e}")))?;
        let node = Arc::new(node);
        self.cache()
            .put(hash.to_string(), Arc::clone(&node), body.len());
        Ok(node)
    }

    fn remember(&self, hash: &str, node: Node, weight: usize) {
        self.cache().put(hash.to_string(), Arc::new(node), weight);
    }

    /// The bucket map of the root node `root`.
    fn root(&self, root: &str) -> Result<Arc<Node>> {
        let node = self.load(root)?;
        match &*node {
            Node::Root { .. } => Ok(node),
            Node::Bucket { .. } => Err(Error::Metastore(format!(
                "tree node {root} is a bucket where a root was expected"
            ))),
        }
    }

    fn bucket(&self, hash: &str) -> Result<Arc<Node>> {
        let node = self.load(hash)?;
        match &*node {
            Node::Bucket { .. } => Ok(node),
            Node::Root { .. } => Err(Error::Metastore(format!(
                "tree node {hash} is a root where a bucket was expected"
            ))),
        }
    }

    /// The entry at `key` in tree `root`: reads the root and at most one bucket.
    pub(crate) fn get(&self, root: &str, key: &str) -> Result<Option<Entry>> {
        let r = self.root(root)?;
        let Some(bh) = buckets(&r).get(&bucket_of(key)) else {
            return Ok(None);
        };
        let b = self.bucket(bh)?;
        Ok(entries(&b).get(key).cloned())
    }

    /// Every entry of tree `root`.
    pub(crate) fn entries(&self, root: &str) -> Result<BTreeMap<String, Entry>> {
        let r = self.root(root)?;
        let mut out = BTreeMap::new();
        for bh in buckets(&r).values() {
            let b = self.bucket(bh)?;
            out.extend(entries(&b).iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(out)
    }

    /// Applies `changes` (in order; `None` deletes, deleting a missing key is a no-op) to tree
    /// `root`. Touches only the buckets of the changed keys.
    pub(crate) fn apply(&self, root: &str, changes: &[(String, Option<Entry>)]) -> Result<NewTree> {
        let r = self.root(root)?;
        let mut root_map = buckets(&r).clone();
        let mut by_bucket: BTreeMap<String, Vec<&(String, Option<Entry>)>> = BTreeMap::new();
        for change in changes {
            by_bucket
                .entry(bucket_of(&change.0))
                .or_default()
                .push(change);
        }
        let mut nodes = Vec::with_capacity(by_bucket.len() + 1);
        for (bid, bucket_changes) in by_bucket {
            let mut map = match root_map.get(&bid) {
                Some(bh) => entries(&*self.bucket(bh)?).clone(),
                None => BTreeMap::new(),
            };
            for (key, entry) in bucket_changes {
                match entry {
                    Some(e) => {
                        map.insert(key.clone(), e.clone());
                    }
                    None => {
                        map.remove(key);
                    }
                }
            }
            if map.is_empty() {
                root_map.remove(&bid);
                continue;
            }
            let node = Node::Bucket { entries: map };
            let (hash, body) = encode(&node)?;
            let weight = body.len();
            root_map.insert(bid, hash.clone());
            self.remember(&hash, node, weight);
            nodes.push((hash, body));
        }
        let node = Node::Root { buckets: root_map };
        let (hash, body) = encode(&node)?;
        self.remember(&hash, node, body.len());
        nodes.push((hash.clone(), body));
        Ok(NewTree { root: hash, nodes })
    }

    /// The keys whose entries differ between trees `a` and `b`, sorted by key. Reads only the
    /// buckets whose hashes differ.
    pub(crate) fn diff(&self, a: &str, b: &str) -> Result<Vec<KeyChange>> {
        if a == b {
            return Ok(Vec::new());
        }
        let ra = self.root(a)?;
        let rb = self.root(b)?;
        let (ba, bb) = (buckets(&ra), buckets(&rb));
        let ids: BTreeSet<&String> = ba.keys().chain(bb.keys()).collect();
        let empty = BTreeMap::new();
        let mut out = Vec::new();
        for id in ids {
            let (ha, hb) = (ba.get(id), bb.get(id));
            if ha == hb {
                continue;
            }
            let na = ha.map(|h| self.bucket(h)).transpose()?;
            let nb = hb.map(|h| self.bucket(h)).transpose()?;
            let ea = na.as_deref().map_or(&empty, entries);
            let eb = nb.as_deref().map_or(&empty, entries);
            let keys: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
            for k in keys {
                let (x, y) = (ea.get(k), eb.get(k));
                if x != y {
                    out.push((k.clone(), x.cloned(), y.cloned()));
                }
            }
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(out)
    }
}

fn buckets(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    match node {
        Node::Root { buckets } => buckets,
        Node::Bucket { .. } => &EMPTY,
    }
}

fn entries(node: &Node) -> &BTreeMap<String, Entry> {
    static EMPTY: BTreeMap<String, Entry> = BTreeMap::new();
    match node {
        Node::Bucket { entries } => entries,
        Node::Root { .. } => &EMPTY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteMetastore;
    use lakeplan_core::TableEntry;

    fn table(loc: &str) -> Entry {
        Entry::Table(TableEntry {
            metadata_location: loc.to_string(),
            table_uuid: format!("uuid-{loc}"),
            snapshot_id: Some(1),
            schema_id: 0,
            records: 10,
        })
    }

    fn setup() -> (Arc<dyn Metastore>, Trees, String) {
        let store: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
        let trees = Trees::new(Arc::clone(&store));
        let (h, b) = empty_root().unwrap();
        store.put_nodes(&[(h.clone(), b)]).unwrap();
        (store, trees, h)
    }

    fn write(store: &Arc<dyn Metastore>, t: NewTree) -> String {
        store.put_nodes(&t.nodes).unwrap();
        t.root
    }

    #[test]
    fn bucket_ids() {
        assert_eq!(bucket_of("default.trips").len(), 2);
        assert_eq!(bucket_of("abc"), "ba"); // sha256("abc") = ba7816bf...
    }

    #[test]
    fn encoding_is_canonical() {
        let mut m1 = BTreeMap::new();
        m1.insert("b".to_string(), table("2"));
        m1.insert("a".to_string(), Entry::Namespace);
        let mut m2 = BTreeMap::new();
        m2.insert("a".to_string(), Entry::Namespace);
        m2.insert("b".to_string(), table("2"));
        let (h1, b1) = encode(&Node::Bucket { entries: m1 }).unwrap();
        let (h2, _) = encode(&Node::Bucket { entries: m2 }).unwrap();
        assert_eq!(h1, h2);
        let s = String::from_utf8(b1).unwrap();
        assert!(
            s.starts_with("{\"kind\":\"bucket\",\"entries\":{\"a\":"),
            "{s}"
        );
        let (e, body) = empty_root().unwrap();
        assert_eq!(body, b"{\"kind\":\"root\",\"buckets\":{}}");
        assert_eq!(e, sha256_hex(&body));
    }

    #[test]
    fn put_get_delete() {
        let (store, trees, empty) = setup();
        assert_eq!(trees.get(&empty, "default.t").unwrap(), None);
        assert!(trees.entries(&empty).unwrap().is_empty());
        let t1 = write(
            &store,
            trees
                .apply(
                    &empty,
                    &[
                        ("default".into(), Some(Entry::Namespace)),
                        ("default.t".into(), Some(table("a"))),
                        ("default.u".into(), Some(table("b"))),
                    ],
                )
                .unwrap(),
        );
        assert_eq!(trees.get(&t1, "default.t").unwrap(), Some(table("a")));
        assert_eq!(trees.get(&t1, "default").unwrap(), Some(Entry::Namespace));
        assert_eq!(trees.get(&t1, "default.v").unwrap(), None);
        assert_eq!(trees.entries(&t1).unwrap().len(), 3);
        // Replace and delete; the old tree is untouched.
        let t2 = write(
            &store,
            trees
                .apply(
                    &t1,
                    &[
                        ("default.t".into(), Some(table("a2"))),
                        ("default.u".into(), None),
                        ("default.missing".into(), None),
                    ],
                )
                .unwrap(),
        );
        assert_eq!(trees.get(&t2, "default.t").unwrap(), Some(table("a2")));
        assert_eq!(trees.get(&t2, "default.u").unwrap(), None);
        assert_eq!(trees.get(&t1, "default.u").unwrap(), Some(table("b")));
        // Deleting everything gives back the empty tree, bucket nodes and all.
        let t3 = write(
            &store,
            trees
                .apply(&t2, &[("default.t".into(), None), ("default".into(), None)])
                .unwrap(),
        );
        assert_eq!(t3, empty);
        // Later changes to the same key win.
        let t4 = trees
            .apply(
                &empty,
                &[
                    ("k".into(), Some(table("1"))),
                    ("k".into(), Some(table("2"))),
                ],
            )
            .unwrap();
        let t4 = write(&store, t4);
        assert_eq!(trees.get(&t4, "k").unwrap(), Some(table("2")));
    }

    #[test]
    fn same_content_same_hash_in_any_order() {
        let (store, trees, empty) = setup();
        let a = write(
            &store,
            trees
                .apply(
                    &empty,
                    &[
                        ("x".into(), Some(table("1"))),
                        ("y".into(), Some(table("2"))),
                    ],
                )
                .unwrap(),
        );
        let b1 = write(
            &store,
            trees
                .apply(&empty, &[("y".into(), Some(table("2")))])
                .unwrap(),
        );
        let b = write(
            &store,
            trees.apply(&b1, &[("x".into(), Some(table("1")))]).unwrap(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn changing_one_key_of_many_writes_two_nodes() {
        let (store, trees, empty) = setup();
        let changes: Vec<_> = (0..1000)
            .map(|i| (format!("default.t{i}"), Some(table(&i.to_string()))))
            .collect();
        let big = trees.apply(&empty, &changes).unwrap();
        assert!(big.nodes.len() > 200, "1000 keys spread over many buckets");
        let big = write(&store, big);
        let one = trees
            .apply(&big, &[("default.t500".into(), Some(table("new")))])
            .unwrap();
        assert_eq!(one.nodes.len(), 2, "one bucket + one root");
        let one = write(&store, one);
        let d = trees.diff(&big, &one).unwrap();
        assert_eq!(
            d,
            vec![(
                "default.t500".to_string(),
                Some(table("500")),
                Some(table("new"))
            )]
        );
    }

    #[test]
    fn diff_lists_added_removed_changed_sorted() {
        let (store, trees, empty) = setup();
        let a = write(
            &store,
            trees
                .apply(
                    &empty,
                    &[
                        ("ns.keep".into(), Some(table("k"))),
                        ("ns.change".into(), Some(table("c1"))),
                        ("ns.remove".into(), Some(table("r"))),
                    ],
                )
                .unwrap(),
        );
        let b = write(
            &store,
            trees
                .apply(
                    &a,
                    &[
                        ("ns.change".into(), Some(table("c2"))),
                        ("ns.remove".into(), None),
                        ("ns.add".into(), Some(table("a"))),
                    ],
                )
                .unwrap(),
        );
        let d = trees.diff(&a, &b).unwrap();
        assert_eq!(
            d,
            vec![
                ("ns.add".to_string(), None, Some(table("a"))),
                (
                    "ns.change".to_string(),
                    Some(table("c1")),
                    Some(table("c2"))
                ),
                ("ns.remove".to_string(), Some(table("r")), None),
            ]
        );
        assert!(trees.diff(&a, &a).unwrap().is_empty());
        let back = trees.diff(&b, &a).unwrap();
        assert_eq!(back[0], ("ns.add".to_string(), Some(table("a")), None));
    }

    #[test]
    fn corrupt_or_missing_nodes_are_errors() {
        let (store, trees, _) = setup();
        let e = trees.get(&sha256_hex(b"nothing"), "k").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        // A node stored under the wrong hash is refused.
        let fake = sha256_hex(b"fake");
        store
            .put_nodes(&[(fake.clone(), b"{\"kind\":\"root\",\"buckets\":{}}".to_vec())])
            .unwrap();
        let e = trees.entries(&fake).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}
