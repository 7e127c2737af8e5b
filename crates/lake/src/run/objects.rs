//! `bauplan.store`: Python objects that pipeline functions save and load, versioned with the
//! branch the run writes.
//!
//! ```text
//! run reads commit C ──▶ objects of C (tree keys `object:<key>`) + those saved by the node's
//!                        upstream nodes in this run ──▶ the task's `store.objects` {key: file}
//! function: save_obj(k, obj) ──▶ pickle in its node folder ──▶ result `saved_objects`
//!   ──▶ copied to <warehouse>/.lakeplan/objects/<sha256>.pkl (immutable, named by content;
//!       no namespace folder can be named so)
//!   ──▶ materialize: `object:<k>` entries, in the commit that writes the run's tables
//! ```
//!
//! The sandbox has no catalog access: the runner resolves what a function may load before it
//! starts, and commits what it saved after the run. A local warehouse's object folder is bound
//! read-only into the sandbox (files appear there as upstream nodes save them); an object
//! store's objects are fetched into the run's shared memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lakeplan_core::{
    object_key, validate_object_key, CommitId, Error, ObjectEntry, Result, OBJECT_KEY_PREFIX,
};
use lakeplan_pipeline::PlanNode;
use serde_json::json;

use super::{node_err, RunCtx, RunEvent};
use crate::Lake;

/// Where objects live under the warehouse: a folder no namespace can be named (namespaces are
/// identifiers). Sandboxes never see it: a function gets copies of the objects it may load.
const OBJECTS_DIR: &str = ".lakeplan/objects";

/// Objects by key.
pub(super) type Objects = BTreeMap<String, ObjectEntry>;

/// The objects saved in one run so far: key → (the node that saved it, the object).
pub(super) type Saved = BTreeMap<String, (String, ObjectEntry)>;

impl Lake {
    /// The objects in `commit`'s tree, by key.
    pub(super) fn objects_at(&self, commit: &CommitId) -> Result<Objects> {
        Ok(self
            .catalog
            .entries(commit)?
            .into_iter()
            .filter_map(|(k, e)| {
                let key = k.strip_prefix(OBJECT_KEY_PREFIX)?.to_string();
                Some((key, e.as_object()?.clone()))
            })
            .collect())
    }

    /// What `node` may load: the objects of the commit the run reads, overlaid with those saved
    /// in this run by the nodes it depends on (directly or through others).
    pub(super) fn visible_objects(&self, ctx: &RunCtx, node: &PlanNode) -> Result<Objects> {
        let mut objects = match ctx.objects.at_commit.get() {
            Some(o) => o.clone(),
            None => {
                let o = self.objects_at(&ctx.scope.commit)?;
                ctx.objects.at_commit.get_or_init(|| o).clone()
            }
        };
        let ancestors = ancestors(ctx, node);
        let saved = ctx
            .objects
            .saved
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?;
        for (key, (by, entry)) in saved.iter() {
            if ancestors.contains(by.as_str()) {
                objects.insert(key.clone(), entry.clone());
            }
        }
        Ok(objects)
    }

    /// The task's `store`: each visible object as a file the sandbox can read, and the folder
    /// where the function's saves go (in its node folder).
    pub(super) async fn store_task(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        node_dir: &Path,
    ) -> Result<serde_json::Value> {
        let mut files = BTreeMap::new();
        for (key, entry) in self.visible_objects(ctx, node)? {
            files.insert(key, self.object_file(ctx, &entry).await?);
        }
        Ok(json!({"objects": files, "save_dir": node_dir.join("objects")}))
    }

    /// A copy of `entry` in the job's shared memory, which the sandbox reads. Never the
    /// warehouse's folder of objects itself: it holds every branch's objects, and a function
    /// sees only those of its input commit and its upstream nodes.
    async fn object_file(&self, ctx: &RunCtx, entry: &ObjectEntry) -> Result<PathBuf> {
        let dest = ctx
            .files
            .shm
            .input_dir()
            .join(format!("object-{}.pkl", entry.sha256));
        if !dest.is_file() {
            let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
            crate::node_cache::download(self.warehouse.file_io(), &entry.location, &tmp)
                .await
                .map_err(|e| Error::Storage(format!("object {}: {e}", entry.location)))?;
            std::fs::rename(&tmp, &dest).map_err(|e| Error::io(dest.display(), e))?;
        }
        Ok(dest)
    }

