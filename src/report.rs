//! Reports: per-rule and per-family figures from the card log and the
//! feedback on it (`hookwise report`).
//!
//! The unit is a **rule card**: one rule's part in one issued card (a
//! combined card with three rules is three rule cards). Each rule card in
//! the window (by issue time) has one outcome:
//! - **accepted** when accepted feedback for its card names one of the
//!   rule's suggestions, or accepts the card as a whole (a single-rule card,
//!   or no suggestion ids);
//! - else **overridden** when overridden feedback exists for its card (an
//!   override covers every rule of the card), with the latest coded reason;
//! - else **no response**.
//!
//! The acceptance rate is accepted / rule cards. A family (the rule's
//! service) sums its rules' figures; its patients and distinct cards are
//! counted once. Free text (`userComment`) appears only when asked for.

use crate::store::{FeedbackOutcome, FeedbackRow, LoggedRule, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

/// Most override reasons listed per rule or family.
const TOP_REASONS: usize = 5;

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    /// Cards issued at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Cards issued before this time.
    pub until: Option<OffsetDateTime>,
    /// Include the clinicians' free-text comments (may hold PHI).
    pub include_comments: bool,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Start of the window (RFC 3339), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// End of the window (RFC 3339, exclusive), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// One entry per rule that issued cards, by family then rule id.
    pub rules: Vec<RuleFigures>,
    /// One entry per family.
    pub families: Vec<FamilyFigures>,
    /// Feedback received in the window for cards not in the card log.
    pub unknown_card_feedback: u64,
}

/// Figures shared by rules and families.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Rule cards issued.
    pub cards: u64,
    /// Distinct patients (by hash).
    pub patients: u64,
    /// Rule cards accepted.
    pub accepted: u64,
    /// Rule cards overridden.
    pub overridden: u64,
    /// Rule cards without feedback (or whose card's accepted suggestions were other rules').
    pub no_response: u64,
    /// accepted / cards; absent without cards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceptance_rate: Option<f64>,
    /// The most frequent coded override reasons.
    pub top_override_reasons: Vec<ReasonCount>,
}

/// One rule's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFigures {
    /// Rule id.
    pub rule: String,
    /// Rule family (service id).
    pub family: String,
    /// Rule versions seen in the window.
    pub versions: Vec<String>,
    /// The figures.
    #[serde(flatten)]
    pub counts: Counts,
    /// Free-text comments, only with `include_comments`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
}

/// One family's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyFigures {
    /// Family (service id).
    pub family: String,
    /// Rules that issued cards.
    pub rules: u64,
    /// Distinct cards (a combined card counts once here, once per rule in `cards`).
    pub distinct_cards: u64,
    /// The figures.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A coded override reason and how often it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// Code system.
    pub system: String,
    /// Code.
    pub code: String,
    /// Display text, from the feedback or the rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Rule cards overridden with it.
    pub count: u64,
}

/// A clinician's comment on a card (free text; may hold PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// The card's uuid.
    pub card: String,
    /// The override reason code, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The comment.
    pub comment: String,
}

/// Reads the card log and feedback of `query`'s window from `store` and
/// computes the report.
pub async fn build(store: &Store, query: &ReportQuery) -> Result<Report, StoreError> {
    let (from, to) = (query.since, query.until);
    let rows = store.logged_rules(from, to).await?;
    let feedback = store
        .feedback_rows(from, to, query.include_comments)
        .await?;
    let unknown = store.unknown_card_feedback(from, to).await?;
    let mut report = compute(&rows, &feedback);
    report.since = query.since.and_then(|t| t.format(&Rfc3339).ok());
    report.until = query.until.and_then(|t| t.format(&Rfc3339).ok());
    report.unknown_card_feedback = unknown;
    Ok(report)
}

/// The outcome of one rule card.
enum Outcome<'f> {
    Accepted,
    Overridden(Option<&'f FeedbackRow>),
    NoResponse,
}

/// The report's figures from card log rows and their feedback (pure).
pub fn compute(rows: &[LoggedRule], feedback: &[FeedbackRow]) -> Report {
    let mut by_card: HashMap<&str, Vec<&FeedbackRow>> = HashMap::new();
    for row in feedback {
        by_card.entry(row.card.as_str()).or_default().push(row);
    }
    let mut rules_on_card: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for row in rows {
        rules_on_card
            .entry(row.card.as_str())
            .or_default()
            .insert(row.rule.as_str());
    }
    let mut rules: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    let mut families: BTreeMap<&str, Tally> = BTreeMap::new();
    for row in rows {
        let single = rules_on_card
            .get(row.card.as_str())
            .is_none_or(|r| r.len() == 1);
        let cards_feedback = by_card
            .get(row.card.as_str())
            .map_or(&[][..], Vec::as_slice);
        let outcome = outcome_of(row, single, cards_feedback);
        rules
            .entry((row.family.as_str(), row.rule.as_str()))
            .or_default()
            .add(row, &outcome, cards_feedback);
        families
            .entry(row.family.as_str())
            .or_default()
            .add(row, &outcome, &[]);
    }
    Report {
        since: None,
        until: None,
        rules: rules
            .into_iter()
            .map(|((family, rule), tally)| tally.rule_figures(rule, family))
            .collect(),
        families: families
            .into_iter()
            .map(|(family, tally)| tally.family_figures(family))
            .collect(),
        unknown_card_feedback: 0,
    }
}

