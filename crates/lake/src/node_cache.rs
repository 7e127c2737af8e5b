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
//!
//! Both levels are bounded ([`Retention`]). This machine's level keeps at most
//! `LAKEPLAN_NODE_CACHE_MAX_GB` (default 20) of entries: after a store that goes over, the
//! least recently used entries (a hit counts as a use) are removed until it is 10% under. An
//! entry a run is using is not lost to that: a hit hard-links the output into the run's pin
//! folder (`.pins/<pid>-<id>/`, removed when the run ends, or by the next eviction once its
//! process is gone), so the run keeps reading the same file. The shared level drops entries no
//! machine used for `LAKEPLAN_NODE_CACHE_MAX_AGE_DAYS` (default 30): a machine that publishes
//! looks for them at most once an hour, output first, metadata last.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use iceberg::io::FileIO;
use lakeplan_catalog::Metastore;
use lakeplan_core::Result;
use serde_json::Value;

use crate::env_vars::{self, AtLeast};

/// Where the shared level keeps entries' metadata (metastore settings).
const SHARED_META: &str = "node-cache/";
/// How much of an output is read or written at once when it moves between the levels.
const CHUNK: usize = 16 << 20;
/// The folder of runs' pins, inside this machine's level.
const PINS: &str = ".pins";
/// How often one process looks for expired shared entries of one lake.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A shared entry's last use is written again only when it is older than this.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How large this machine's level may grow and how long an unused shared entry is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Retention {
    /// Bytes of entries this machine keeps.
    pub(crate) max_bytes: u64,
    /// A shared entry no machine used for this long is removed.
    pub(crate) max_age: Duration,
}

