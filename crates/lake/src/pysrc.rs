//! The Python side of lakeplan, embedded in the binary: the authoring package (`lakeplan`,
//! `bauplan`) and the worker that runs one function. Written once per content hash to
//! `<lake>/runtime/python/<hash>/`, which sandboxes mount read-only on `PYTHONPATH`, so the
//! binary needs nothing installed beside it.

use std::path::{Path, PathBuf};

use lakeplan_core::{Error, Result};
use sha2::{Digest, Sha256};

macro_rules! py {
    ($rel:literal) => {
        ($rel, include_str!(concat!("../../../python/", $rel)))
    };
}

/// Every file the sandboxes need, by path under the `python/` folder.
const SOURCES: &[(&str, &str)] = &[
    py!("lakeplan/__init__.py"),
    py!("lakeplan/_decorators.py"),
    py!("lakeplan/_inputs.py"),
    py!("lakeplan/_schema.py"),
    py!("lakeplan/standard_expectations.py"),
    py!("lakeplan/_worker.py"),
    py!("lakeplan/store.py"),
    py!("bauplan/__init__.py"),
    py!("bauplan/standard_expectations.py"),
    py!("bauplan/store.py"),
];

fn content_hash() -> String {
    let mut h = Sha256::new();
    for (name, text) in SOURCES {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Writes the sources under `lake_root` (once per version) and returns the folder to put on
/// `PYTHONPATH`.
pub(crate) fn install(lake_root: &Path) -> Result<PathBuf> {
    let dir = lake_root
        .join("runtime")
        .join("python")
        .join(&content_hash()[..16]);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let tmp = dir.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    for (name, text) in SOURCES {
        let p = tmp.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        std::fs::write(&p, text).map_err(|e| Error::io(p.display(), e))?;
    }
    std::fs::write(tmp.join(".complete"), b"").map_err(|e| Error::io(tmp.display(), e))?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another process installed the same version first.
        Err(_) if dir.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(Error::io(dir.display(), e)),
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_is_importable_layout() {
        let dir = tempfile::tempdir().unwrap();
        let a = install(dir.path()).unwrap();
        let b = install(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.join("lakeplan/_worker.py").is_file());
        assert!(a.join("bauplan/__init__.py").is_file());
    }
}
