//! The card log: every card issued, recorded off the request path.
//!
//! A handler puts the call's [`IssuedCards`] on its response; the
//! [`record_cards`] layer turns them into rows (ids hashed) and hands them to
//! [`CardLog`], a bounded queue drained by one background task that inserts
//! in batches. A full queue drops the rows and counts them rather than make
//! the EHR wait. [`CardLog::close`] drains the queue: graceful shutdown loses
//! nothing.
//!
//! **A failing store** (full disk, I/O error, database down): the batch that
//! failed is kept and retried with backoff (0.1 s doubling to 5 s), and
//! meanwhile new rows wait in the queue, so memory stays bounded by
//! `card_log_queue`; beyond it rows are dropped and counted as above. When
//! the store recovers, the kept rows are written. A flush retries at once,
//! so feedback for a card issued during the fault finds it. Shutdown during
//! a fault makes a few attempts, then counts and logs what it loses.

use crate::cds::Hook;
use crate::engine::Issued;
use crate::pseudonym::Pseudonymizer;
use crate::store::{CardLogEntry, Store};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

/// Most rows written in one transaction.
const MAX_BATCH_ROWS: usize = 500;

/// How long the first rows of a batch wait for more.
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// The first wait before a failed batch is retried; it doubles per failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Attempts [`CardLog::close`] makes while the store fails, before it gives
/// up on the rows left.
const CLOSE_ATTEMPTS: u32 = 3;

/// Flushes and the close that may wait for the writer.
const COMMAND_QUEUE: usize = 64;

/// A call's cards, put on the response by the service handler for
/// [`record_cards`].
#[derive(Debug, Clone)]
pub struct IssuedCards {
    /// Service id.
    pub service: String,
    /// The service's rule family.
    pub family: String,
    /// The hook.
    pub hook: Hook,
    /// The cards and their origins.
    pub issued: Issued,
}

/// The card log rows of one call: one per (card, rule, draft order), with
/// every id hashed by `hasher`.
pub fn entries_for(
    hasher: &Pseudonymizer,
    cards: &IssuedCards,
    at: OffsetDateTime,
) -> Vec<CardLogEntry> {
    let issued = &cards.issued;
    let patient_hash = hasher.hash(&issued.patient_id);
    let encounter_hash = issued.encounter_id.as_ref().map(|id| hasher.encounter(id));
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
                    family: cards.family.clone(),
                    hook: cards.hook,
                    hook_instance: issued.hook_instance.clone(),
                    rule_id: rule.rule_id.clone(),
                    rule_version: rule.rule_version.clone(),
                    suggestion_uuids: rule.suggestion_uuids.clone(),
                    patient_hash: patient_hash.clone(),
                    encounter_hash: encounter_hash.clone(),
                    draft_order_hash,
                    indicator: card.indicator,
                    issued_at: at,
                });
            }
        }
    }
    rows
}

/// One call's rows, as queued.
type Rows = Vec<CardLogEntry>;

/// Requests to the writer that must not wait behind queued rows: while the
/// store fails, the rows queue stays full.
enum Command {
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// The writer side of the card log: a bounded queue and its background task.
#[derive(Clone)]
pub struct CardLog {
    rows: mpsc::Sender<Rows>,
    commands: mpsc::Sender<Command>,
    dropped: Arc<AtomicU64>,
}

impl CardLog {
    /// Starts the background writer on the current runtime; `capacity` calls'
    /// worth of rows may wait.
    pub fn start(store: Store, capacity: usize) -> CardLog {
        let (rows, rows_rx) = mpsc::channel(capacity.max(1));
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            store,
            rows: rows_rx,
            failed: None,
            failures: 0,
            dropped: dropped.clone(),
        };
        tokio::spawn(write_loop(writer, commands_rx));
        CardLog {
            rows,
            commands,
            dropped,
        }
    }

