//! `hookwise audit`: the command line over [`crate::audit`]. It reads the
//! arguments and the settings, gathers the population (downloading it from
//! a FHIR server first when asked), joins the feedback store's acceptance
//! with `--database`, and writes the report and the detail file.

use crate::audit::bulk::{BulkAuth, BulkProgress, BulkSource};
use crate::audit::render::{Format, render};
use crate::audit::replay::{Flagged, Period, Window};
use crate::audit::report::{Acceptance, rfc3339};
use crate::audit::source::Source;
use crate::audit::{Audit, Options};
use crate::config::{Overrides, Settings};
use crate::pseudonym::Pseudonymizer;
use crate::report::parse_bound;
use crate::server::build_engine;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// `hookwise audit`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("population").required(true).args(["ndjson", "bundles", "fhir_server"])))]
pub struct AuditArgs {
    /// A directory of FHIR Bulk Data NDJSON files (`*.ndjson`, `*.ndjson.gz`).
    #[arg(long, value_name = "DIR")]
    ndjson: Option<PathBuf>,
    /// A directory of per-patient Bundles (`*.json`).
    #[arg(long, value_name = "DIR")]
    bundles: Option<PathBuf>,
    /// A FHIR server to export the population from with Bulk Data
    /// (`{URL}/Patient/$export`). Authorization: the bearer token in
    /// FHIR_BULK_TOKEN, or SMART Backend Services with --client-id.
    #[arg(long, value_name = "URL")]
    fhir_server: Option<String>,
    /// SMART Backend Services client id.
    #[arg(long, requires_all = ["private_key", "token_url"])]
    client_id: Option<String>,
    /// The client's private key (PEM: RSA, or EC P-384 in PKCS#8).
    #[arg(long, value_name = "FILE", requires = "client_id")]
    private_key: Option<PathBuf>,
    /// The authorization server's token endpoint.
    #[arg(long, value_name = "URL", requires = "client_id")]
    token_url: Option<String>,
    /// The `kid` of the client's key in its registered JWKS.
    #[arg(long, requires = "client_id", default_value = "hookwise-audit")]
    key_id: String,
    /// Scopes to ask for.
    #[arg(long, requires = "client_id", default_value = crate::audit::bulk::DEFAULT_SCOPE)]
    scope: String,
    /// Keep the exported NDJSON in this (empty or new) directory
    /// [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR", requires = "fhir_server")]
    export_dir: Option<PathBuf>,
    /// Evaluate patient-view rules on each record as it stood at this time
    /// (RFC 3339, or a date for its midnight UTC) [default: now].
    #[arg(long, value_name = "TIME", conflicts_with = "compare")]
    as_of: Option<String>,
    /// Replay the orders placed from this date (or RFC 3339 time).
    #[arg(
        long,
        value_name = "DATE",
        requires = "until",
        conflicts_with = "compare"
    )]
    since: Option<String>,
    /// ... up to this date (inclusive) or RFC 3339 time (exclusive).
    #[arg(long, value_name = "DATE", requires = "since")]
    until: Option<String>,
    /// Two periods side by side, before and after go-live:
    /// `2023-01-01..2023-12-31 2024-01-01..2024-12-31`. Each period's
    /// orders are replayed, and patient-view rules evaluated at its end.
    #[arg(long, num_args = 2, value_names = ["BEFORE", "AFTER"])]
    compare: Option<Vec<String>>,
    /// Rule directory [default: the settings' rules, ./cds-rules].
    #[arg(long)]
    rules: Option<PathBuf>,
    /// TOML settings file (rules, disabled_rules, patient_id_hash_key, database_url).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Join the feedback store's acceptance rates (a database URL).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write one CSV row per flagged patient or order here, ids pseudonymised.
    #[arg(long, value_name = "FILE")]
    detail: Option<PathBuf>,
    /// Write real patient and order ids in the detail file.
    #[arg(long, requires = "detail")]
    reveal_ids: bool,
    /// Worker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Where the on-disk partition by patient goes [default: the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

