//! `hookwise report`: the command line over [`crate::report`].

use crate::report::{Format, ReportQuery, build, parse_bound, reason_display, render};
use crate::store::Store;

/// `hookwise report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Cards issued from this date (2026-01-01) or RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Cards issued up to this date (inclusive) or RFC 3339 time (exclusive).
    #[arg(long)]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The store's URL [default: the configured database_url].
    #[arg(long)]
    database: Option<String>,
    /// TOML settings file (for database_url, and rules for reason displays).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Include the clinicians' free-text comments (may hold PHI).
    #[arg(long)]
    include_comments: bool,
}

/// Runs `hookwise report`: prints the report, or says why it cannot.
pub fn command(args: ReportArgs) -> Result<String, String> {
    let settings =
        crate::config::Settings::load(args.config.as_deref(), crate::config::Overrides::default())
            .map_err(|e| format!("invalid settings: {e}"))?;
    let url = args
        .database
        .unwrap_or_else(|| settings.database_url.clone());
    let query = ReportQuery {
        since: args
            .since
            .as_deref()
            .map(|s| parse_bound(s, false))
            .transpose()
            .map_err(|e| format!("--since: {e}"))?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_bound(s, true))
            .transpose()
            .map_err(|e| format!("--until: {e}"))?,
        include_comments: args.include_comments,
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut report = runtime.block_on(async {
        let store = Store::open_existing(&url)
            .await
            .map_err(|e| e.to_string())?;
        let report = build(&store, &query).await.map_err(|e| e.to_string());
        store.close().await;
        report
    })?;
    // Feedback may omit a reason's display; the rules have it.
    if let Ok(rules) = crate::rules::load_dir(&settings.rules) {
        report.fill_displays(|rule, family, system, code| {
            reason_display(&rules, rule, family, system, code)
        });
    }
    Ok(render(&report, args.format))
}
