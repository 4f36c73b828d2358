//! The audit report as one self-contained HTML page: what was measured, a
//! bar chart per family (SVG drawn here: rates with their 95 % interval,
//! before and after side by side when comparing), a sortable table of
//! rules, the family totals, the alert burden and the input. The page loads
//! nothing: its style and script ([`CSS`], [`JS`]) are inline and allowed
//! by hash in its Content-Security-Policy, which allows nothing else, and
//! it carries the report as JSON (`#audit-data`) for whoever saves it.

use super::{
    comparing, groups, interval_text, known_difference, measure_label, measure_name, measure_unit,
    percent_number, points_number, rate_text, thousands,
};
use crate::audit::report::{
    AlertBurden, AuditReport, Difference, Figures, InputSummary, Measure, Period, RuleRow,
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

use crate::html::escape as esc;

/// The page's style sheet.
const CSS: &str = include_str!("page.css");
/// The page's script: sortable tables.
const JS: &str = include_str!("page.js");

/// A CSP source allowing exactly this inline text.
fn hash_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: its own inline style and script
/// (by hash), nothing else. A server sending the page sends it as a header.
pub fn policy() -> String {
    format!(
        "default-src 'none'; style-src {}; script-src {}; base-uri 'none'; form-action 'none'",
        hash_source(CSS),
        hash_source(JS)
    )
}

/// The report as JSON inside a `<script type="application/json">`: every
/// `<` written `\u003c`, so no `</script>` or `<!--` in a title can end
/// the element early.
fn data_json(report: &AuditReport) -> String {
    serde_json::to_string(report)
        .unwrap_or_default()
        .replace('<', "\\u003c")
}

/// The page.
pub(super) fn page(report: &AuditReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("hookwise audit as of {}", report.as_of);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        policy(),
        esc(&title)
    );
    header(&mut out, report);
    out.push_str("<main>\n");
    charts(&mut out, report);
    rules_table(&mut out, report);
    families_table(&mut out, report);
    burden(&mut out, report);
    input(&mut out, &report.input);
    let _ = write!(
        out,
        "</main>\n<footer><p>Written by <code>hookwise audit</code>. This page loads \
         nothing; the report it shows is inside it as JSON (<code>#audit-data</code>).</p>\
         </footer>\n<script type=\"application/json\" id=\"audit-data\">{}</script>\n\
         <script>{JS}</script>\n</body>\n</html>\n",
        data_json(report)
    );
    out
}

/// A period as `since – until`.
fn period_text(period: &Period) -> String {
    format!("{} – {}", esc(&period.since), esc(&period.until))
}

