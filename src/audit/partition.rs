//! Groups Bulk NDJSON by patient on disk. An export comes grouped by
//! resource type (all Conditions, then all Observations), and a patient's
//! record needs all of its types at once; loading whole files would need
//! the population in memory. Instead every line is written, tagged with its
//! patient id, to one of `n` bucket files chosen by a hash of the id, so a
//! bucket holds every resource of its patients and fits in memory.
//!
//! Reading is parallel: plain files are cut into chunks at line breaks,
//! compressed files are read whole, and each worker writes its own part of
//! every bucket. A bucket's lines are later sorted by (patient, file, byte
//! offset), so what a patient's record holds, and in what order, does not
//! depend on the number of workers.

use super::progress::Progress;
use super::report::BadLine;
use super::source::{Owner, open_lines, owner};
use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Raw bytes of input per bucket the partition aims for: a bucket is read
/// into memory whole and parsed, a few times its size.
const BUCKET_BYTES: u64 = 24 << 20;

/// Compressed NDJSON inflates about this much (FHIR JSON is repetitive).
const GZIP_RATIO: u64 = 8;

/// Plain files are read in chunks of this size, so one large file
/// (Observations are most of an export) keeps every worker busy.
const CHUNK_BYTES: u64 = 64 << 20;

/// Each worker's bucket writers share this much buffer memory.
const WRITE_BUFFERS: usize = 32 << 20;

/// Malformed lines kept as examples in the report.
const BAD_LINE_EXAMPLES: usize = 20;

/// The patients' lines, grouped into bucket files under a work directory
/// that is removed when the partition is dropped.
pub struct Partition {
    dir: PathBuf,
    buckets: usize,
    workers: usize,
    /// The Medication resources, which prescriptions of any patient may
    /// reference: kept in memory, as their raw lines.
    pub medications: Vec<String>,
    /// What was read.
    pub counts: ReadCounts,
}

/// What reading the files found.
#[derive(Debug, Default, Clone)]
pub struct ReadCounts {
    /// Files read.
    pub files: u64,
    /// Resources read (lines that parsed as FHIR resources).
    pub resources: u64,
    /// Lines that are not a JSON object with a `resourceType`.
    pub malformed: u64,
    /// The first malformed lines, by file and line.
    pub malformed_examples: Vec<BadLine>,
    /// Resources that point to no patient.
    pub without_patient: u64,
}

impl ReadCounts {
    fn add(&mut self, other: ReadCounts) {
        self.resources += other.resources;
        self.malformed += other.malformed;
        self.without_patient += other.without_patient;
    }
}

/// A piece of one input file: a byte range of a plain file, or a whole
/// compressed one.
struct Chunk {
    file: usize,
    start: u64,
    /// `None`: to the end of the file.
    end: Option<u64>,
}

