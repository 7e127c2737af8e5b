//! Parquet writer settings for a table's data files, read from the table's Iceberg properties.
//!
//! The property names and meanings are Iceberg's (`write.parquet.*`, see the Iceberg
//! configuration page), so a table tuned by another engine is written the same way here. Where a
//! table sets nothing, lakeplan's defaults apply; they differ from Iceberg's in one place, the
//! codec: LZ4 (Parquet's `LZ4_RAW`) instead of ZSTD, because lakeplan's lakes are read far more
//! often than written and LZ4 decodes several times faster for files about 25% larger (measured
//! by `bench/run.sh tpch`; see bench/README.md).

use std::collections::HashMap;

use lakeplan_core::{Error, Result};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

pub const CODEC: &str = "write.parquet.compression-codec";
pub const CODEC_LEVEL: &str = "write.parquet.compression-level";
pub const ROW_GROUP_BYTES: &str = "write.parquet.row-group-size-bytes";
pub const ROW_GROUP_ROWS: &str = "write.parquet.row-group-limit";
pub const PAGE_BYTES: &str = "write.parquet.page-size-bytes";
pub const PAGE_ROWS: &str = "write.parquet.page-row-limit";
pub const DICT_BYTES: &str = "write.parquet.dict-size-bytes";

/// lakeplan's defaults for what a table does not set.
pub const DEFAULT_CODEC: &str = "lz4";
/// Iceberg's default row group size.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;
/// A row cap as well, so that narrow tables still get row groups small enough to split a file
/// across cores and to prune by statistics.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 256 * 1024;

/// The writer properties for a table with these Iceberg properties. Unknown codecs and values
/// that are not positive integers are errors naming the property, so a typo never silently
/// writes files some other way.
pub fn writer_properties(props: &HashMap<String, String>) -> Result<WriterProperties> {
    let codec = props
        .get(CODEC)
        .map(String::as_str)
        .unwrap_or(DEFAULT_CODEC);
    let level = props
        .get(CODEC_LEVEL)
        .map(|v| int(CODEC_LEVEL, v))
        .transpose()?;
    let mut b = WriterProperties::builder()
        .set_compression(compression(codec, level)?)
        .set_max_row_group_bytes(Some(
            size(props, ROW_GROUP_BYTES)?.unwrap_or(DEFAULT_ROW_GROUP_BYTES),
        ))
        .set_max_row_group_row_count(Some(
            size(props, ROW_GROUP_ROWS)?.unwrap_or(DEFAULT_ROW_GROUP_ROWS),
        ));
    if let Some(n) = size(props, PAGE_BYTES)? {
        b = b.set_data_page_size_limit(n);
    }
    if let Some(n) = size(props, PAGE_ROWS)? {
        b = b.set_data_page_row_count_limit(n);
    }
    if let Some(n) = size(props, DICT_BYTES)? {
        b = b.set_dictionary_page_size_limit(n);
    }
    Ok(b.build())
}

fn bad(property: &str, message: String) -> Error {
    Error::InvalidInput(format!("table property {property}: {message}"))
}

fn int(property: &str, value: &str) -> Result<i64> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| bad(property, format!("'{value}' is not an integer")))
}

/// A positive size the table sets, if it sets one.
fn size(props: &HashMap<String, String>, property: &str) -> Result<Option<usize>> {
    let Some(v) = props.get(property) else {
        return Ok(None);
    };
    match int(property, v)? {
        n if n > 0 => Ok(Some(n as usize)),
        n => Err(bad(property, format!("{n} must be greater than 0"))),
    }
}

/// Iceberg's codec names (case-insensitive) to Parquet's compression, with an optional level.
fn compression(codec: &str, level: Option<i64>) -> Result<Compression> {
    let level_err = |e: parquet::errors::ParquetError| bad(CODEC_LEVEL, e.to_string());
    let no_level = |c: Compression| match level {
        Some(_) => Err(bad(
            CODEC_LEVEL,
            format!("codec '{codec}' takes no compression level"),
        )),
        None => Ok(c),
    };
    match codec.to_ascii_lowercase().as_str() {
        "zstd" => Ok(Compression::ZSTD(match level {
            Some(l) => ZstdLevel::try_new(l as i32).map_err(level_err)?,
            None => ZstdLevel::default(),
        })),
        "gzip" => Ok(Compression::GZIP(match level {
            Some(l) => GzipLevel::try_new(l as u32).map_err(level_err)?,
            None => GzipLevel::default(),
        })),
        "brotli" => Ok(Compression::BROTLI(match level {
            Some(l) => BrotliLevel::try_new(l as u32).map_err(level_err)?,
            None => BrotliLevel::default(),
        })),
        "snappy" => no_level(Compression::SNAPPY),
        "lz4" | "lz4_raw" => no_level(Compression::LZ4_RAW),
        "uncompressed" | "none" => no_level(Compression::UNCOMPRESSED),
        other => Err(bad(
            CODEC,
            format!(
                "unknown codec '{other}' (expected zstd, lz4, snappy, gzip, brotli or uncompressed)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_the_table_sets_nothing() {
        let p = writer_properties(&HashMap::new()).unwrap();
        let col = parquet::schema::types::ColumnPath::from("a");
        assert_eq!(p.compression(&col), Compression::LZ4_RAW);
        assert_eq!(p.max_row_group_bytes(), Some(DEFAULT_ROW_GROUP_BYTES));
        assert_eq!(p.max_row_group_row_count(), Some(DEFAULT_ROW_GROUP_ROWS));
    }

    #[test]
    fn iceberg_properties_are_honoured() {
        let p = writer_properties(&props(&[
            (CODEC, "ZSTD"),
            (CODEC_LEVEL, "7"),
            (ROW_GROUP_BYTES, "1048576"),
            (ROW_GROUP_ROWS, "1000"),
            (PAGE_ROWS, "500"),
            (PAGE_BYTES, "4096"),
            (DICT_BYTES, "8192"),
        ]))
        .unwrap();
        let col = parquet::schema::types::ColumnPath::from("a");
        assert_eq!(
            p.compression(&col),
            Compression::ZSTD(ZstdLevel::try_new(7).unwrap())
        );
        assert_eq!(p.max_row_group_bytes(), Some(1_048_576));
        assert_eq!(p.max_row_group_row_count(), Some(1000));
        assert_eq!(p.data_page_row_count_limit(), 500);
        assert_eq!(p.data_page_size_limit(), 4096);
        assert_eq!(p.dictionary_page_size_limit(), 8192);
        for (codec, want) in [
            ("snappy", Compression::SNAPPY),
            ("uncompressed", Compression::UNCOMPRESSED),
            ("lz4", Compression::LZ4_RAW),
        ] {
            let p = writer_properties(&props(&[(CODEC, codec)])).unwrap();
            assert_eq!(p.compression(&col), want, "{codec}");
        }
    }

    #[test]
    fn bad_values_name_the_property() {
        for (kv, needle) in [
            ((CODEC, "lzo"), "unknown codec 'lzo'"),
            ((ROW_GROUP_BYTES, "0"), ROW_GROUP_BYTES),
            ((ROW_GROUP_ROWS, "ten"), "'ten' is not an integer"),
            ((CODEC_LEVEL, "99"), CODEC_LEVEL),
        ] {
            let mut p = props(&[kv]);
            if kv.0 == CODEC_LEVEL {
                p.insert(CODEC.into(), "zstd".into());
            }
            let err = writer_properties(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
        let err = writer_properties(&props(&[(CODEC, "snappy"), (CODEC_LEVEL, "3")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes no compression level"), "{err}");
    }
}