impl Retention {
    /// `LAKEPLAN_NODE_CACHE_MAX_GB` (default 20) and `LAKEPLAN_NODE_CACHE_MAX_AGE_DAYS`
    /// (default 30); a value that is not a non-negative number is an error naming it.
    pub(crate) fn from_env() -> Result<Retention> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Retention> {
        let read = |name: &str, default: f64| env_vars::number(&var, name, default, AtLeast::Zero);
        Ok(Retention {
            max_bytes: (read("LAKEPLAN_NODE_CACHE_MAX_GB", 20.0)? * 1e9) as u64,
            max_age: Duration::from_secs_f64(
                read("LAKEPLAN_NODE_CACHE_MAX_AGE_DAYS", 30.0)? * 86_400.0,
            ),
        })
    }
}

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

    /// Records a use of the entry (`used_at`), unless one was recorded within the hour.
    fn touch(&self, key: &str) {
        let Some(mut meta) = self.meta(key) else {
            return;
        };
        let now = Utc::now();
        if last_use(&meta).is_some_and(|t| now - t < TOUCH_EVERY) {
            return;
        }
        meta["used_at"] = Value::String(now.to_rfc3339());
        self.set_meta(key, &meta);
    }

    /// Removes the entries whose last use is older than `max_age`: the output, then the
    /// metadata (a reader in between finds no output, a miss; an interrupted removal is done
    /// again next time). Returns how many were removed.
    pub(crate) async fn prune(&self, max_age: Duration) -> usize {
        let Ok(entries) = self.store.list_settings(SHARED_META) else {
            return 0;
        };
        let Ok(max_age) = chrono::TimeDelta::from_std(max_age) else {
            return 0;
        };
        let now = Utc::now();
        let mut removed = 0;
        for (setting, json) in entries {
            let key = &setting[SHARED_META.len()..];
            // Metadata that cannot be read is no entry (nobody can use it): removed. An entry
            // that names no time is kept (every entry lakeplan writes names one).
            let meta: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let expired = meta.is_null() || last_use(&meta).is_some_and(|t| now - t > max_age);
            if !expired {
                continue;
            }
            // Deleting a file that is not there is no error (local folders and object stores
            // alike), so an entry whose output went first is finished here.
            if meta.get("has_output") != Some(&Value::Bool(false))
                && self.file_io.delete(self.location(key)).await.is_err()
            {
                continue;
            }
            if self.store.delete_setting(&setting).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Starts [`SharedCache::prune`] in the background, unless this process looked at this
    /// lake's shared level within the hour.
    fn prune_now_and_then(&self, max_age: Duration) {
        static LAST: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
        let Ok(mut last) = LAST.get_or_init(Mutex::default).lock() else {
            return;
        };
        if last
            .get(&self.base)
            .is_some_and(|t| t.elapsed() < PRUNE_EVERY)
        {
            return;
        }
        last.insert(self.base.clone(), Instant::now());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.clone();
        rt.spawn(async move { shared.prune(max_age).await });
    }
}

/// When an entry was last used: `used_at`, else `created_at`.
fn last_use(meta: &Value) -> Option<DateTime<Utc>> {
    ["used_at", "created_at"].iter().find_map(|f| {
        let t = meta.get(*f)?.as_str()?;
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
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
    retention: Retention,
    /// This run's pin folder, made at its first hit.
    pins: Mutex<Option<PathBuf>>,
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        if let Some(pins) = self.pins.get_mut().ok().and_then(|p| p.take()) {
            let _ = std::fs::remove_dir_all(pins);
        }
    }
}

impl NodeCache {
    pub(crate) fn new(dir: PathBuf, shared: Option<SharedCache>, retention: Retention) -> Self {
        NodeCache {
            dir,
            shared,
            retention,
            pins: Mutex::new(None),
        }
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
        self.evict(key);
    }

    /// A hit on `key`: records the use (in both levels) and returns the output file the run
    /// reads, hard-linked into the run's pins so that no eviction takes it from the run. `None`
    /// when the output is not there (any more): a miss.
    pub(crate) fn use_output(&self, key: &str) -> Option<PathBuf> {
        self.touch(key);
        let target = self.output(key);
        let pins = self.pin_dir()?;
        let link = pins.join(format!("{key}.arrow"));
        match std::fs::hard_link(&target, &link) {
            Ok(()) => Some(link),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(link),
            // A file system without hard links: the file itself, unpinned.
            Err(_) => target.is_file().then_some(target),
        }
    }

    /// Records a use of `key` (an expectation's verdict, or an output [`NodeCache::use_output`]
    /// reads): the metadata file's time here, `used_at` in the shared level.
    pub(crate) fn touch(&self, key: &str) {
        if let Ok(f) = std::fs::File::options()
            .append(true)
            .open(self.meta_path(key))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        if let Some(shared) = &self.shared {
            shared.touch(key);
        }
    }

    fn pin_dir(&self) -> Option<PathBuf> {
        let mut pins = self.pins.lock().ok()?;
        if pins.is_none() {
            let dir = self.dir.join(PINS).join(format!(
                "{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).ok()?;
            *pins = Some(dir);
        }
        pins.clone()
    }

    /// Keeps this machine's level within its size: when it is over, removes the least
    /// recently used entries (but `keep`, just stored) until it is 10% under, and the pins of
    /// runs whose process is gone.
    fn evict(&self, keep: &str) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        // key -> (last use, bytes)
        let mut entries: HashMap<String, (SystemTime, u64)> = HashMap::new();
        let mut total = 0u64;
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((key, ext)) = name.split_once('.') else {
                continue;
            };
            if !matches!(ext, "arrow" | "json") {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            let entry = entries
                .entry(key.to_string())
                .or_insert((SystemTime::UNIX_EPOCH, 0));
            entry.1 += md.len();
            total += md.len();
            if ext == "json" {
                entry.0 = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            }
        }
        if total <= self.retention.max_bytes {
            return;
        }
        sweep_pins(&self.dir.join(PINS));
        let mut order: Vec<(SystemTime, u64, String)> = entries
            .into_iter()
            .filter(|(k, _)| k != keep)
            .map(|(k, (t, n))| (t, n, k))
            .collect();
        order.sort();
        let goal = self.retention.max_bytes / 10 * 9;
        for (_, bytes, key) in order {
            if total <= goal {
                break;
            }
            let _ = std::fs::remove_file(self.output(&key));
            let _ = std::fs::remove_file(self.meta_path(&key));
            total = total.saturating_sub(bytes);
        }
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
        self.evict(key);
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
        shared.prune_now_and_then(self.retention.max_age);
    }
}

/// Removes the pin folders (`<pid>-<id>`) whose process is gone.
fn sweep_pins(pins: &Path) {
    let Ok(dir) = std::fs::read_dir(pins) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let alive = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copies the file at `location` (in the warehouse) to `dest`, a chunk at a time.
pub(crate) async fn download(io: &FileIO, location: &str, dest: &Path) -> Result<(), String> {
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
pub(crate) async fn upload(io: &FileIO, src: &Path, location: &str) -> Result<(), String> {
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

    const AMPLE: Retention = Retention {
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(86_400 * 30),
    };

    #[test]
    fn store_read_annotate() {
        let d = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(d.path().join("nodes"), None, AMPLE);
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
        let a = NodeCache::new(d.path().join("a"), Some(shared.clone()), AMPLE);
        let b = NodeCache::new(d.path().join("b"), Some(shared.clone()), AMPLE);
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
        let c = NodeCache::new(d.path().join("c"), Some(shared.clone()), AMPLE);
        assert_eq!(c.pull("k", "t").await, Found::Shared);
        assert_eq!(c.meta("k").unwrap()["snapshot_id"], 9);
        // A machine without the shared level sees only its own entries.
        let alone = NodeCache::new(d.path().join("alone"), None, AMPLE);
        assert_eq!(alone.pull("k", "t").await, Found::Nowhere);

        // Expiry: an entry whose last use is older than the age goes, output and metadata; a
        // used one stays.
        let old = (Utc::now() - chrono::TimeDelta::days(3)).to_rfc3339();
        let stale = serde_json::json!({"rows": 1, "created_at": old});
        a.store("old", Some(&out), &stale, "job3");
        a.publish("old", Some(&out), &stale).await;
        a.store("used", Some(&out), &stale, "job3");
        a.publish("used", Some(&out), &stale).await;
        assert_eq!(c.pull("used", "t").await, Found::Shared);
        assert!(c.use_output("used").is_some(), "a hit records its use");
        let location = shared.location("old");
        assert!(shared.file_io.exists(&location).await.unwrap());
        shared
            .store
            .set_setting(&format!("{SHARED_META}junk"), "not json")
            .unwrap();
        assert_eq!(shared.prune(Duration::from_secs(86_400)).await, 2);
        assert!(shared.meta("junk").is_none());
        assert!(!shared.file_io.exists(&location).await.unwrap());
        assert!(shared.meta("old").is_none());
        assert!(shared.meta("used").is_some());
        assert!(
            shared.meta("k").is_some(),
            "an entry naming no time is kept"
        );
        let fresh = NodeCache::new(d.path().join("fresh"), Some(shared.clone()), AMPLE);
        assert_eq!(fresh.pull("old", "t").await, Found::Nowhere);
        assert_eq!(fresh.pull("used", "t").await, Found::Shared);
    }

    /// Sets the last use of `key`'s entry to `secs_ago` seconds ago.
    fn used_ago(cache: &NodeCache, key: &str, secs_ago: u64) {
        let f = std::fs::File::options()
            .append(true)
            .open(cache.meta_path(key))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
            .unwrap();
    }

    /// Over its size, the machine's level drops the least recently used entries (a hit is a
    /// use) until it is 10% under, never the one just stored, and a run keeps reading a hit's
    /// output that is dropped meanwhile; the pins of a run go when it ends, and those of a
    /// process that is gone at the next eviction.
    #[test]
    fn the_least_recently_used_entries_go_when_the_level_is_full() {
        let d = tempfile::tempdir().unwrap();
        let small = Retention {
            max_bytes: 1000,
            ..AMPLE
        };
        let dir = d.path().join("nodes");
        let cache = NodeCache::new(dir.clone(), None, small);
        let out = d.path().join("o.arrow");
        std::fs::write(&out, vec![7u8; 300]).unwrap();
        let meta = serde_json::json!({"rows": 3}); // 10 bytes
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            cache.store(k, Some(&out), &meta, "job1");
            used_ago(&cache, k, 30 - 10 * i as u64);
        }
        let dead_pins = dir.join(PINS).join("999999999-gone");
        std::fs::create_dir_all(&dead_pins).unwrap();
        let pinned = cache.use_output("a").expect("a hit");
        assert!(pinned.starts_with(dir.join(PINS)), "{}", pinned.display());
        // 4 x 310 bytes: b, then c (the least recently used) go; a (just used) and d stay.
        cache.store("d", Some(&out), &meta, "job1");
        let left = |c: &NodeCache| -> Vec<&str> {
            ["a", "b", "c", "d", "e", "v"]
                .into_iter()
                .filter(|k| c.meta(k).is_some() || c.output(k).exists())
                .collect()
        };
        assert_eq!(left(&cache), ["a", "d"]);
        assert!(!dead_pins.exists(), "the pins of a process that is gone");
        assert!(
            cache.use_output("b").is_none(),
            "an evicted entry is a miss"
        );
        // A big entry evicts a too; the run that hit a still reads it.
        used_ago(&cache, "a", 5);
        std::fs::write(&out, vec![8u8; 900]).unwrap();
        cache.store("e", Some(&out), &meta, "job1");
        assert_eq!(left(&cache), ["e"]);
        assert_eq!(std::fs::read(&pinned).unwrap(), vec![7u8; 300]);
        drop(cache);
        assert!(!pinned.exists(), "a run's pins go with it");
        // An expectation's verdict-only entry counts by its metadata.
        let cache = NodeCache::new(dir, None, small);
        cache.store("v", None, &serde_json::json!({"passed": true}), "job2");
        assert_eq!(left(&cache), ["e", "v"]);
    }

    #[test]
    fn retention_comes_from_the_environment() {
        let vars = |gb: Option<&str>, days: Option<&str>| {
            let (gb, days) = (gb.map(String::from), days.map(String::from));
            Retention::from_vars(move |name| match name {
                "LAKEPLAN_NODE_CACHE_MAX_GB" => gb.clone(),
                "LAKEPLAN_NODE_CACHE_MAX_AGE_DAYS" => days.clone(),
                _ => None,
            })
        };
        let r = vars(None, None).unwrap();
        assert_eq!(r.max_bytes, 20_000_000_000);
        assert_eq!(r.max_age, Duration::from_secs(30 * 86_400));
        let r = vars(Some("0.5"), Some(" 2 ")).unwrap();
        assert_eq!(r.max_bytes, 500_000_000);
        assert_eq!(r.max_age, Duration::from_secs(2 * 86_400));
        for bad in ["-1", "lots", "NaN", "inf"] {
            let e = vars(Some(bad), None).unwrap_err().to_string();
            assert!(
                e.contains("LAKEPLAN_NODE_CACHE_MAX_GB") && e.contains(bad),
                "{e}"
            );
        }
    }
}
