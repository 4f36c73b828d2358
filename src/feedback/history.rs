//! What a patient and an encounter have already seen: the query behind
//! alert-fatigue controls (suppressing a rule the clinician overrode with a
//! reason, and an order-sign card already shown at order-select).

use super::{Store, StoreError, from_millis, millis, on_pool};
use crate::cds::Coding;
use time::OffsetDateTime;

/// A rule a clinician overrode, with a coded reason, for this patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverriddenRule {
    /// Rule id.
    pub rule_id: String,
    /// The coded override reason (system and code; display when sent).
    pub reason: Coding,
    /// When the clinician overrode it (the feedback's `outcomeTimestamp`).
    pub at: OffsetDateTime,
}

/// A (rule, draft order) pair already shown at `order-select`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShownOrder {
    /// Rule id.
    pub rule_id: String,
    /// Keyed hash of the draft order's `Type/id`.
    pub draft_order_hash: String,
}

/// A patient's and an encounter's history since some time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Rules overridden with a reason for the patient, most recent first.
    /// An override of a combined card counts for every rule on it.
    pub overridden: Vec<OverriddenRule>,
    /// (rule, draft order) pairs shown at `order-select` in the encounter,
    /// sorted; empty without an encounter.
    pub shown_at_order_select: Vec<ShownOrder>,
}

impl Store {
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

    /// The rules overridden with a coded reason for `patient_hash` since
    /// `since`, most recent first ([`History::overridden`]).
    pub async fn overrides(
        &self,
        patient_hash: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<OverriddenRule>, StoreError> {
        let overridden_sql = "SELECT DISTINCT c.rule_id, f.override_system, f.override_code, f.override_display, f.outcome_at \
             FROM feedback f JOIN card_log c ON c.card_uuid = f.card_uuid \
             WHERE c.patient_hash = $1 AND f.outcome = 'overridden' AND f.override_code IS NOT NULL \
             AND f.outcome_at >= $2 ORDER BY f.outcome_at DESC, c.rule_id";
        type Row = (String, String, String, Option<String>, i64);
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(overridden_sql)
            .bind(patient_hash)
            .bind(millis(since))
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(rule_id, system, code, display, at)| OverriddenRule {
                rule_id,
                reason: Coding {
                    system,
                    code,
                    display,
                },
                at: from_millis(at),
            })
            .collect())
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