/// The heading and what was measured.
fn header(out: &mut String, report: &AuditReport) {
    let mut facts = vec![
        ("As of", esc(&report.as_of)),
        ("Patients read", thousands(report.patients)),
        ("Alive at as-of", thousands(report.patients_at_as_of)),
    ];
    if let Some(window) = &report.window {
        facts.push(("Orders replayed", period_text(window)));
    }
    if let Some(before) = &report.before {
        facts.push(("Compared with", period_text(&before.window)));
        facts.push((
            "Alive then",
            format!(
                "{} at {}",
                thousands(before.patients_at_as_of),
                esc(&before.as_of)
            ),
        ));
    }
    facts.push((
        "Source",
        format!(
            "{}, {} files, {} resources",
            esc(&report.input.source),
            thousands(report.input.files),
            thousands(report.input.resources)
        ),
    ));
    out.push_str("<header>\n<h1>Low-value care audit</h1>\n<dl class=\"facts\">\n");
    for (term, value) in facts {
        let _ = writeln!(out, "<div><dt>{term}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>\n</header>\n");
}

/// The families in the order their first rule appears.
fn families_in_order(report: &AuditReport) -> Vec<&str> {
    let mut families: Vec<&str> = Vec::new();
    for r in &report.rules {
        if !families.contains(&r.family.as_str()) {
            families.push(&r.family);
        }
    }
    families
}

/// A chart per family, with a legend saying what the bars are.
fn charts(out: &mut String, report: &AuditReport) {
    let comparing = comparing(report);
    out.push_str("<section aria-labelledby=\"charts-heading\">\n<h2 id=\"charts-heading\">Rates by family</h2>\n");
    out.push_str("<p class=\"legend\">");
    if comparing {
        let before = report
            .before
            .as_ref()
            .map_or_else(String::new, |b| format!(": {}", period_text(&b.window)));
        let after = report
            .window
            .as_ref()
            .map_or_else(String::new, |w| format!(": {}", period_text(w)));
        let _ = write!(
            out,
            "<span class=\"swatch before\"></span>Before{before} \
             <span class=\"swatch after\"></span>After{after}<br>"
        );
    }
    out.push_str(
        "Bars are rates, whiskers their 95&nbsp;% (Wilson) interval. Point prevalence \
         counts patients at as-of; orders, the orders replayed.</p>\n<div class=\"charts\">\n",
    );
    for (index, family) in families_in_order(report).into_iter().enumerate() {
        let rows: Vec<&RuleRow> = report.rules.iter().filter(|r| r.family == family).collect();
        chart(out, index, family, &rows, comparing);
    }
    out.push_str("</div>\n</section>\n");
}

/// The chart's width in SVG units.
const WIDTH: f64 = 520.0;
/// The plot's left and right edges.
const X0: f64 = 4.0;
const X1: f64 = WIDTH - 4.0;
/// A rule's label line above its bars.
const LABEL: f64 = 18.0;
/// A bar's height, and the gap below it.
const BAR: f64 = 11.0;
const BAR_GAP: f64 = 4.0;
/// Space below a rule's bars.
const ROW_GAP: f64 = 10.0;
/// Space below the plot for the axis labels.
const AXIS: f64 = 18.0;
/// Rule ids longer than this are cut in labels (the full id is in the
/// bar's tooltip): beside the values, the label has room for about 60.
const LABEL_CHARS: usize = 48;

/// One bar: which period, and its figures (none: the rule has no row for
/// that period).
struct Series<'a> {
    class: &'static str,
    name: &'static str,
    figures: Option<&'a Figures>,
}

fn series(row: &RuleRow, comparing: bool) -> Vec<Series<'_>> {
    let after = Series {
        class: "after",
        name: if comparing { "after" } else { "rate" },
        figures: Some(&row.figures),
    };
    if !comparing {
        return vec![after];
    }
    let before = Series {
        class: "before",
        name: "before",
        figures: row.before.as_ref(),
    };
    vec![before, after]
}

/// The axis' end and tick step: the smallest step of 1, 2, 2.5 or 5 × 10^k
/// that covers the highest interval end in at most six steps; 0 to 10 %
/// when there is nothing to show.
fn scale(highest: f64) -> (f64, f64) {
    const STEPS: [f64; 13] = [
        0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25,
    ];
    let highest = if highest > 0.0 { highest.min(1.0) } else { 0.1 };
    let step = STEPS
        .into_iter()
        .find(|step| (highest / step).ceil() <= 6.0)
        .unwrap_or(0.25);
    let ticks = (highest / step).ceil().max(1.0);
    ((ticks * step).min(1.0), step)
}

/// A tick's label: a percentage with as few decimals as it needs.
fn tick_label(value: f64) -> String {
    let text = format!("{:.2}", value * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Cuts a rule id to [`LABEL_CHARS`].
fn cut(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_string();
    }
    let kept: String = label.chars().take(LABEL_CHARS - 1).collect();
    format!("{kept}…")
}

/// Whether any period of a rule row has units matching `test`.
fn any_period(row: &RuleRow, comparing: bool, test: fn(&Figures) -> bool) -> bool {
    series(row, comparing)
        .iter()
        .any(|s| s.figures.is_some_and(test))
}

/// Whether a rule row is drawn: it flagged something in some period.
fn charted(row: &RuleRow, comparing: bool) -> bool {
    any_period(row, comparing, |f| f.flagged > 0)
}

/// One family's chart: per rule (and measure) that flagged something a
/// label line, then a bar per period from 0 to the rate with a whisker
/// over its interval (a period without eligible units gets a note
/// instead). The other rules are named below it, not drawn: a long list of
/// empty bars would hide the ones that matter, and the table has them.
fn chart(out: &mut String, index: usize, family: &str, rows: &[&RuleRow], comparing: bool) {
    let (drawn, idle): (Vec<&RuleRow>, Vec<&RuleRow>) =
        rows.iter().partition(|r| charted(r, comparing));
    let (unflagged, ineligible): (Vec<&RuleRow>, Vec<&RuleRow>) = idle
        .into_iter()
        .partition(|r| any_period(r, comparing, |f| f.eligible > 0));
    let family = esc(family);
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-family=\"{family}\">\n<figcaption>{family}</figcaption>"
    );
    if !drawn.is_empty() {
        plot(out, index, &family, &drawn, comparing);
    }
    for (rows, what) in [
        (unflagged, "Nothing flagged"),
        (ineligible, "Nothing eligible"),
    ] {
        if rows.is_empty() {
            continue;
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| format!("<code>{}</code>", esc(&r.id)))
            .collect();
        let _ = writeln!(
            out,
            "<details class=\"idle\"><summary>{what} in {} of its rows</summary>{}.</details>",
            rows.len(),
            ids.join(", ")
        );
    }
    out.push_str("</figure>\n");
}

