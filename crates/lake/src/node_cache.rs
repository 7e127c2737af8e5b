//! The node cache of pipeline runs: `<lake>/cache/nodes/<key>.arrow` (a node's output) and
//! `<key>.json` (its rows, an expectation's verdict, and the snapshot the output was last
//! materialized as). Every write is best effort and atomic (temporary file + rename): a failed
//! write only costs a re-execution next time, and readers never see half a file.

use std::path::{Path, PathBuf};

use serde_json::Value;

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
}

impl NodeCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        NodeCache { dir }
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

    /// Sets one field of an existing entry's metadata.
    pub(crate) fn annotate(&self, key: &str, field: &str, value: Value, tag: &str) {
        if let Some(mut meta) = self.meta(key) {
            meta[field] = value;
            let _ = write_atomic(&self.meta_path(key), tag, meta.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_read_annotate() {
        let d = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(d.path().join("nodes"));
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
}
