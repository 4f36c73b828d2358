//! The report written out: an aligned table for a terminal, CSV, or JSON
//! (pure).

use super::{Comment, Counts, Report};
use std::fmt::Write as _;

/// Output formats of `hookwise report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One line per rule and per family.
    Csv,
    /// The [`Report`] as JSON.
    Json,
}

/// Renders the report.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Csv => csv(report),
        Format::Table => table(report),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn reasons_text(counts: &Counts) -> String {
    let text: Vec<String> = counts
        .top_override_reasons
        .iter()
        .map(|r| match &r.display {
            Some(display) => format!("{} ({display}) x{}", r.code, r.count),
            None => format!("{} x{}", r.code, r.count),
        })
        .collect();
    text.join("; ")
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    let window = format!(
        "since {} until {}",
        report.since.as_deref().unwrap_or("the start of the log"),
        report.until.as_deref().unwrap_or("now")
    );
    let _ = writeln!(out, "Cards issued {window}\n");
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:>6} {:>8} {:>8} {:>10} {:>11} {:>10}  TOP OVERRIDE REASONS",
        "RULE",
        "FAMILY",
        "CARDS",
        "PATIENTS",
        "ACCEPTED",
        "OVERRIDDEN",
        "NO RESPONSE",
        "ACCEPTANCE"
    );
    for r in &report.rules {
        let c = &r.counts;
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:>6} {:>8} {:>8} {:>10} {:>11} {:>10}  {}",
            r.rule,
            r.family,
            c.cards,
            c.patients,
            c.accepted,
            c.overridden,
            c.no_response,
            percent(c.acceptance_rate),
            reasons_text(c)
        );
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>5} {:>6} {:>10} {:>8} {:>8} {:>10} {:>11} {:>10}  TOP OVERRIDE REASONS",
        "FAMILY",
        "RULES",
        "CARDS",
        "RULE CARDS",
        "PATIENTS",
        "ACCEPTED",
        "OVERRIDDEN",
        "NO RESPONSE",
        "ACCEPTANCE"
    );
    for f in &report.families {
        let c = &f.counts;
        let _ = writeln!(
            out,
            "{:<16} {:>5} {:>6} {:>10} {:>8} {:>8} {:>10} {:>11} {:>10}  {}",
            f.family,
            f.rules,
            f.distinct_cards,
            c.cards,
            c.patients,
            c.accepted,
            c.overridden,
            c.no_response,
            percent(c.acceptance_rate),
            reasons_text(c)
        );
    }
    let _ = writeln!(
        out,
        "\nFeedback for cards not in the card log: {}",
        report.unknown_card_feedback
    );
    for r in report.rules.iter().filter(|r| !r.comments.is_empty()) {
        let _ = writeln!(out, "\nComments on {}:", r.rule);
        for c in &r.comments {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                c.reason.as_deref().unwrap_or("-"),
                c.card,
                c.comment
            );
        }
    }
    out
}

fn csv(report: &Report) -> String {
    let mut out = String::from(
        "level,family,rule,cards,patients,accepted,overridden,no_response,acceptance_rate,top_override_reasons,comments\n",
    );
    let mut line = |level: &str, family: &str, rule: &str, c: &Counts, comments: &[Comment]| {
        let comments: Vec<String> = comments.iter().map(|c| c.comment.clone()).collect();
        let rate = c
            .acceptance_rate
            .map_or_else(String::new, |r| format!("{r:.4}"));
        let fields = [
            level.to_string(),
            family.to_string(),
            rule.to_string(),
            c.cards.to_string(),
            c.patients.to_string(),
            c.accepted.to_string(),
            c.overridden.to_string(),
            c.no_response.to_string(),
            rate,
            reasons_text(c),
            comments.join(" | "),
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    };
    for r in &report.rules {
        line("rule", &r.family, &r.rule, &r.counts, &r.comments);
    }
    for f in &report.families {
        line("family", &f.family, "", &f.counts, &[]);
    }
    out
}

/// Quotes a CSV field when it holds a comma, quote or line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
