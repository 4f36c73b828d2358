//! The card log: every card issued, recorded off the request path.
//!
//! A handler puts the call's [`IssuedCards`] on its response; the
//! [`record_cards`] layer turns them into rows (ids hashed) and hands them to
//! [`CardLog`], a bounded queue drained by one background task that inserts
//! in batches. A full queue drops the rows and counts them rather than make
//! the EHR wait. [`CardLog::close`] drains the queue: graceful shutdown loses
//! nothing.

use super::{Store, StoreError, millis, on_pool};
use crate::cds::Hook;
use crate::http::PatientHasher;
use crate::pipeline::Issued;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Most rows written in one transaction.
const MAX_BATCH_ROWS: usize = 500;

/// How long the first rows of a batch wait for more.
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// Attempts at writing one batch before it is given up (and logged).
const WRITE_ATTEMPTS: u32 = 3;

/// One card log row: one rule's part in one issued card, for one draft order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardLogEntry {
    /// The card's uuid.
    pub card_uuid: String,
    /// Service id (the rule family).
    pub service: String,
    /// Hook name.
    pub hook: String,
    /// The request's hookInstance.
    pub hook_instance: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule version.
    pub rule_version: String,
    /// Uuids of this rule's suggestions on the card.
    pub suggestion_uuids: Vec<String>,
    /// Keyed hash of the patient id.
    pub patient_hash: String,
    /// Keyed hash of `Encounter/{encounterId}`, when sent.
    pub encounter_hash: Option<String>,
    /// Keyed hash of the draft order's `Type/id` (order hooks).
    pub draft_order_hash: Option<String>,
    /// The card's indicator.
    pub indicator: String,
    /// When the card was issued.
    pub issued_at: OffsetDateTime,
}

/// A call's cards, put on the response by the service handler for
/// [`record_cards`].
#[derive(Debug, Clone)]
pub struct IssuedCards {
    /// Service id.
    pub service: String,
    /// The hook.
    pub hook: Hook,
    /// The cards and their origins.
    pub issued: Issued,
}

/// The keyed hash the card log stores for encounter `id`.
pub fn encounter_hash(hasher: &PatientHasher, id: &str) -> String {
    hasher.hash(&format!("Encounter/{id}"))
}

/// The card log rows of one call: one per (card, rule, draft order), with
/// every id hashed by `hasher`.
pub fn entries_for(
    hasher: &PatientHasher,
    cards: &IssuedCards,
    at: OffsetDateTime,
) -> Vec<CardLogEntry> {
    let issued = &cards.issued;
    let patient_hash = hasher.hash(&issued.patient_id);
    let encounter_hash = issued
        .encounter_id
        .as_ref()
        .map(|id| encounter_hash(hasher, id));
    let mut rows = Vec::new();
    for card in &issued.cards {
        for rule in &card.rules {
            let orders: Vec<Option<String>> = match rule.draft_orders.is_empty() {
                true => vec![None],
                false => rule
                    .draft_orders
                    .iter()
                    .map(|r| Some(hasher.hash(r)))
                    .collect(),
            };
            for draft_order_hash in orders {
                rows.push(CardLogEntry {
                    card_uuid: card.card_uuid.clone(),
                    service: cards.service.clone(),
                    hook: cards.hook.as_str().to_string(),
                    hook_instance: issued.hook_instance.clone(),
                    rule_id: rule.rule_id.clone(),
                    rule_version: rule.rule_version.clone(),
                    suggestion_uuids: rule.suggestion_uuids.clone(),
                    patient_hash: patient_hash.clone(),
                    encounter_hash: encounter_hash.clone(),
                    draft_order_hash,
                    indicator: indicator_name(card.indicator).to_string(),
                    issued_at: at,
                });
            }
        }
    }
    rows
}

fn indicator_name(indicator: crate::cds::Indicator) -> &'static str {
    match indicator {
        crate::cds::Indicator::Info => "info",
        crate::cds::Indicator::Warning => "warning",
        crate::cds::Indicator::Critical => "critical",
    }
}

