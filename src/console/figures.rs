//! Live figures on a rule's page, and the audit tables the console shares.
//!
//! This module owns
//! - [`Usage`], read by [`usage`]: a rule's figures from the card log and
//!   the feedback on it over all time (as `hookwise report` computes them)
//!   and its cards per ISO week for the last [`TREND_WEEKS`] weeks;
//! - the rule page's "In use" section: those figures, its override
//!   reasons, and the weekly trend as an inline SVG chart (presentation
//!   attributes and console.css classes only, which the page's policy
//!   allows) with the same weeks as a table for whoever cannot see it;
//! - the rule page's "Latest audit" rows when an audit report is loaded,
//!   and the audit table the dashboard reuses for families.
//!
//! Aggregates only: counts and rates, never a patient id or hash.

use super::LoadedAudit;
use super::html::esc;
use crate::audit::report::{Difference, FamilyRow, Figures as AuditFigures, Measure, RuleRow};
use crate::report::{Counts, ReasonCount, Report, ReportQuery, reason_display};
use crate::rules::RuleSet;
use crate::store::{Store, StoreError, WeekCount};
use std::fmt::Write as _;
use time::{Date, Duration, OffsetDateTime, Time};

/// Weeks the trend shows, the current one included.
pub const TREND_WEEKS: u16 = 26;

/// A rule's live figures.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Its figures over all time; `None` when it never issued a card.
    pub counts: Option<Counts>,
    /// The last [`TREND_WEEKS`] weeks, oldest first, weeks without cards
    /// included (so the chart's gaps are real).
    pub weeks: Vec<WeekCount>,
}

/// The report over all time, override reasons named as the rules name
/// them when the feedback did not: what the rule page and the dashboard
/// read.
pub(super) async fn all_time(store: &Store, rules: &RuleSet) -> Result<Report, StoreError> {
    let mut report = crate::report::build(store, &ReportQuery::default()).await?;
    report.fill_displays(|rule, family, system, code| {
        reason_display(rules, rule, family, system, code)
    });
    Ok(report)
}

/// Reads the figures of the rule `rule` at `now`.
pub async fn usage(
    store: &Store,
    rules: &RuleSet,
    rule: &str,
    now: OffsetDateTime,
) -> Result<Usage, StoreError> {
    let report = all_time(store, rules).await?;
    let counts = report
        .rules
        .into_iter()
        .find(|r| r.rule == rule)
        .map(|r| r.counts);
    let first = trend_start(now.date());
    let start = first.with_time(Time::MIDNIGHT).assume_utc();
    let end = start + Duration::weeks(TREND_WEEKS.into());
    let found = store.weekly_cards(rule, start, end).await?;
    Ok(Usage {
        counts,
        weeks: every_week(first, &found),
    })
}

/// The Monday of the week holding `day`.
fn monday_of(day: Date) -> Date {
    day - Duration::days(day.weekday().number_days_from_monday().into())
}

/// The Monday of the trend's first week, when `today` is in its last.
fn trend_start(today: Date) -> Date {
    monday_of(today) - Duration::weeks(i64::from(TREND_WEEKS) - 1)
}

/// Each of the trend's weeks from `first`, with its count from `found` or
/// none.
fn every_week(first: Date, found: &[WeekCount]) -> Vec<WeekCount> {
    (0..TREND_WEEKS)
        .map(|i| first + Duration::weeks(i.into()))
        .map(|monday| {
            let week = found.iter().find(|w| w.monday == monday);
            week.copied().unwrap_or(WeekCount {
                monday,
                cards: 0,
                overridden: 0,
            })
        })
        .collect()
}

/// What the rule page shows beside the rule itself.
#[derive(Debug, Clone, Copy)]
pub struct PageFigures<'a> {
    /// The rule's live figures, or why the store could not give them.
    pub usage: &'a Result<Usage, StoreError>,
    /// The audit report loaded, if any.
    pub audit: Option<&'a LoadedAudit>,
}