/// The SVG of a chart's drawn rows (`family` escaped already).
fn plot(out: &mut String, index: usize, family: &str, rows: &[&RuleRow], comparing: bool) {
    let bars_per_row = if comparing { 2.0 } else { 1.0 };
    let row_height = LABEL + bars_per_row * (BAR + BAR_GAP) - BAR_GAP + ROW_GAP;
    let plot_height = row_height * rows.len() as f64;
    let height = plot_height + AXIS;
    let highest = rows
        .iter()
        .flat_map(|r| series(r, comparing))
        .filter_map(|s| s.figures.filter(|f| f.eligible > 0))
        .map(|f| f.ci95[1])
        .fold(0.0, f64::max);
    let (end, step) = scale(highest);
    let x = |value: f64| X0 + value.clamp(0.0, end) / end * (X1 - X0);
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-labelledby=\"chart-{index}\">\
         <title id=\"chart-{index}\">Rates of the {family} rules, with 95 % intervals</title>"
    );
    let ticks = (end / step).round() as usize;
    for tick in 0..=ticks {
        let value = tick as f64 * step;
        let anchor = match tick {
            0 => "start",
            t if t == ticks => "end",
            _ => "middle",
        };
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{plot_height}\"/>\
             <text class=\"tick\" x=\"{0:.1}\" y=\"{1}\" text-anchor=\"{anchor}\">{2}</text>",
            x(value),
            plot_height + 14.0,
            tick_label(value)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        chart_row(out, row, comparing, i as f64 * row_height, &x);
    }
    out.push_str("</svg>\n");
}

/// A rule's label line and bars, from `top`.
fn chart_row(out: &mut String, row: &RuleRow, comparing: bool, top: f64, x: &dyn Fn(f64) -> f64) {
    let label = format!("{} · {}", cut(&row.id), measure_unit(row.measure));
    let values: Vec<String> = series(row, comparing)
        .iter()
        .map(|s| s.figures.map_or_else(|| "-".into(), rate_text))
        .collect();
    let _ = writeln!(
        out,
        "<text class=\"label\" x=\"{X0}\" y=\"{:.1}\">{}</text>\
         <text class=\"value\" x=\"{X1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        top + 13.0,
        esc(&label),
        top + 13.0,
        values.join(" → ")
    );
    for (i, s) in series(row, comparing).iter().enumerate() {
        let y = top + LABEL + i as f64 * (BAR + BAR_GAP);
        let middle = y + BAR / 2.0;
        let Some(f) = s.figures.filter(|f| f.eligible > 0) else {
            let _ = writeln!(
                out,
                "<text class=\"none\" x=\"{:.1}\" y=\"{:.1}\">{}: no eligible {}</text>",
                X0 + 2.0,
                middle + 4.0,
                s.name,
                measure_unit(row.measure)
            );
            continue;
        };
        let [low, high] = f.ci95;
        let tip = format!(
            "{}, {}: {} of {} {} ({}, 95 % interval {})",
            row.id,
            s.name,
            thousands(f.flagged),
            thousands(f.eligible),
            measure_unit(row.measure),
            rate_text(f),
            interval_text(f, " – ")
        );
        let (low, high, width) = (x(low), x(high), (x(f.rate) - X0).max(0.0));
        let (class, tip) = (s.class, esc(&tip));
        let (cap_top, cap_bottom) = (middle - 4.0, middle + 4.0);
        let _ = writeln!(
            out,
            "<rect class=\"bar {class}\" x=\"{X0}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{BAR}\"><title>{tip}</title></rect><path class=\"ci\" d=\"M{low:.1} \
             {middle:.1}H{high:.1}M{low:.1} {cap_top:.1}V{cap_bottom:.1}M{high:.1} \
             {cap_top:.1}V{cap_bottom:.1}\"/>"
        );
    }
}