impl Partition {
    /// Partitions the NDJSON `files` (named in reports relative to `base`)
    /// into a fresh directory under `work_dir`, with `workers` threads.
    pub fn build(
        files: &[PathBuf],
        base: &Path,
        work_dir: &Path,
        workers: usize,
        progress: &Progress,
    ) -> Result<Partition, String> {
        let workers = workers.max(1);
        let sizes = sizes(files)?;
        let estimated: u64 = sizes.iter().map(|(bytes, gz)| bytes * gz_factor(*gz)).sum();
        progress.start("reading", estimated);
        let buckets = bucket_count(estimated, workers);
        let dir = fresh_dir(work_dir)?;
        let mut partition = Partition {
            dir,
            buckets,
            workers,
            medications: Vec::new(),
            counts: ReadCounts {
                files: files.len() as u64,
                ..Default::default()
            },
        };
        let chunks = chunks(&sizes);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Result<WorkerOutput, String>>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (partition, chunks, next, results) = (&partition, &chunks, &next, &results);
                scope.spawn(move || {
                    let output = partition.work(worker, files, chunks, next, progress);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(output);
                });
            }
        });
        let outputs = results.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut bad = Vec::new();
        for output in outputs {
            let output = output?;
            partition.counts.add(output.counts);
            partition.medications.extend(output.medications);
            bad.extend(output.bad);
        }
        partition.counts.malformed_examples = examples(&mut bad, files, base)?;
        // Sorted, so that what records hold does not depend on the workers.
        partition.medications.sort();
        partition.medications.dedup();
        Ok(partition)
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// A bucket's lines, sorted by (patient id, file, offset): one string
    /// per line `pid \t file \t offset \t resource`.
    pub fn read_bucket(&self, bucket: usize) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        for worker in 0..self.workers {
            let path = self.bucket_path(bucket, worker);
            let mut text = String::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| format!("cannot read the partition file {}: {e}", path.display()))?;
            lines.extend(text.lines().map(str::to_string));
        }
        lines.sort_by(|a, b| Tagged::of(a).key().cmp(&Tagged::of(b).key()));
        Ok(lines)
    }

    fn bucket_path(&self, bucket: usize, worker: usize) -> PathBuf {
        self.dir.join(format!("bucket-{bucket:05}.{worker:02}"))
    }

    fn work(
        &self,
        worker: usize,
        files: &[PathBuf],
        chunks: &[Chunk],
        next: &AtomicUsize,
        progress: &Progress,
    ) -> Result<WorkerOutput, String> {
        let capacity = (WRITE_BUFFERS / self.buckets).clamp(4 << 10, 256 << 10);
        let mut writers = Vec::with_capacity(self.buckets);
        for bucket in 0..self.buckets {
            let path = self.bucket_path(bucket, worker);
            let file = File::create(&path)
                .map_err(|e| format!("cannot write the partition file {}: {e}", path.display()))?;
            writers.push(BufWriter::with_capacity(capacity, file));
        }
        let mut output = WorkerOutput::default();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(index) else {
                break;
            };
            let path = &files[chunk.file];
            self.read_chunk(chunk, path, &mut writers, &mut output, progress)?;
        }
        for (bucket, mut writer) in writers.into_iter().enumerate() {
            writer.flush().map_err(|e| {
                let path = self.bucket_path(bucket, worker);
                format!("cannot write the partition file {}: {e}", path.display())
            })?;
        }
        Ok(output)
    }

    fn read_chunk(
        &self,
        chunk: &Chunk,
        path: &Path,
        writers: &mut [BufWriter<File>],
        output: &mut WorkerOutput,
        progress: &Progress,
    ) -> Result<(), String> {
        let gz = gz_factor(is_gz(path));
        let cannot_read = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
        // A line belongs to the chunk it starts in. From the byte before the
        // start, skip to the end of that line: nothing when the chunk starts
        // a line, the rest of the chunk before's last line otherwise.
        let from = chunk.start.saturating_sub(1);
        let mut reader = open_at(path, from)?;
        let mut offset = from;
        if chunk.start > 0 {
            let mut partial = Vec::new();
            offset += reader
                .read_until(b'\n', &mut partial)
                .map_err(cannot_read)? as u64;
        }
        let mut line = Vec::new();
        while chunk.end.is_none_or(|end| offset < end) {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(cannot_read)?;
            if read == 0 {
                break;
            }
            self.route(chunk.file, offset, &line, writers, output)
                .map_err(|e| format!("cannot write the partition: {e}"))?;
            offset += read as u64;
            progress.advance(read as u64 * gz);
        }
        Ok(())
    }

    /// Sends one line to its patient's bucket, or counts why it cannot go.
    fn route(
        &self,
        file: usize,
        offset: u64,
        line: &[u8],
        writers: &mut [BufWriter<File>],
        output: &mut WorkerOutput,
    ) -> std::io::Result<()> {
        let text = trim_line(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let Some(resource) = crate::json::parse(text).ok().filter(is_resource) else {
            output.counts.malformed += 1;
            if output.bad.len() < BAD_LINE_EXAMPLES {
                output.bad.push((file, offset, why_malformed(text)));
            }
            return Ok(());
        };
        output.counts.resources += 1;
        match owner(&resource) {
            Owner::Patient(id) if !id.contains(['\t', '\n', '\r']) => {
                let writer = &mut writers[bucket_of(id, self.buckets)];
                write!(writer, "{id}\t{file}\t{offset}\t")?;
                writer.write_all(text)?;
                writer.write_all(b"\n")
            }
            Owner::Shared => {
                output
                    .medications
                    .push(String::from_utf8_lossy(text).into_owned());
                Ok(())
            }
            Owner::Patient(_) | Owner::Nobody => {
                output.counts.without_patient += 1;
                Ok(())
            }
        }
    }
}

/// What one worker found besides the lines it wrote.
#[derive(Default)]
struct WorkerOutput {
    counts: ReadCounts,
    medications: Vec<String>,
    /// Where its first malformed lines are (file, byte offset), and why.
    bad: Vec<(usize, u64, String)>,
}