fn outcome_of<'f>(
    row: &LoggedRule,
    single_rule: bool,
    feedback: &[&'f FeedbackRow],
) -> Outcome<'f> {
    let accepted = feedback.iter().any(|f| {
        f.outcome == FeedbackOutcome::Accepted
            && (single_rule
                || f.accepted.is_empty()
                || f.accepted.iter().any(|s| row.suggestions.contains(s)))
    });
    if accepted {
        return Outcome::Accepted;
    }
    let overrides: Vec<&&FeedbackRow> = feedback
        .iter()
        .filter(|f| f.outcome == FeedbackOutcome::Overridden)
        .collect();
    if overrides.is_empty() {
        return Outcome::NoResponse;
    }
    let reason = overrides
        .iter()
        .filter(|f| f.reason.is_some())
        .max_by_key(|f| f.at)
        .map(|f| **f);
    Outcome::Overridden(reason)
}

/// Running figures of one rule or family.
#[derive(Default)]
struct Tally {
    cards: u64,
    distinct_cards: BTreeSet<String>,
    patients: BTreeSet<String>,
    rules: BTreeSet<String>,
    versions: BTreeSet<String>,
    accepted: u64,
    overridden: u64,
    no_response: u64,
    reasons: BTreeMap<(String, String), (Option<String>, u64)>,
    comments: Vec<Comment>,
}

impl Tally {
    fn add(&mut self, row: &LoggedRule, outcome: &Outcome<'_>, feedback: &[&FeedbackRow]) {
        self.cards += 1;
        self.distinct_cards.insert(row.card.clone());
        self.patients.insert(row.patient.clone());
        self.rules.insert(row.rule.clone());
        self.versions.insert(row.version.clone());
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::NoResponse => self.no_response += 1,
            Outcome::Overridden(reason) => {
                self.overridden += 1;
                if let Some((system, code, display)) = reason.and_then(|f| f.reason.as_ref()) {
                    let entry = self
                        .reasons
                        .entry((system.clone(), code.clone()))
                        .or_insert((None, 0));
                    entry.0 = entry.0.take().or_else(|| display.clone());
                    entry.1 += 1;
                }
            }
        }
        for f in feedback {
            if let Some(comment) = &f.comment {
                let reason = f.reason.as_ref().map(|(_, code, _)| code.clone());
                self.comments.push(Comment {
                    card: row.card.clone(),
                    reason,
                    comment: comment.clone(),
                });
            }
        }
    }

    fn counts(&self) -> Counts {
        let mut reasons: Vec<ReasonCount> = self
            .reasons
            .iter()
            .map(|((system, code), (display, count))| ReasonCount {
                system: system.clone(),
                code: code.clone(),
                display: display.clone(),
                count: *count,
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        reasons.truncate(TOP_REASONS);
        Counts {
            cards: self.cards,
            patients: self.patients.len() as u64,
            accepted: self.accepted,
            overridden: self.overridden,
            no_response: self.no_response,
            acceptance_rate: (self.cards > 0).then(|| self.accepted as f64 / self.cards as f64),
            top_override_reasons: reasons,
        }
    }

    fn rule_figures(self, rule: &str, family: &str) -> RuleFigures {
        RuleFigures {
            rule: rule.to_string(),
            family: family.to_string(),
            counts: self.counts(),
            versions: self.versions.into_iter().collect(),
            comments: self.comments,
        }
    }

    fn family_figures(self, family: &str) -> FamilyFigures {
        FamilyFigures {
            family: family.to_string(),
            rules: self.rules.len() as u64,
            distinct_cards: self.distinct_cards.len() as u64,
            counts: self.counts(),
        }
    }
}

impl Report {
    /// Fills missing reason displays with `display(rule, family, system,
    /// code)`; `rule` is `None` for a family's figures.
    pub fn fill_displays(
        &mut self,
        display: impl Fn(Option<&str>, &str, &str, &str) -> Option<String>,
    ) {
        for rule in &mut self.rules {
            for reason in rule
                .counts
                .top_override_reasons
                .iter_mut()
                .filter(|r| r.display.is_none())
            {
                reason.display =
                    display(Some(&rule.rule), &rule.family, &reason.system, &reason.code);
            }
        }
        // A family shows a reason as its rules did (the rule giving it most often).
        for family in &mut self.families {
            for reason in family
                .counts
                .top_override_reasons
                .iter_mut()
                .filter(|r| r.display.is_none())
            {
                let of_rules = self
                    .rules
                    .iter()
                    .filter(|r| r.family == family.family)
                    .flat_map(|r| &r.counts.top_override_reasons)
                    .filter(|r| {
                        r.system == reason.system && r.code == reason.code && r.display.is_some()
                    })
                    .max_by_key(|r| r.count);
                reason.display = of_rules
                    .and_then(|r| r.display.clone())
                    .or_else(|| display(None, &family.family, &reason.system, &reason.code));
            }
        }
    }
}

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

/// Parses `--since`/`--until`: a date (`2026-01-31`) or an RFC 3339 time.
/// A date as `until` includes that whole day.
pub fn parse_bound(text: &str, until: bool) -> Result<OffsetDateTime, String> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(text, &format)
        .map_err(|_| format!("{text:?} is not a date (2026-01-31) or an RFC 3339 time"))?;
    let date = if until {
        date.next_day().unwrap_or(date)
    } else {
        date
    };
    Ok(date.with_time(Time::MIDNIGHT).assume_utc())
}

