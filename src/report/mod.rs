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
//!
//! This module owns the report's types, its query and [`build`], which reads
//! the store; the figures are computed from the rows (`compute.rs`) and
//! written as text, CSV or JSON (`render.rs`), both pure.

mod compute;
mod render;

pub use compute::{compute, reason_display};
pub use render::{Format, render};

use crate::store::{Store, StoreError};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
