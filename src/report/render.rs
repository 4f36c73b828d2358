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

/// How a table column's cells are set.
#[derive(Clone, Copy)]
enum Align {
    /// Padded on the right to the width.
    Left(usize),
    /// Padded on the left to the width.
    Right(usize),
    /// Free text, unpadded, set off by two spaces: the last column only.
    Text,
}

/// A table column: its heading and how its cells are set.
#[derive(Clone, Copy)]
struct Column {
    heading: &'static str,
    align: Align,
}

/// The rule table's own columns, before [`OUTCOME_COLUMNS`].
const RULE_COLUMNS: [Column; 3] = [
    column("RULE", Align::Left(40)),
    column("FAMILY", Align::Left(16)),
    column("CARDS", Align::Right(6)),
];

/// The family table's own columns, before [`OUTCOME_COLUMNS`].
const FAMILY_COLUMNS: [Column; 4] = [
    column("FAMILY", Align::Left(16)),
    column("RULES", Align::Right(5)),
    column("CARDS", Align::Right(6)),
    column("RULE CARDS", Align::Right(10)),
];

/// The columns both tables end with, from [`Counts`] ([`outcome_cells`]).
const OUTCOME_COLUMNS: [Column; 6] = [
    column("PATIENTS", Align::Right(8)),
    column("ACCEPTED", Align::Right(8)),
    column("OVERRIDDEN", Align::Right(10)),
    column("NO RESPONSE", Align::Right(11)),
    column("ACCEPTANCE", Align::Right(10)),
    column("TOP OVERRIDE REASONS", Align::Text),
];

/// A column spec (a `const fn`, so the specs above are constants).
const fn column(heading: &'static str, align: Align) -> Column {
    Column { heading, align }
}

/// The cells of [`OUTCOME_COLUMNS`].
fn outcome_cells(c: &Counts) -> [String; 6] {
    [
        c.patients.to_string(),
        c.accepted.to_string(),
        c.overridden.to_string(),
        c.no_response.to_string(),
        percent(c.acceptance_rate),
        reasons_text(c),
    ]
}

/// Writes a heading line and a line per row of cells, one cell per column,
/// each set as its column says and separated by a space.
fn write_table(out: &mut String, columns: &[Column], rows: impl IntoIterator<Item = Vec<String>>) {
    let headings = columns.iter().map(|c| c.heading.to_string()).collect();
    for cells in std::iter::once(headings).chain(rows) {
        for (i, (column, cell)) in columns.iter().zip(&cells).enumerate() {
            let gap = match (i, column.align) {
                (0, _) => "",
                (_, Align::Text) => "  ",
                _ => " ",
            };
            let _ = match column.align {
                Align::Left(width) => write!(out, "{gap}{cell:<width$}"),
                Align::Right(width) => write!(out, "{gap}{cell:>width$}"),
                Align::Text => write!(out, "{gap}{cell}"),
            };
        }
        out.push('\n');
    }
}