/// A table cell: its HTML, and the key it sorts by (for numbers, a number
/// or empty when unknown, which sorts last).
struct Cell {
    html: String,
    key: String,
}

fn text_cell(text: &str) -> Cell {
    Cell {
        html: esc(text),
        key: esc(text),
    }
}

fn count_cell(n: u64) -> Cell {
    Cell {
        html: thousands(n),
        key: n.to_string(),
    }
}

/// A number cell shown as `html`, sorted by `key` when known.
fn number_cell(html: String, key: Option<f64>) -> Cell {
    Cell {
        html,
        key: key.map_or_else(String::new, |k| k.to_string()),
    }
}

/// The service measured, with what it measured below it; sorted by
/// service, then measure.
fn service_cell(service: &str, measure: Measure) -> Cell {
    Cell {
        html: format!(
            "<code>{}</code><span class=\"title\">{}</span>",
            esc(service),
            measure_label(measure)
        ),
        key: format!("{} {}", esc(service), measure_name(measure)),
    }
}

/// A column: heading, and whether it holds numbers.
struct Column {
    heading: &'static str,
    numeric: bool,
}

const fn text_column(heading: &'static str) -> Column {
    Column {
        heading,
        numeric: false,
    }
}

const fn number_column(heading: &'static str) -> Column {
    Column {
        heading,
        numeric: true,
    }
}

/// The columns of [`figure_cells`].
fn figure_columns(comparing: bool) -> Vec<Column> {
    let mut columns = vec![
        number_column("Eligible"),
        number_column("Flagged"),
        number_column("Rate"),
        number_column("95 % CI"),
        number_column("Patients"),
    ];
    if comparing {
        columns.extend([
            number_column("Before"),
            number_column("Before 95 % CI"),
            number_column("Change"),
            number_column("Change 95 % CI"),
        ]);
    }
    columns
}

/// A rate's and its interval's cells; unknown (`-`) without eligible units.
fn rate_cells(f: &Figures) -> [Cell; 2] {
    let known = f.eligible > 0;
    [
        number_cell(rate_text(f), known.then_some(f.rate)),
        number_cell(interval_text(f, "–"), known.then_some(f.ci95[0])),
    ]
}

/// A change's cells, in percentage points.
fn change_cells(difference: Option<&Difference>) -> [Cell; 2] {
    let Some(d) = difference else {
        return [number_cell("-".into(), None), number_cell("-".into(), None)];
    };
    // An interval that leaves out 0 is marked: the change is unlikely chance.
    let class = if d.ci95[0] > 0.0 || d.ci95[1] < 0.0 {
        " class=\"clear\""
    } else {
        ""
    };
    [
        number_cell(
            format!("<span{class}>{}&nbsp;pp</span>", points_number(d.rate)),
            Some(d.rate),
        ),
        number_cell(
            format!(
                "{} – {}",
                points_number(d.ci95[0]),
                points_number(d.ci95[1])
            ),
            Some(d.ci95[0]),
        ),
    ]
}

/// The cells of [`figure_columns`].
fn figure_cells(
    f: &Figures,
    before: Option<&Figures>,
    difference: Option<&Difference>,
    comparing: bool,
) -> Vec<Cell> {
    let [rate, interval] = rate_cells(f);
    let mut cells = vec![
        count_cell(f.eligible),
        count_cell(f.flagged),
        rate,
        interval,
        count_cell(f.patients),
    ];
    if comparing {
        let unknown = || [number_cell("-".into(), None), number_cell("-".into(), None)];
        cells.extend(before.map_or_else(unknown, rate_cells));
        cells.extend(change_cells(known_difference(before, f, difference)));
    }
    cells
}

