use arrow::record_batch::RecordBatch;
use lakeplan_core::{Error, Result};
use serde::Serialize;

pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    outln!("{s}");
    Ok(())
}

/// Prints rows as aligned columns under a header.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        outln!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn batches_tty(batches: &[RecordBatch]) -> Result<()> {
    let s = arrow::util::pretty::pretty_format_batches(batches)
        .map_err(|e| Error::Internal(e.to_string()))?;
    outln!("{s}");
    Ok(())
}

pub fn batches_json(batches: &[RecordBatch]) -> Result<()> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        w.write_batches(&refs)
            .map_err(|e| Error::Internal(e.to_string()))?;
        w.finish().map_err(|e| Error::Internal(e.to_string()))?;
    }
    if buf.is_empty() {
        buf.extend_from_slice(b"[]");
    }
    outln!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

pub fn batches_csv(batches: &[RecordBatch]) -> Result<()> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::Writer::new(&mut buf);
        for b in batches {
            w.write(b).map_err(|e| Error::Internal(e.to_string()))?;
        }
    }
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) ends the program quietly instead of
/// a panic, as other command-line tools do.
pub fn write_out(args: std::fmt::Arguments, newline: bool) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|_| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}
