//! Where a reader may look. An embedded lake reads anything its user names; a server's tenant
//! reads nothing of another tenant's storage (its warehouse, its folder of job records and
//! runs) nor the server's own files, whatever path names them: a glob, `//`, `/./`, a parent
//! folder or a symbolic link.
//!
//! The check is made on each file that would be read, as the file system resolves it (its
//! canonical path) or as the object store lists it (its key with empty segments dropped), and
//! compares whole path components, never string prefixes. A location the reach does not allow
//! is said not to exist, in words that name none of the other tenant's paths.

use std::path::{Component, Path, PathBuf};

use iceberg::table::Table;
use lakeplan_core::{Error, Result};

/// A folder, or a bucket and key prefix, compared by components.
#[derive(Clone, Debug, PartialEq)]
enum Root {
    Local(PathBuf),
    S3 { bucket: String, key: Vec<String> },
}

impl Root {
    fn parse(location: &str) -> Option<Root> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return None;
            }
            return Some(Root::S3 {
                bucket: bucket.to_string(),
                key: segments(key),
            });
        }
        let local = location.strip_prefix("file://").unwrap_or(location);
        if local.is_empty() || (location.contains("://") && !location.starts_with("file://")) {
            return None;
        }
        Some(Root::Local(resolved(Path::new(local))))
    }

    /// Whether `inner` is this root or below it.
    fn holds(&self, inner: &Root) -> bool {
        match (self, inner) {
            (Root::Local(outer), Root::Local(p)) => p.starts_with(outer),
            (Root::S3 { bucket, key }, Root::S3 { bucket: b, key: k }) => {
                bucket == b && k.len() >= key.len() && k[..key.len()] == key[..]
            }
            _ => false,
        }
    }

    fn depth(&self) -> usize {
        match self {
            Root::Local(p) => p.components().count(),
            Root::S3 { key, .. } => key.len() + 1,
        }
    }
}

/// An object key's segments as the object store reads them: empty segments dropped (the store
/// reads `a//b` as `a/b`) and percent escapes decoded (a URL names `t%62` for `tb`).
fn segments(key: &str) -> Vec<String> {
    key.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decoded)
        .collect()
}

fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path as the file system resolves it: canonical (symbolic links followed) for the
/// longest part that exists, the rest normalized without following anything (`.` dropped,
/// `..` taking off the component before it).
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut base = abs.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                push_normalized(&mut out, Path::new(part));
            }
            return out;
        }
        match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                base = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = PathBuf::new();
    push_normalized(&mut out, &abs);
    out
}

fn push_normalized(out: &mut PathBuf, p: &Path) {
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
}

/// The locations a reader may read: everything, or everything but some roots (within which
/// some of its own roots may be open again).
#[derive(Clone, Debug, Default)]
pub struct Reach {
    denied: Vec<Root>,
    own: Vec<Root>,
}

impl Reach {
    /// No limit: an embedded lake reads what its user names.
    pub fn everywhere() -> Reach {
        Reach::default()
    }

    /// Everything but what lies below `denied` (folders, `file://` URLs or
    /// `s3://bucket/prefix`), except what lies below a deeper root of `own`.
    pub fn denying<D, O>(denied: D, own: O) -> Reach
    where
        D: IntoIterator,
        D::Item: AsRef<str>,
        O: IntoIterator,
        O::Item: AsRef<str>,
    {
        Reach {
            denied: denied
                .into_iter()
                .filter_map(|l| Root::parse(l.as_ref()))
                .collect(),
            own: own
                .into_iter()
                .filter_map(|l| Root::parse(l.as_ref()))
                .collect(),
        }
    }

    /// Whether the file at `location` (a path, `file://` URL or `s3://` URL) may be read: the
    /// deepest root that holds it, if any, is one of the reader's own.
    pub fn allows(&self, location: &str) -> bool {
        if self.denied.is_empty() {
            return true;
        }
        let Some(at) = Root::parse(location) else {
            return true;
        };
        let deepest = |roots: &[Root]| roots.iter().filter(|r| r.holds(&at)).map(Root::depth).max();
        match (deepest(&self.denied), deepest(&self.own)) {
            (None, _) => true,
            (Some(d), Some(o)) => o > d,
            (Some(_), None) => false,
        }
    }

    /// An error unless `location` may be read; it says the location does not exist.
    pub fn check(&self, location: &str) -> Result<()> {
        if self.allows(location) {
            Ok(())
        } else {
            Err(not_there(location))
        }
    }