    /// Copies what the function saved (its result's `saved_objects`: key → file in `node_dir`)
    /// into the warehouse, and puts the objects in their place in the result (key → entry).
    pub(super) async fn keep_saved_objects(
        &self,
        node: &PlanNode,
        node_dir: &Path,
        result: &mut serde_json::Value,
    ) -> Result<()> {
        let Some(saved) = result.get("saved_objects").and_then(|v| v.as_object()) else {
            return Ok(());
        };
        let save_dir = node_dir.join("objects");
        let mut entries = Objects::new();
        for (key, v) in saved {
            validate_object_key(key).map_err(|e| node_err(&node.name, e))?;
            let file = v.get("file").and_then(|f| f.as_str()).unwrap_or("");
            let path = Path::new(file);
            // Written by user code: only a plain file of the function's own save folder.
            let inside = path.parent() == Some(save_dir.as_path())
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
            if !inside {
                return Err(node_err(
                    &node.name,
                    format!("object '{key}': its file {file} is not one the store wrote"),
                ));
            }
            let (sha, size) = file_sha256(path)?;
            let location = format!("{}/{OBJECTS_DIR}/{sha}.pkl", self.warehouse.url());
            let io = self.warehouse.file_io();
            // Named by content: an existing file holds these very bytes already.
            if !io.exists(&location).await.unwrap_or(false) {
                crate::node_cache::upload(io, path, &location)
                    .await
                    .map_err(|e| Error::Storage(format!("object '{key}' to {location}: {e}")))?;
            }
            entries.insert(
                key.clone(),
                ObjectEntry {
                    location,
                    sha256: sha,
                    size,
                },
            );
        }
        result["saved_objects"] = serde_json::to_value(&entries)
            .map_err(|e| Error::Internal(format!("saved objects: {e}")))?;
        Ok(())
    }

    /// Records the objects a node saved (its result's `saved_objects`, as entries) for the
    /// nodes downstream and for the run's commit. Two nodes of one run cannot save one key.
    pub(super) fn note_saved_objects(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        result: &serde_json::Value,
    ) -> Result<bool> {
        let Some(saved) = result.get("saved_objects") else {
            return Ok(false);
        };
        let entries: Objects = serde_json::from_value(saved.clone()).map_err(|e| {
            node_err(
                &node.name,
                format!("its worker answered unreadable objects: {e}"),
            )
        })?;
        let mut all = ctx
            .objects
            .saved
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?;
        for (key, entry) in entries {
            validate_object_key(&key).map_err(|e| node_err(&node.name, e))?;
            if let Some((by, _)) = all.get(&key) {
                return Err(node_err(
                    &node.name,
                    format!(
                        "raised UserObjectWithKeyExistsError: object '{key}' was saved by '{by}' in this run already"
                    ),
                ));
            }
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: false,
                line: format!(
                    "saved object '{key}' ({} bytes, {})",
                    entry.size,
                    &entry.sha256[..12]
                ),
            });
            all.insert(key, (node.name.clone(), entry));
        }
        Ok(true)
    }

    /// The run's saved objects as tree changes.
    pub(super) fn saved_object_changes(ctx: &RunCtx) -> Result<Vec<(String, ObjectEntry)>> {
        Ok(ctx
            .objects
            .saved
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?
            .iter()
            .map(|(k, (_, e))| (object_key(k), e.clone()))
            .collect())
    }
}

/// The SHA-256 (hex) and size of a file, read a block at a time.
fn file_sha256(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path.display(), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

/// The digest of what a node may load, for its cache key (none when it may load nothing, so
/// that lakes without objects keep their keys).
pub(super) fn objects_digest(objects: &Objects) -> Option<String> {
    if objects.is_empty() {
        return None;
    }
    let mut text = String::new();
    for (k, e) in objects {
        text.push_str(k);
        text.push('\0');
        text.push_str(&e.sha256);
        text.push('\0');
    }
    Some(lakeplan_core::sha256_hex(text.as_bytes()))
}

/// Every node `node` depends on, directly or through others (none outside a plan: a node
/// task on a worker is handed its objects).
fn ancestors<'p>(ctx: &'p RunCtx, node: &'p PlanNode) -> BTreeSet<&'p str> {
    let mut seen = BTreeSet::new();
    let Some(nodes) = ctx.schedule.plan_nodes.get() else {
        return seen;
    };
    let mut todo: Vec<&str> = node.upstream().collect();
    while let Some(n) = todo.pop() {
        if seen.insert(n) {
            if let Some(p) = nodes.get(n) {
                todo.extend(p.upstream());
            }
        }
    }
    seen
}

/// The objects of a run: those of the commit it reads, and those its nodes saved.
pub(super) struct RunObjects {
    /// The objects (`bauplan.store`) of the commit the run reads, loaded on first use (handed
    /// over with a node task on a worker).
    pub(super) at_commit: std::sync::OnceLock<Objects>,
    /// The objects saved by the run's nodes so far.
    pub(super) saved: std::sync::Mutex<Saved>,
}
