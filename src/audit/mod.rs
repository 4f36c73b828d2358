//! Measuring the value of the rules over a population (`hookwise audit`):
//! how often each low-value service happens (point prevalence on patient
//! records, order prevalence on replayed historical orders), how many cards
//! the rules would show, and whether rates fell between two periods.
//!
//! Data flows one way: a source ([`source`]: Bulk NDJSON, per-patient
//! Bundles, or a FHIR server's `$export` through [`bulk`]) → an on-disk
//! partition by patient ([`partition`]) → each patient's record replayed at
//! the measured times through the engine's one evaluation path
//! ([`replay`]) → counts ([`tally`]) → the report ([`report`]), written as
//! a table, CSV, JSON or one self-contained HTML page ([`render`]).
//!
//! The report holds no patient ids; only the `--detail` file names
//! patients, pseudonymised unless asked otherwise.

pub mod bulk;
pub mod partition;
pub mod progress;
pub mod render;
pub mod replay;
pub mod report;
pub mod source;
pub mod stats;
pub mod tally;

pub use report::AuditReport;

use crate::json::{Json, bundle_resources, resource_type, str_field};
use crate::rules::RuleSet;
use partition::{Partition, Tagged};
use progress::Progress;
use replay::{Flagged, PatientData, Period, Replayer};
use report::{BadLine, InputSummary};
use source::Source;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tally::Tally;

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the patients are.
    pub source: Source,
    /// The periods measured: the later (or only) one first, then the
    /// earlier one of `--compare`.
    pub periods: Vec<Period>,
    /// Worker threads.
    pub threads: usize,
    /// Where the on-disk partition goes (removed afterwards).
    pub work_dir: PathBuf,
    /// Draw a progress bar when standard error is a terminal.
    pub progress: bool,
}

/// An audit's results.
#[derive(Debug)]
pub struct Audit {
    /// The report (no patient ids).
    pub report: AuditReport,
    /// Every flagged patient or order, sorted; ids in clear.
    pub flagged: Vec<Flagged>,
}

/// Runs an audit of `rules` over the population `options` name.
pub fn run(rules: &RuleSet, options: &Options) -> Result<Audit, String> {
    let files = options.source.files()?;
    let replayer = Replayer::new(rules, options.periods.clone());
    let progress = Progress::default();
    let threads = options.threads.max(1);
    let (tally, flagged, read) =
        progress.show_while(options.progress, || match &options.source {
            Source::Ndjson(dir) => {
                let partition =
                    Partition::build(&files, dir, &options.work_dir, threads, &progress)?;
                let (tally, flagged) = replay_buckets(&replayer, &partition, threads, &progress)?;
                Ok::<_, String>((tally, flagged, partition.counts.clone()))
            }
            Source::Bundles(dir) => replay_bundles(&replayer, &files, dir, threads, &progress),
        })?;
    let input = InputSummary {
        source: options.source.kind().to_string(),
        files: files.len() as u64,
        resources: read.resources,
        malformed: read.malformed,
        malformed_examples: read.malformed_examples,
        without_patient: read.without_patient,
        without_patient_resource: tally.without_patient_resource,
    };
    let report = report::build(rules, &replayer, &tally, input);
    Ok(Audit { report, flagged })
}

/// Runs `work` on every item index in `0..items` over `threads` workers,
/// each with its own tally and flagged list, and adds them up. The first
/// error wins.
fn in_parallel(
    replayer: &Replayer<'_>,
    items: usize,
    threads: usize,
    work: impl Fn(usize, &mut Tally, &mut Vec<Flagged>) -> Result<(), String> + Sync,
) -> Result<(Tally, Vec<Flagged>), String> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.max(1)) {
            scope.spawn(|| {
                let mut tally = Tally::new(replayer.periods().len());
                let mut flagged = Vec::new();
                let mut outcome = Ok(());
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= items || outcome.is_err() {
                        break;
                    }
                    outcome = work(item, &mut tally, &mut flagged);
                }
                let result = outcome.map(|()| (tally, flagged));
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(result);
            });
        }
    });
    let mut total = Tally::new(replayer.periods().len());
    let mut all = Vec::new();
    for result in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let (tally, flagged) = result?;
        total.add(tally);
        all.extend(flagged);
    }
    all.sort();
    Ok((total, all))
}

