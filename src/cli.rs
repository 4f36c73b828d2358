//! The `hookwise` command line: argument parsing and wiring only.

use crate::cds::{CdsResponse, Hook, MAX_JSON_DEPTH, parse_request};
use crate::config::{Overrides, Settings};
use crate::rules::testing::load_tests;
use crate::rules::{RuleSet, load_dir};
use crate::server::{Server, build_engine};
use clap::{Parser, Subcommand};
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
        /// Evaluation time (RFC 3339) [default: now].
        #[arg(long)]
        now: Option<String>,
        /// Service id [default: every service serving the request's hook].
        #[arg(long)]
        service: Option<String>,
        /// Rule directory.
        #[arg(long, default_value = "cds-rules")]
        rules: PathBuf,
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
    Report(crate::feedback::report::ReportArgs),
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
        } => serve(
            config.as_deref(),
            Overrides {
                listen,
                rules,
                allow_unauthenticated,
            },
        ),
        Command::Check { dir, fixtures } => check(&dir, fixtures),
        Command::Test { dir, fixtures } => test(&dir, fixtures),
        Command::Eval {
            request,
            now,
            service,
            rules,
        } => eval(&request, now.as_deref(), service.as_deref(), &rules),
        Command::Rules {
            rules,
            json,
            markdown,
        } => list_rules(&rules, json, markdown),
        Command::Report(args) => crate::feedback::report::command(args),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hookwise: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) -> Result<(), String> {
    crate::http::logging::install(settings.log_format, &settings.log, std::io::stdout)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn serve(config: Option<&Path>, overrides: Overrides) -> Result<ExitCode, String> {
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

fn load_rules(dir: &Path) -> Result<RuleSet, String> {
    load_dir(dir).map_err(|problems| {
        for problem in &problems {
            println!("{problem}");
        }
        format!("{} problem(s) in {}", problems.len(), dir.display())
    })
}

fn check(dir: &Path, fixtures: Option<PathBuf>) -> Result<ExitCode, String> {
    let rules = load_rules(dir)?;
    let suite = load_tests(&rules, dir, &fixtures_dir(dir, fixtures)).map_err(|problems| {
        for problem in &problems {
            println!("{problem}");
        }
        format!(
            "{} problem(s) in {}",
            problems.len(),
            dir.join("tests").display()
        )
    })?;
    println!(
        "ok: {} rules in {} services, {} value sets, {} test cases",
        rules.rules.len(),
        rules.services.len(),
        rules.value_sets.len(),
        suite.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(dir: &Path, fixtures: Option<PathBuf>) -> Result<ExitCode, String> {
    let rules = load_rules(dir)?;
    let suite = load_tests(&rules, dir, &fixtures_dir(dir, fixtures)).map_err(|problems| {
        for problem in &problems {
            println!("{problem}");
        }
        format!("{} problem(s) in the rule tests", problems.len())
    })?;
    let results = suite.run(&rules);
    for result in &results {
        println!("{}", result.line());
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 {
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
) -> Result<ExitCode, String> {
    let body =
        std::fs::read(request).map_err(|e| format!("cannot read {}: {e}", request.display()))?;
    let now = match now {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("--now: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    let parsed = parse_request(&body, MAX_JSON_DEPTH)
        .map_err(|e| format!("{}: {} {}", request.display(), e.path, e.message))?;
    let hook =
        Hook::parse(&parsed.hook).ok_or_else(|| format!("unsupported hook {:?}", parsed.hook))?;
    let settings = Settings {
        rules: rules.to_path_buf(),
        ..Settings::default()
    };
    let engine = build_engine(&settings).map_err(|e| e.to_string())?;
    let ids: Vec<String> = match service {
        Some(id) => vec![id.to_string()],
        None => engine
            .rules
            .services
            .iter()
            .filter(|s| s.hooks.contains(&hook))
            .map(|s| s.id.clone())
            .collect(),
    };
    let mut response = CdsResponse::default();
    runtime()?.block_on(async {
        for id in &ids {
            let result = engine
                .call(id, &parsed, now, tokio::time::Instant::now())
                .await
                .map_err(|e| format!("{id}: {e}"))?;
            response.cards.extend(result.response.cards);
        }
        Ok::<(), String>(())
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&response).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

fn list_rules(dir: &Path, json: bool, markdown: bool) -> Result<ExitCode, String> {
    let rules = load_rules(dir)?;
    if markdown {
        print!("{}", rules.catalogue_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let all = &rules.rules;
        let list: Vec<serde_json::Value> = rules
            .services
            .iter()
            .flat_map(|s| s.rules.iter().map(move |i| (s, &all[*i])))
            .map(|(service, rule)| {
                serde_json::json!({
                    "id": rule.id, "version": rule.version, "title": rule.title,
                    "service": service.id, "category": rule.category, "hooks": rule.hooks,
                    "source": {"society": rule.evidence.society, "year": rule.evidence.year, "url": rule.evidence.url},
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<18} {:<30} {:<40} SOURCE",
        "ID", "CATEGORY", "HOOKS", "TITLE"
    );
    for service in &rules.services {
        for rule in service.rules.iter().map(|i| &rules.rules[*i]) {
            println!(
                "{:<32} {:<18} {:<30} {:<40} {} {}",
                rule.id,
                rule.category,
                rule.hooks.join(","),
                rule.title,
                rule.evidence.society,
                rule.evidence.year
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
