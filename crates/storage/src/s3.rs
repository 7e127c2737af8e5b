//! S3-compatible object stores, configured from the usual `AWS_*` environment variables:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`), and `AWS_ENDPOINT_URL` for S3-compatible servers (path-style requests,
//! plain HTTP allowed when the endpoint says `http://`). Keys are read at use and never stored in
//! the lake.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::io::{
    FileIO, FileIOBuilder, S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION,
    S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN,
};
use iceberg_storage_opendal::OpenDalStorageFactory;
use lakeplan_core::{Error, Result};
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

/// An `s3://bucket/prefix` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidInput(format!("'{url}' is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(Error::InvalidInput(format!(
                "'{url}': bucket name '{bucket}' is not valid (lowercase letters, digits, '-', '.')"
            )));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::InvalidInput(format!(
                "'{url}': '.' and '..' are not allowed in a key"
            )));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

#[derive(Clone, Debug, Default)]
struct AwsEnv {
    endpoint: Option<String>,
    region: String,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

fn aws_env() -> AwsEnv {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    AwsEnv {
        endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
        region: var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into()),
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        session_token: var("AWS_SESSION_TOKEN"),
    }
}

/// iceberg's FileIO for S3 (through OpenDAL).
pub fn file_io() -> Result<FileIO> {
    let env = aws_env();
    let mut props: HashMap<String, String> = HashMap::new();
    props.insert(S3_REGION.into(), env.region.clone());
    if let Some(e) = env.endpoint {
        props.insert(S3_ENDPOINT.into(), e);
        props.insert(S3_PATH_STYLE_ACCESS.into(), "true".into());
    }
    if let Some(k) = env.access_key_id {
        props.insert(S3_ACCESS_KEY_ID.into(), k);
    }
    if let Some(s) = env.secret_access_key {
        props.insert(S3_SECRET_ACCESS_KEY.into(), s);
    }
    if let Some(t) = env.session_token {
        props.insert(S3_SESSION_TOKEN.into(), t);
    }
    Ok(FileIOBuilder::new(Arc::new(OpenDalStorageFactory::S3 {
        customized_credential_load: None,
    }))
    .with_props(props)
    .build())
}

/// An object_store client for one bucket (DataFusion reads source files through it).
pub fn object_store(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    let env = aws_env();
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(env.region);
    if let Some(e) = env.endpoint {
        b = b
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(e);
    }
    if let Some(k) = env.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = env.secret_access_key {
        b = b.with_secret_access_key(s);
    }
    if let Some(t) = env.session_token {
        b = b.with_token(t);
    }
    let store = b
        .build()
        .map_err(|e| Error::Storage(format!("S3 bucket '{bucket}': {e}")))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let u = S3Url::parse("s3://my-bucket/a/b/").unwrap();
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.prefix, "a/b");
        assert_eq!(S3Url::parse("s3://b").unwrap().prefix, "");
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "http://b/x",
            "s3://b/../x",
            "s3://b/a/./c",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }
}
