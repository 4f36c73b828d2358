//! The `hookwise` command line: argument parsing and wiring only.

mod audit;
mod report;

use crate::cds::{MAX_JSON_DEPTH, parse_request};
use crate::config::{Overrides, Settings};
use crate::engine::cases::load_tests;
use crate::rules::{RuleSet, Service, load_dir};
use crate::server::{Server, build_engine};
use clap::{Parser, Subcommand};
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// hookwise: a CDS Hooks 2.0 server for Choosing Wisely and deprescribing rules.
#[derive(Parser)]
#[command(name = "hookwise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CDS Hooks server.
    Serve {
        /// Address to listen on [env: HOOKWISE_LISTEN] [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Rule directory [env: HOOKWISE_RULES] [default: ./cds-rules].
        #[arg(long)]
        rules: Option<PathBuf>,
        /// TOML settings file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve without authentication on a non-loopback address when no
        /// trusted client is configured (development only; logs a loud warning).
        #[arg(long)]
        allow_unauthenticated: bool,
        /// An audit report (`hookwise audit --format json`) for the console
        /// to show [env: HOOKWISE_AUDIT_REPORT].
        #[arg(long, value_name = "FILE")]
        audit: Option<PathBuf>,
    },
    /// Validate a rule directory; prints every problem as file:line: message.
    Check {
        /// Rule directory.
        #[arg(default_value = "cds-rules")]
        dir: PathBuf,
        /// FHIR fixtures for the rule tests [default: DIR/../fhir-fixtures].
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Run the rule test cases in DIR/tests.
    Test {
        /// Rule directory.
        #[arg(default_value = "cds-rules")]
        dir: PathBuf,
        /// FHIR fixtures [default: DIR/../fhir-fixtures].
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Evaluate one CDS Hooks request offline and print the response.
    Eval {
        /// The request JSON.
        #[arg(long)]
        request: PathBuf,
        /// Evaluation time (RFC 3339) [default: now]. The record is taken as
        /// it stood then: resources that started later are left out.
        #[arg(long)]
        now: Option<String>,
        /// Service id, or a rule family's id for its service at the request's hook
        /// [default: every service serving the request's hook].
        #[arg(long)]
        service: Option<String>,
        /// Rule directory.
        #[arg(long, default_value = "cds-rules")]
        rules: PathBuf,
        /// Print `{"response": ..., "rules": [...]}`: every rule of the
        /// service with its verdict (fires, excluded, does-not-apply,
        /// no-data), why, and what a fired rule matched.
        #[arg(long)]
        explain: bool,
    },
    /// List the loaded rules.
    Rules {
        /// Rule directory.
        #[arg(long, default_value = "cds-rules")]
        rules: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the Markdown catalogue table (as in cds-rules/README.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Per-rule and per-family feedback figures from the feedback store.
    Report(report::ReportArgs),
    /// Measure the rules over a population: prevalence of low-value care,
    /// alert burden, and the change between two periods.
    Audit(Box<audit::AuditArgs>),
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve {
            listen,
            rules,
            config,
            allow_unauthenticated,
            audit,
        } => serve(
            config.as_deref(),
            Overrides {
                listen,
                rules,
                allow_unauthenticated,
                audit_report: audit,
            },
        ),
        Command::Check { dir, fixtures } => check(&dir, fixtures),
        Command::Test { dir, fixtures } => test(&dir, fixtures),
        Command::Eval {
            request,
            now,
            service,
            rules,
            explain,
        } => eval(
            &request,
            now.as_deref(),
            service.as_deref(),
            &rules,
            explain,
        ),
        Command::Rules {
            rules,
            json,
            markdown,
        } => list_rules(&rules, json, markdown),
        Command::Report(args) => print(report::command(args)),
        Command::Audit(args) => print(audit::command(*args)),
    };
    match outcome {
        Ok(code) => code,
        // A reader that stopped reading (`hookwise rules | head`) is no error.
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(CliError::Failed(message)) => {
            eprintln!("hookwise: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what a command made (nothing when it wrote a file instead).
fn print(made: Result<String, String>) -> Result<ExitCode, CliError> {
    let text = made?;
    if !text.is_empty() {
        say!("{}", text.trim_end_matches('\n'));
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a command ended without finishing.
#[derive(Debug)]
enum CliError {
    /// It failed; the message says why.
    Failed(String),
    /// Whoever read standard output closed it.
    StdoutClosed,
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Failed(message)
    }
}

/// Writes one line to standard output. A closed pipe ends the command
/// quietly instead of the panic `println!` would raise.
fn write_line(line: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::StdoutClosed),
        Err(e) => Err(CliError::Failed(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Lines of a plain-text table: every column as wide as its widest cell
/// (in characters), two spaces between columns, no trailing spaces.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> Vec<String> {
    let width = |column: usize| {
        std::iter::once(header)
            .chain(rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..N).map(width).collect();
    std::iter::once(header)
        .chain(rows)
        .map(|row| {
            let cells = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"));
            cells.collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect()
}

/// `println!` for commands: see [`write_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))?
    };
}
use say;

fn init_logging(settings: &Settings) -> Result<(), String> {
    crate::http::logging::install(settings.log_format, &settings.log, std::io::stdout)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn serve(config: Option<&Path>, overrides: Overrides) -> Result<ExitCode, CliError> {
    let settings =
        Settings::load(config, overrides).map_err(|e| format!("invalid settings: {e}"))?;
    init_logging(&settings)?;
    #[cfg(unix)]
    survive_file_size_limit();
    runtime()?.block_on(async {
        let server = Server::start(&settings).await.map_err(|e| e.to_string())?;
        tracing::info!(addr = %server.addr, rules = %settings.rules.display(), "hookwise listening");
        server.run_until_signal().await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// A write past the file-size limit (`RLIMIT_FSIZE`) would kill the server
/// with SIGXFSZ. Ignored, the write fails with EFBIG instead, like one to a
/// full disk, which the store answers with 503 (feedback) or a retry (the
/// card log) while cards are still served.
#[cfg(unix)]
fn survive_file_size_limit() {
    // SAFETY: SIG_IGN installs no handler code; nothing else in the process
    // sets this signal's disposition.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

fn fixtures_dir(dir: &Path, fixtures: Option<PathBuf>) -> PathBuf {
    fixtures.unwrap_or_else(|| dir.join("..").join("fhir-fixtures"))
}

fn load_rules(dir: &Path) -> Result<RuleSet, CliError> {
    load_dir(dir).map_err(|problems| {
        problems_found(
            &problems,
            format!("{} problem(s) in {}", problems.len(), dir.display()),
        )
    })
}

/// Prints each problem on its own line, then fails with `summary`.
fn problems_found(problems: &[impl fmt::Display], summary: String) -> CliError {
    for problem in problems {
        if let Err(closed) = write_line(format_args!("{problem}")) {
            return closed;
        }
    }
    CliError::Failed(summary)
}

fn check(dir: &Path, fixtures: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let rules = load_rules(dir)?;
    let suite = load_tests(&rules, dir, &fixtures_dir(dir, fixtures)).map_err(|problems| {
        let summary = format!(
            "{} problem(s) in {}",
            problems.len(),
            dir.join("tests").display()
        );
        problems_found(&problems, summary)
    })?;
    say!(
        "ok: {} rules in {} families ({} services), {} value sets, {} test cases",
        rules.rules.len(),
        rules.families.len(),
        rules.services.len(),
        rules.value_sets.len(),
        suite.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(dir: &Path, fixtures: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let rules = load_rules(dir)?;
    let suite = load_tests(&rules, dir, &fixtures_dir(dir, fixtures)).map_err(|problems| {
        let summary = format!("{} problem(s) in the rule tests", problems.len());
        problems_found(&problems, summary)
    })?;
    let results = suite.run(&rules);
    for result in &results {
        say!("{}", result.line());
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let gaps = crate::engine::cases::gaps(&rules, &results);
    for gap in &gaps {
        say!("GAP {gap}");
    }
    say!(
        "{} passed, {} failed, {} untested behaviours",
        results.len() - failed,
        failed,
        gaps.len()
    );
    Ok(if failed == 0 && gaps.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn eval(
    request: &Path,
    now: Option<&str>,
    service: Option<&str>,
    rules: &Path,
    explain: bool,
) -> Result<ExitCode, CliError> {
    let body =
        std::fs::read(request).map_err(|e| format!("cannot read {}: {e}", request.display()))?;
    let now = match now {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("--now: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    let parsed = parse_request(&body, MAX_JSON_DEPTH)
        .map_err(|e| format!("{}: {} {}", request.display(), e.path, e.message))?;
    let hook = (parsed.hook.known())
        .ok_or_else(|| format!("unsupported hook {:?}", parsed.hook.as_str()))?;
    let settings = Settings {
        rules: rules.to_path_buf(),
        ..Settings::default()
    };
    let mut engine = build_engine(&settings).map_err(|e| e.to_string())?;
    engine.replay = true;
    let ids: Vec<String> = match service {
        Some(id) => match engine.rules.family(id) {
            Some(family) => vec![Service::id_for(&family.id, hook)],
            None => vec![id.to_string()],
        },
        None => engine.services_of_hook(hook),
    };
    let trial = runtime()?
        .block_on(engine.trial(&ids, &parsed, now))
        .map_err(|(id, e)| format!("{id}: {e}"))?;
    let response = trial.response;
    let explained = trial.rules;
    let output = match explain {
        true => serde_json::to_string_pretty(&serde_json::json!({
            "response": response,
            "rules": explained,
        })),
        false => serde_json::to_string_pretty(&response),
    };
    say!("{}", output.map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

fn list_rules(dir: &Path, json: bool, markdown: bool) -> Result<ExitCode, CliError> {
    let rules = load_rules(dir)?;
    if markdown {
        say!("{}", rules.catalogue_markdown().trim_end_matches('\n'));
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let all = &rules.rules;
        let list: Vec<serde_json::Value> = rules
            .families
            .iter()
            .flat_map(|f| f.rules.iter().map(move |i| (f, &all[*i])))
            .map(|(family, rule)| {
                let services: Vec<String> = rule
                    .hooks
                    .iter()
                    .map(|h| Service::id_for(&family.id, *h))
                    .collect();
                serde_json::json!({
                    "id": rule.id, "version": rule.version, "title": rule.title,
                    "family": family.id, "services": services,
                    "category": rule.category, "hooks": rule.hooks,
                    "source": {"society": rule.evidence.society, "year": rule.evidence.year, "url": rule.evidence.url},
                })
            })
            .collect();
        say!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = rules
        .families
        .iter()
        .flat_map(|family| family.rules.iter().map(|i| &rules.rules[*i]))
        .map(|rule| {
            [
                rule.id.clone(),
                rule.category.as_str().to_string(),
                rule.hook_list(","),
                rule.title.clone(),
                format!("{} {}", rule.evidence.society, rule.evidence.year),
            ]
        })
        .collect();
    let header = ["ID", "CATEGORY", "HOOKS", "TITLE", "SOURCE"].map(String::from);
    for line in table(&header, &rows) {
        say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
