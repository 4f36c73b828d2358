//! `POST /cds-services/{id}/feedback` (CDS Hooks 2.0 feedback).
//!
//! The batch is validated entry by entry; the valid entries are stored
//! durably, then the answer is sent: 200 with a receipt when every entry was
//! valid, else a 400 OperationOutcome naming each bad field by JSON path plus
//! an information issue saying how many of the batch's entries were stored.
//! Free text (`userComment`) is stored, never logged.

use super::FeedbackService;
use crate::card_log::CardRecorder;
use crate::engine::{Engine, HistoryReader};
use crate::feedback::parse_batch;
use crate::http::{ApiError, Policy};
use crate::store::{CardLogEntry, Feedback, Receipt, StoreError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// The feedback handler. Unknown service: 404; body deeper than the JSON
/// depth limit or not a batch: 400; store unavailable (or failing to write):
/// 503 with `Retry-After`, and nothing of the batch acknowledged.
pub async fn receive(
    State(engine): State<Arc<Engine>>,
    State(policy): State<Arc<Policy>>,
    State(recorder): State<Option<Arc<CardRecorder>>>,
    FeedbackService(id): FeedbackService,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    policy.limits.check_depth(&body)?;
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        path: String::new(),
        message: format!("invalid JSON: {e}"),
    })?;
    let batch = parse_batch(&parsed).map_err(|e| ApiError::BadRequest {
        path: e.path,
        message: e.message,
    })?;
    let Some(recorder) = recorder else {
        return Err(ApiError::Unavailable {
            message: "this server has no feedback store".into(),
            retry_after: None,
        });
    };
    let rejected = batch.rejected();
    let entries: Vec<_> = batch.entries.into_iter().map(|(_, entry)| entry).collect();
    let receipt = store(&recorder, engine.history.as_ref(), &id, &entries)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, entries = entries.len(), "feedback could not be stored");
            ApiError::Unavailable {
                message: "feedback could not be stored; retry later".into(),
                retry_after: Some(policy.limits.retry_after_secs),
            }
        })?;
    tracing::info!(
        stored = receipt.stored,
        duplicates = receipt.duplicates,
        unknown_cards = receipt.unknown_cards,
        rejected = batch.problems.len(),
        "feedback"
    );
    if batch.problems.is_empty() {
        return Ok(Json(receipt).into_response());
    }
    let total = entries.len() + rejected;
    let problems = batch.problems.into_iter().map(|p| (p.path, p.message));
    Err(ApiError::BadEntries {
        problems: problems.collect(),
        note: stored_note(&receipt, entries.len(), total),
    })
}

/// Looks up the cards, then stores. A card not found may still sit in the
/// card log's queue: flush it and look again before flagging it unknown.
async fn store(
    recorder: &CardRecorder,
    history: Option<&Arc<dyn HistoryReader>>,
    service: &str,
    entries: &[Feedback],
) -> Result<Receipt, StoreError> {
    if entries.is_empty() {
        return Ok(Receipt::default());
    }
    let cards: Vec<&str> = entries
        .iter()
        .map(|e| e.card.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut known = recorder.store.known_cards(&cards).await?;
    if known.len() < cards.len() {
        recorder.card_log.flush().await;
        let missing: Vec<&str> = cards
            .iter()
            .copied()
            .filter(|c| !known.contains(*c))
            .collect();
        known.extend(recorder.store.known_cards(&missing).await?);
    }
    let (receipt, stored_now) = recorder
        .store
        .record_feedback(service, entries, &known, OffsetDateTime::now_utc())
        .await?;
    let counted: Vec<&Feedback> = entries
        .iter()
        .zip(stored_now)
        .filter_map(|(entry, new)| new.then_some(entry))
        .collect();
    let counted_cards: Vec<&str> = counted.iter().map(|e| e.card.as_str()).collect();
    // The feedback is stored already: a failed read does not fail the
    // request; its entries are counted as for unknown cards.
    let logs = recorder
        .store
        .card_logs_for(&counted_cards)
        .await
        .unwrap_or_default();
    for entry in counted {
        let rows = logs.get(&entry.card).map_or(&[][..], Vec::as_slice);
        count_outcome(rows, entry);
        if let Some(history) = history {
            // Alert fatigue must see this override on the patient's next call.
            for row in rows {
                history.forget(&row.patient_hash).await;
            }
        }
    }
    Ok(receipt)
}

/// Counts a newly stored entry in `hookwise_feedback_total` for each rule
/// it concerns: on an accepted card, the rules whose suggestions were taken
/// (every rule when none is named); on an overridden card, every rule. A
/// card the log does not know counts under `unknown`.
fn count_outcome(rows: &[CardLogEntry], entry: &Feedback) {
    let reason = entry
        .override_reason
        .as_ref()
        .and_then(|r| r.reason.as_ref())
        .map(|c| c.code.as_str());
    let outcome = entry.outcome.as_str();
    let took = |r: &&CardLogEntry| {
        r.suggestion_uuids
            .iter()
            .any(|s| entry.accepted_suggestions.contains(s))
    };
    let mut rules: Vec<&str> = match rows.iter().any(|r| took(&r)) {
        true if entry.outcome == crate::store::FeedbackOutcome::Accepted => rows
            .iter()
            .filter(took)
            .map(|r| r.rule_id.as_str())
            .collect(),
        _ => rows.iter().map(|r| r.rule_id.as_str()).collect(),
    };
    rules.sort_unstable();
    rules.dedup();
    if rules.is_empty() {
        rules.push(""); // not in the card log: counted as `unknown`
    }
    for rule in rules {
        crate::metrics::feedback_outcome(rule, outcome, reason);
    }
}

fn stored_note(receipt: &Receipt, valid: usize, total: usize) -> String {
    format!(
        "{valid} of {total} feedback entries were valid and are stored ({} new, {} already stored, {} for unknown cards); \
         the entries named in the errors were not stored",
        receipt.stored, receipt.duplicates, receipt.unknown_cards
    )
}
