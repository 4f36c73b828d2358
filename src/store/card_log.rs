//! The card log table: one row per (card, rule, draft order) issued, written
//! in batches by [`crate::card_log`] and read back when feedback arrives.

use super::{Store, StoreError, from_millis, millis, on_pool, split_words};
use crate::cds::{Hook, Indicator};
use std::collections::HashSet;
use time::OffsetDateTime;

/// One card log row: one rule's part in one issued card, for one draft order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardLogEntry {
    /// The card's uuid.
    pub card_uuid: String,
    /// Service id (the family at one hook).
    pub service: String,
    /// The rule family.
    pub family: String,
    /// The hook.
    pub hook: Hook,
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
    pub indicator: Indicator,
    /// When the card was issued.
    pub issued_at: OffsetDateTime,
}

impl Store {
    /// Inserts card log rows in one transaction. A retried call (same
    /// hookInstance, so same card uuids) adds nothing.
    pub async fn insert_card_log(&self, rows: &[CardLogEntry]) -> Result<(), StoreError> {
        let sql = "INSERT INTO card_log (card_uuid, rule_id, draft_order_hash, rule_version, service, family, hook, \
                   hook_instance, suggestion_uuids, patient_hash, encounter_hash, indicator, issued_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
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
                    .bind(&row.family)
                    .bind(row.hook)
                    .bind(&row.hook_instance)
                    .bind(row.suggestion_uuids.join(" "))
                    .bind(&row.patient_hash)
                    .bind(row.encounter_hash.as_deref())
                    .bind(row.indicator)
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
        let sql = "SELECT card_uuid, service, family, hook, hook_instance, rule_id, rule_version, suggestion_uuids, patient_hash, \
                   encounter_hash, draft_order_hash, indicator, issued_at FROM card_log WHERE card_uuid = $1 \
                   ORDER BY rule_id, draft_order_hash";
        let rows: Vec<CardLogRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(card_uuid).fetch_all(pool).await?);
        Ok(rows.into_iter().map(CardLogEntry::from).collect())
    }
}

/// A `card_log` row as selected by [`Store::card_log_for`], before the
/// stored encodings (space-separated suggestions, `''` for no draft order,
/// Unix milliseconds) are undone.
#[derive(sqlx::FromRow)]
struct CardLogRow {
    card_uuid: String,
    service: String,
    family: String,
    hook: Hook,
    hook_instance: String,
    rule_id: String,
    rule_version: String,
    suggestion_uuids: String,
    patient_hash: String,
    encounter_hash: Option<String>,
    draft_order_hash: String,
    indicator: Indicator,
    issued_at: i64,
}

impl From<CardLogRow> for CardLogEntry {
    fn from(row: CardLogRow) -> CardLogEntry {
        CardLogEntry {
            card_uuid: row.card_uuid,
            service: row.service,
            family: row.family,
            hook: row.hook,
            hook_instance: row.hook_instance,
            rule_id: row.rule_id,
            rule_version: row.rule_version,
            suggestion_uuids: split_words(&row.suggestion_uuids),
            patient_hash: row.patient_hash,
            encounter_hash: row.encounter_hash,
            draft_order_hash: Some(row.draft_order_hash).filter(|o| !o.is_empty()),
            indicator: row.indicator,
            issued_at: from_millis(row.issued_at),
        }
    }
}