impl Store {
    /// Inserts card log rows in one transaction. A retried call (same
    /// hookInstance, so same card uuids) adds nothing.
    pub async fn insert_card_log(&self, rows: &[CardLogEntry]) -> Result<(), StoreError> {
        let sql = "INSERT INTO card_log (card_uuid, rule_id, draft_order_hash, rule_version, service, hook, \
                   hook_instance, suggestion_uuids, patient_hash, encounter_hash, indicator, issued_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                   ON CONFLICT (card_uuid, rule_id, draft_order_hash) DO NOTHING";
        on_pool!(self, pool => {
            let mut tx = self.begin_write(pool).await?;
            for row in rows {
                sqlx::query(sql)
                    .bind(&row.card_uuid)
                    .bind(&row.rule_id)
                    .bind(row.draft_order_hash.as_deref().unwrap_or(""))
                    .bind(&row.rule_version)
                    .bind(&row.service)
                    .bind(&row.hook)
                    .bind(&row.hook_instance)
                    .bind(row.suggestion_uuids.join(" "))
                    .bind(&row.patient_hash)
                    .bind(row.encounter_hash.as_deref())
                    .bind(&row.indicator)
                    .bind(millis(row.issued_at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Which of `cards` (uuids) are in the card log.
    pub async fn known_cards(&self, cards: &[&str]) -> Result<HashSet<String>, StoreError> {
        let sql = "SELECT 1 FROM card_log WHERE card_uuid = $1 LIMIT 1";
        let mut known = HashSet::new();
        for card in cards {
            let found: Option<(i32,)> =
                on_pool!(self, pool => sqlx::query_as(sql).bind(*card).fetch_optional(pool).await?);
            if found.is_some() {
                known.insert(card.to_string());
            }
        }
        Ok(known)
    }
}

impl Store {
    /// The card log rows of one card, by rule and draft order.
    pub async fn card_log_for(&self, card_uuid: &str) -> Result<Vec<CardLogEntry>, StoreError> {
        let sql = "SELECT card_uuid, service, hook, hook_instance, rule_id, rule_version, suggestion_uuids, patient_hash, \
                   encounter_hash, draft_order_hash, indicator, issued_at FROM card_log WHERE card_uuid = $1 \
                   ORDER BY rule_id, draft_order_hash";
        let rows: Vec<CardLogRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(card_uuid).fetch_all(pool).await?);
        Ok(rows.into_iter().map(row_entry).collect())
    }
}

/// A `card_log` row as selected by [`Store::card_log_for`].
type CardLogRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
);

fn row_entry(
    (
        card_uuid,
        service,
        hook,
        hook_instance,
        rule_id,
        rule_version,
        suggestions,
        patient_hash,
        encounter_hash,
        order,
        indicator,
        at,
    ): CardLogRow,
) -> CardLogEntry {
    CardLogEntry {
        card_uuid,
        service,
        hook,
        hook_instance,
        rule_id,
        rule_version,
        suggestion_uuids: suggestions.split_whitespace().map(str::to_string).collect(),
        patient_hash,
        encounter_hash,
        draft_order_hash: Some(order).filter(|o| !o.is_empty()),
        indicator,
        issued_at: super::from_millis(at),
    }
}

enum Message {
    Rows(Vec<CardLogEntry>),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// The writer side of the card log: a bounded queue and its background task.
#[derive(Clone)]
pub struct CardLog {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl CardLog {
    /// Starts the background writer on the current runtime; `capacity` calls'
    /// worth of rows may wait.
    pub fn start(store: Store, capacity: usize) -> CardLog {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_loop(store, rx));
        CardLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues rows without waiting; when the queue is full (or closed) they
    /// are dropped, counted and logged. Returns whether they were queued.
    pub fn record(&self, rows: Vec<CardLogEntry>) -> bool {
        if rows.is_empty() {
            return true;
        }
        let count = rows.len() as u64;
        match self.tx.try_send(Message::Rows(rows)) {
            Ok(()) => true,
            Err(_) => {
                let total = self.dropped.fetch_add(count, Ordering::Relaxed) + count;
                crate::metrics::card_log_dropped(count);
                tracing::warn!(
                    dropped = count,
                    dropped_total = total,
                    "card log queue full: issued cards not logged"
                );
                false
            }
        }
    }

    /// Rows dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every row queued before this call is written (or given up).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything queued, then stops the writer. Later rows are dropped.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Drains the queue: each wake-up takes what is waiting (up to a batch) and
/// writes it in one transaction, then answers flushes.
async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>) {
    while let Some(first) = rx.recv().await {
        if matches!(first, Message::Rows(_)) {
            // Let a busy server's rows gather: one transaction (and one
            // fsync) for many calls. A flush or close is not kept waiting.
            tokio::time::sleep(BATCH_LINGER).await;
        }
        let mut rows = Vec::new();
        let mut acks = Vec::new();
        let mut closing = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Rows(mut more) => rows.append(&mut more),
                Message::Flush(ack) => acks.push(ack),
                Message::Close(ack) => closing = Some(ack),
            }
            if closing.is_none() && rows.len() < MAX_BATCH_ROWS {
                next = rx.try_recv().ok();
            }
        }
        write_batch(&store, &rows).await;
        for ack in acks {
            let _ = ack.send(());
        }
        if let Some(ack) = closing {
            rx.close();
            // Rows queued before the close message still count: write them.
            let mut rest = Vec::new();
            while let Ok(message) = rx.try_recv() {
                match message {
                    Message::Rows(mut more) => rest.append(&mut more),
                    Message::Flush(ack) | Message::Close(ack) => {
                        let _ = ack.send(());
                    }
                }
            }
            write_batch(&store, &rest).await;
            let _ = ack.send(());
            return;
        }
    }
}

async fn write_batch(store: &Store, rows: &[CardLogEntry]) {
    if rows.is_empty() {
        return;
    }
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.insert_card_log(rows).await {
            Ok(()) => return,
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, rows = rows.len(), "card log write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, rows = rows.len(), "card log write failed; rows lost")
            }
        }
    }
}

/// What the feedback endpoint and the card log layer share.
pub struct Hub {
    /// The store.
    pub store: Store,
    /// The card log writer.
    pub card_log: CardLog,
    /// The hasher for patient, encounter and order ids (the store's stable key).
    pub hasher: PatientHasher,
}

/// Layer: after a service call, queues the cards it issued for the log.
pub async fn record_cards(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(cards) = response.extensions_mut().remove::<IssuedCards>() {
        hub.card_log
            .record(entries_for(&hub.hasher, &cards, OffsetDateTime::now_utc()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::{CardOrigin, RuleOrigin};
    use crate::cds::Indicator;

    fn issued() -> IssuedCards {
        let rule = |id: &str, orders: &[&str]| RuleOrigin {
            rule_id: id.into(),
            rule_version: "1.0.0".into(),
            suggestion_uuids: vec![format!("s-{id}")],
            draft_orders: orders.iter().map(|o| o.to_string()).collect(),
        };
        IssuedCards {
            service: "deprescribing".into(),
            hook: Hook::OrderSelect,
            issued: Issued {
                hook_instance: "hi".into(),
                patient_id: "patient-1".into(),
                encounter_id: Some("enc-1".into()),
                cards: vec![CardOrigin {
                    card_uuid: "c1".into(),
                    indicator: Indicator::Warning,
                    rules: vec![
                        rule("a", &[]),
                        rule("b", &["MedicationRequest/m1", "MedicationRequest/m2"]),
                    ],
                }],
            },
        }
    }

    #[test]
    fn rows_are_per_rule_and_draft_order_with_ids_hashed() {
        let hasher = PatientHasher::new(b"k");
        let rows = entries_for(&hasher, &issued(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[0].rule_id.as_str(),
                rows[0].draft_order_hash.as_deref()
            ),
            ("a", None)
        );
        assert_eq!(
            rows[1].draft_order_hash.as_deref(),
            Some(hasher.hash("MedicationRequest/m1").as_str())
        );
        assert_eq!(rows[2].suggestion_uuids, ["s-b"]);
        for row in &rows {
            assert_eq!(row.patient_hash, hasher.hash("patient-1"));
            assert_eq!(
                row.encounter_hash.as_deref(),
                Some(hasher.hash("Encounter/enc-1").as_str())
            );
            assert_eq!(row.indicator, "warning");
            assert!(
                !format!("{row:?}").contains("patient-1") && !format!("{row:?}").contains("m1\"")
            );
        }
    }

    #[tokio::test]
    async fn the_queue_drains_on_close_and_drops_when_full() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let log = CardLog::start(store.clone(), 4);
        let rows = entries_for(
            &PatientHasher::new(b"k"),
            &issued(),
            OffsetDateTime::now_utc(),
        );
        assert!(log.record(rows.clone()));
        log.flush().await;
        assert_eq!(store.counts().await.unwrap().card_log_rows, 3);
        log.close().await;
        assert!(!log.record(rows), "closed: dropped, not blocked");
        assert_eq!(log.dropped(), 3);
    }
}
