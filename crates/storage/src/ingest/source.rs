//! A source file's bytes as ingestion checks them before trusting its extension or its reader:
//! a stream of its chunks (local or on S3), what its first bytes say its format is, and whether
//! its CSV quoting ends closed.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lakeplan_core::{Error, Result};

use super::{Format, SourceFile};
use crate::s3::{self, S3Url};

/// The bytes of `f` from offset `from` to its end, in chunks, read as they are consumed.
pub(super) async fn chunks(f: &SourceFile, from: u64) -> Result<BoxStream<'static, Result<Bytes>>> {
    if f.path.starts_with("s3://") {
        let u = S3Url::parse(&f.path)?;
        let store = s3::object_store(&u.bucket)?;
        let opts = object_store::GetOptions {
            range: (from > 0).then_some(object_store::GetRange::Offset(from)),
            ..Default::default()
        };
        let path = f.path.clone();
        let got = store
            .get_opts(&object_store::path::Path::from(u.prefix.as_str()), opts)
            .await
            .map_err(|e| Error::Storage(format!("reading {path}: {e}")))?;
        return Ok(got
            .into_stream()
            .map_err(move |e| Error::Storage(format!("reading {path}: {e}")))
            .boxed());
    }
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    const CHUNK: usize = 1 << 20;
    let path = f.path.clone();
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::io(&path, e))?;
    file.seek(std::io::SeekFrom::Start(from))
        .await
        .map_err(|e| Error::io(&path, e))?;
    Ok(futures::stream::try_unfold(file, move |mut file| {
        let path = path.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await.map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), file)))
        }
    })
    .boxed())
}

/// The format a file's first bytes show, for the binary formats that have a signature (and the
/// compressed or archive formats a data file is often mistaken for): `None` for text.
fn signature(head: &[u8]) -> Option<(&'static str, Option<Format>)> {
    let known: [(&[u8], &str, Option<Format>); 7] = [
        (b"PAR1", "a Parquet file", Some(Format::Parquet)),
        (b"ARROW1", "an Arrow IPC file", Some(Format::Arrow)),
        (b"\xff\xff\xff\xff", "an Arrow IPC stream", None),
        (b"\x1f\x8b", "gzip-compressed data", None),
        (
            b"PK\x03\x04",
            "a zip archive (an Excel workbook, say)",
            None,
        ),
        (b"ORC", "an ORC file", None),
        (b"Obj\x01", "an Avro file", None),
    ];
    known
        .into_iter()
        .find(|(magic, _, _)| head.starts_with(magic))
        .map(|(_, what, format)| (what, format))
}

/// Refuses a file whose first bytes contradict the format its extension names: a Parquet file
/// named `.csv` is reported as one, not as "invalid UTF-8" from the CSV reader.
pub(super) fn check_signature(f: &SourceFile, head: &[u8]) -> Result<()> {
    let found = signature(head);
    let wrong = match (f.format, found) {
        (Format::Csv | Format::Jsonl, found) => found,
        (Format::Parquet, Some((_, Some(Format::Parquet)))) => None,
        (Format::Parquet, Some((what, format))) => Some((what, format)),
        (Format::Parquet, None) => Some((
            "text or another format (it lacks Parquet's 'PAR1' signature)",
            None,
        )),
        (Format::Arrow, _) => None,
    };
    let Some((what, format)) = wrong else {
        return Ok(());
    };
    let named = super::ext_of(&f.path);
    let hint = match format {
        Some(Format::Parquet) => ": name it .parquet",
        Some(Format::Arrow) => ": name it .arrow",
        _ => "",
    };
    Err(Error::InvalidData {
        path: f.path.clone(),
        message: format!("the file is named {named} but looks like {what}{hint}"),
    })
}

/// Where the quoting of a CSV file stands after the bytes seen so far, as csv-core (arrow-csv's
/// parser) reads it: a `"` opens a quoted field only at the start of a field, `""` inside one is
/// a quote, and the next lone `"` closes it. csv-core ends an open field at the end of the
/// file without complaint, so this is what catches a stray quote swallowing the rest of a file.
pub(super) struct QuoteScan {
    delimiter: u8,
    /// Bytes before the current chunk.
    offset: u64,
    /// Newlines counted so far.
    lines: u64,
    /// The byte before the current chunk (`None` at the start of the file).
    prev: Option<u8>,
    state: Quoting,
}

