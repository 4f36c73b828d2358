//! The feedback table: entries stored durably, once per idempotency key,
//! and read back.
//!
//! **Idempotency key**: SHA-256 over the card uuid, the outcome, the outcome
//! timestamp (as a UTC instant in milliseconds, so `…Z` and `+00:00` agree)
//! and the sorted, de-duplicated accepted suggestion ids. The same feedback
//! posted twice is stored once; the override reason and comment are not part
//! of the key (the first one stored is kept).

use super::{Store, StoreError, millis, on_pool};
use crate::cds::Coding;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use time::OffsetDateTime;

/// What the clinician did with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Took one or more suggestions.
    Accepted,
    /// Dismissed the card.
    Overridden,
}

impl FeedbackOutcome {
    /// Every outcome.
    pub const ALL: [FeedbackOutcome; 2] = [FeedbackOutcome::Accepted, FeedbackOutcome::Overridden];

    /// Parses a wire or storage name.
    pub fn parse(name: &str) -> Option<FeedbackOutcome> {
        FeedbackOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == name)
    }

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackOutcome::Accepted => "accepted",
            FeedbackOutcome::Overridden => "overridden",
        }
    }
}

/// Why a card was overridden. `user_comment` is free text that may hold PHI:
/// it is stored but never logged, and `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct OverrideReason {
    /// The coded reason (one of the card's `overrideReasons`, normally).
    pub reason: Option<Coding>,
    /// The clinician's comment.
    pub user_comment: Option<String>,
}

impl fmt::Debug for OverrideReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverrideReason")
            .field("reason", &self.reason)
            .field(
                "user_comment",
                &self.user_comment.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One valid feedback entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The card's uuid.
    pub card: String,
    /// Accepted or overridden.
    pub outcome: FeedbackOutcome,
    /// Ids of the suggestions taken (accepted only).
    pub accepted_suggestions: Vec<String>,
    /// Why it was overridden (overridden only).
    pub override_reason: Option<OverrideReason>,
    /// When the clinician acted.
    pub outcome_at: OffsetDateTime,
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Entries stored now.
    pub stored: u64,
    /// Entries already stored before (same idempotency key).
    pub duplicates: u64,
    /// Of the stored, those for a card not in the card log (flagged `unknown_card`).
    pub unknown_cards: u64,
}

/// The idempotency key of an entry (see the module docs).
pub fn idempotency_key(feedback: &Feedback) -> String {
    let mut accepted: Vec<&str> = feedback
        .accepted_suggestions
        .iter()
        .map(String::as_str)
        .collect();
    accepted.sort_unstable();
    accepted.dedup();
    let mut hash = Sha256::new();
    for part in [
        feedback.card.as_str(),
        feedback.outcome.as_str(),
        &millis(feedback.outcome_at).to_string(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.update(accepted.join(",").as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Stores feedback for `service` durably (committed, and on SQLite
    /// fsynced) before returning. Entries whose card is not in `known` are
    /// flagged `unknown_card`. Duplicates (same idempotency key) are counted,
    /// not stored again.
    pub async fn record_feedback(
        &self,
        service: &str,
        entries: &[Feedback],
        known: &HashSet<String>,
        received_at: OffsetDateTime,
    ) -> Result<(Receipt, Vec<bool>), StoreError> {
        let sql = "INSERT INTO feedback (id, service, card_uuid, outcome, outcome_at, accepted_suggestions, \
                   override_system, override_code, override_display, user_comment, unknown_card, received_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING";
        let mut receipt = Receipt::default();
        let mut stored_now = Vec::with_capacity(entries.len());
        on_pool!(self, pool => {
            let mut tx = self.begin_write(pool).await?;
            for entry in entries {
                let unknown = !known.contains(&entry.card);
                let reason = entry.override_reason.as_ref();
                let coding = reason.and_then(|r| r.reason.as_ref());
                let done = sqlx::query(sql)
                    .bind(idempotency_key(entry))
                    .bind(service)
                    .bind(&entry.card)
                    .bind(entry.outcome)
                    .bind(millis(entry.outcome_at))
                    .bind(entry.accepted_suggestions.join(" "))
                    .bind(coding.map(|c| c.system.as_str()))
                    .bind(coding.map(|c| c.code.as_str()))
                    .bind(coding.and_then(|c| c.display.as_deref()))
                    .bind(reason.and_then(|r| r.user_comment.as_deref()))
                    .bind(unknown)
                    .bind(millis(received_at))
                    .execute(&mut *tx)
                    .await?;
                stored_now.push(done.rows_affected() == 1);
                if done.rows_affected() == 1 {
                    receipt.stored += 1;
                    receipt.unknown_cards += u64::from(unknown);
                } else {
                    receipt.duplicates += 1;
                }
            }
            tx.commit().await?;
        });
        Ok((receipt, stored_now))
    }
}