/// Writes the rule `rule`'s "In use" section and, with an audit loaded,
/// its audit rows.
pub fn write(out: &mut String, rule: &str, figures: PageFigures<'_>) {
    in_use(out, figures.usage);
    if let Some(audit) = figures.audit {
        audit_rows(out, rule, audit);
    }
}

/// The "In use" section; a store failure is said in the page, which
/// still renders.
fn in_use(out: &mut String, usage: &Result<Usage, StoreError>) {
    out.push_str(
        "<section class=\"figures\" aria-labelledby=\"in-use\">\n<h3 id=\"in-use\">In use</h3>\n",
    );
    match usage {
        Err(why) => {
            let _ = writeln!(
                out,
                "<p class=\"unavailable\">In-use figures unavailable: {}</p>",
                esc(&why.to_string())
            );
        }
        Ok(Usage { counts: None, .. }) => {
            out.push_str("<p>No cards issued yet: the card log has none from this rule.</p>\n");
        }
        Ok(Usage {
            counts: Some(counts),
            weeks,
        }) => {
            out.push_str(
                "<p class=\"hint\">Over all time, from the card log and the feedback on it.</p>\n",
            );
            tiles(out, counts);
            reasons(out, counts);
            trend(out, weeks);
        }
    }
    out.push_str("</section>\n");
}

/// A rate as a percentage with one decimal: `25.0%`.
pub(super) fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A rate, or a dash where none is known.
pub(super) fn maybe_percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_string(), percent)
}

