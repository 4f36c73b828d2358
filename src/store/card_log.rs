//! The card log table: one row per (card, rule, draft order) issued, written
//! in batches by [`crate::card_log`] and read back when feedback arrives.

use super::{Store, StoreError, from_millis, millis, on_pool, split_words};
use crate::cds::{Hook, Indicator};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeSet, HashMap, HashSet};
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
        let mut known = HashSet::new();
        for chunk in cards.chunks(CARDS_PER_QUERY) {
            let sql = AssertSqlSafe(format!(
                "SELECT DISTINCT card_uuid FROM card_log WHERE card_uuid IN ({})",
                placeholders(chunk.len())
            ));
            let found: Vec<String> = on_pool!(self, pool => {
                let mut query = sqlx::query_scalar(sql);
                for card in chunk {
                    query = query.bind(*card);
                }
                query.fetch_all(pool).await?
            });
            known.extend(found);
        }
        Ok(known)
    }

    /// The card log rows of each of `cards`, by rule and draft order; a card
    /// not in the log has no entry.
    pub async fn card_logs_for(
        &self,
        cards: &[&str],
    ) -> Result<HashMap<String, Vec<CardLogEntry>>, StoreError> {
        // Each card once, so that no two queries return the same rows.
        let cards: Vec<&str> = cards
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut logs: HashMap<String, Vec<CardLogEntry>> = HashMap::new();
        for chunk in cards.chunks(CARDS_PER_QUERY) {
            let sql = AssertSqlSafe(format!(
                "SELECT card_uuid, service, family, hook, hook_instance, rule_id, rule_version, suggestion_uuids, \
                 patient_hash, encounter_hash, draft_order_hash, indicator, issued_at FROM card_log \
                 WHERE card_uuid IN ({}) ORDER BY card_uuid, rule_id, draft_order_hash",
                placeholders(chunk.len())
            ));
            let rows: Vec<CardLogRow> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(sql);
                for card in chunk {
                    query = query.bind(*card);
                }
                query.fetch_all(pool).await?
            });
            for row in rows {
                let entry = CardLogEntry::from(row);
                logs.entry(entry.card_uuid.clone()).or_default().push(entry);
            }
        }
        Ok(logs)
    }
}

/// Most card uuids bound to one query: far below SQLite's limit of 32 766
/// parameters and PostgreSQL's 65 535, whatever the batch; a longer list
/// takes one query per this many.
const CARDS_PER_QUERY: usize = 500;

/// `$1, $2, …, $n`: the placeholders of an `IN` list of `n` bound values.
/// Only the count is spliced into the SQL, never a value.
fn placeholders(n: usize) -> String {
    let numbered: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    numbered.join(", ")
}

/// A `card_log` row as selected by [`Store::card_logs_for`], before the
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::{Hook, Indicator};

    fn entry(card: &str, rule: &str) -> CardLogEntry {
        CardLogEntry {
            card_uuid: card.into(),
            service: "deprescribing-patient-view".into(),
            family: "deprescribing".into(),
            hook: Hook::PatientView,
            hook_instance: "hi".into(),
            rule_id: rule.into(),
            rule_version: "1.0.0".into(),
            suggestion_uuids: vec![format!("s-{card}-{rule}")],
            patient_hash: format!("p-{card}"),
            encounter_hash: None,
            draft_order_hash: None,
            indicator: Indicator::Info,
            issued_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn placeholders_number_each_value() {
        assert_eq!(placeholders(1), "$1");
        assert_eq!(placeholders(3), "$1, $2, $3");
    }

    /// More cards than one query binds: every chunk is asked, each card's
    /// rows come back once, in rule order, and unknown cards are absent.
    #[tokio::test]
    async fn card_lookups_take_any_number_of_cards() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let logged: Vec<String> = (0..2 * CARDS_PER_QUERY + 1)
            .map(|i| format!("card-{i:04}"))
            .collect();
        let rows: Vec<CardLogEntry> = logged
            .iter()
            .flat_map(|card| [entry(card, "rule-b"), entry(card, "rule-a")])
            .collect();
        store.insert_card_log(&rows).await.unwrap();
        let strangers: Vec<String> = (0..CARDS_PER_QUERY)
            .map(|i| format!("stranger-{i}"))
            .collect();
        // Logged and unknown cards interleaved, one logged card asked twice.
        let mut asked: Vec<&str> = Vec::new();
        for (card, stranger) in logged.iter().zip(&strangers) {
            asked.extend([card.as_str(), stranger.as_str()]);
        }
        asked.extend(logged[CARDS_PER_QUERY..].iter().map(String::as_str));
        asked.push(&logged[0]);
        assert!(asked.len() > 3 * CARDS_PER_QUERY);

        let known = store.known_cards(&asked).await.unwrap();
        assert_eq!(known, logged.iter().cloned().collect::<HashSet<_>>());

        let logs = store.card_logs_for(&asked).await.unwrap();
        assert_eq!(logs.len(), logged.len());
        for card in &logged {
            let rules: Vec<&str> = logs[card].iter().map(|r| r.rule_id.as_str()).collect();
            assert_eq!(rules, ["rule-a", "rule-b"], "{card}");
            assert_eq!(logs[card][0], entry(card, "rule-a"));
        }
        assert!(store.known_cards(&[]).await.unwrap().is_empty());
        assert!(store.card_logs_for(&[]).await.unwrap().is_empty());
    }
}
