//! The report's reads: card log rows and the feedback on them in a window,
//! as [`crate::report`] computes its figures from them.

use super::{FeedbackOutcome, Store, StoreError, millis, on_pool, split_words};
use time::OffsetDateTime;

/// A card log row as the report reads it.
#[derive(Debug, Clone)]
pub struct LoggedRule {
    /// Card uuid.
    pub card: String,
    /// Rule id.
    pub rule: String,
    /// Rule version.
    pub version: String,
    /// Family.
    pub family: String,
    /// Patient hash.
    pub patient: String,
    /// The rule's suggestion uuids on the card.
    pub suggestions: Vec<String>,
}

/// A feedback row as the report reads it.
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    /// Card uuid.
    pub card: String,
    /// Accepted or overridden.
    pub outcome: FeedbackOutcome,
    /// Outcome time (Unix ms), to pick the latest reason.
    pub at: i64,
    /// Accepted suggestion ids.
    pub accepted: Vec<String>,
    /// Coded reason: system, code, display.
    pub reason: Option<(String, String, Option<String>)>,
    /// Free text, when asked for.
    pub comment: Option<String>,
}

impl Store {
    /// The card log rows issued in `[from, to)`, once per (card, rule).
    pub async fn logged_rules(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<Vec<LoggedRule>, StoreError> {
        let (from, to) = window(from, to);
        let sql = "SELECT DISTINCT card_uuid, rule_id, rule_version, family, patient_hash, suggestion_uuids \
                   FROM card_log WHERE issued_at >= $1 AND issued_at < $2";
        let rows: Vec<LoggedRuleRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(from).bind(to).fetch_all(pool).await?);
        Ok(rows.into_iter().map(LoggedRule::from).collect())
    }

    /// The feedback on cards issued in `[from, to)`; comments only when asked for.
    pub async fn feedback_rows(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        comments: bool,
    ) -> Result<Vec<FeedbackRow>, StoreError> {
        let (from, to) = window(from, to);
        // Comments are not even read unless asked for.
        let sql = if comments {
            "SELECT card_uuid, outcome, outcome_at, accepted_suggestions, override_system, override_code, \
             override_display, user_comment FROM feedback WHERE card_uuid IN \
             (SELECT card_uuid FROM card_log WHERE issued_at >= $1 AND issued_at < $2)"
        } else {
            "SELECT card_uuid, outcome, outcome_at, accepted_suggestions, override_system, override_code, \
             override_display, NULL AS user_comment FROM feedback WHERE card_uuid IN \
             (SELECT card_uuid FROM card_log WHERE issued_at >= $1 AND issued_at < $2)"
        };
        let rows: Vec<ReportFeedbackRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(from).bind(to).fetch_all(pool).await?);
        Ok(rows.into_iter().map(FeedbackRow::from).collect())
    }

    /// Feedback received in `[from, to)` for cards not in the card log.
    pub async fn unknown_card_feedback(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<u64, StoreError> {
        let (from, to) = window(from, to);
        let sql = "SELECT COUNT(*) FROM feedback f WHERE f.received_at >= $1 AND f.received_at < $2 \
                   AND NOT EXISTS (SELECT 1 FROM card_log c WHERE c.card_uuid = f.card_uuid)";
        let (unknown,): (i64,) =
            on_pool!(self, pool => sqlx::query_as(sql).bind(from).bind(to).fetch_one(pool).await?);
        Ok(unknown as u64)
    }
}

/// A `card_log` row as [`Store::logged_rules`] selects it.
#[derive(sqlx::FromRow)]
struct LoggedRuleRow {
    card_uuid: String,
    rule_id: String,
    rule_version: String,
    family: String,
    patient_hash: String,
    suggestion_uuids: String,
}

impl From<LoggedRuleRow> for LoggedRule {
    fn from(row: LoggedRuleRow) -> LoggedRule {
        LoggedRule {
            card: row.card_uuid,
            rule: row.rule_id,
            version: row.rule_version,
            family: row.family,
            patient: row.patient_hash,
            suggestions: split_words(&row.suggestion_uuids),
        }
    }
}

/// A `feedback` row as [`Store::feedback_rows`] selects it.
#[derive(sqlx::FromRow)]
struct ReportFeedbackRow {
    card_uuid: String,
    outcome: FeedbackOutcome,
    outcome_at: i64,
    accepted_suggestions: String,
    override_system: Option<String>,
    override_code: Option<String>,
    override_display: Option<String>,
    user_comment: Option<String>,
}

impl From<ReportFeedbackRow> for FeedbackRow {
    fn from(row: ReportFeedbackRow) -> FeedbackRow {
        let coded = row.override_system.zip(row.override_code);
        FeedbackRow {
            card: row.card_uuid,
            outcome: row.outcome,
            at: row.outcome_at,
            accepted: split_words(&row.accepted_suggestions),
            reason: coded.map(|(system, code)| (system, code, row.override_display)),
            comment: row.user_comment,
        }
    }
}

/// A report window as stored instants; an open end is unbounded.
fn window(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> (i64, i64) {
    (from.map_or(i64::MIN, millis), to.map_or(i64::MAX, millis))
}