/// The display of an override reason as the rules offer it: the rule's own
/// reasons first, then its family's combined card, then any rule of the family.
pub fn reason_display(
    rules: &crate::rules::RuleSet,
    rule: Option<&str>,
    family: &str,
    system: &str,
    code: &str,
) -> Option<String> {
    let family = rules.family(family);
    let own = rule
        .and_then(|id| rules.rules.iter().find(|r| r.id == id))
        .map(|r| &r.card.override_reasons);
    let combined = family
        .and_then(|f| f.patient_view_card.as_ref())
        .map(|t| &t.override_reasons);
    let members = family.into_iter().flat_map(|f| {
        f.rules
            .iter()
            .map(|i| &rules.rules[*i].card.override_reasons)
    });
    own.into_iter()
        .chain(combined)
        .chain(members)
        .flatten()
        .find(|c| c.system == system && c.code == code)
        .and_then(|c| c.display.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(card: &str, rule: &str, patient: &str, suggestions: &[&str]) -> LoggedRule {
        LoggedRule {
            card: card.into(),
            rule: rule.into(),
            version: "1.0.0".into(),
            family: if rule.starts_with("cw") {
                "choosing-wisely"
            } else {
                "deprescribing"
            }
            .into(),
            patient: patient.into(),
            suggestions: suggestions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fb(
        card: &str,
        outcome: FeedbackOutcome,
        at: i64,
        accepted: &[&str],
        reason: Option<&str>,
    ) -> FeedbackRow {
        FeedbackRow {
            card: card.into(),
            outcome,
            at,
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            reason: reason.map(|r| ("sys".into(), r.into(), None)),
            comment: None,
        }
    }

    #[test]
    fn outcomes_are_attributed_per_rule() {
        let rows = [
            logged("c1", "cw-a", "p1", &["s1"]),
            logged("c2", "cw-a", "p1", &["s2"]),
            logged("c3", "cw-a", "p2", &[]),
            logged("r1", "rx-b", "p3", &["sb"]),
            logged("r1", "rx-c", "p3", &["sc"]),
        ];
        let feedback = [
            fb("c1", FeedbackOutcome::Accepted, 1, &["s1"], None),
            fb("c2", FeedbackOutcome::Overridden, 1, &[], Some("old")),
            fb("c2", FeedbackOutcome::Overridden, 2, &[], Some("new")),
            fb("r1", FeedbackOutcome::Accepted, 1, &["sc"], None),
        ];
        let report = compute(&rows, &feedback);
        let a = &report.rules[0].counts;
        assert_eq!(
            (a.cards, a.patients, a.accepted, a.overridden, a.no_response),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(
            a.top_override_reasons[0].code, "new",
            "the latest reason counts"
        );
        let (b, c) = (&report.rules[1].counts, &report.rules[2].counts);
        assert_eq!(
            (b.accepted, b.no_response),
            (0, 1),
            "another rule's suggestion was accepted"
        );
        assert_eq!((c.accepted, c.acceptance_rate), (1, Some(1.0)));
        let family = &report.families[1];
        assert_eq!(
            (
                family.rules,
                family.distinct_cards,
                family.counts.cards,
                family.counts.patients
            ),
            (2, 1, 2, 1)
        );
    }

    #[test]
    fn bounds_are_dates_or_times() {
        assert_eq!(
            parse_bound("2026-01-31", false).unwrap().to_string(),
            "2026-01-31 0:00:00.0 +00:00:00"
        );
        assert_eq!(
            parse_bound("2026-01-31", true).unwrap().to_string(),
            "2026-02-01 0:00:00.0 +00:00:00"
        );
        assert!(parse_bound("2026-01-31T10:00:00+01:00", true).is_ok());
        assert!(parse_bound("January", false).is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
