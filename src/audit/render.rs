//! The audit report as a table, CSV, JSON or a self-contained HTML page
//! (`render::html`), and the number formats they share (pure).

mod html;

pub use html::policy as html_policy;

use super::report::{
    Acceptance, AlertBurden, AuditReport, Difference, FamilyRow, Figures, InputSummary, Measure,
    RuleRow,
};
use std::fmt::Write as _;

/// Output formats of `hookwise audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal, rules grouped by family and measure.
    Table,
    /// One RFC 4180 row per rule.
    Csv,
    /// The [`AuditReport`] as JSON: the contract.
    Json,
    /// One self-contained HTML page with charts and a sortable table.
    Html,
}

/// Renders the report.
pub fn render(report: &AuditReport, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Csv => csv(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Html => html::page(report),
    }
}

/// The measure's name in the contract (`point`, `orders`).
fn measure_name(measure: Measure) -> &'static str {
    match measure {
        Measure::Point => "point",
        Measure::Orders => "orders",
    }
}

/// What a measure counts, for headings.
pub fn measure_label(measure: Measure) -> &'static str {
    match measure {
        Measure::Point => "point prevalence",
        Measure::Orders => "orders replayed",
    }
}

/// The unit a measure counts, plural.
fn measure_unit(measure: Measure) -> &'static str {
    match measure {
        Measure::Point => "patients",
        Measure::Orders => "orders",
    }
}

/// What a measure's eligible units are, for the table's headings.
fn measure_scope(measure: Measure) -> &'static str {
    match measure {
        Measure::Point => "eligible: patients alive at as-of",
        Measure::Orders => "eligible: orders in the window",
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A proportion as a percentage with one decimal, without its sign.
fn percent_number(rate: f64) -> String {
    format!("{:.1}", rate * 100.0)
}

/// A change in percentage points with one decimal and its sign; a change
/// that rounds to zero is `+0.0`, never `-0.0`.
fn points_number(change: f64) -> String {
    let rounded = (change * 1000.0).round() / 10.0 + 0.0;
    format!("{rounded:+.1}")
}

/// The rate of figures as `5.0%`; `-` without eligible units, where
/// nothing is known.
pub fn rate_text(figures: &Figures) -> String {
    if figures.eligible == 0 {
        return "-".into();
    }
    format!("{}%", percent_number(figures.rate))
}

/// The 95 % interval of figures as `3.5-7.2%`, its ends joined by `to`;
/// `-` without eligible units.
pub fn interval_text(figures: &Figures, to: &str) -> String {
    if figures.eligible == 0 {
        return "-".into();
    }
    let [low, high] = figures.ci95;
    format!("{}{to}{}%", percent_number(low), percent_number(high))
}

/// Whether a difference says anything: both periods had eligible units.
fn known_difference<'a>(
    before: Option<&Figures>,
    after: &Figures,
    difference: Option<&'a Difference>,
) -> Option<&'a Difference> {
    let before = before?;
    (before.eligible > 0 && after.eligible > 0)
        .then_some(difference)
        .flatten()
}

/// A change as `-1.5 pp`.
fn change_text(difference: Option<&Difference>) -> String {
    difference.map_or_else(|| "-".into(), |d| format!("{} pp", points_number(d.rate)))
}

/// The interval of a change as `-4.4 to +1.3`, joined by `to`.
fn change_interval_text(difference: Option<&Difference>, to: &str) -> String {
    difference.map_or_else(
        || "-".into(),
        |d| {
            let [low, high] = d.ci95;
            format!("{}{to}{}", points_number(low), points_number(high))
        },
    )
}

/// Text from data files, for a terminal: control characters (which could
/// move the cursor or recolour the screen) become U+FFFD.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Whether the report compares two periods.
fn comparing(report: &AuditReport) -> bool {
    report.before.is_some() || report.rules.iter().any(|r| r.before.is_some())
}

/// One group of rows in the table and on the page: a family's rules for
/// one measure at one service, with the family's totals there.
struct Group<'a> {
    family: &'a str,
    measure: Measure,
    service: &'a str,
    rules: Vec<&'a RuleRow>,
    total: Option<&'a FamilyRow>,
}