/// Runs `hookwise audit`: what to print on standard output, or why it failed.
pub fn command(args: AuditArgs) -> Result<String, String> {
    let settings = Settings::load(
        args.config.as_deref(),
        Overrides {
            rules: args.rules.clone(),
            ..Default::default()
        },
    )
    .map_err(|e| format!("invalid settings: {e}"))?;
    let engine = build_engine(&settings).map_err(|e| e.to_string())?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let export = match &args.fhir_server {
        Some(url) => Some(export(&args, url, &work_dir)?),
        None => None,
    };
    let options = Options {
        source: match &export {
            Some(export) => Source::Ndjson(export.dir.clone()),
            None => source(&args)?,
        },
        periods: periods(&args)?,
        threads: args.threads.unwrap_or_else(cores).max(1),
        work_dir,
        progress: true,
    };
    let Audit {
        mut report,
        flagged,
    } = crate::audit::run(&engine.rules, &options)?;
    if export.is_some() {
        report.input.source = "fhir-server".into();
    }
    let store = StoreSide::open(args.database.as_deref())?;
    if let Some(store) = &store {
        store.join_acceptance(&mut report, &options.periods[0])?;
    }
    if let Some(path) = &args.detail {
        let pseudonyms = match args.reveal_ids {
            true => None,
            false => Some(pseudonymizer(&settings, store.as_ref())?),
        };
        write_detail(path, &flagged, pseudonyms.as_ref())?;
    }
    let text = render(&report, args.format);
    match &args.output {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(String::new())
        }
        None => Ok(text),
    }
}

