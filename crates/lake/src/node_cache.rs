//! The node cache of pipeline runs: `<lake>/cache/nodes/<key>.arrow` (a node's output) and
//! `<key>.json` (its rows, an expectation's verdict, and the snapshot the output was last
//! materialized as). Every write is best effort and atomic (temporary file + rename): a failed
//! write only costs a re-execution next time, and readers never see half a file.
//!
//! In server mode the cache has a second, lake-wide level ([`SharedCache`]) that every machine
//! of the lake reads: the entry's metadata in the metastore (`node-cache/<key>`) and its output
//! in the warehouse (`<warehouse>/.lakeplan/node-cache/<key>.arrow`). An entry is published
//! there after it is stored here (output first, metadata last, so that a reader who finds the
//! metadata finds the output), and a machine without an entry copies it here before it looks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::io::FileIO;
use lakeplan_catalog::Metastore;
use serde_json::Value;

/// Where the shared level keeps entries' metadata (metastore settings).
const SHARED_META: &str = "node-cache/";
/// How much of an output is read or written at once when it moves between the levels.
const CHUNK: usize = 16 << 20;

/// The lake-wide level of the node cache: see the module's documentation.
#[derive(Clone)]
pub(crate) struct SharedCache {
    pub(crate) store: Arc<dyn Metastore>,
    pub(crate) file_io: FileIO,
    /// `<warehouse URL>/.lakeplan/node-cache` (a namespace name never holds a dot, so no
    /// table's files are there).
    pub(crate) base: String,
}

impl SharedCache {
    fn location(&self, key: &str) -> String {
        format!("{}/{key}.arrow", self.base)
    }

    fn meta(&self, key: &str) -> Option<Value> {
        let json = self
            .store
            .get_setting(&format!("{SHARED_META}{key}"))
            .ok()??;
        serde_json::from_str(&json).ok()
    }

    fn set_meta(&self, key: &str, meta: &Value) {
        let _ = self
            .store
            .set_setting(&format!("{SHARED_META}{key}"), &meta.to_string());
    }
}

/// Where [`NodeCache::pull`] found an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// On this machine already.
    Here,
    /// In the lake-wide level, and copied here.
    Shared,
    Nowhere,
}