fn replay_buckets(
    replayer: &Replayer<'_>,
    partition: &Partition,
    threads: usize,
    progress: &Progress,
) -> Result<(Tally, Vec<Flagged>), String> {
    let medications: Vec<Json<'_>> = (partition.medications.iter())
        .filter_map(|line| crate::json::parse(line.as_bytes()).ok())
        .collect();
    let by_id: HashMap<&str, &Json<'_>> = (medications.iter().rev())
        .filter_map(|m| Some((str_field(m, "id")?, m)))
        .collect();
    progress.start("replaying", partition.buckets() as u64);
    in_parallel(
        replayer,
        partition.buckets(),
        threads,
        |bucket, tally, flagged| {
            let lines = partition.read_bucket(bucket)?;
            let tagged: Vec<Tagged<'_>> = lines.iter().map(|l| Tagged::of(l)).collect();
            for group in tagged.chunk_by(|a, b| a.patient == b.patient) {
                let parsed: Vec<Json<'_>> = (group.iter())
                    .filter_map(|t| crate::json::parse(t.resource.as_bytes()).ok())
                    .collect();
                let mut resources: Vec<&Json<'_>> = parsed.iter().collect();
                resources.extend(referenced_medications(&parsed, &by_id));
                let patient = PatientData {
                    id: group[0].patient,
                    resources,
                };
                replayer.replay(&patient, tally, flagged);
            }
            progress.advance(1);
            Ok(())
        },
    )
}

/// The shared Medications the patient's prescriptions reference by id.
fn referenced_medications<'m>(
    resources: &[Json<'_>],
    by_id: &HashMap<&str, &'m Json<'m>>,
) -> Vec<&'m Json<'m>> {
    let mut found: Vec<&Json<'_>> = (resources.iter())
        .filter_map(|r| crate::json::field(r, "medicationReference"))
        .filter_map(|reference| str_field(reference, "reference"))
        .filter_map(|reference| reference.strip_prefix("Medication/"))
        .filter_map(|id| by_id.get(id).copied())
        .collect();
    found.sort_by_key(|m| *m as *const Json<'_>);
    found.dedup_by_key(|m| *m as *const Json<'_>);
    found
}

fn replay_bundles(
    replayer: &Replayer<'_>,
    files: &[PathBuf],
    dir: &std::path::Path,
    threads: usize,
    progress: &Progress,
) -> Result<(Tally, Vec<Flagged>, partition::ReadCounts), String> {
    progress.start("replaying", files.len() as u64);
    let bad = Mutex::new(Vec::new());
    let (tally, flagged) = in_parallel(replayer, files.len(), threads, |index, tally, flagged| {
        let path = &files[index];
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        progress.advance(1);
        let bundle = match crate::json::parse(&text) {
            Ok(json) if resource_type(&json) == Some("Bundle") => json,
            other => {
                tally.malformed += 1;
                let error = match other {
                    Err(e) => format!("not JSON: {e}"),
                    Ok(_) => "not a FHIR Bundle".to_string(),
                };
                let file = path.strip_prefix(dir).unwrap_or(path).display().to_string();
                bad.lock().unwrap_or_else(|p| p.into_inner()).push(BadLine {
                    file,
                    line: 1,
                    error,
                });
                return Ok(());
            }
        };
        let resources: Vec<&Json<'_>> = bundle_resources(&bundle).collect();
        tally.resources += resources.len() as u64;
        let id = (resources.iter())
            .find(|r| resource_type(r) == Some("Patient"))
            .and_then(|p| str_field(p, "id"))
            .unwrap_or("");
        replayer.replay(&PatientData { id, resources }, tally, flagged);
        Ok(())
    })?;
    let mut examples = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    examples.sort_by(|a, b| a.file.cmp(&b.file));
    examples.truncate(20);
    let read = partition::ReadCounts {
        files: files.len() as u64,
        resources: tally.resources,
        malformed: tally.malformed,
        malformed_examples: examples,
        without_patient: 0,
    };
    Ok((tally, flagged, read))
}