/// A sortable table with its status line (which the script fills when it
/// sorts, for screen readers).
fn table(out: &mut String, id: &str, caption: &str, columns: &[Column], rows: Vec<Vec<Cell>>) {
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"sortable\" id=\"{id}\">\
         <caption>{caption}</caption>\n<thead><tr>"
    );
    for c in columns {
        let (kind, class) = if c.numeric {
            ("number", " class=\"num\"")
        } else {
            ("text", "")
        };
        let _ = write!(
            out,
            "<th scope=\"col\" data-sort=\"{kind}\"{class}>{}</th>",
            c.heading
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (order, cells) in rows.into_iter().enumerate() {
        let _ = write!(out, "<tr data-order=\"{order}\">");
        for (c, cell) in columns.iter().zip(cells) {
            let class = if c.numeric { " class=\"num\"" } else { "" };
            let _ = write!(
                out,
                "<td{class} data-value=\"{}\">{}</td>",
                cell.key, cell.html
            );
        }
        out.push_str("</tr>\n");
    }
    let _ = writeln!(
        out,
        "</tbody></table></div>\n<p class=\"visually-hidden\" role=\"status\" id=\"{id}-status\"></p>"
    );
}

/// The rules, one row per rule and service measured.
fn rules_table(out: &mut String, report: &AuditReport) {
    let comparing = comparing(report);
    let acceptance = report.rules.iter().any(|r| r.acceptance.is_some());
    let mut columns = vec![
        text_column("Rule"),
        text_column("Family"),
        text_column("Service, measure"),
    ];
    columns.extend(figure_columns(comparing));
    if acceptance {
        columns.extend([number_column("Cards issued"), number_column("Accepted")]);
    }
    let rows = report
        .rules
        .iter()
        .map(|r| {
            let mut cells = vec![
                Cell {
                    html: format!(
                        "<code class=\"id\">{}</code><span class=\"title\">{}</span>",
                        esc(&r.id),
                        esc(&r.title)
                    ),
                    key: esc(&r.id),
                },
                text_cell(&r.family),
                service_cell(&r.service, r.measure),
            ];
            cells.extend(figure_cells(
                &r.figures,
                r.before.as_ref(),
                r.difference.as_ref(),
                comparing,
            ));
            if acceptance {
                cells.extend(acceptance_cells(r));
            }
            cells
        })
        .collect();
    out.push_str(
        "<section aria-labelledby=\"rules-heading\">\n<h2 id=\"rules-heading\">Rules</h2>\n\
         <p class=\"hint\">Select a column heading to sort by it; again to reverse.</p>\n",
    );
    table(
        out,
        "rules",
        "Rules by family, measure and id",
        &columns,
        rows,
    );
    out.push_str("</section>\n");
}

/// A rule's acceptance cells (cards issued; the share accepted, with the
/// counts below it), sorted by cards and by rate; empty without acceptance
/// figures.
fn acceptance_cells(r: &RuleRow) -> [Cell; 2] {
    let Some(a) = &r.acceptance else {
        return std::array::from_fn(|_| number_cell(String::new(), None));
    };
    let rate = a
        .rate
        .map_or_else(|| "-".into(), |r| format!("{}%", percent_number(r)));
    [
        count_cell(a.cards),
        number_cell(
            format!(
                "{rate}<span class=\"title\">{} accepted, {} overridden</span>",
                thousands(a.accepted),
                thousands(a.overridden)
            ),
            a.rate,
        ),
    ]
}

/// The family totals.
fn families_table(out: &mut String, report: &AuditReport) {
    let comparing = comparing(report);
    let mut columns = vec![
        text_column("Family"),
        text_column("Service, measure"),
        number_column("Rules"),
    ];
    columns.extend(figure_columns(comparing));
    let rows = groups(report)
        .iter()
        .filter_map(|g| g.total)
        .map(|f| {
            let mut cells = vec![
                text_cell(&f.family),
                service_cell(&f.service, f.measure),
                count_cell(f.rules),
            ];
            cells.extend(figure_cells(
                &f.figures,
                f.before.as_ref(),
                f.difference.as_ref(),
                comparing,
            ));
            cells
        })
        .collect();
    out.push_str(
        "<section aria-labelledby=\"families-heading\">\n<h2 id=\"families-heading\">Family totals</h2>\n\
         <p class=\"hint\">A patient or order counts once per family: eligible when any of its \
         rules was, flagged when any fired.</p>\n",
    );
    table(
        out,
        "families",
        "Totals by family and measure",
        &columns,
        rows,
    );
    out.push_str("</section>\n");
}

/// `N cards over M encounters: X per 1,000 (H held back by the cap)`.
fn burden_sentence(burden: &AlertBurden) -> String {
    format!(
        "<strong>{}</strong> cards over {} encounters: <strong>{:.1}</strong> per 1,000 \
         encounters ({} held back by the per-response cap).",
        thousands(burden.cards),
        thousands(burden.encounters),
        burden.per_thousand_encounters,
        thousands(burden.held)
    )
}

/// The alert burden, the earlier period's beside it when comparing.
fn burden(out: &mut String, report: &AuditReport) {
    out.push_str(
        "<section aria-labelledby=\"burden-heading\">\n<h2 id=\"burden-heading\">Alert burden</h2>\n",
    );
    let Some(burden) = &report.alert_burden else {
        out.push_str("<p>Not measured: the audit had no order window.</p>\n</section>\n");
        return;
    };
    let before = report.before.as_ref().and_then(|b| b.alert_burden.as_ref());
    let _ = writeln!(out, "<p>{}</p>", burden_sentence(burden));
    if let Some(before) = before {
        let _ = writeln!(out, "<p>Before: {}</p>", burden_sentence(before));
    }
    let mut columns = vec![
        text_column("Family"),
        number_column("Cards"),
        number_column("Per 1,000 encounters"),
    ];
    if before.is_some() {
        columns.extend([
            number_column("Before: cards"),
            number_column("Before: per 1,000"),
        ]);
    }
    let per_thousand = |v: f64| number_cell(format!("{v:.1}"), Some(v));
    let rows =
        burden
            .families
            .iter()
            .map(|f| {
                let mut cells = vec![
                    text_cell(&f.family),
                    count_cell(f.cards),
                    per_thousand(f.per_thousand_encounters),
                ];
                if let Some(before) = before {
                    match before.families.iter().find(|b| b.family == f.family) {
                        Some(b) => cells
                            .extend([count_cell(b.cards), per_thousand(b.per_thousand_encounters)]),
                        None => cells
                            .extend([number_cell("-".into(), None), number_cell("-".into(), None)]),
                    }
                }
                cells
            })
            .collect();
    table(out, "burden", "Cards by family", &columns, rows);
    out.push_str("</section>\n");
}

/// What was read, and the first lines that could not be.
fn input(out: &mut String, input: &InputSummary) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"input-heading\">\n<h2 id=\"input-heading\">Input</h2>\n\
         <dl class=\"input\">\n<div><dt>Source</dt><dd>{}</dd></div>\n\
         <div><dt>Files</dt><dd>{}</dd></div>\n<div><dt>Resources</dt><dd>{}</dd></div>\n\
         <div><dt>Malformed, skipped</dt><dd>{}</dd></div>\n\
         <div><dt>Pointing to no patient</dt><dd>{}</dd></div>\n\
         <div><dt>Of types no rule reads, not kept</dt><dd>{}</dd></div>\n\
         <div><dt>Of a patient without a Patient resource</dt><dd>{}</dd></div>\n</dl>\n",
        esc(&input.source),
        thousands(input.files),
        thousands(input.resources),
        thousands(input.malformed),
        thousands(input.without_patient),
        thousands(input.unused),
        thousands(input.without_patient_resource)
    );
    if !input.malformed_examples.is_empty() {
        out.push_str("<ul class=\"malformed\">\n");
        for bad in &input.malformed_examples {
            let _ = writeln!(
                out,
                "<li><code>{}:{}</code> {}</li>",
                esc(&bad.file),
                bad.line,
                esc(&bad.error)
            );
        }
        let shown = input.malformed_examples.len() as u64;
        if input.malformed > shown {
            let _ = writeln!(
                out,
                "<li>and {} more</li>",
                thousands(input.malformed - shown)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::example;

    /// The number of times `needle` occurs in `text`.
    fn count(text: &str, needle: &str) -> usize {
        text.matches(needle).count()
    }

    #[test]
    fn text_from_data_files_is_escaped() {
        let mut report = example();
        report.rules[2].title = "PSA \"screening\" & <b>more</b> 'quoted'".into();
        report.input.malformed_examples[0].file = "<img src=x onerror=alert(1)>.ndjson".into();
        let page = page(&report);
        // The example's first title ends in <script>: escaped everywhere,
        // the JSON included; the only script elements are the page's two.
        assert_eq!(count(&page, "<script"), 2, "{page}");
        assert!(page.contains("Benzodiazepines in older adults &lt;script&gt;"));
        assert!(
            page.contains(
                "PSA &quot;screening&quot; &amp; &lt;b&gt;more&lt;/b&gt; &#39;quoted&#39;"
            )
        );
        assert!(!page.contains("<b>more") && !page.contains("<img"));
        assert!(page.contains("older adults \\u003cscript>"));
    }

    #[test]
    fn the_embedded_data_is_the_report() {
        let report = example();
        let page = page(&report);
        let start = page.find("id=\"audit-data\">").unwrap() + "id=\"audit-data\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        assert_eq!(AuditReport::from_json(&page[start..end]).unwrap(), report);
    }

    #[test]
    fn the_page_refers_to_nothing_outside_it() {
        let mut report = example();
        report.rules[0].title = "See https://example.org/rule".into();
        let page = page(&report);
        let lower = page.to_lowercase();
        for reference in [
            "src=", "href=", "url(", "@import", "<link", "<iframe", "<object",
        ] {
            assert!(!lower.contains(reference), "{reference} in the page");
        }
        // A URL in a title is text, the only one on the page.
        assert_eq!(count(&lower, "http://") + count(&lower, "https://"), 2);
        assert!(page.contains("<span class=\"title\">See https://example.org/rule</span>"));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script() {
        let page = page(&example());
        let policy = format!(
            "default-src 'none'; style-src {}; script-src {};",
            hash_source(CSS),
            hash_source(JS)
        );
        assert!(page.contains(&policy), "{page}");
        assert!(page.contains(&format!("<style>{CSS}</style>")));
        assert!(page.contains(&format!("<script>{JS}</script>")));
        // Every policy's hash is of the text it allows: one changed byte
        // changes it.
        assert_ne!(hash_source(CSS), hash_source(&format!("{CSS} ")));
        assert!(
            !page.contains(" style=\""),
            "inline style attributes are not allowed"
        );
    }

    #[test]
    fn each_family_has_a_chart_with_a_bar_per_period_with_eligible_units() {
        let mut report = example();
        // A rule that flagged nothing in either period, with eligible orders.
        let mut quiet = report.rules[2].clone();
        quiet.id = "cw-quiet".into();
        quiet.figures = Figures::of(10, 0, 0);
        quiet.before = Some(Figures::of(12, 0, 0));
        report.rules.push(quiet);
        let page = page(&report);
        let families = families_in_order(&report);
        assert_eq!(count(&page, "<figure class=\"chart\""), families.len());
        for (i, family) in families.iter().enumerate() {
            let start = page.find(&format!("data-family=\"{family}\"")).unwrap();
            let end = start + page[start..].find("</figure>").unwrap();
            let chart = &page[start..end];
            let rules = report.rules.iter().filter(|r| r.family == *family);
            let (drawn, idle): (Vec<&RuleRow>, Vec<&RuleRow>) = rules.partition(|r| {
                r.figures.flagged > 0 || r.before.as_ref().is_some_and(|b| b.flagged > 0)
            });
            let after = drawn.iter().filter(|r| r.figures.eligible > 0).count();
            let before = (drawn.iter())
                .filter(|r| r.before.as_ref().is_some_and(|b| b.eligible > 0))
                .count();
            assert_eq!(count(chart, "class=\"bar after\""), after, "chart {i}");
            assert_eq!(count(chart, "class=\"bar before\""), before, "chart {i}");
            assert_eq!(count(chart, "class=\"ci\""), after + before);
            // A period without eligible units is a note beside its other
            // period's bar; a rule that flagged nothing is named below.
            let none = 2 * drawn.len() - after - before;
            assert_eq!(count(chart, "class=\"none\""), none, "chart {i}");
            for r in &idle {
                let named = format!("<code>{}</code>", r.id);
                assert!(chart.contains(&named), "chart {i}: {}", r.id);
                assert!(
                    !chart.contains(&format!("{} · ", r.id)),
                    "{} is drawn",
                    r.id
                );
            }
        }
        assert!(page.contains("Nothing flagged in 1 of its rows</summary><code>cw-quiet</code>."));
        assert!(page.contains(
            "Nothing eligible in 1 of its rows</summary><code>cw-vitamin-d-screening</code>."
        ));
    }

    #[test]
    fn without_a_comparison_there_is_one_bar_per_rule_and_no_before() {
        let report = super::super::tests::without_comparison(example());
        let page = page(&report);
        let eligible = report
            .rules
            .iter()
            .filter(|r| r.figures.eligible > 0)
            .count();
        assert_eq!(count(&page, "class=\"bar after\""), eligible);
        assert_eq!(count(&page, "class=\"bar before\""), 0);
        assert!(!page.contains("<th scope=\"col\" data-sort=\"number\" class=\"num\">Before"));
        assert!(!page.contains("<span class=\"swatch"));
    }

    #[test]
    fn a_point_prevalence_audit_has_no_burden_and_no_window() {
        let report = super::super::tests::point_only();
        let page = page(&report);
        assert!(page.contains("<p>Not measured: the audit had no order window.</p>"));
        assert!(!page.contains("Orders replayed"));
        assert!(
            !page.contains(">Cards issued</th>"),
            "no acceptance columns"
        );
        assert_eq!(count(&page, "<figure class=\"chart\""), 1);
    }

    #[test]
    fn bars_are_as_long_as_their_rates() {
        let report = example();
        let page = page(&report);
        // The choosing-wisely chart: its axis ends at 60 % (the highest
        // interval end, 51.5 %, in steps of 10), so PSA's 20 % after bar
        // is a third of the plot.
        let (end, step) = scale(0.5145);
        assert!((end - 0.6).abs() < 1e-9 && step == 0.1, "{end} by {step}");
        let start = page.find("data-family=\"choosing-wisely\"").unwrap();
        let chart = &page[start..];
        let bar = chart.find("class=\"bar after\"").unwrap();
        let width: f64 = chart[bar..]
            .split("width=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!((width - (X1 - X0) / 3.0).abs() < 0.1, "{width}");
    }

    #[test]
    fn the_scale_covers_the_highest_interval_in_at_most_six_steps() {
        for highest in [0.0003, 0.004, 0.0718, 0.31, 0.99, 1.0] {
            let (end, step) = scale(highest);
            assert!(end >= highest && end <= 1.0, "{highest}: {end}");
            assert!((end / step).round() <= 6.0, "{highest}: {end} by {step}");
            // No coarser than needed: one step less would not cover it.
            assert!(end - step < highest, "{highest}: {end} by {step}");
        }
        assert_eq!(scale(0.0).0, 0.1);
        assert_eq!(tick_label(0.025), "2.5%");
        assert_eq!(tick_label(0.1), "10%");
        assert_eq!(tick_label(0.0005), "0.05%");
    }

    #[test]
    fn long_ids_are_cut_in_chart_labels_only() {
        let mut report = example();
        let long = format!("cw-{}", "very-long-".repeat(6));
        report.rules[2].id = long.clone();
        let page = page(&report);
        let cut_id = cut(&long);
        assert_eq!(cut_id.chars().count(), LABEL_CHARS);
        assert!(cut_id.ends_with('…') && long.starts_with(cut_id.trim_end_matches('…')));
        assert!(page.contains(&format!(">{cut_id} · orders</text>")));
        assert!(page.contains(&format!("<code class=\"id\">{long}</code>")));
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn the_tables_have_a_row_per_rule_and_per_family() {
        let report = example();
        let page = page(&report);
        let section = |id: &str| {
            let start = page.find(&format!("id=\"{id}\"")).unwrap();
            let end = start + page[start..].find("</table>").unwrap();
            page[start..end].to_string()
        };
        assert_eq!(
            count(&section("rules"), "<tr data-order="),
            report.rules.len()
        );
        assert_eq!(
            count(&section("families"), "<tr data-order="),
            report.families.len()
        );
        let burden = report.alert_burden.as_ref().unwrap();
        assert_eq!(
            count(&section("burden"), "<tr data-order="),
            burden.families.len()
        );
        // Comparing and with acceptance: 3 + 5 + 4 + 2 columns.
        assert_eq!(count(&section("rules"), "<th scope=\"col\""), 3 + 5 + 4 + 2);
        assert!(
            section("rules")
                .contains("30.0%<span class=\"title\">9 accepted, 12 overridden</span>")
        );
        assert_eq!(count(&section("families"), "<th scope=\"col\""), 3 + 5 + 4);
        assert!(page.contains("<code>Observation.ndjson:17</code> expected value"));
        assert!(page.contains("<li>and 1 more</li>"));
    }
}