/// The rules grouped by (family, measure, service), in the order the
/// report lists them, each with its family row; a family row without rules
/// still makes a group.
fn groups(report: &AuditReport) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    let keys = (report.rules.iter())
        .map(|r| (r.family.as_str(), r.measure, r.service.as_str()))
        .chain(
            (report.families.iter()).map(|f| (f.family.as_str(), f.measure, f.service.as_str())),
        );
    for key in keys {
        let (family, measure, service) = key;
        if groups
            .iter()
            .any(|g| (g.family, g.measure, g.service) == key)
        {
            continue;
        }
        let rules = (report.rules.iter())
            .filter(|r| (r.family.as_str(), r.measure, r.service.as_str()) == key)
            .collect();
        let total = (report.families.iter())
            .find(|f| (f.family.as_str(), f.measure, f.service.as_str()) == key);
        groups.push(Group {
            family,
            measure,
            service,
            rules,
            total,
        });
    }
    groups
}

/// How a table column's cells are set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// The table's columns: the figures, then the earlier period's and the
/// change when comparing, then acceptance when the report has it.
fn table_columns(comparing: bool, acceptance: bool) -> Vec<(&'static str, Align)> {
    let mut columns = vec![
        ("RULE", Align::Left),
        ("SERVICE", Align::Left),
        ("ELIGIBLE", Align::Right),
        ("FLAGGED", Align::Right),
        ("RATE", Align::Right),
        ("95% CI", Align::Right),
        ("PATIENTS", Align::Right),
    ];
    if comparing {
        columns.extend([
            ("BEFORE", Align::Right),
            ("95% CI", Align::Right),
            ("CHANGE", Align::Right),
            ("95% CI (pp)", Align::Right),
        ]);
    }
    if acceptance {
        columns.push(("ACCEPTED/CARDS", Align::Right));
    }
    columns
}

/// The table cells of one rule or total row.
struct RowCells<'a> {
    label: String,
    service: &'a str,
    figures: &'a Figures,
    before: Option<&'a Figures>,
    difference: Option<&'a Difference>,
    acceptance: Option<&'a Acceptance>,
}

impl RowCells<'_> {
    fn cells(&self, comparing: bool, acceptance: bool) -> Vec<String> {
        let f = self.figures;
        let mut cells = vec![
            plain(&self.label),
            plain(self.service),
            thousands(f.eligible),
            thousands(f.flagged),
            rate_text(f),
            interval_text(f, "-"),
            thousands(f.patients),
        ];
        if comparing {
            let difference = known_difference(self.before, f, self.difference);
            cells.extend([
                self.before.map_or_else(|| "-".into(), rate_text),
                self.before
                    .map_or_else(|| "-".into(), |b| interval_text(b, "-")),
                change_text(difference),
                change_interval_text(difference, " to "),
            ]);
        }
        if acceptance {
            cells.push(self.acceptance.map_or_else(String::new, |a| {
                let rate = a
                    .rate
                    .map_or_else(String::new, |r| format!(" ({}%)", percent_number(r)));
                format!("{}/{}{rate}", thousands(a.accepted), thousands(a.cards))
            }));
        }
        cells
    }
}

/// The table format: what was measured, a block of rules per family and
/// measure with the family's totals (one set of column widths for all),
/// the alert burden, then the input.
fn table(report: &AuditReport) -> String {
    let comparing = comparing(report);
    let acceptance = report.rules.iter().any(|r| r.acceptance.is_some());
    let columns = table_columns(comparing, acceptance);
    let mut out = String::new();
    table_preamble(&mut out, report);
    let blocks: Vec<(String, Vec<Vec<String>>)> = groups(report)
        .iter()
        .map(|g| {
            let heading = format!(
                "{}: {} ({})",
                plain(g.family),
                measure_label(g.measure),
                measure_scope(g.measure)
            );
            (heading, group_rows(g, comparing, acceptance))
        })
        .collect();
    let widths = widths(&columns, blocks.iter().flat_map(|(_, rows)| rows));
    for (heading, rows) in &blocks {
        let _ = writeln!(out, "\n{heading}");
        write_grid(&mut out, &columns, &widths, rows);
    }
    out.push('\n');
    table_burden(&mut out, report);
    out.push('\n');
    table_input(&mut out, &report.input);
    out
}