    /// Queues rows without waiting; when the queue is full (or closed) they
    /// are dropped, counted and logged. Returns whether they were queued.
    pub fn record(&self, rows: Vec<CardLogEntry>) -> bool {
        if rows.is_empty() {
            return true;
        }
        let count = rows.len() as u64;
        match self.rows.try_send(rows) {
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

    /// Rows dropped so far: the queue was full or closed, or the store could
    /// not take them before [`CardLog::close`] gave up.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every row queued before this call is written, or the
    /// store failed to take them (they stay queued and are retried): a flush
    /// makes at most one attempt per batch, so it does not hang on a failing
    /// store.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.commands.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything queued, then stops the writer; later rows are
    /// dropped. While the store fails it makes [`CLOSE_ATTEMPTS`] attempts,
    /// then counts and logs the rows it could not write as lost.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.commands.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// A batch whose write failed, kept for another attempt.
struct Failed {
    rows: Vec<CardLogEntry>,
    retry_at: Instant,
}

/// The background writer's state.
struct Writer {
    store: Store,
    rows: mpsc::Receiver<Rows>,
    /// While set, no new rows are taken: they wait in the bounded queue,
    /// which then drops and counts what does not fit.
    failed: Option<Failed>,
    /// Failed attempts in a row; 0 after a write succeeds.
    failures: u32,
    dropped: Arc<AtomicU64>,
}

/// Writes queued rows in batches, retries a failed batch with backoff, and
/// answers flushes and the close.
async fn write_loop(mut writer: Writer, mut commands: mpsc::Receiver<Command>) {
    loop {
        let retry_at = writer.failed.as_ref().map(|f| f.retry_at);
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Command::Flush(ack)) => {
                    writer.flush().await;
                    let _ = ack.send(());
                }
                Some(Command::Close(ack)) => {
                    writer.close().await;
                    let _ = ack.send(());
                    return;
                }
                None => return writer.close().await, // every handle dropped
            },
            () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                writer.retry().await;
            }
            rows = writer.rows.recv(), if retry_at.is_none() => match rows {
                Some(rows) => writer.write_next(rows).await,
                None => return writer.close().await,
            },
        }
    }
}

impl Writer {
    /// Writes `first` with what else is queued, up to a batch. The first
    /// rows wait a little for more: one transaction (and one fsync) for many
    /// calls on a busy server.
    async fn write_next(&mut self, first: Rows) {
        tokio::time::sleep(BATCH_LINGER).await;
        let mut batch = first;
        while batch.len() < MAX_BATCH_ROWS {
            match self.rows.try_recv() {
                Ok(mut more) => batch.append(&mut more),
                Err(_) => break,
            }
        }
        self.attempt(batch).await;
    }

    /// One attempt at the failed batch; whether it is written now.
    async fn retry(&mut self) -> bool {
        match self.failed.take() {
            Some(failed) => self.attempt(failed.rows).await,
            None => true,
        }
    }

    /// Writes `batch`; on failure keeps it, with the time of the next attempt.
    async fn attempt(&mut self, batch: Vec<CardLogEntry>) -> bool {
        match self.store.insert_card_log(&batch).await {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failed_attempts = self.failures, "card log written again");
                }
                self.failures = 0;
                true
            }
            Err(e) => {
                self.failures += 1;
                crate::metrics::card_log_write_failed();
                let wait = backoff(self.failures);
                tracing::warn!(error = %e, rows = batch.len(), attempt = self.failures,
                    retry_in_ms = wait.as_millis() as u64, "card log write failed; rows kept for a retry");
                self.failed = Some(Failed {
                    rows: batch,
                    retry_at: Instant::now() + wait,
                });
                false
            }
        }
    }

    /// Tries the failed batch now, then the rows queued before the flush.
    async fn flush(&mut self) {
        let queued = self.rows.len();
        if self.retry().await {
            self.write_queued(queued).await;
        }
    }

    /// Writes up to `messages` queued calls' rows, batch by batch; stops at
    /// the first failure. Whether all were written.
    async fn write_queued(&mut self, mut messages: usize) -> bool {
        loop {
            let mut batch = Vec::new();
            while messages > 0 && batch.len() < MAX_BATCH_ROWS {
                let Ok(mut more) = self.rows.try_recv() else {
                    messages = 0;
                    break;
                };
                batch.append(&mut more);
                messages -= 1;
            }
            if batch.is_empty() {
                return true;
            }
            if !self.attempt(batch).await {
                return false;
            }
        }
    }

    /// Stops taking rows, writes what is held and queued, retrying a failing
    /// store [`CLOSE_ATTEMPTS`] times, then counts what is left as lost.
    async fn close(&mut self) {
        self.rows.close();
        for attempt in 1..=CLOSE_ATTEMPTS {
            if self.retry().await && self.write_queued(usize::MAX).await {
                return;
            }
            if attempt < CLOSE_ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        let mut lost = self.failed.take().map_or(0, |f| f.rows.len());
        while let Ok(rows) = self.rows.try_recv() {
            lost += rows.len();
        }
        let lost = lost as u64;
        self.dropped.fetch_add(lost, Ordering::Relaxed);
        crate::metrics::card_log_dropped(lost);
        tracing::error!(
            lost,
            "card log rows lost: the store could not be written before shutdown"
        );
    }
}