/// Writes `bytes` to `path` through a temporary sibling named with `tag` (unique per writer),
/// so that a reader sees the old file or the whole new one.
pub(crate) fn write_atomic(path: &Path, tag: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{tag}.tmp"));
    let r = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

pub(crate) struct NodeCache {
    dir: PathBuf,
    shared: Option<SharedCache>,
}

impl NodeCache {
    pub(crate) fn new(dir: PathBuf, shared: Option<SharedCache>) -> Self {
        NodeCache { dir, shared }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the output of key `key` is kept.
    pub(crate) fn output(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.arrow"))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The entry's metadata, if there is a readable one.
    pub(crate) fn meta(&self, key: &str) -> Option<Value> {
        std::fs::read(self.meta_path(key))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Records an entry: the output file `out` (copied in; `None` for an expectation, which has
    /// only a verdict) and its metadata. `tag` keeps concurrent writers' temporary files apart.
    pub(crate) fn store(&self, key: &str, out: Option<&Path>, meta: &Value, tag: &str) {
        let _ = std::fs::create_dir_all(&self.dir);
        if let Some(out) = out {
            let target = self.output(key);
            let tmp = target.with_extension(format!("{tag}.tmp"));
            let copied = std::fs::copy(out, &tmp).and_then(|_| std::fs::rename(&tmp, &target));
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
                return;
            }
        }
        let _ = write_atomic(&self.meta_path(key), tag, meta.to_string().as_bytes());
    }

    /// Sets one field of an existing entry's metadata (in both levels).
    pub(crate) fn annotate(&self, key: &str, field: &str, value: Value, tag: &str) {
        if let Some(mut meta) = self.meta(key) {
            meta[field] = value.clone();
            let _ = write_atomic(&self.meta_path(key), tag, meta.to_string().as_bytes());
        }
        if let Some(shared) = &self.shared {
            if let Some(mut meta) = shared.meta(key) {
                meta[field] = value;
                shared.set_meta(key, &meta);
            }
        }
    }

    /// Makes sure an entry of `key` is on this machine if the lake has one: copies it from
    /// the shared level when only that holds it. Best effort: a failed copy is a miss.
    pub(crate) async fn pull(&self, key: &str, tag: &str) -> Found {
        if let Some(meta) = self.meta(key) {
            let complete = meta.get("has_output") == Some(&Value::Bool(false))
                || meta.get("passed").is_some_and(Value::is_boolean)
                || self.output(key).is_file();
            if complete {
                return Found::Here;
            }
        }
        let Some(shared) = &self.shared else {
            return Found::Nowhere;
        };
        let Some(meta) = shared.meta(key) else {
            return Found::Nowhere;
        };
        let _ = std::fs::create_dir_all(&self.dir);
        if meta.get("has_output") == Some(&Value::Bool(true)) {
            let target = self.output(key);
            let tmp = target.with_extension(format!("{tag}.tmp"));
            let copied = match download(&shared.file_io, &shared.location(key), &tmp).await {
                Ok(()) => std::fs::rename(&tmp, &target).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
                return Found::Nowhere;
            }
        }
        if write_atomic(&self.meta_path(key), tag, meta.to_string().as_bytes()).is_err() {
            return Found::Nowhere;
        }
        Found::Shared
    }

    /// Publishes an entry this machine stored ([`NodeCache::store`]) to the shared level, if
    /// the lake has one. Best effort: a failed upload leaves the entry on this machine only.
    pub(crate) async fn publish(&self, key: &str, out: Option<&Path>, meta: &Value) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut meta = meta.clone();
        meta["has_output"] = Value::Bool(out.is_some());
        if out.is_some() {
            // The copy this machine kept (the run's own file may be released meanwhile).
            let local = self.output(key);
            if upload(&shared.file_io, &local, &shared.location(key))
                .await
                .is_err()
            {
                return;
            }
        }
        shared.set_meta(key, &meta);
    }
}

/// Copies the file at `location` (in the warehouse) to `dest`, a chunk at a time.
async fn download(io: &FileIO, location: &str, dest: &Path) -> Result<(), String> {
    use std::io::Write;
    let input = io.new_input(location).map_err(|e| e.to_string())?;
    let size = input.metadata().await.map_err(|e| e.to_string())?.size;
    let reader = input.reader().await.map_err(|e| e.to_string())?;
    let mut file = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    let mut at = 0u64;
    while at < size {
        let end = (at + CHUNK as u64).min(size);
        let bytes = reader.read(at..end).await.map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        at = end;
    }
    file.sync_all().map_err(|e| e.to_string())
}

/// Copies the local file `src` to `location` (in the warehouse), a chunk at a time.
async fn upload(io: &FileIO, src: &Path, location: &str) -> Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(src).map_err(|e| e.to_string())?;
    let output = io.new_output(location).map_err(|e| e.to_string())?;
    let mut writer = output.writer().await.map_err(|e| e.to_string())?;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            let got = file.read(&mut buf[n..]).map_err(|e| e.to_string())?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        writer
            .write(bytes::Bytes::from(buf))
            .await
            .map_err(|e| e.to_string())?;
        if n < CHUNK {
            break;
        }
    }
    writer.close().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_read_annotate() {
        let d = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(d.path().join("nodes"), None);
        assert!(cache.meta("k").is_none());
        let out = d.path().join("o.arrow");
        std::fs::write(&out, b"data").unwrap();
        cache.store("k", Some(&out), &serde_json::json!({"rows": 3}), "job1");
        assert_eq!(std::fs::read(cache.output("k")).unwrap(), b"data");
        assert_eq!(cache.meta("k").unwrap()["rows"], 3);
        cache.annotate("k", "snapshot_id", serde_json::json!(7), "job1");
        let meta = cache.meta("k").unwrap();
        assert_eq!(
            (meta["rows"].as_i64(), meta["snapshot_id"].as_i64()),
            (Some(3), Some(7))
        );
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        // A verdict-only entry (an expectation) has no output file.
        cache.store("e", None, &serde_json::json!({"passed": true}), "job1");
        assert!(!cache.output("e").exists());
        assert_eq!(cache.meta("e").unwrap()["passed"], true);
    }

    /// Two machines (two cache folders) of one lake (one metastore, one warehouse): what one
    /// publishes, the other pulls, output and metadata, and annotations reach both levels.
    #[tokio::test]
    async fn machines_share_entries_through_the_lake() {
        let d = tempfile::tempdir().unwrap();
        let shared = SharedCache {
            store: Arc::new(lakeplan_catalog::sqlite::SqliteMetastore::open_in_memory().unwrap()),
            file_io: FileIO::new_with_fs(),
            base: format!("file://{}/wh/.lakeplan/node-cache", d.path().display()),
        };
        let a = NodeCache::new(d.path().join("a"), Some(shared.clone()));
        let b = NodeCache::new(d.path().join("b"), Some(shared.clone()));
        assert_eq!(b.pull("k", "t").await, Found::Nowhere);
        // More than one chunk, so that both copies loop.
        let body: Vec<u8> = (0..CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let out = d.path().join("o.arrow");
        std::fs::write(&out, &body).unwrap();
        let meta = serde_json::json!({"rows": 3});
        a.store("k", Some(&out), &meta, "job1");
        a.publish("k", Some(&out), &meta).await;
        a.store("e", None, &serde_json::json!({"passed": true}), "job1");
        a.publish("e", None, &serde_json::json!({"passed": true}))
            .await;
        assert_eq!(a.pull("k", "t").await, Found::Here);

        assert_eq!(b.pull("k", "t").await, Found::Shared);
        assert_eq!(std::fs::read(b.output("k")).unwrap(), body);
        assert_eq!(b.meta("k").unwrap()["rows"], 3);
        assert_eq!(b.pull("k", "t").await, Found::Here);
        assert_eq!(b.pull("e", "t").await, Found::Shared);
        assert_eq!(b.meta("e").unwrap()["passed"], true);
        assert!(!b.output("e").exists());

        b.annotate("k", "snapshot_id", serde_json::json!(9), "job2");
        let c = NodeCache::new(d.path().join("c"), Some(shared));
        assert_eq!(c.pull("k", "t").await, Found::Shared);
        assert_eq!(c.meta("k").unwrap()["snapshot_id"], 9);
        // A machine without the shared level sees only its own entries.
        let alone = NodeCache::new(d.path().join("alone"), None);
        assert_eq!(alone.pull("k", "t").await, Found::Nowhere);
    }
}