/// A group's table rows: its rules, then the family's totals.
fn group_rows(g: &Group<'_>, comparing: bool, acceptance: bool) -> Vec<Vec<String>> {
    let rules = g.rules.iter().map(|r| RowCells {
        label: r.id.clone(),
        service: &r.service,
        figures: &r.figures,
        before: r.before.as_ref(),
        difference: r.difference.as_ref(),
        acceptance: r.acceptance.as_ref(),
    });
    let total = g.total.map(|total| {
        let noun = if total.rules == 1 { "rule" } else { "rules" };
        RowCells {
            label: format!("total ({} {noun})", total.rules),
            service: &total.service,
            figures: &total.figures,
            before: total.before.as_ref(),
            difference: total.difference.as_ref(),
            acceptance: None,
        }
    });
    rules
        .chain(total)
        .map(|row| row.cells(comparing, acceptance))
        .collect()
}

/// Each column's width: its widest cell or heading.
fn widths<'a>(
    columns: &[(&str, Align)],
    rows: impl IntoIterator<Item = &'a Vec<String>>,
) -> Vec<usize> {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for cells in rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

/// The headings' line, then a line per row.
fn write_grid(out: &mut String, columns: &[(&str, Align)], widths: &[usize], rows: &[Vec<String>]) {
    let headings: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    for cells in std::iter::once(&headings).chain(rows) {
        write_row(out, columns, widths, cells);
    }
}

/// One table line: two spaces of indent, cells padded to their column's
/// width, no trailing spaces.
fn write_row(out: &mut String, columns: &[(&str, Align)], widths: &[usize], cells: &[String]) {
    let mut line = String::from("  ");
    for (i, ((_, align), cell)) in columns.iter().zip(cells).enumerate() {
        let width = widths[i];
        if i > 0 {
            line.push_str("  ");
        }
        let _ = match align {
            Align::Left => write!(line, "{cell:<width$}"),
            Align::Right => write!(line, "{cell:>width$}"),
        };
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The lines saying what was measured.
fn table_preamble(out: &mut String, report: &AuditReport) {
    let _ = writeln!(
        out,
        "Audit as of {}: {} patients read, {} alive at that time",
        plain(&report.as_of),
        thousands(report.patients),
        thousands(report.patients_at_as_of)
    );
    if let Some(window) = &report.window {
        let _ = writeln!(
            out,
            "Orders replayed from {} until {}",
            plain(&window.since),
            plain(&window.until)
        );
    }
    if let Some(before) = &report.before {
        let _ = writeln!(
            out,
            "Compared with orders from {} until {}, and {} patients alive at {}",
            plain(&before.window.since),
            plain(&before.window.until),
            thousands(before.patients_at_as_of),
            plain(&before.as_of)
        );
    }
}

/// `N cards over M encounters: X per 1,000 encounters (H held back by the cap)`.
fn burden_sentence(burden: &AlertBurden) -> String {
    format!(
        "{} cards over {} encounters: {:.1} per 1,000 encounters ({} held back by the cap)",
        thousands(burden.cards),
        thousands(burden.encounters),
        burden.per_thousand_encounters,
        thousands(burden.held)
    )
}

/// The alert burden, with the earlier period's beside it when comparing.
fn table_burden(out: &mut String, report: &AuditReport) {
    let before = report.before.as_ref().and_then(|b| b.alert_burden.as_ref());
    let Some(burden) = &report.alert_burden else {
        out.push_str("Alert burden: none measured (no order window)\n");
        return;
    };
    let _ = writeln!(out, "Alert burden: {}", burden_sentence(burden));
    if let Some(before) = before {
        let _ = writeln!(out, "  before: {}", burden_sentence(before));
    }
    let mut columns = vec![
        ("FAMILY", Align::Left),
        ("CARDS", Align::Right),
        ("PER 1,000", Align::Right),
    ];
    if before.is_some() {
        columns.extend([("BEFORE", Align::Right), ("PER 1,000", Align::Right)]);
    }
    let rows: Vec<Vec<String>> = burden
        .families
        .iter()
        .map(|f| {
            let mut cells = vec![
                plain(&f.family),
                thousands(f.cards),
                format!("{:.1}", f.per_thousand_encounters),
            ];
            if let Some(before) = before {
                let earlier = before.families.iter().find(|b| b.family == f.family);
                cells.extend([
                    earlier.map_or_else(|| "-".into(), |b| thousands(b.cards)),
                    earlier.map_or_else(
                        || "-".into(),
                        |b| format!("{:.1}", b.per_thousand_encounters),
                    ),
                ]);
            }
            cells
        })
        .collect();
    let widths = widths(&columns, &rows);
    write_grid(out, &columns, &widths, &rows);
}

/// What was read, and the first lines that could not be.
fn table_input(out: &mut String, input: &InputSummary) {
    let _ = writeln!(
        out,
        "Input: {}, {} files, {} resources",
        plain(&input.source),
        thousands(input.files),
        thousands(input.resources)
    );
    let _ = writeln!(out, "  malformed, skipped: {}", thousands(input.malformed));
    for bad in &input.malformed_examples {
        let _ = writeln!(
            out,
            "    {}:{}: {}",
            plain(&bad.file),
            bad.line,
            plain(&bad.error)
        );
    }
    let shown = input.malformed_examples.len() as u64;
    if input.malformed > shown && shown > 0 {
        let _ = writeln!(out, "    and {} more", thousands(input.malformed - shown));
    }
    let _ = writeln!(
        out,
        "  resources pointing to no patient: {}",
        thousands(input.without_patient)
    );
    let _ = writeln!(
        out,
        "  resources of types no rule reads, not kept: {}",
        thousands(input.unused)
    );
    let _ = writeln!(
        out,
        "  resources of a patient without a Patient resource: {}",
        thousands(input.without_patient_resource)
    );
}

/// The CSV header: every column, whether or not the report fills it.
const CSV_HEADER: [&str; 25] = [
    "id",
    "title",
    "family",
    "service",
    "hooks",
    "measure",
    "eligible",
    "flagged",
    "patients",
    "rate",
    "ci95_low",
    "ci95_high",
    "before_eligible",
    "before_flagged",
    "before_patients",
    "before_rate",
    "before_ci95_low",
    "before_ci95_high",
    "difference",
    "difference_ci95_low",
    "difference_ci95_high",
    "cards",
    "accepted",
    "overridden",
    "acceptance_rate",
];

/// The figures' six CSV fields; empty without figures.
fn figures_fields(figures: Option<&Figures>) -> [String; 6] {
    figures.map_or_else(Default::default, |f| {
        [
            f.eligible.to_string(),
            f.flagged.to_string(),
            f.patients.to_string(),
            f.rate.to_string(),
            f.ci95[0].to_string(),
            f.ci95[1].to_string(),
        ]
    })
}

/// RFC 4180: a header and one CRLF-terminated record per rule; the
/// before, difference and acceptance fields are empty when the report has
/// none. Rates are fractions, as in the JSON.
fn csv(report: &AuditReport) -> String {
    let mut out = CSV_HEADER.join(",") + "\r\n";
    for r in &report.rules {
        let [eligible, flagged, patients, rate, low, high] = figures_fields(Some(&r.figures));
        let before = figures_fields(r.before.as_ref());
        let difference = r.difference.as_ref().map_or_else(Default::default, |d| {
            [
                d.rate.to_string(),
                d.ci95[0].to_string(),
                d.ci95[1].to_string(),
            ]
        });
        let acceptance: [String; 4] = r.acceptance.as_ref().map_or_else(Default::default, |a| {
            [
                a.cards.to_string(),
                a.accepted.to_string(),
                a.overridden.to_string(),
                a.rate.map_or_else(String::new, |r| r.to_string()),
            ]
        });
        let fields = [
            r.id.clone(),
            r.title.clone(),
            r.family.clone(),
            r.service.clone(),
            r.hooks.join(" "),
            measure_name(r.measure).into(),
            eligible,
            flagged,
            patients,
            rate,
            low,
            high,
        ]
        .into_iter()
        .chain(before)
        .chain(difference)
        .chain(acceptance);
        let quoted: Vec<String> = fields.map(|f| crate::csv::field(&f)).collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::example;

    /// Parses RFC 4180 text: records of fields, quotes honoured.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
                (false, '\n') => panic!("a record ends in LF without CR"),
                (false, c) => field.push(c),
            }
            if !quoted && c == '\r' {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
        }
        assert!(
            field.is_empty() && record.is_empty(),
            "text after the last CRLF"
        );
        records
    }

    /// The example without its earlier period.
    pub(super) fn without_comparison(mut report: AuditReport) -> AuditReport {
        report.before = None;
        for r in &mut report.rules {
            r.before = None;
            r.difference = None;
        }
        for f in &mut report.families {
            f.before = None;
            f.difference = None;
        }
        report
    }

    #[test]
    fn json_round_trips_through_the_contract_reader() {
        let report = example();
        let text = render(&report, Format::Json);
        assert_eq!(AuditReport::from_json(&text).expect("reads back"), report);
        let report = without_comparison(report);
        let text = render(&report, Format::Json);
        assert!(!text.contains("\"before\""), "{text}");
        assert_eq!(AuditReport::from_json(&text).expect("reads back"), report);
    }

    #[test]
    fn csv_has_a_record_per_rule_with_every_column() {
        let mut report = example();
        report.rules[0].title = "Benzodiazepines, \"sedatives\"\r\nand Z-drugs".into();
        let records = parse_csv(&render(&report, Format::Csv));
        assert_eq!(records.len(), report.rules.len() + 1);
        assert_eq!(records[0], CSV_HEADER);
        for record in &records {
            assert_eq!(record.len(), CSV_HEADER.len(), "{record:?}");
        }
        let column = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
        assert_eq!(records[1][column("title")], report.rules[0].title);
        assert_eq!(
            records[1][column("hooks")],
            "patient-view order-select order-sign"
        );
        for (record, rule) in records[1..].iter().zip(&report.rules) {
            assert_eq!(record[column("id")], rule.id);
            assert_eq!(record[column("measure")], measure_name(rule.measure));
            let rate: f64 = record[column("rate")].parse().unwrap();
            assert_eq!(rate, rule.figures.rate);
            let before: f64 = record[column("before_rate")].parse().unwrap();
            assert_eq!(Some(before), rule.before.as_ref().map(|b| b.rate));
            let low: f64 = record[column("difference_ci95_low")].parse().unwrap();
            assert_eq!(Some(low), rule.difference.as_ref().map(|d| d.ci95[0]));
            let cards = &record[column("cards")];
            match &rule.acceptance {
                Some(a) => assert_eq!(cards, &a.cards.to_string()),
                None => assert_eq!(cards, ""),
            }
        }
    }

    #[test]
    fn csv_leaves_comparison_columns_empty_without_a_comparison() {
        let report = without_comparison(example());
        let records = parse_csv(&render(&report, Format::Csv));
        let first = CSV_HEADER
            .iter()
            .position(|h| *h == "before_eligible")
            .unwrap();
        let last = CSV_HEADER
            .iter()
            .position(|h| *h == "difference_ci95_high")
            .unwrap();
        for record in &records[1..] {
            assert_eq!(record.len(), CSV_HEADER.len());
            assert!(
                record[first..=last].iter().all(String::is_empty),
                "{record:?}"
            );
            assert!(!record[CSV_HEADER.iter().position(|h| *h == "rate").unwrap()].is_empty());
        }
    }

    /// The table's lines for a group: from its heading to the blank line.
    fn block<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
        text.lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.is_empty() && l.starts_with("  "))
            .collect()
    }

    /// The cell of a table line under a heading's column, for right-aligned
    /// columns: the text ending where the heading ends.
    fn cell_under<'a>(header: &str, line: &'a str, heading: &str) -> &'a str {
        let end = header.find(heading).expect("heading") + heading.len();
        let start = line[..end].rfind("  ").map_or(0, |i| i + 2);
        line[start..end].trim()
    }

    #[test]
    fn the_table_groups_rules_by_family_and_measure_with_totals() {
        let report = example();
        let text = render(&report, Format::Table);
        let groups = groups(&report);
        assert_eq!(groups.len(), report.families.len());
        for g in &groups {
            let heading = format!(
                "{}: {} ({})",
                g.family,
                measure_label(g.measure),
                measure_scope(g.measure)
            );
            let lines = block(&text, &heading);
            assert_eq!(lines.len(), 1 + g.rules.len() + 1, "{text}");
            let header = lines[0];
            for (line, rule) in lines[1..].iter().zip(&g.rules) {
                assert!(line.trim_start().starts_with(&rule.id), "{line}");
                assert_eq!(
                    cell_under(header, line, "ELIGIBLE"),
                    thousands(rule.figures.eligible)
                );
                assert_eq!(cell_under(header, line, "RATE"), rate_text(&rule.figures));
                assert_eq!(
                    cell_under(header, line, "BEFORE"),
                    rate_text(rule.before.as_ref().unwrap())
                );
            }
            let total = lines.last().unwrap();
            assert!(total.trim_start().starts_with("total ("), "{total}");
            let family = g.total.unwrap();
            assert_eq!(
                cell_under(header, total, "FLAGGED"),
                thousands(family.figures.flagged)
            );
        }
        assert!(text.contains("3.5-7.2%"), "{text}");
        assert!(text.contains("-20.0 pp"), "{text}");
        assert!(text.contains("-33.7 to -5.7"), "{text}");
    }

    #[test]
    fn the_table_says_what_nothing_eligible_means() {
        let report = example();
        let text = render(&report, Format::Table);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("cw-vitamin-d-screening"))
            .expect("the rule's line");
        let header = block(
            &text,
            "choosing-wisely: orders replayed (eligible: orders in the window)",
        )[0];
        assert_eq!(cell_under(header, line, "RATE"), "-");
        assert_eq!(cell_under(header, line, "CHANGE"), "-");
    }

    #[test]
    fn the_table_shows_burden_input_and_acceptance() {
        let report = example();
        let text = render(&report, Format::Table);
        assert!(text.contains("120 cards over 2,000 encounters: 60.0 per 1,000 encounters (1 held back by the cap)"), "{text}");
        assert!(
            text.contains("before: 180 cards over 2,100 encounters"),
            "{text}"
        );
        assert!(
            text.contains("Input: ndjson, 8 files, 120,000 resources"),
            "{text}"
        );
        assert!(
            text.contains("malformed, skipped: 2\n    Observation.ndjson:17: expected value"),
            "{text}"
        );
        assert!(text.contains("and 1 more"), "{text}");
        assert!(text.contains("9/30 (30.0%)"), "{text}");
        let without = without_comparison(example());
        let text = render(&without, Format::Table);
        assert!(
            !text.contains("BEFORE") && !text.contains("CHANGE"),
            "{text}"
        );
    }

    /// The example as a point-prevalence audit alone: no window, no
    /// orders, no comparison, no alert burden.
    pub(super) fn point_only() -> AuditReport {
        let mut report = without_comparison(example());
        report.window = None;
        report.alert_burden = None;
        report.rules.retain(|r| r.measure == Measure::Point);
        report.families.retain(|f| f.measure == Measure::Point);
        report
    }

    #[test]
    fn a_point_prevalence_audit_says_what_it_did_not_measure() {
        let report = point_only();
        let text = render(&report, Format::Table);
        assert!(!text.contains("Orders replayed"), "{text}");
        assert!(
            text.contains("Alert burden: none measured (no order window)"),
            "{text}"
        );
        assert!(!text.contains("ACCEPTED"), "{text}");
        let records = parse_csv(&render(&report, Format::Csv));
        assert_eq!(records.len(), 1 + report.rules.len());
        let json = render(&report, Format::Json);
        assert!(
            !json.contains("alertBurden") && !json.contains("window"),
            "{json}"
        );
        assert_eq!(AuditReport::from_json(&json).unwrap(), report);
    }

    #[test]
    fn the_table_keeps_control_characters_off_the_terminal() {
        let mut report = example();
        report.rules[0].id = "rule\u{1b}[2J".into();
        let text = render(&report, Format::Table);
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("rule\u{fffd}[2J"));
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(points_number(-0.0004), "+0.0");
        assert_eq!(points_number(-0.0151), "-1.5");
        assert_eq!(points_number(0.2), "+20.0");
    }
}