/// The counts, one tile each.
fn tiles(out: &mut String, counts: &Counts) {
    let figures = [
        ("Cards issued", counts.cards.to_string()),
        ("Distinct patients", counts.patients.to_string()),
        ("Accepted", counts.accepted.to_string()),
        ("Overridden", counts.overridden.to_string()),
        ("No response", counts.no_response.to_string()),
        ("Acceptance rate", maybe_percent(counts.acceptance_rate)),
    ];
    out.push_str("<dl class=\"tiles\">\n");
    for (label, value) in figures {
        let _ = writeln!(out, "<div><dt>{label}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>\n");
}

/// The override reasons, most frequent first.
fn reasons(out: &mut String, counts: &Counts) {
    out.push_str("<h4>Overrides by reason</h4>\n");
    if counts.overridden == 0 {
        out.push_str("<p>No card was overridden.</p>\n");
        return;
    }
    if counts.top_override_reasons.is_empty() {
        out.push_str("<p>No override gave a coded reason.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"figures reasons\">\n<thead><tr><th scope=\"col\">Reason</th>\
         <th scope=\"col\" class=\"n\">Overrides</th></tr></thead>\n<tbody>\n",
    );
    for reason in &counts.top_override_reasons {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&reason_text(reason)),
            reason.count
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A reason's display, or its code where nothing names it.
fn reason_text(reason: &ReasonCount) -> String {
    reason
        .display
        .clone()
        .unwrap_or_else(|| reason.code.clone())
}

/// A week as ISO 8601 names it: `2026-W49`.
fn week_name(monday: Date) -> String {
    let (year, week, _) = monday.to_iso_week_date();
    format!("{year}-W{week:02}")
}

/// The chart's drawing box (SVG user units; CSS scales it to the width).
const CHART: Frame = Frame {
    width: 720.0,
    height: 210.0,
    left: 40.0,
    right: 8.0,
    top: 12.0,
    bottom: 30.0,
};

/// A chart's size and margins.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// The plot's height.
    fn plot_height(&self) -> f64 {
        self.height - self.top - self.bottom
    }

    /// The width each of `n` bars has, gap included.
    fn slot(&self, n: usize) -> f64 {
        (self.width - self.left - self.right) / n.max(1) as f64
    }

    /// The y of `value` on a scale up to `top`.
    fn y(&self, value: u64, top: u64) -> f64 {
        self.height - self.bottom - self.plot_height() * value as f64 / top.max(1) as f64
    }
}

/// The smallest of 1, 2, 5, 10, 20, 50… at least `n`: the scale's top.
fn nice_top(n: u64) -> u64 {
    let mut step = 1;
    loop {
        for top in [step, 2 * step, 5 * step] {
            if top >= n {
                return top;
            }
        }
        step *= 10;
    }
}

/// The weekly trend: the chart, then the same weeks as a table.
fn trend(out: &mut String, weeks: &[WeekCount]) {
    let (Some(first), Some(last)) = (weeks.first(), weeks.last()) else {
        return;
    };
    let cards: u64 = weeks.iter().map(|w| w.cards).sum();
    let overridden: u64 = weeks.iter().map(|w| w.overridden).sum();
    let _ = write!(
        out,
        "<h4 id=\"trend-heading\">Cards per week</h4>\n<figure class=\"trend\">\n\
         <svg class=\"trend-chart\" viewBox=\"0 0 {} {}\" role=\"img\" \
         aria-labelledby=\"trend-title trend-desc\">\n\
         <title id=\"trend-title\">Cards issued per ISO week, {} to {}</title>\n\
         <desc id=\"trend-desc\">{cards} cards in {} weeks, {overridden} of them overridden. \
         The table below lists every week.</desc>\n",
        CHART.width,
        CHART.height,
        week_name(first.monday),
        week_name(last.monday),
        weeks.len(),
    );
    let top = nice_top(weeks.iter().map(|w| w.cards).max().unwrap_or(0).max(1));
    axis(out, top);
    bars(out, weeks, top);
    out.push_str(
        "</svg>\n<figcaption><span class=\"key key-cards\"></span> cards issued \
         <span class=\"key key-overridden\"></span> of those, overridden \
         (weeks from Monday, UTC)</figcaption>\n</figure>\n",
    );
    week_table(out, weeks);
}

/// The y axis: grid lines at zero, half and the top, with their values.
fn axis(out: &mut String, top: u64) {
    let ticks = if top.is_multiple_of(2) {
        vec![0, top / 2, top]
    } else {
        vec![0, top]
    };
    for tick in ticks {
        let y = CHART.y(tick, top);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            CHART.left,
            CHART.width - CHART.right,
            CHART.left - 6.0,
            y + 4.0
        );
    }
}

/// One bar per week (cards, and overridden within it), each with a
/// tooltip; every fourth week named below, counted back from this one.
fn bars(out: &mut String, weeks: &[WeekCount], top: u64) {
    let slot = CHART.slot(weeks.len());
    let bottom = CHART.height - CHART.bottom;
    for (i, week) in weeks.iter().enumerate() {
        let x = CHART.left + slot * i as f64 + slot * 0.15;
        let width = slot * 0.7;
        let _ = write!(
            out,
            "<g class=\"week\"><title>{} (from {}): {} cards, {} overridden</title>",
            week_name(week.monday),
            week.monday,
            week.cards,
            week.overridden
        );
        for (class, value) in [("cards", week.cards), ("overridden", week.overridden)] {
            if value > 0 {
                let y = CHART.y(value, top);
                let _ = write!(
                    out,
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>",
                    bottom - y
                );
            }
        }
        if (weeks.len() - 1 - i).is_multiple_of(4) {
            let (_, number, _) = week.monday.to_iso_week_date();
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">W{number:02}</text>",
                x + width / 2.0,
                bottom + 18.0
            );
        }
        out.push_str("</g>\n");
    }
}

/// The chart's weeks as a table: its text alternative.
fn week_table(out: &mut String, weeks: &[WeekCount]) {
    out.push_str(
        "<details class=\"trend-table\">\n<summary>The weeks as a table</summary>\n\
         <table class=\"figures weeks\" aria-describedby=\"trend-heading\">\n\
         <thead><tr><th scope=\"col\">Week</th><th scope=\"col\">From</th>\
         <th scope=\"col\" class=\"n\">Cards</th><th scope=\"col\" class=\"n\">Overridden</th>\
         </tr></thead>\n<tbody>\n",
    );
    for week in weeks {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            week_name(week.monday),
            week.monday,
            week.cards,
            week.overridden
        );
    }
    out.push_str("</tbody>\n</table>\n</details>\n");
}