/// An export on disk, removed afterwards unless `--export-dir` kept it.
struct Export {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Export {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: what is left is only disk, under the work dir.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Downloads the population from `url` with Bulk Data `$export`.
fn export(args: &AuditArgs, url: &str, work_dir: &Path) -> Result<Export, String> {
    let source = BulkSource::new(url, bulk_auth(args)?)
        .map_err(|e| format!("--fhir-server: {e}"))?
        .insecure_http(is_loopback(url));
    let export = match &args.export_dir {
        Some(dir) => Export {
            dir: dir.clone(),
            keep: true,
        },
        None => Export {
            dir: work_dir.join(format!("hookwise-export-{}", std::process::id())),
            keep: false,
        },
    };
    let terminal = std::io::stderr().is_terminal();
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let downloaded = runtime
        .block_on(source.export(&export.dir, &mut |step| {
            if terminal {
                eprintln!("hookwise: export: {}", describe(&step));
            }
        }))
        .map_err(|e| format!("--fhir-server: {e}"))?;
    if downloaded.errors > 0 {
        eprintln!(
            "hookwise: the server reported {} OperationOutcome(s) in its export's error files",
            downloaded.errors
        );
    }
    Ok(export)
}

fn describe(step: &BulkProgress) -> String {
    match step {
        BulkProgress::Accepted => "accepted".into(),
        BulkProgress::Running { progress } => {
            format!("running {}", progress.as_deref().unwrap_or(""))
        }
        BulkProgress::Ready { files, .. } => format!("ready, {files} file(s) to download"),
        BulkProgress::Saved {
            path, resources, ..
        } => {
            format!("saved {} ({resources} resources)", path.display())
        }
    }
}

/// SMART Backend Services with `--client-id`, else the bearer token in
/// FHIR_BULK_TOKEN (never an argument, which `ps` would show; not `HOOKWISE_*`,
/// which names settings), else none.
fn bulk_auth(args: &AuditArgs) -> Result<BulkAuth, String> {
    if let (Some(client_id), Some(key), Some(token_url)) =
        (&args.client_id, &args.private_key, &args.token_url)
    {
        let private_key_pem = std::fs::read_to_string(key)
            .map_err(|e| format!("--private-key {}: {e}", key.display()))?;
        return Ok(BulkAuth::Backend {
            client_id: client_id.clone(),
            private_key_pem,
            token_url: token_url.clone(),
            scope: args.scope.clone(),
            key_id: args.key_id.clone(),
        });
    }
    Ok(match std::env::var("FHIR_BULK_TOKEN") {
        Ok(token) if !token.is_empty() => BulkAuth::Bearer(token),
        _ => BulkAuth::None,
    })
}

/// Plain http is allowed only to this machine (a test or a tunnel).
fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn source(args: &AuditArgs) -> Result<Source, String> {
    let (flag, dir, source) = match (&args.ndjson, &args.bundles) {
        (Some(dir), _) => ("--ndjson", dir, Source::Ndjson(dir.clone())),
        (None, Some(dir)) => ("--bundles", dir, Source::Bundles(dir.clone())),
        (None, None) => {
            return Err(
                "name the population: --ndjson DIR, --bundles DIR or --fhir-server URL".into(),
            );
        }
    };
    if !dir.is_dir() {
        return Err(format!("{flag} {}: not a directory", dir.display()));
    }
    Ok(source)
}

/// The periods measured: the later (or only) one first.
fn periods(args: &AuditArgs) -> Result<Vec<Period>, String> {
    if let Some(compare) = &args.compare {
        let before = window(&compare[0], "--compare BEFORE")?;
        let after = window(&compare[1], "--compare AFTER")?;
        if before.until > after.since {
            return Err(
                "--compare: the BEFORE period must end before the AFTER period starts".into(),
            );
        }
        return Ok([after, before]
            .into_iter()
            .map(|w| Period {
                as_of: w.until,
                window: Some(w),
            })
            .collect());
    }
    let as_of = match &args.as_of {
        Some(text) => parse_bound(text, false).map_err(|e| format!("--as-of: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    let window = match (&args.since, &args.until) {
        (Some(since), Some(until)) => Some(bounded(
            parse_bound(since, false).map_err(|e| format!("--since: {e}"))?,
            parse_bound(until, true).map_err(|e| format!("--until: {e}"))?,
            "--since/--until",
        )?),
        _ => None,
    };
    Ok(vec![Period { as_of, window }])
}

/// `A..B`: from A to B inclusive (dates) or exclusive (times).
fn window(text: &str, what: &str) -> Result<Window, String> {
    let (since, until) = text.split_once("..").ok_or_else(|| {
        format!("{what}: {text:?} is not a period START..END (2024-01-01..2024-12-31)")
    })?;
    bounded(
        parse_bound(since, false).map_err(|e| format!("{what}: {e}"))?,
        parse_bound(until, true).map_err(|e| format!("{what}: {e}"))?,
        what,
    )
}

fn bounded(since: OffsetDateTime, until: OffsetDateTime, what: &str) -> Result<Window, String> {
    match since < until {
        true => Ok(Window { since, until }),
        false => Err(format!("{what}: the period ends before it starts")),
    }
}

/// The pseudonymisation key: the configured one, the feedback store's with
/// `--database` (so detail rows match the card log's hashes), or a random
/// one for this run.
fn pseudonymizer(settings: &Settings, store: Option<&StoreSide>) -> Result<Pseudonymizer, String> {
    if let Some(key) = &settings.patient_id_hash_key {
        return Ok(Pseudonymizer::new(key.expose().as_bytes()));
    }
    if let Some(store) = store {
        return store.pseudonymizer();
    }
    eprintln!(
        "hookwise: no patient_id_hash_key configured and no --database: the detail file's pseudonyms use a random key, unlinkable to other runs"
    );
    Pseudonymizer::random().ok_or_else(|| "no randomness for a pseudonymisation key".to_string())
}

/// The detail file: one CSV row per flagged patient or order.
fn write_detail(
    path: &Path,
    flagged: &[Flagged],
    pseudonyms: Option<&Pseudonymizer>,
) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(cannot)?;
    let mut out = std::io::BufWriter::new(file);
    let hide = |id: &str| match pseudonyms {
        Some(p) => p.hash(id),
        None => id.to_string(),
    };
    writeln!(out, "period,rule,service,patient,at,order").map_err(cannot)?;
    for row in flagged {
        let period = if row.period == 0 { "after" } else { "before" };
        let order = row.order.as_deref().map(hide).unwrap_or_default();
        writeln!(
            out,
            "{period},{},{},{},{},{order}",
            row.rule_id,
            row.service_id,
            hide(&row.patient_id),
            rfc3339(row.at)
        )
        .map_err(cannot)?;
    }
    out.flush().map_err(cannot)
}

/// The feedback store, with `--database`.
struct StoreSide {
    runtime: tokio::runtime::Runtime,
    store: crate::store::Store,
}

impl StoreSide {
    fn open(url: Option<&str>) -> Result<Option<StoreSide>, String> {
        let Some(url) = url else { return Ok(None) };
        let runtime = tokio::runtime::Runtime::new()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let store = runtime
            .block_on(crate::store::Store::open_existing(url))
            .map_err(|e| format!("--database: {e}"))?;
        Ok(Some(StoreSide { runtime, store }))
    }

    fn pseudonymizer(&self) -> Result<Pseudonymizer, String> {
        let key = self
            .runtime
            .block_on(self.store.hash_key())
            .map_err(|e| format!("--database: {e}"))?;
        Ok(Pseudonymizer::new(key.as_bytes()))
    }

    /// Each rule row gets the store's figures for cards issued in the
    /// window (all cards without one).
    fn join_acceptance(
        &self,
        report: &mut crate::audit::AuditReport,
        period: &Period,
    ) -> Result<(), String> {
        let query = crate::report::ReportQuery {
            since: period.window.map(|w| w.since),
            until: period.window.map(|w| w.until),
            include_comments: false,
        };
        let figures = self
            .runtime
            .block_on(crate::report::build(&self.store, &query))
            .map_err(|e| format!("--database: {e}"))?;
        for row in &mut report.rules {
            if let Some(f) = figures.rules.iter().find(|f| f.rule == row.id) {
                row.acceptance = Some(Acceptance {
                    cards: f.counts.cards,
                    accepted: f.counts.accepted,
                    overridden: f.counts.overridden,
                    rate: f.counts.acceptance_rate,
                });
            }
        }
        Ok(())
    }
}

impl Drop for StoreSide {
    fn drop(&mut self) {
        self.runtime.block_on(self.store.close());
    }
}
