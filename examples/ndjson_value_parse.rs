//! The speed baseline of `hookwise audit`: reads every `*.ndjson` and `*.ndjson.gz` file of a
//! directory line by line on one thread and parses each line into a `serde_json::Value`,
//! then prints the lines, bytes, seconds and MB/s. Bytes are the NDJSON bytes after
//! decompression, newlines included; MB is 10^6 bytes.
//!
//! `cargo run --release --example ndjson_value_parse -- DIR`
//!
//! The audit is asked to reach half of this speed on one core and to use every core. The
//! serde_json of this workspace has `arbitrary_precision`, `preserve_order` and
//! `float_roundtrip` on (through its dependencies), so this is the `Value` the audit gets:
//! numbers kept as strings, objects as ordered maps.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Lines and bytes read so far.
#[derive(Default)]
struct Count {
    lines: u64,
    bytes: u64,
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: ndjson_value_parse DIR");
        return ExitCode::from(2);
    };
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ndjson_value_parse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let files = ndjson_files(dir)?;
    if files.is_empty() {
        return Err(format!("{} has no *.ndjson or *.ndjson.gz", dir.display()));
    }
    let start = Instant::now();
    let mut count = Count::default();
    for file in &files {
        parse_file(file, &mut count)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("files    {}", files.len());
    println!("lines    {}", count.lines);
    println!(
        "bytes    {} ({:.1} MB)",
        count.bytes,
        count.bytes as f64 / 1e6
    );
    println!("seconds  {seconds:.3}");
    println!(
        "speed    {:.1} MB/s, {:.0} lines/s",
        count.bytes as f64 / 1e6 / seconds,
        count.lines as f64 / seconds
    );
    Ok(())
}

/// The NDJSON files directly in `dir`, in name order.
fn ndjson_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".ndjson") || name.ends_with(".ndjson.gz") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_file(path: &Path, count: &mut Count) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let raw: Box<dyn Read> = if path.extension().is_some_and(|x| x == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            file,
        )))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, raw);
    let mut line = Vec::with_capacity(1 << 16);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read {} after line {number}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        count.bytes += n as u64;
        let text = line.trim_ascii_end();
        if text.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| format!("{} line {number}: {e}", path.display()))?;
        std::hint::black_box(value);
        count.lines += 1;
    }
}