/// The wait before retry `failures`: doubling from [`RETRY_FIRST`] up to
/// [`RETRY_MAX`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Records the cards a server issues and the feedback on them: the store,
/// the card log writer in front of it, and the store's id hasher. Shared by
/// the card log layer ([`record_cards`]) and the feedback endpoint.
pub struct CardRecorder {
    /// The store.
    pub store: Store,
    /// The card log writer.
    pub card_log: CardLog,
    /// The hasher for patient, encounter and order ids (the store's stable key).
    pub hasher: Pseudonymizer,
}

/// Layer: after a service call, queues the cards it issued for the log.
pub async fn record_cards(
    State(recorder): State<Arc<CardRecorder>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(cards) = response.extensions_mut().remove::<IssuedCards>() {
        recorder.card_log.record(entries_for(
            &recorder.hasher,
            &cards,
            OffsetDateTime::now_utc(),
        ));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Indicator;
    use crate::engine::cards::{CardOrigin, RuleOrigin};

    fn issued() -> IssuedCards {
        let rule = |id: &str, orders: &[&str]| RuleOrigin {
            rule_id: id.into(),
            rule_version: "1.0.0".into(),
            suggestion_uuids: vec![format!("s-{id}")],
            draft_orders: orders.iter().map(|o| o.to_string()).collect(),
        };
        IssuedCards {
            service: "deprescribing-order-select".into(),
            family: "deprescribing".into(),
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
        let hasher = Pseudonymizer::new(b"k");
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
            assert_eq!(row.indicator, Indicator::Warning);
            assert!(
                !format!("{row:?}").contains("patient-1") && !format!("{row:?}").contains("m1\"")
            );
        }
    }

    /// The rows of [`issued`] with card uuid `card`.
    fn rows_for(card: &str) -> Vec<CardLogEntry> {
        let mut rows = entries_for(
            &Pseudonymizer::new(b"k"),
            &issued(),
            OffsetDateTime::now_utc(),
        );
        for row in &mut rows {
            row.card_uuid = card.to_string();
        }
        rows
    }

    /// Makes every card log insert fail (a trigger aborts it), or stops that.
    async fn fail_writes(store: &Store, fail: bool) {
        let sql = match fail {
            true => {
                "CREATE TRIGGER fault BEFORE INSERT ON card_log BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            }
            false => "DROP TRIGGER fault",
        };
        store.execute_raw(sql).await;
    }

    /// Fails the test instead of hanging it.
    async fn bounded<T>(what: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), what)
            .await
            .expect("returns while the store fails")
    }

    async fn fresh_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        (Store::connect(&url).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn a_failing_store_keeps_the_rows_and_writes_them_when_it_recovers() {
        let (store, _dir) = fresh_store().await;
        let log = CardLog::start(store.clone(), 4);
        fail_writes(&store, true).await;
        assert!(log.record(rows_for("c1")));
        bounded(log.flush()).await;
        assert_eq!(store.counts().await.unwrap().card_log_rows, 0);
        bounded(log.flush()).await; // a second attempt fails too
        fail_writes(&store, false).await;
        bounded(log.flush()).await;
        assert_eq!(store.counts().await.unwrap().card_log_rows, 3);
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn while_a_batch_fails_new_rows_wait_in_the_bounded_queue() {
        let (store, _dir) = fresh_store().await;
        let log = CardLog::start(store.clone(), 2);
        fail_writes(&store, true).await;
        assert!(log.record(rows_for("c1")));
        bounded(log.flush()).await; // c1 failed and is held
        assert!(log.record(rows_for("c2")));
        assert!(log.record(rows_for("c3")));
        assert!(!log.record(rows_for("c4")), "the queue holds two calls");
        assert_eq!(log.dropped(), 3);
        fail_writes(&store, false).await;
        bounded(log.flush()).await;
        assert_eq!(store.counts().await.unwrap().card_log_rows, 9);
        for card in ["c1", "c2", "c3"] {
            assert_eq!(store.card_log_for(card).await.unwrap().len(), 3, "{card}");
        }
    }

    #[tokio::test]
    async fn close_during_a_fault_gives_up_after_its_attempts_and_counts_the_loss() {
        let (store, _dir) = fresh_store().await;
        let log = CardLog::start(store.clone(), 4);
        fail_writes(&store, true).await;
        assert!(log.record(rows_for("c1")));
        assert!(log.record(rows_for("c2")));
        bounded(log.close()).await;
        assert_eq!(log.dropped(), 6, "both calls' rows counted as lost");
        fail_writes(&store, false).await;
        assert_eq!(store.counts().await.unwrap().card_log_rows, 0);
        bounded(log.flush()).await; // the writer is gone: no wait
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        assert_eq!(backoff(40), RETRY_MAX);
    }

    #[tokio::test]
    async fn the_queue_drains_on_close_and_drops_when_full() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let log = CardLog::start(store.clone(), 4);
        let rows = entries_for(
            &Pseudonymizer::new(b"k"),
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