/// One row of an audit table: a rule's or a family's figures at a service.
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditLine<'a> {
    /// The family, when the table has a family column.
    pub family: Option<&'a str>,
    /// The service measured.
    pub service: &'a str,
    /// What was measured.
    pub measure: Measure,
    /// The figures.
    pub figures: &'a AuditFigures,
    /// The earlier period's, when comparing.
    pub before: Option<&'a AuditFigures>,
    /// The change, when comparing.
    pub difference: Option<&'a Difference>,
}

impl<'a> AuditLine<'a> {
    /// A rule's row, without a family column.
    fn of_rule(row: &'a RuleRow) -> AuditLine<'a> {
        AuditLine {
            family: None,
            service: &row.service,
            measure: row.measure,
            figures: &row.figures,
            before: row.before.as_ref(),
            difference: row.difference.as_ref(),
        }
    }

    /// A family's row, with its family.
    pub(super) fn of_family(row: &'a FamilyRow) -> AuditLine<'a> {
        AuditLine {
            family: Some(&row.family),
            service: &row.service,
            measure: row.measure,
            figures: &row.figures,
            before: row.before.as_ref(),
            difference: row.difference.as_ref(),
        }
    }
}

/// The rule's rows of the loaded audit.
fn audit_rows(out: &mut String, rule: &str, audit: &LoadedAudit) {
    out.push_str(
        "<section class=\"figures\" aria-labelledby=\"audit-rows\">\n\
         <h3 id=\"audit-rows\">Latest audit</h3>\n",
    );
    audit_source(out, audit);
    let lines: Vec<AuditLine<'_>> = audit
        .report
        .rules
        .iter()
        .filter(|row| row.id == rule)
        .map(AuditLine::of_rule)
        .collect();
    match lines.is_empty() {
        true => out.push_str("<p>The loaded audit does not measure this rule.</p>\n"),
        false => audit_table(out, &lines),
    }
    out.push_str("</section>\n");
}

/// Where the loaded audit came from, what it covered, and the link to it.
pub(super) fn audit_source(out: &mut String, audit: &LoadedAudit) {
    let _ = writeln!(
        out,
        "<p>{} patients, as of {} ({}). <a href=\"/console/audit\">The full audit</a></p>",
        audit.report.patients,
        esc(&audit.report.as_of),
        esc(&audit.origin)
    );
}

/// An audit table: eligible, flagged and rate with its 95 % interval, and
/// the earlier rate and the change when any line compares.
pub(super) fn audit_table(out: &mut String, lines: &[AuditLine<'_>]) {
    let family = lines.iter().any(|l| l.family.is_some());
    let comparing = lines.iter().any(|l| l.before.is_some());
    // Eight columns may be wider than a tablet: they scroll, not the page.
    out.push_str("<div class=\"table-wrap\">\n<table class=\"figures audit\">\n<thead><tr>");
    if family {
        out.push_str("<th scope=\"col\">Family</th>");
    }
    out.push_str(
        "<th scope=\"col\">Service</th><th scope=\"col\">Measure</th>\
         <th scope=\"col\" class=\"n\">Eligible</th><th scope=\"col\" class=\"n\">Flagged</th>\
         <th scope=\"col\" class=\"n\">Rate (95% CI)</th>",
    );
    if comparing {
        out.push_str(
            "<th scope=\"col\" class=\"n\">Before</th>\
             <th scope=\"col\" class=\"n\">Difference (95% CI)</th>",
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for line in lines {
        audit_line(out, line, family, comparing);
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

/// One row of [`audit_table`].
fn audit_line(out: &mut String, line: &AuditLine<'_>, family: bool, comparing: bool) {
    out.push_str("<tr>");
    if family {
        let _ = write!(out, "<td>{}</td>", esc(line.family.unwrap_or_default()));
    }
    let _ = write!(
        out,
        "<td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td>",
        esc(line.service),
        measure_text(line.measure),
        line.figures.eligible,
        line.figures.flagged,
        rate_with_interval(line.figures)
    );
    if comparing {
        let before = line.before.map_or_else(|| "–".to_string(), rate_text);
        let change = match (line.before, line.difference) {
            (Some(before), Some(d)) if before.eligible > 0 && line.figures.eligible > 0 => {
                change_text(d)
            }
            _ => "–".to_string(),
        };
        let _ = write!(
            out,
            "<td class=\"n\">{before}</td><td class=\"n\">{change}</td>"
        );
    }
    out.push_str("</tr>\n");
}

/// What a measure counts, in words.
fn measure_text(measure: Measure) -> &'static str {
    match measure {
        Measure::Point => "point prevalence (patients)",
        Measure::Orders => "orders replayed",
    }
}

/// An audit rate; a dash without eligible units, where nothing is known.
fn rate_text(figures: &AuditFigures) -> String {
    match figures.eligible {
        0 => "–".to_string(),
        _ => percent(figures.rate),
    }
}

/// An audit rate with its 95 % interval: `5.0% (3.5–7.2%)`.
fn rate_with_interval(figures: &AuditFigures) -> String {
    if figures.eligible == 0 {
        return "–".to_string();
    }
    let [low, high] = figures.ci95;
    format!(
        "{} ({:.1}–{})",
        percent(figures.rate),
        low * 100.0,
        percent(high)
    )
}

/// A change in percentage points with its interval: `-1.5 points (-4.4 to +1.3)`.
fn change_text(difference: &Difference) -> String {
    // + 0.0 turns a rounded -0.0 into 0.0, so no change reads "-0.0".
    let points = |change: f64| format!("{:+.1}", (change * 1000.0).round() / 10.0 + 0.0);
    let [low, high] = difference.ci95;
    format!(
        "{} points ({} to {})",
        points(difference.rate),
        points(low),
        points(high)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::example;
    use time::macros::date;

    fn loaded() -> LoadedAudit {
        LoadedAudit {
            report: example(),
            origin: "audit.json".into(),
        }
    }

    fn week(monday: Date, cards: u64, overridden: u64) -> WeekCount {
        WeekCount {
            monday,
            cards,
            overridden,
        }
    }

    #[test]
    fn the_trend_is_every_week_up_to_this_one() {
        // Thursday 2026-12-03 is in 2026-W49, whose Monday is 2026-11-30.
        let first = trend_start(date!(2026 - 12 - 03));
        assert_eq!(first, date!(2026 - 11 - 30) - Duration::weeks(25));
        assert_eq!(trend_start(date!(2026 - 11 - 30)), first);
        assert_eq!(trend_start(date!(2026 - 12 - 06)), first);
        let found = [week(first + Duration::weeks(3), 4, 1)];
        let weeks = every_week(first, &found);
        assert_eq!(weeks.len(), usize::from(TREND_WEEKS));
        assert_eq!(weeks[3], found[0]);
        assert_eq!(weeks[25], week(date!(2026 - 11 - 30), 0, 0));
        assert_eq!(week_name(weeks[25].monday), "2026-W49");
        assert_eq!(week_name(date!(2026 - 12 - 28)), "2026-W53");
    }

    #[test]
    fn the_scale_tops_at_a_round_number() {
        let tops: Vec<u64> = [0, 1, 2, 3, 5, 6, 11, 49, 51, 101].map(nice_top).into();
        assert_eq!(tops, [1, 1, 2, 5, 5, 10, 20, 50, 100, 200]);
    }

    fn counts() -> Counts {
        Counts {
            cards: 5,
            patients: 4,
            accepted: 1,
            overridden: 2,
            no_response: 2,
            acceptance_rate: Some(0.2),
            top_override_reasons: vec![ReasonCount {
                system: "s".into(),
                code: "declines".into(),
                display: Some("Patient <declines>".into()),
                count: 2,
            }],
        }
    }

    #[test]
    fn in_use_shows_the_counts_the_reasons_and_every_week() {
        let first = trend_start(date!(2026 - 12 - 03));
        let weeks = every_week(first, &[week(date!(2026 - 11 - 30), 5, 2)]);
        let usage = Ok(Usage {
            counts: Some(counts()),
            weeks,
        });
        let mut out = String::new();
        write(
            &mut out,
            "r",
            PageFigures {
                usage: &usage,
                audit: None,
            },
        );
        assert!(out.contains("<dt>Cards issued</dt><dd>5</dd>"), "{out}");
        assert!(out.contains("<dt>Acceptance rate</dt><dd>20.0%</dd>"));
        assert!(out.contains("<td>Patient &lt;declines&gt;</td><td class=\"n\">2</td>"));
        assert!(out.contains("<svg class=\"trend-chart\"") && out.contains("role=\"img\""));
        assert_eq!(out.matches("<g class=\"week\">").count(), 26);
        assert_eq!(out.matches("<rect class=\"cards\"").count(), 1);
        assert!(out.contains(
            "<tr><th scope=\"row\">2026-W49</th><td>2026-11-30</td><td class=\"n\">5</td><td class=\"n\">2</td></tr>"
        ));
        assert!(!out.contains("style="), "the policy forbids inline style");
        assert!(!out.contains("Latest audit"), "no audit loaded");
    }

    #[test]
    fn without_cards_or_store_the_section_says_so() {
        let mut out = String::new();
        in_use(
            &mut out,
            &Ok(Usage {
                counts: None,
                weeks: vec![],
            }),
        );
        assert!(out.contains("No cards issued yet"));
        let mut out = String::new();
        in_use(&mut out, &Err(StoreError::Url("no <store>".into())));
        assert!(out.contains("figures unavailable: invalid database URL: no &lt;store&gt;"));
    }

    #[tokio::test]
    async fn a_closed_store_is_an_error_not_a_panic() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-rules");
        let rules = crate::rules::load_dir(&dir).expect("bundled rules load");
        let now = OffsetDateTime::now_utc();
        let empty = usage(&store, &rules, "r", now).await.unwrap();
        assert!(empty.counts.is_none());
        assert_eq!(empty.weeks.len(), usize::from(TREND_WEEKS));
        store.close().await;
        assert!(usage(&store, &rules, "r", now).await.is_err());
    }

    #[test]
    fn the_rules_audit_rows_show_rates_intervals_and_changes() {
        let audit = loaded();
        let mut out = String::new();
        audit_rows(&mut out, "beers-benzodiazepines", &audit);
        assert!(out.contains("<h3 id=\"audit-rows\">Latest audit</h3>"));
        assert!(out.contains("(audit.json)") && out.contains("href=\"/console/audit\""));
        assert_eq!(out.matches("<tr><td><code>").count(), 2, "{out}");
        assert!(out.contains(
            "<td class=\"n\">540</td><td class=\"n\">27</td><td class=\"n\">5.0% (3.5–7.2%)</td>"
        ));
        assert!(
            out.contains(
                "<td class=\"n\">6.5%</td><td class=\"n\">-1.5 points (-4.4 to +1.3)</td>"
            ),
            "{out}"
        );
        assert!(!out.contains("<th scope=\"col\">Family</th>"));

        let mut out = String::new();
        audit_rows(&mut out, "cw-vitamin-d-screening", &audit);
        assert!(out.contains("<td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">–</td>"));
        let mut out = String::new();
        audit_rows(&mut out, "not-audited", &audit);
        assert!(out.contains("does not measure this rule"));
    }

    #[test]
    fn family_lines_have_a_family_column() {
        let audit = loaded();
        let lines: Vec<AuditLine<'_>> = audit
            .report
            .families
            .iter()
            .map(AuditLine::of_family)
            .collect();
        let mut out = String::new();
        audit_table(&mut out, &lines);
        assert!(out.contains("<th scope=\"col\">Family</th>"));
        assert!(out.contains(
            "<tr><td>choosing-wisely</td><td><code>choosing-wisely-order-sign</code></td>"
        ));
        assert!(out.contains("-20.0 points (-33.7 to -5.7)"), "{out}");
    }
}
