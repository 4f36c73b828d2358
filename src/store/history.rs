//! What a patient and an encounter have already seen: the query behind
//! alert-fatigue controls (suppressing a rule the clinician overrode with a
//! reason, and an order-sign card already shown at order-select).

use super::overridden::OverriddenPatients;
use super::{Store, StoreError, from_millis, millis, on_pool};
use crate::cds::Coding;
use crate::engine::{HistoryError, HistoryReader, OverriddenRule, ShownOrder};
use crate::pseudonym::Pseudonymizer;
use crate::rules::RuleSet;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

impl Store {
    /// The rules overridden with a coded reason for `patient_hash` since
    /// `since`, most recent first ([`History::overridden`]).
    pub async fn overrides(
        &self,
        patient_hash: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<OverriddenRule>, StoreError> {
        let overridden_sql = "SELECT DISTINCT c.rule_id AS rule_id, f.override_system AS override_system, \
             f.override_code AS override_code, f.override_display AS override_display, f.outcome_at AS outcome_at \
             FROM feedback f JOIN card_log c ON c.card_uuid = f.card_uuid \
             WHERE c.patient_hash = $1 AND f.outcome = 'overridden' AND f.override_code IS NOT NULL \
             AND f.outcome_at >= $2 ORDER BY f.outcome_at DESC, c.rule_id";
        let rows: Vec<OverrideRow> = on_pool!(self, pool => sqlx::query_as(overridden_sql)
            .bind(patient_hash)
            .bind(millis(since))
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(OverriddenRule::from).collect())
    }

    /// The (rule, draft order) pairs shown at `order-select` in
    /// `encounter_hash` since `since` ([`History::shown_at_order_select`]).
    pub async fn shown_at_order_select(
        &self,
        encounter_hash: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<ShownOrder>, StoreError> {
        let sql = "SELECT DISTINCT rule_id, draft_order_hash FROM card_log \
                   WHERE encounter_hash = $1 AND hook = 'order-select' AND draft_order_hash <> '' AND issued_at >= $2 \
                   ORDER BY rule_id, draft_order_hash";
        let rows: Vec<(String, String)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(encounter_hash)
            .bind(millis(since))
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(rule_id, draft_order_hash)| ShownOrder {
                rule_id,
                draft_order_hash,
            })
            .collect())
    }
}

/// A row of [`Store::overrides`]: a rule and the coded reason it was
/// overridden with, at a time in Unix milliseconds.
#[derive(sqlx::FromRow)]
struct OverrideRow {
    rule_id: String,
    override_system: String,
    override_code: String,
    override_display: Option<String>,
    outcome_at: i64,
}

impl From<OverrideRow> for OverriddenRule {
    fn from(row: OverrideRow) -> OverriddenRule {
        OverriddenRule {
            rule_id: row.rule_id,
            reason: Coding {
                system: row.override_system,
                code: row.override_code,
                display: row.override_display,
            },
            at: from_millis(row.outcome_at),
        }
    }
}

/// The feedback store and the card log's pseudonymizer, to read what a
/// patient and an encounter have already seen, with each patient's overrides
/// cached: the engine's [`HistoryReader`].
#[derive(Clone)]
pub struct HistoryCache {
    store: Store,
    hasher: Pseudonymizer,
    /// Which patients have any override at all: the others need no query.
    overridden_patients: Arc<OverriddenPatients>,
    /// Each patient's recent overrides, by patient hash: read once per
    /// [`OVERRIDES_TTL`] instead of on every call, and forgotten as soon as
    /// this server stores feedback on one of the patient's cards.
    overrides: moka::future::Cache<String, Arc<Vec<OverriddenRule>>>,
}

/// How long a patient's override history is reused. Another replica's
/// feedback is seen after at most this long; this replica's at once.
pub const OVERRIDES_TTL: Duration = Duration::from_secs(10);

impl HistoryCache {
    /// Reads history from `store`, hashing ids with `hasher`, for `rules`
    /// (whose longest suppression after an override bounds what is read).
    pub fn new(store: Store, hasher: Pseudonymizer, rules: &RuleSet) -> HistoryCache {
        let longest = rules
            .rules
            .iter()
            .map(|r| i64::from(r.alert_fatigue.suppression_days()))
            .max()
            .unwrap_or(0);
        let overridden_patients = Arc::new(OverriddenPatients::new(
            store.clone(),
            OVERRIDES_TTL,
            time::Duration::days(longest),
        ));
        let overrides = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(OVERRIDES_TTL)
            .build();
        HistoryCache {
            store,
            hasher,
            overridden_patients,
            overrides,
        }
    }

    /// The overrides of `patient_hash` since `since` (at most the longest
    /// suppression window before `now`), cached.
    async fn cached_overrides(
        &self,
        patient_hash: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Arc<Vec<OverriddenRule>>, Arc<StoreError>> {
        let may_have_any = self
            .overridden_patients
            .may_include(patient_hash, now)
            .await
            .map_err(Arc::new)?;
        if !may_have_any {
            return Ok(Arc::default());
        }
        self.overrides
            .try_get_with(patient_hash.to_string(), async {
                self.store
                    .overrides(patient_hash, since)
                    .await
                    .map(Arc::new)
            })
            .await
    }
}

impl HistoryReader for HistoryCache {
    fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.hasher
    }

    fn overrides<'a>(
        &'a self,
        patient_hash: &'a str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Arc<Vec<OverriddenRule>>, HistoryError>> {
        Box::pin(async move {
            self.cached_overrides(patient_hash, since, now)
                .await
                .map_err(|e| e as HistoryError)
        })
    }

    fn shown_at_order_select<'a>(
        &'a self,
        encounter_hash: &'a str,
        since: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<ShownOrder>, HistoryError>> {
        Box::pin(async move {
            self.store
                .shown_at_order_select(encounter_hash, since)
                .await
                .map_err(|e| Arc::new(e) as HistoryError)
        })
    }

    fn forget<'a>(&'a self, patient_hash: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.overridden_patients.add(patient_hash);
            self.overrides.invalidate(patient_hash).await;
        })
    }
}