/// A bucket line's parts: `pid \t file \t offset \t resource`.
pub struct Tagged<'l> {
    /// Patient id.
    pub patient: &'l str,
    file: u64,
    offset: u64,
    /// The resource's JSON.
    pub resource: &'l str,
}

impl<'l> Tagged<'l> {
    /// Splits a line written by the partition.
    pub fn of(line: &'l str) -> Tagged<'l> {
        let mut parts = line.splitn(4, '\t');
        let mut next = || parts.next().unwrap_or("");
        let patient = next();
        let file = next().parse().unwrap_or(0);
        let offset = next().parse().unwrap_or(0);
        Tagged {
            patient,
            file,
            offset,
            resource: next(),
        }
    }

    fn key(&self) -> (&'l str, u64, u64) {
        (self.patient, self.file, self.offset)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Best effort: a leftover directory under the work dir is only disk.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_resource(json: &crate::json::Json<'_>) -> bool {
    crate::json::resource_type(json).is_some()
}

fn why_malformed(text: &[u8]) -> String {
    match crate::json::parse(text) {
        Err(e) => format!("not JSON: {e}"),
        Ok(_) => "not a FHIR resource (no resourceType)".to_string(),
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

fn gz_factor(gz: bool) -> u64 {
    if gz { GZIP_RATIO } else { 1 }
}

/// Each file's size on disk, and whether it is compressed.
fn sizes(files: &[PathBuf]) -> Result<Vec<(u64, bool)>, String> {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok((meta.len(), is_gz(path)))
        })
        .collect()
}

fn chunks(sizes: &[(u64, bool)]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for (file, &(bytes, gz)) in sizes.iter().enumerate() {
        if gz || bytes <= CHUNK_BYTES {
            chunks.push(Chunk {
                file,
                start: 0,
                end: None,
            });
            continue;
        }
        let mut start = 0;
        while start < bytes {
            let end = (start + CHUNK_BYTES).min(bytes);
            chunks.push(Chunk {
                file,
                start,
                end: (end < bytes).then_some(end),
            });
            start = end;
        }
    }
    // Largest first, so the last chunk to finish is a small one.
    chunks.sort_by_key(|c| (c.end.is_some(), c.file));
    chunks
}

/// Buckets for `bytes` of input: enough to keep each near
/// [`BUCKET_BYTES`], within what the open-file limit allows every worker.
fn bucket_count(bytes: u64, workers: usize) -> usize {
    let wanted = bytes.div_ceil(BUCKET_BYTES).max(1);
    let limit = open_file_limit().saturating_sub(64) / workers as u64;
    wanted.min(limit.clamp(1, 4096)) as usize
}

/// The soft limit on open files, raised to the hard limit first.
fn open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write `limit`.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 256;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        limit.rlim_cur
    }
    #[cfg(not(unix))]
    {
        512
    }
}

/// A deterministic hash (FNV-1a), the same on every run and machine.
fn bucket_of(patient: &str, buckets: usize) -> usize {
    let hash = patient.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % buckets as u64) as usize
}

/// A reader positioned at `start` (plain files) or at the beginning.
fn open_at(path: &Path, start: u64) -> Result<Box<dyn BufRead + Send>, String> {
    if start == 0 {
        return open_lines(path);
    }
    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
}

