//! Code snapshots: the zip of a project's files that a run executed, kept with the job so that
//! `lakeplan rerun` replays exactly that code.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use lakeplan_core::{Error, Result};
use sha2::{Digest, Sha256};

/// Zips `files` (path inside the zip, file on disk) into `dest`; returns the SHA-256 of the
/// files' names and contents (the run's code hash), independent of zip timestamps.
pub fn write_snapshot(files: &[(String, PathBuf)], dest: &Path) -> Result<String> {
    let out = std::fs::File::create(dest).map_err(|e| Error::io(dest.display(), e))?;
    let mut zip = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut sorted: Vec<&(String, PathBuf)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    let zerr =
        |e: zip::result::ZipError| Error::Internal(format!("writing {}: {e}", dest.display()));
    for (name, path) in sorted {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        zip.start_file(name.as_str(), opts).map_err(zerr)?;
        zip.write_all(&bytes)
            .map_err(|e| Error::io(dest.display(), e))?;
    }
    zip.finish().map_err(zerr)?;
    Ok(hex::encode(hash.finalize()))
}

/// Limits on what an archive may unpack to: an upload of a few MiB must not become gigabytes.
const MAX_ENTRIES: usize = 10_000;
const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;

/// Extracts a snapshot into `dir`, refusing entries that would land outside it and archives
/// that unpack to more than 10,000 files or 256 MiB.
pub fn extract_snapshot(zip_path: &Path, dir: &Path) -> Result<()> {
    let f = std::fs::File::open(zip_path).map_err(|e| Error::io(zip_path.display(), e))?;
    let zerr = |e: zip::result::ZipError| Error::InvalidData {
        path: zip_path.display().to_string(),
        message: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(f).map_err(zerr)?;
    let too_big = |what: String| Error::InvalidData {
        path: zip_path.display().to_string(),
        message: what,
    };
    if archive.len() > MAX_ENTRIES {
        return Err(too_big(format!(
            "{} entries: more than the {MAX_ENTRIES} a project may hold",
            archive.len()
        )));
    }
    let mut unpacked = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zerr)?;
        let name = entry.name().map_err(zerr)?.to_string();
        let rel = Path::new(&name);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::InvalidData {
                path: zip_path.display().to_string(),
                message: format!("entry '{name}' escapes the snapshot folder"),
            });
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        // Read at most what is left of the budget (+1 to see it overflow), whatever the entry's
        // header claims.
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_UNPACKED_BYTES - unpacked + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(zip_path.display(), e))?;
        unpacked += bytes.len() as u64;
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(too_big(format!(
                "it unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            )));
        }
        std::fs::write(&target, bytes).map_err(|e| Error::io(target.display(), e))?;
    }
    Ok(())
}

/// A project given as files (path → text, as an MCP client sends it) zipped the way `lakeplan
/// run` uploads a folder; [`Lake::unpack_project`](crate::Lake::unpack_project) checks the
/// paths and sizes when it unpacks it.
pub fn zip_files(files: &std::collections::BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let zerr = |e: zip::result::ZipError| Error::InvalidInput(format!("the project's files: {e}"));
    for (name, text) in files {
        zip.start_file(name.as_str(), opts).map_err(zerr)?;
        zip.write_all(text.as_bytes())
            .map_err(|e| Error::InvalidInput(format!("the project's file {name}: {e}")))?;
    }
    Ok(zip.finish().map_err(zerr)?.into_inner())
}

impl crate::Lake {
    /// Unpacks an uploaded project (a zip, as `lakeplan run` in remote mode sends it) into a
    /// fresh folder under the lake's `uploads/`, refusing entries that would escape it. Returns
    /// the folder; the caller removes it when the run is done.
    pub fn unpack_project(&self, zip_bytes: &[u8]) -> Result<PathBuf> {
        let dir = self
            .root
            .join("uploads")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let zip_path = dir.join("project.zip");
        let project = dir.join("project");
        let unpacked = std::fs::write(&zip_path, zip_bytes)
            .map_err(|e| Error::io(zip_path.display(), e))
            .and_then(|()| extract_snapshot(&zip_path, &project));
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(match e {
                Error::InvalidData { message, .. } => Error::InvalidData {
                    path: "the uploaded project".into(),
                    message,
                },
                other => other,
            });
        }
        Ok(project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_that_unpack_too_big_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("bomb.zip");
        {
            let f = std::fs::File::create(&zip_path).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("zeros.bin", opts).unwrap();
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..(MAX_UNPACKED_BYTES >> 20) + 1 {
                z.write_all(&chunk).unwrap();
            }
            z.finish().unwrap();
        }
        assert!(
            std::fs::metadata(&zip_path).unwrap().len() < 2 << 20,
            "deflate shrinks zeros"
        );
        let e = extract_snapshot(&zip_path, &dir.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("unpacks to more than"), "{e}");
    }

    #[test]
    fn round_trip_and_stable_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("views")).unwrap();
        std::fs::write(src.join("models.py"), "x = 1\n").unwrap();
        std::fs::write(src.join("views/a.sql"), "SELECT 1").unwrap();
        let files = vec![
            ("models.py".to_string(), src.join("models.py")),
            ("views/a.sql".to_string(), src.join("views/a.sql")),
        ];
        let z1 = dir.path().join("a.zip");
        let h1 = write_snapshot(&files, &z1).unwrap();
        let h2 = write_snapshot(&files, &dir.path().join("b.zip")).unwrap();
        assert_eq!(h1, h2);
        std::fs::write(src.join("models.py"), "x = 2\n").unwrap();
        let h3 = write_snapshot(&files, &dir.path().join("c.zip")).unwrap();
        assert_ne!(h1, h3);
        let out = dir.path().join("out");
        extract_snapshot(&z1, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("models.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("views/a.sql")).unwrap(),
            "SELECT 1"
        );
    }

    #[test]
    fn refuses_escaping_entries() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("evil.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&z).unwrap());
        w.start_file("../escape.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let err = extract_snapshot(&z, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("escapes"), "{err}");
        assert!(!dir.path().join("escape.txt").exists());
    }
}