/// The table format: the window, a table of rules and one of families (one
/// column-spec writer for both), unknown-card feedback, then comments.
fn table(report: &Report) -> String {
    let mut out = String::new();
    let window = format!(
        "since {} until {}",
        report.since.as_deref().unwrap_or("the start of the log"),
        report.until.as_deref().unwrap_or("now")
    );
    let _ = writeln!(out, "Cards issued {window}\n");
    let rules = report.rules.iter().map(|r| {
        let leading = [r.rule.clone(), r.family.clone(), r.counts.cards.to_string()];
        leading
            .into_iter()
            .chain(outcome_cells(&r.counts))
            .collect()
    });
    write_table(
        &mut out,
        &[RULE_COLUMNS.as_slice(), &OUTCOME_COLUMNS].concat(),
        rules,
    );
    out.push('\n');
    let families = report.families.iter().map(|f| {
        let leading = [
            f.family.clone(),
            f.rules.to_string(),
            f.distinct_cards.to_string(),
            f.counts.cards.to_string(),
        ];
        leading
            .into_iter()
            .chain(outcome_cells(&f.counts))
            .collect()
    });
    write_table(
        &mut out,
        &[FAMILY_COLUMNS.as_slice(), &OUTCOME_COLUMNS].concat(),
        families,
    );
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
        let quoted: Vec<String> = fields.iter().map(|f| crate::csv::field(f)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FamilyFigures, ReasonCount, RuleFigures};

    fn counts(figures: [u64; 5], reason: Option<(&str, Option<&str>)>) -> Counts {
        let [cards, patients, accepted, overridden, no_response] = figures;
        Counts {
            cards,
            patients,
            accepted,
            overridden,
            no_response,
            acceptance_rate: Some(accepted as f64 / cards as f64),
            top_override_reasons: reason
                .map(|(code, display)| ReasonCount {
                    system: "sys".into(),
                    code: code.into(),
                    display: display.map(str::to_string),
                    count: 1,
                })
                .into_iter()
                .collect(),
        }
    }

    fn rule(rule: &str, family: &str, counts: Counts, comments: Vec<Comment>) -> RuleFigures {
        RuleFigures {
            rule: rule.into(),
            family: family.into(),
            versions: vec!["1.0.0".into()],
            counts,
            comments,
        }
    }

    fn family(family: &str, rules: u64, distinct_cards: u64, counts: Counts) -> FamilyFigures {
        FamilyFigures {
            family: family.into(),
            rules,
            distinct_cards,
            counts,
        }
    }

    /// The table as the hand-aligned writer before the column specs wrote
    /// it, byte for byte: an id longer than its column pushes the row
    /// right, and a row without reasons keeps its two trailing spaces.
    #[test]
    fn the_table_keeps_its_layout() {
        let comment = Comment {
            card: "c2".into(),
            reason: Some("new".into()),
            comment: "said \"no\", twice".into(),
        };
        let new = Some(("new", Some("New, display")));
        let mut report = Report {
            since: Some("2026-01-01T00:00:00Z".into()),
            until: None,
            rules: vec![
                rule(
                    "cw-a",
                    "choosing-wisely",
                    counts([3, 2, 1, 1, 1], Some(("new", None))),
                    vec![comment],
                ),
                rule(
                    "rx-b-with-a-rather-long-rule-identifier-beyond-forty",
                    "deprescribing",
                    counts([1, 1, 0, 0, 1], None),
                    vec![],
                ),
                rule(
                    "rx-c",
                    "deprescribing",
                    counts([2, 2, 1, 1, 0], new),
                    vec![],
                ),
            ],
            families: vec![
                family(
                    "choosing-wisely",
                    1,
                    3,
                    counts([3, 2, 1, 1, 1], Some(("new", None))),
                ),
                family("deprescribing", 2, 2, counts([3, 2, 1, 1, 1], new)),
            ],
            unknown_card_feedback: 2,
        };
        let rule_head = "RULE                                     FAMILY            CARDS PATIENTS ACCEPTED \
                         OVERRIDDEN NO RESPONSE ACCEPTANCE  TOP OVERRIDE REASONS\n";
        let families = concat!(
            "FAMILY           RULES  CARDS RULE CARDS PATIENTS ACCEPTED OVERRIDDEN NO RESPONSE ACCEPTANCE  TOP OVERRIDE REASONS\n",
            "choosing-wisely      1      3          3        2        1          1           1      33.3%  new x1\n",
            "deprescribing        2      2          3        2        1          1           1      33.3%  new (New, display) x1\n",
            "\n",
            "Feedback for cards not in the card log: 2\n",
        );
        let rules = concat!(
            "cw-a                                     choosing-wisely       3        2        1          1           1      33.3%  new x1\n",
            "rx-b-with-a-rather-long-rule-identifier-beyond-forty deprescribing         1        1        0          0           1       0.0%  \n",
            "rx-c                                     deprescribing         2        2        1          1           0      50.0%  new (New, display) x1\n",
        );
        let comments = "\nComments on cw-a:\n  [new] c2: said \"no\", twice\n";
        assert_eq!(
            render(&report, Format::Table),
            format!(
                "Cards issued since 2026-01-01T00:00:00Z until now\n\n{rule_head}{rules}\n{families}{comments}"
            )
        );
        report.since = None;
        report.rules.clear();
        assert_eq!(
            render(&report, Format::Table),
            format!("Cards issued since the start of the log until now\n\n{rule_head}\n{families}")
        );
    }
}
