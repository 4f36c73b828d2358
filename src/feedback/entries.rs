//! Feedback entries: validation of a CDS Hooks 2.0 feedback batch, the
//! idempotency key, and durable storage.
//!
//! Each entry is checked on its own and every problem is named by JSON path
//! (`feedback[2].outcome`), so one bad entry does not hold back the good ones.
//!
//! **Idempotency key**: SHA-256 over the card uuid, the outcome, the outcome
//! timestamp (as a UTC instant in milliseconds, so `…Z` and `+00:00` agree)
//! and the sorted, de-duplicated accepted suggestion ids. The same feedback
//! posted twice is stored once; the override reason and comment are not part
//! of the key (the first one stored is kept).

use super::{Store, StoreError, millis, on_pool};
use crate::cds::Coding;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What the clinician did with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Took one or more suggestions.
    Accepted,
    /// Dismissed the card.
    Overridden,
}

impl FeedbackOutcome {
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

/// A batch after validation: the good entries (with their index in the
/// batch) and a problem per bad field, as (JSON path, message).
#[derive(Debug, Default)]
pub struct ParsedBatch {
    /// Valid entries.
    pub entries: Vec<(usize, Feedback)>,
    /// Problems of the invalid entries.
    pub problems: Vec<(String, String)>,
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

/// Validates `{"feedback": [...]}`. The `Err` is a problem with the batch
/// itself (path, message); entry problems are in [`ParsedBatch::problems`].
pub fn parse_batch(body: &Value) -> Result<ParsedBatch, (String, String)> {
    let Some(list) = body.get("feedback").and_then(Value::as_array) else {
        return Err((
            "feedback".into(),
            "must be an array of feedback entries".into(),
        ));
    };
    let mut batch = ParsedBatch::default();
    for (i, entry) in list.iter().enumerate() {
        let mut problems = Problems {
            base: format!("feedback[{i}]"),
            list: Vec::new(),
        };
        match entry.as_object().map(|e| parse_entry(e, &mut problems)) {
            None => problems.add("", "must be a feedback object"),
            Some(Some(feedback)) if problems.list.is_empty() => batch.entries.push((i, feedback)),
            Some(_) => {}
        }
        batch.problems.append(&mut problems.list);
    }
    Ok(batch)
}

/// Problems of one entry, with paths under its `base`.
struct Problems {
    base: String,
    list: Vec<(String, String)>,
}

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.list
            .push((format!("{}{field}", self.base), message.into()));
    }
}

fn parse_entry(entry: &Map<String, Value>, problems: &mut Problems) -> Option<Feedback> {
    let card = required_str(entry, "card", problems).filter(|card| {
        let ok = uuid::Uuid::parse_str(card).is_ok();
        if !ok {
            problems.add(".card", "must be the card's uuid");
        }
        ok
    });
    let outcome = required_str(entry, "outcome", problems).and_then(|o| match o {
        "accepted" => Some(FeedbackOutcome::Accepted),
        "overridden" => Some(FeedbackOutcome::Overridden),
        _ => {
            problems.add(".outcome", "must be \"accepted\" or \"overridden\"");
            None
        }
    });
    let outcome_at = required_str(entry, "outcomeTimestamp", problems).and_then(|t| {
        let parsed = OffsetDateTime::parse(t, &Rfc3339).ok();
        if parsed.is_none() {
            problems.add(
                ".outcomeTimestamp",
                "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T10:00:00Z",
            );
        }
        parsed
    });
    let accepted_suggestions = accepted_suggestions(entry, outcome, problems);
    let override_reason = override_reason(entry, outcome, problems);
    Some(Feedback {
        card: card?.to_string(),
        outcome: outcome?,
        accepted_suggestions: accepted_suggestions?,
        override_reason: override_reason?,
        outcome_at: outcome_at?,
    })
}

fn required_str<'e>(
    entry: &'e Map<String, Value>,
    field: &str,
    problems: &mut Problems,
) -> Option<&'e str> {
    match entry.get(field) {
        None | Some(Value::Null) => problems.add(&format!(".{field}"), "is required"),
        Some(Value::String(s)) => return Some(s),
        Some(_) => problems.add(&format!(".{field}"), "must be a string"),
    }
    None
}

/// `acceptedSuggestions`: required (an array of `{id}`) when accepted; when
/// overridden, absent or empty.
fn accepted_suggestions(
    entry: &Map<String, Value>,
    outcome: Option<FeedbackOutcome>,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let items = match entry.get("acceptedSuggestions") {
        None | Some(Value::Null) => {
            if outcome == Some(FeedbackOutcome::Accepted) {
                problems.add(
                    ".acceptedSuggestions",
                    "is required when outcome is \"accepted\"",
                );
                return None;
            }
            return Some(Vec::new());
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.add(
                ".acceptedSuggestions",
                "must be an array of {\"id\": ...} objects",
            );
            return None;
        }
    };
    if outcome == Some(FeedbackOutcome::Overridden) && !items.is_empty() {
        problems.add(
            ".acceptedSuggestions",
            "must be empty when outcome is \"overridden\"",
        );
        return None;
    }
    let mut ids = Vec::new();
    for (j, item) in items.iter().enumerate() {
        match item.get("id") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => ids.push(id.clone()),
            _ => problems.add(
                &format!(".acceptedSuggestions[{j}].id"),
                "must be the suggestion's uuid (a string)",
            ),
        }
    }
    (ids.len() == items.len()).then_some(ids)
}

