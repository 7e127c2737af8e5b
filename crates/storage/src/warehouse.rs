use std::path::PathBuf;

use iceberg::io::FileIO;
use lakeplan_core::{Error, Result, TableName};

/// Where a lake keeps its table files: a local folder (`file:///...`).
#[derive(Clone, Debug)]
pub struct Warehouse {
    url: String,
    file_io: FileIO,
}

impl Warehouse {
    /// Opens (and creates, for a local folder) the warehouse at `location`: a local path, a
    /// `file://` URL, or `s3://bucket/prefix` (credentials and endpoint from `AWS_*`).
    pub fn open(location: &str) -> Result<Self> {
        if location.starts_with("s3://") {
            let u = crate::s3::S3Url::parse(location)?;
            let url = if u.prefix.is_empty() {
                format!("s3://{}", u.bucket)
            } else {
                format!("s3://{}/{}", u.bucket, u.prefix)
            };
            return Ok(Warehouse {
                url,
                file_io: crate::s3::file_io()?,
            });
        }
        let path = match location.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(location),
        };
        std::fs::create_dir_all(&path).map_err(|e| Error::io(path.display(), e))?;
        let path = path
            .canonicalize()
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(Warehouse {
            url: format!("file://{}", path.display()),
            file_io: FileIO::new_with_fs(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// A fresh, unique location for a new table (or a new version of a replaced table). Names
    /// are validated identifiers, so the location never escapes the warehouse.
    pub fn new_table_location(&self, name: &TableName) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{}/{}/{}_{}",
            self.url,
            name.namespace,
            name.name,
            &id[..12]
        )
    }
}
