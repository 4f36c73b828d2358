//! Queries only the tests use, kept out of the store's production API.
//!
//! They stay in the library, not behind `#[cfg(test)]`, because the
//! integration tests link the library as built for production; a cargo
//! feature for them would build the crate twice in every test run.

use super::{
    CardLogEntry, FeedbackOutcome, Pool, Store, StoreError, from_millis, on_pool, split_words,
};
use crate::engine::History;
use std::fmt;
use time::OffsetDateTime;

impl Store {
    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Counts of what the store holds: card log rows and feedback rows.
    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let sql = "SELECT (SELECT COUNT(*) FROM card_log) AS card_log_rows, \
                   (SELECT COUNT(*) FROM feedback) AS feedback, \
                   (SELECT COUNT(*) FROM feedback WHERE unknown_card) AS unknown_card_feedback";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).fetch_one(pool).await?))
    }

    /// The history of `patient_hash` and `encounter_hash` (both keyed hashes,
    /// as in the card log) since `since`. Card log rows are written
    /// asynchronously: a card issued a moment ago may not be here yet.
    pub async fn history(
        &self,
        patient_hash: &str,
        encounter_hash: Option<&str>,
        since: OffsetDateTime,
    ) -> Result<History, StoreError> {
        let overridden = self.overrides(patient_hash, since).await?;
        let shown_at_order_select = match encounter_hash {
            Some(encounter) => self.shown_at_order_select(encounter, since).await?,
            None => Vec::new(),
        };
        Ok(History {
            overridden,
            shown_at_order_select,
        })
    }

    /// The card log rows of one card, by rule and draft order.
    pub async fn card_log_for(&self, card_uuid: &str) -> Result<Vec<CardLogEntry>, StoreError> {
        let mut logs = self.card_logs_for(&[card_uuid]).await?;
        Ok(logs.remove(card_uuid).unwrap_or_default())
    }

    /// The feedback stored for a card, oldest outcome first.
    pub async fn feedback_for_card(&self, card: &str) -> Result<Vec<StoredFeedback>, StoreError> {
        let sql = "SELECT service, outcome, outcome_at, accepted_suggestions, override_system, override_code, \
                   user_comment, unknown_card FROM feedback WHERE card_uuid = $1 ORDER BY outcome_at, id";
        let rows: Vec<StoredFeedbackRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(card).fetch_all(pool).await?);
        Ok(rows.into_iter().map(StoredFeedback::from).collect())
    }
}

/// What the store holds, for tests and operators. The counts are read as
/// the `BIGINT` both backends count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct StoreCounts {
    /// Rows in the card log (one per card, rule and draft order).
    #[sqlx(try_from = "i64")]
    pub card_log_rows: u64,
    /// Distinct feedback events.
    #[sqlx(try_from = "i64")]
    pub feedback: u64,
    /// Of which for cards not in the log.
    #[sqlx(try_from = "i64")]
    pub unknown_card_feedback: u64,
}

/// A stored feedback entry, as read back.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFeedback {
    /// Service it was posted to.
    pub service: String,
    /// Accepted or overridden.
    pub outcome: FeedbackOutcome,
    /// When the clinician acted.
    pub outcome_at: OffsetDateTime,
    /// Accepted suggestion ids.
    pub accepted_suggestions: Vec<String>,
    /// Override reason (system, code).
    pub override_reason: Option<(String, String)>,
    /// Free text; may hold PHI.
    pub user_comment: Option<String>,
    /// Whether the card was unknown when the feedback arrived.
    pub unknown_card: bool,
}

/// A `feedback` row as [`Store::feedback_for_card`] selects it.
#[derive(sqlx::FromRow)]
struct StoredFeedbackRow {
    service: String,
    outcome: FeedbackOutcome,
    outcome_at: i64,
    accepted_suggestions: String,
    override_system: Option<String>,
    override_code: Option<String>,
    user_comment: Option<String>,
    unknown_card: bool,
}

impl From<StoredFeedbackRow> for StoredFeedback {
    fn from(row: StoredFeedbackRow) -> StoredFeedback {
        StoredFeedback {
            service: row.service,
            outcome: row.outcome,
            outcome_at: from_millis(row.outcome_at),
            accepted_suggestions: split_words(&row.accepted_suggestions),
            override_reason: row.override_system.zip(row.override_code),
            user_comment: row.user_comment,
            unknown_card: row.unknown_card,
        }
    }
}

impl fmt::Debug for StoredFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredFeedback")
            .field("service", &self.service)
            .field("outcome", &self.outcome)
            .field("outcome_at", &self.outcome_at)
            .field("accepted_suggestions", &self.accepted_suggestions)
            .field("override_reason", &self.override_reason)
            .field(
                "user_comment",
                &self.user_comment.as_ref().map(|_| "<redacted>"),
            )
            .field("unknown_card", &self.unknown_card)
            .finish()
    }
}