/// `overrideReason`: optional, only with overridden; `reason` is a Coding
/// with `system` and `code`, `userComment` a string.
fn override_reason(
    entry: &Map<String, Value>,
    outcome: Option<FeedbackOutcome>,
    problems: &mut Problems,
) -> Option<Option<OverrideReason>> {
    let reason = match entry.get("overrideReason") {
        None | Some(Value::Null) => return Some(None),
        Some(Value::Object(reason)) => reason,
        Some(_) => {
            problems.add(
                ".overrideReason",
                "must be an object with reason and/or userComment",
            );
            return None;
        }
    };
    if outcome == Some(FeedbackOutcome::Accepted) {
        problems.add(
            ".overrideReason",
            "is only allowed when outcome is \"overridden\"",
        );
        return None;
    }
    let before = problems.list.len();
    let coding = match reason.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::Object(coding)) => coding_of(coding, problems),
        Some(_) => {
            problems.add(
                ".overrideReason.reason",
                "must be a Coding with system and code",
            );
            None
        }
    };
    let user_comment = match reason.get("userComment") {
        None | Some(Value::Null) => None,
        Some(Value::String(comment)) => Some(comment.clone()),
        Some(_) => {
            problems.add(".overrideReason.userComment", "must be a string");
            None
        }
    };
    (problems.list.len() == before).then_some(Some(OverrideReason {
        reason: coding,
        user_comment,
    }))
}

fn coding_of(coding: &Map<String, Value>, problems: &mut Problems) -> Option<Coding> {
    let text = |field: &str, problems: &mut Problems| match coding.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            problems.add(
                &format!(".overrideReason.reason.{field}"),
                "is required (a non-empty string)",
            );
            None
        }
    };
    let system = text("system", problems);
    let code = text("code", problems);
    let display = coding
        .get("display")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(Coding {
        system: system?,
        code: code?,
        display,
    })
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
                    .bind(entry.outcome.as_str())
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

    /// The feedback stored for a card, oldest outcome first.
    pub async fn feedback_for_card(&self, card: &str) -> Result<Vec<StoredFeedback>, StoreError> {
        let sql = "SELECT service, outcome, outcome_at, accepted_suggestions, override_system, override_code, \
                   user_comment, unknown_card FROM feedback WHERE card_uuid = $1 ORDER BY outcome_at, id";
        type Row = (
            String,
            String,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
        );
        let rows: Vec<Row> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(card).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(
                |(service, outcome, at, accepted, system, code, comment, unknown)| StoredFeedback {
                    service,
                    outcome,
                    outcome_at: super::from_millis(at),
                    accepted_suggestions: accepted.split_whitespace().map(str::to_string).collect(),
                    override_reason: system.zip(code),
                    user_comment: comment,
                    unknown_card: unknown,
                },
            )
            .collect())
    }
}

/// A stored feedback entry, as read back.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFeedback {
    /// Service it was posted to.
    pub service: String,
    /// `accepted` or `overridden`.
    pub outcome: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CARD: &str = "f8278164-e75b-5595-a7f6-98328219e704";

    fn paths(body: Value) -> Vec<String> {
        parse_batch(&body)
            .unwrap()
            .problems
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn valid_entries_parse() {
        let batch = parse_batch(&json!({"feedback": [
            {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00+01:00",
             "overrideReason": {"reason": {"system": "x", "code": "y", "display": "Y"}, "userComment": "secret"}},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"}
        ]}))
        .unwrap();
        assert!(batch.problems.is_empty(), "{:?}", batch.problems);
        assert_eq!(batch.entries.len(), 3);
        let reason = batch.entries[1].1.override_reason.clone().unwrap();
        assert_eq!(reason.reason.unwrap().code, "y");
        assert!(
            !format!("{:?}", batch.entries[1]).contains("secret"),
            "Debug hides the comment"
        );
    }

    #[test]
    fn each_bad_field_is_named_by_path() {
        let got = paths(json!({"feedback": [
            {"card": CARD, "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": 7, "outcome": "accepted", "acceptedSuggestions": [{"id": 1}], "outcomeTimestamp": "yesterday"},
            {"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": "not-a-uuid", "outcome": "maybe", "outcomeTimestamp": "2026-01-01"},
            "text",
            {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [], "outcomeTimestamp": "2026-01-01T10:00:00Z",
             "overrideReason": {"userComment": "x"}},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z",
             "overrideReason": {"reason": {"code": "c"}, "userComment": 3}}
        ]}));
        assert_eq!(
            got,
            [
                "feedback[0].outcome",
                "feedback[1].card",
                "feedback[1].outcomeTimestamp",
                "feedback[1].acceptedSuggestions[0].id",
                "feedback[2].acceptedSuggestions",
                "feedback[3].card",
                "feedback[3].outcome",
                "feedback[3].outcomeTimestamp",
                "feedback[4]",
                "feedback[5].overrideReason",
                "feedback[6].overrideReason.reason.system",
                "feedback[6].overrideReason.userComment",
            ]
        );
        assert!(parse_batch(&json!({"feedback": {}})).is_err());
    }

    #[test]
    fn the_key_ignores_spelling_but_not_substance() {
        let entry = |at: &str, ids: &[&str]| Feedback {
            card: CARD.into(),
            outcome: FeedbackOutcome::Accepted,
            accepted_suggestions: ids.iter().map(|s| s.to_string()).collect(),
            override_reason: None,
            outcome_at: OffsetDateTime::parse(at, &Rfc3339).unwrap(),
        };
        let key = idempotency_key(&entry("2026-01-01T10:00:00Z", &["a", "b"]));
        assert_eq!(
            key,
            idempotency_key(&entry("2026-01-01T11:00:00+01:00", &["b", "a"]))
        );
        assert_ne!(
            key,
            idempotency_key(&entry("2026-01-01T10:00:01Z", &["a", "b"]))
        );
        assert_ne!(key, idempotency_key(&entry("2026-01-01T10:00:00Z", &["a"])));
    }
}