/// A fresh directory for this run's partition.
fn fresh_dir(work_dir: &Path) -> Result<PathBuf, String> {
    let cannot = |e: std::io::Error| format!("cannot create {}: {e}", work_dir.display());
    std::fs::create_dir_all(work_dir).map_err(cannot)?;
    for attempt in 0..1000 {
        let dir = work_dir.join(format!("hookwise-audit-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a work directory in {}",
        work_dir.display()
    ))
}

/// The malformed lines' positions as examples: file names relative to
/// `base` and 1-based line numbers, counted by reading up to each offset.
fn examples(
    bad: &mut Vec<(usize, u64, String)>,
    files: &[PathBuf],
    base: &Path,
) -> Result<Vec<BadLine>, String> {
    bad.sort();
    bad.truncate(BAD_LINE_EXAMPLES);
    let mut examples = Vec::new();
    let mut i = 0;
    while i < bad.len() {
        let file = bad[i].0;
        let path = &files[file];
        let mut reader = open_lines(path)?;
        let (mut offset, mut line_number, mut line) = (0u64, 1u64, Vec::new());
        while i < bad.len() && bad[i].0 == file {
            while offset < bad[i].1 {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if read == 0 {
                    break;
                }
                offset += read as u64;
                line_number += 1;
            }
            let name = path.strip_prefix(base).unwrap_or(path);
            examples.push(BadLine {
                file: name.display().to_string(),
                line: line_number,
                error: std::mem::take(&mut bad[i].2),
            });
            i += 1;
        }
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn lines_reach_their_patients_bucket_and_bad_lines_are_counted_by_line() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let patients = write(
            dir,
            "Patient.ndjson",
            "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n",
        );
        let conditions = write(
            dir,
            "Condition.ndjson",
            concat!(
                "{\"resourceType\":\"Condition\",\"id\":\"c1\",\"subject\":{\"reference\":\"Patient/b\"}}\r\n",
                "{not json\n",
                "{\"resourceType\":\"Organization\",\"id\":\"o\"}\n",
                "[1]\n",
                "{\"resourceType\":\"Medication\",\"id\":\"m\"}\n",
            ),
        );
        let files = vec![conditions, patients];
        let work = dir.join("work");
        let partition = Partition::build(&files, dir, &work, 2, &Progress::default()).unwrap();
        assert_eq!(partition.counts.resources, 5);
        assert_eq!(partition.counts.malformed, 2);
        assert_eq!(partition.counts.without_patient, 1);
        assert_eq!(partition.medications.len(), 1);
        let lines: Vec<(String, String)> = (0..partition.buckets())
            .flat_map(|b| partition.read_bucket(b).unwrap())
            .map(|l| {
                let t = Tagged::of(&l);
                (t.patient.to_string(), t.resource.to_string())
            })
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let of_b: Vec<&str> = lines
            .iter()
            .filter(|(p, _)| p == "b")
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(of_b.len(), 2);
        assert!(of_b[0].contains("Condition"), "file order kept: {of_b:?}");
        let examples = &partition.counts.malformed_examples;
        assert_eq!(
            examples
                .iter()
                .map(|e| (e.file.as_str(), e.line))
                .collect::<Vec<_>>(),
            vec![("Condition.ndjson", 2), ("Condition.ndjson", 4)]
        );
        assert!(examples[0].error.starts_with("not JSON"), "{examples:?}");
        assert!(examples[1].error.contains("resourceType"), "{examples:?}");
        let made = std::fs::read_dir(&work).unwrap().count();
        drop(partition);
        assert_eq!(made, 1);
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "removed on drop"
        );
    }

    #[test]
    fn chunks_split_large_files_at_line_breaks_without_losing_or_repeating_lines() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!(
                "{{\"resourceType\":\"Observation\",\"id\":\"o{i}\",\"subject\":{{\"reference\":\"Patient/p{}\"}}}}\n",
                i % 7
            ));
        }
        let path = write(dir, "Observation.ndjson", &text);
        let sizes = [(text.len() as u64, false)];
        let partition = Partition {
            dir: fresh_dir(&dir.join("work")).unwrap(),
            buckets: 3,
            workers: 1,
            medications: Vec::new(),
            counts: ReadCounts::default(),
        };
        // Chunks of 1000 bytes: many boundaries fall inside lines.
        let mut output = WorkerOutput::default();
        let capacity = 4096;
        let mut writers: Vec<_> = (0..3)
            .map(|b| {
                BufWriter::with_capacity(
                    capacity,
                    File::create(partition.bucket_path(b, 0)).unwrap(),
                )
            })
            .collect();
        let mut start = 0;
        while start < sizes[0].0 {
            let end = (start + 1000).min(sizes[0].0);
            let chunk = Chunk {
                file: 0,
                start,
                end: (end < sizes[0].0).then_some(end),
            };
            partition
                .read_chunk(
                    &chunk,
                    &path,
                    &mut writers,
                    &mut output,
                    &Progress::default(),
                )
                .unwrap();
            start = end;
        }
        drop(writers);
        assert_eq!(output.counts.resources, 2000);
        assert_eq!(output.counts.malformed, 0);
        let all: usize = (0..3)
            .map(|b| partition.read_bucket(b).unwrap().len())
            .sum();
        assert_eq!(all, 2000);
    }

    #[test]
    fn bucket_of_is_stable() {
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(
            bucket_of("a", 1000),
            (0xaf63_dc4c_8601_ec8c_u64 % 1000) as usize
        );
    }
}