    /// An error unless every file of table `t` may be read: its metadata, its location (where
    /// its writes go), each snapshot's manifest list, each manifest and each data or delete
    /// file they name. Each is checked before it is read; an error names only `named` (what
    /// the caller gave: a metadata location, a table). Snapshots `before` had are not read
    /// again (a commit checks what it adds).
    pub async fn check_table(&self, named: &str, t: &Table, before: Option<&Table>) -> Result<()> {
        if self.denied.is_empty() {
            return Ok(());
        }
        let known = |id: i64| before.is_some_and(|b| b.metadata().snapshot_by_id(id).is_some());
        let deny = || not_there(named);
        let m = t.metadata();
        let mut direct = vec![m.location().to_string()];
        direct.extend(t.metadata_location().map(str::to_string));
        direct.extend(m.metadata_log().iter().map(|l| l.metadata_file.clone()));
        direct.extend(m.statistics_iter().map(|s| s.statistics_path.clone()));
        direct.extend(
            m.partition_statistics_iter()
                .map(|s| s.statistics_path.clone()),
        );
        if direct.iter().any(|l| !self.allows(l)) {
            return Err(deny());
        }
        for snapshot in m.snapshots().filter(|s| !known(s.snapshot_id())) {
            if !self.allows(snapshot.manifest_list()) {
                return Err(deny());
            }
            let unreadable =
                |e: iceberg::Error| Error::InvalidInput(format!("{named}: a manifest list: {e}"));
            let bytes = t
                .file_io()
                .new_input(snapshot.manifest_list())
                .map_err(unreadable)?
                .read()
                .await
                .map_err(unreadable)?;
            let list = iceberg::spec::ManifestList::parse_with_version(&bytes, m.format_version())
                .map_err(unreadable)?;
            for manifest in list.entries() {
                if !self.allows(&manifest.manifest_path) {
                    return Err(deny());
                }
                let files = manifest
                    .load_manifest(t.file_io())
                    .await
                    .map_err(|e| Error::InvalidInput(format!("{named}: a manifest: {e}")))?;
                if files
                    .entries()
                    .iter()
                    .any(|e| !self.allows(e.data_file().file_path()))
                {
                    return Err(deny());
                }
            }
        }
        Ok(())
    }
}

/// What a location out of reach answers: the words of a file that is not there, naming only
/// what the caller named.
pub(crate) fn not_there(named: &str) -> Error {
    Error::NotFound(format!("'{named}': no such files"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_roots_hold_whatever_path_names_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().canonicalize().expect("canonical");
        let (a, b) = (d.join("warehouses/ta"), d.join("warehouses/tb"));
        std::fs::create_dir_all(b.join("default")).expect("mkdir");
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::write(b.join("default/x.parquet"), b"x").expect("write");
        let reach = Reach::denying(
            [d.display().to_string(), b.display().to_string()],
            [a.display().to_string()],
        );
        let bs = b.display().to_string();
        for sneaky in [
            format!("{bs}/default/x.parquet"),
            format!("file://{bs}/default/x.parquet"),
            bs.replace('/', "//"),
            format!("{}/./tb/default", d.join("warehouses").display()),
            format!(
                "{}/ta/../tb/default/x.parquet",
                d.join("warehouses").display()
            ),
            format!("{bs}/not/yet/there.csv"),
            d.join("server.db").display().to_string(),
        ] {
            assert!(!reach.allows(&sneaky), "{sneaky}");
        }
        #[cfg(unix)]
        {
            let link = a.join("link.parquet");
            std::os::unix::fs::symlink(b.join("default/x.parquet"), &link).expect("symlink");
            assert!(!reach.allows(&link.display().to_string()));
            let folder = a.join("folder");
            std::os::unix::fs::symlink(b.join("default"), &folder).expect("symlink");
            assert!(!reach.allows(&folder.join("x.parquet").display().to_string()));
        }
        // Its own warehouse, though below the denied server folder, and other places are open;
        // a name that merely starts like a denied root is not inside it.
        for fine in [
            a.join("y.csv").display().to_string(),
            "/elsewhere/y.csv".to_string(),
        ] {
            assert!(reach.allows(&fine), "{fine}");
        }
        let only_b = Reach::denying([&bs], [""; 0]);
        assert!(only_b.allows(&format!("{bs}x/y.csv")));
        assert!(Reach::everywhere().allows(&bs));
    }

    #[test]
    fn s3_keys_are_compared_as_the_store_reads_them() {
        let reach = Reach::denying(["s3://lake/tb"], ["s3://lake/ta"]);
        for sneaky in [
            "s3://lake/tb/x.parquet",
            "s3://lake//tb/x.parquet",
            "s3://lake/tb//default/x.parquet",
            "s3://lake/t%62/x.parquet",
        ] {
            assert!(!reach.allows(sneaky), "{sneaky}");
        }
        for fine in [
            "s3://lake/ta/x.csv",
            "s3://lake/tbx/y.csv",
            "s3://other/tb/x",
        ] {
            assert!(reach.allows(fine), "{fine}");
        }
        let e = reach.check("s3://lake//tb/x.parquet").expect_err("denied");
        assert_eq!(e.kind(), "NotFound");
    }
}