#[derive(Clone, Copy)]
enum Quoting {
    Outside,
    /// Inside a quoted field that opened on this (1-based) line.
    Open {
        line: u64,
    },
    /// Inside a quoted field, just after a quote at offset `at`: closed, unless a quote follows.
    MaybeClosed {
        line: u64,
        at: u64,
    },
}

impl QuoteScan {
    pub(super) fn new(delimiter: u8) -> Self {
        QuoteScan {
            delimiter,
            offset: 0,
            lines: 0,
            prev: None,
            state: Quoting::Outside,
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        let mut counted = 0;
        for i in memchr::memchr_iter(b'"', chunk) {
            let at = self.offset + i as u64;
            self.state = match self.state {
                Quoting::Open { line } => Quoting::MaybeClosed { line, at },
                Quoting::MaybeClosed { line, at: q } if q + 1 == at => Quoting::Open { line },
                Quoting::Outside | Quoting::MaybeClosed { .. } => {
                    let before = if i > 0 { Some(chunk[i - 1]) } else { self.prev };
                    let field_start = match before {
                        None | Some(b'\n' | b'\r') => true,
                        Some(b) => b == self.delimiter,
                    };
                    if field_start {
                        self.lines += memchr::memchr_iter(b'\n', &chunk[counted..i]).count() as u64;
                        counted = i;
                        Quoting::Open {
                            line: self.lines + 1,
                        }
                    } else {
                        Quoting::Outside
                    }
                }
            };
        }
        self.lines += memchr::memchr_iter(b'\n', &chunk[counted..]).count() as u64;
        self.offset += chunk.len() as u64;
        if let Some(last) = chunk.last() {
            self.prev = Some(*last);
        }
    }

    /// The line of a quoted field still open at the end of the file.
    pub(super) fn open_at_end(&self) -> Option<u64> {
        match self.state {
            Quoting::Open { line } => Some(line),
            Quoting::Outside | Quoting::MaybeClosed { .. } => None,
        }
    }
}

/// Refuses a CSV file that ends inside a quoted field, naming the line where the field opened.
pub(super) async fn check_quotes(f: &SourceFile, delimiter: u8) -> Result<()> {
    let mut scan = QuoteScan::new(delimiter);
    let mut bytes = chunks(f, 0).await?;
    while let Some(chunk) = bytes.next().await {
        scan.feed(&chunk?);
    }
    match scan.open_at_end() {
        None => Ok(()),
        Some(line) => Err(Error::InvalidData {
            path: f.path.clone(),
            message: format!(
                "line {line}: a quoted field opens here and is not closed before the end of the file"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_line(text: &str, chunk: usize) -> Option<u64> {
        let mut s = QuoteScan::new(b',');
        for c in text.as_bytes().chunks(chunk) {
            s.feed(c);
        }
        s.open_at_end()
    }

    #[test]
    fn an_open_quote_at_the_end_is_found_on_its_line_whatever_the_chunks() {
        for chunk in [1, 2, 3, 1024] {
            assert_eq!(open_line("a,b\n1,\"unterminated\n2,3\n", chunk), Some(2));
            assert_eq!(open_line("a,b\n\"x\ny\",1\n3,\"open", chunk), Some(4));
            // closed fields, escaped quotes, quotes inside unquoted fields, newlines in fields
            assert_eq!(
                open_line("a,b\n\"x\"\"y\",1\n5'10\",2\n\"multi\nline\",3\n", chunk),
                None
            );
            assert_eq!(open_line("a\n\"\"\n\"\"\"\"\n", chunk), None);
            assert_eq!(open_line("a,b\n\"ab\"cd\"e,1\n", chunk), None);
            assert_eq!(open_line("a\n\"\"\"\n", chunk), Some(2));
        }
    }

    #[test]
    fn signatures_name_the_format() {
        assert_eq!(
            signature(b"PAR1\x15\x04"),
            Some(("a Parquet file", Some(Format::Parquet)))
        );
        assert_eq!(signature(b"a,b\n1,2\n"), None);
        assert_eq!(signature(b"{\"a\": 1}"), None);
    }
}
