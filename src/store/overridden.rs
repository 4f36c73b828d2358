//! Which patients have any override with a coded reason: the set that lets
//! a call about any other patient skip the override query.
//!
//! Most patients have never had a card overridden, and EHR traffic is mostly
//! one call per patient, so a per-patient cache of override history misses
//! on nearly every call. This set is read from the store in one query and
//! reread at most every `ttl`; a patient outside it certainly has no
//! override, except one another replica stored less than `ttl` ago (the same
//! staleness as the per-patient cache), or while the reread is under way,
//! when calls other than the one rereading answer from the previous set.
//! Feedback stored by this server is added at once.

use super::{Store, StoreError, millis};
use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The patients (keyed hashes) with an override with a coded reason in the
/// last `window`, as of at most `ttl` ago, plus those added since.
pub struct OverriddenPatients {
    store: Store,
    ttl: Duration,
    window: time::Duration,
    state: RwLock<State>,
    /// One refresh at a time; calls that arrive meanwhile wait for it.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    hashes: HashSet<String>,
    /// When the store was last read; `None` before the first read.
    read_at: Option<Instant>,
    /// Added since the current refresh began, to keep across it.
    added: Vec<String>,
}

impl OverriddenPatients {
    /// The set for overrides in the last `window`, reread every `ttl`.
    pub fn new(store: Store, ttl: Duration, window: time::Duration) -> OverriddenPatients {
        OverriddenPatients {
            store,
            ttl,
            window,
            state: RwLock::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `patient_hash` may have an override in the window at `now`.
    /// `false` means it has none (see the module docs for how fresh that is).
    pub async fn may_include(
        &self,
        patient_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if let Some(answer) = self.fresh_answer(patient_hash) {
            return Ok(answer);
        }
        // One call rereads the store; the others answer from the set it
        // replaces, unless there is none yet.
        let _refreshing = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.stale_answer(patient_hash) {
                Some(answer) => return Ok(answer),
                None => self.refreshing.lock().await,
            },
        };
        if let Some(answer) = self.fresh_answer(patient_hash) {
            return Ok(answer); // another call refreshed while this one waited
        }
        self.write().added.clear();
        let read_at = Instant::now();
        let mut hashes = self
            .store
            .patients_with_overrides(now - self.window)
            .await?;
        let mut state = self.write();
        hashes.extend(state.added.drain(..));
        state.hashes = hashes;
        state.read_at = Some(read_at);
        Ok(state.hashes.contains(patient_hash))
    }

    /// Adds a patient whose card just got feedback here, so that its next
    /// call reads its overrides.
    pub fn add(&self, patient_hash: &str) {
        let mut state = self.write();
        state.hashes.insert(patient_hash.to_string());
        state.added.push(patient_hash.to_string());
    }

    fn fresh_answer(&self, patient_hash: &str) -> Option<bool> {
        self.answer(patient_hash, |read_at| read_at.elapsed() < self.ttl)
    }

    fn stale_answer(&self, patient_hash: &str) -> Option<bool> {
        self.answer(patient_hash, |_| true)
    }

    /// Whether the set holds `patient_hash`, if it was read and `usable`.
    fn answer(&self, patient_hash: &str, usable: impl Fn(Instant) -> bool) -> Option<bool> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.read_at.filter(|at| usable(*at))?;
        Some(state.hashes.contains(patient_hash))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// The patients (keyed hashes) with an override with a coded reason
    /// since `since`.
    pub async fn patients_with_overrides(
        &self,
        since: OffsetDateTime,
    ) -> Result<HashSet<String>, StoreError> {
        let sql = "SELECT DISTINCT c.patient_hash \
             FROM feedback f JOIN card_log c ON c.card_uuid = f.card_uuid \
             WHERE f.outcome = 'overridden' AND f.override_code IS NOT NULL AND f.outcome_at >= $1";
        let rows: Vec<(String,)> = super::on_pool!(self, pool => sqlx::query_as(sql)
            .bind(millis(since))
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(hash,)| hash).collect())
    }
}
