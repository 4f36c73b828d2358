//! The weekly trend read: one rule's cards per ISO week (Monday to Sunday,
//! UTC), and of those how many were overridden, for the console's chart.
//!
//! The week is computed in SQL from the stored Unix milliseconds with
//! integer arithmetic both backends share: the epoch fell on a Thursday,
//! so adding three days before dividing by a week's milliseconds numbers
//! the weeks from Monday 1969-12-29. Both backends truncate integer
//! division toward zero, which is the floor for the non-negative instants
//! the window keeps ([`Store::weekly_cards`] refuses earlier ones).

use super::{FeedbackOutcome, Store, StoreError, millis, on_pool};
use time::{Date, Duration, Month, OffsetDateTime};

/// The Monday the week numbers count from: week 0 is 1969-12-29 to
/// 1970-01-04, the week holding the epoch.
const WEEK_ZERO: Date = match Date::from_calendar_date(1969, Month::December, 29) {
    Ok(date) => date,
    Err(_) => panic!("1969-12-29 is a date"),
};

/// One ISO week's figures for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekCount {
    /// The week's Monday (UTC).
    pub monday: Date,
    /// Distinct cards the rule was on, issued that week.
    pub cards: u64,
    /// Of those, cards with overridden feedback (whatever else was said of
    /// them: a cheap count, not the report's outcome).
    pub overridden: u64,
}

impl Store {
    /// The cards of `rule` issued in `[from, to)`, per ISO week, oldest
    /// first; weeks without cards are absent. `from` before the epoch is
    /// read as the epoch (no card is older).
    pub async fn weekly_cards(
        &self,
        rule: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<WeekCount>, StoreError> {
        // Constants, not values, are spliced: the week arithmetic (see the
        // module docs) must be one expression that GROUP BY can name.
        let sql = "SELECT (c.issued_at + 259200000) / 604800000 AS week, \
                   COUNT(DISTINCT c.card_uuid) AS cards, COUNT(DISTINCT o.card_uuid) AS overridden \
                   FROM card_log c LEFT JOIN \
                   (SELECT DISTINCT card_uuid FROM feedback WHERE outcome = $4) o ON o.card_uuid = c.card_uuid \
                   WHERE c.rule_id = $1 AND c.issued_at >= $2 AND c.issued_at < $3 \
                   GROUP BY week ORDER BY week";
        let (from, to) = (millis(from).max(0), millis(to));
        let rows: Vec<WeekRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(rule)
            .bind(from)
            .bind(to)
            .bind(FeedbackOutcome::Overridden)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(WeekCount::from).collect())
    }
}

/// The Monday of week number `week` (see the module docs).
fn monday_of(week: i64) -> Date {
    WEEK_ZERO
        .checked_add(Duration::weeks(week))
        .unwrap_or(Date::MAX)
}

/// A row of [`Store::weekly_cards`], counts as the `BIGINT` both backends
/// count in.
#[derive(sqlx::FromRow)]
struct WeekRow {
    week: i64,
    cards: i64,
    overridden: i64,
}

impl From<WeekRow> for WeekCount {
    fn from(row: WeekRow) -> WeekCount {
        WeekCount {
            monday: monday_of(row.week),
            cards: row.cards.max(0) as u64,
            overridden: row.overridden.max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::{Coding, Hook, Indicator};
    use crate::store::{CardLogEntry, Feedback, OverrideReason};
    use std::collections::HashSet;
    use time::macros::datetime;

    fn entry(card: &str, rule: &str, order: &str, at: OffsetDateTime) -> CardLogEntry {
        CardLogEntry {
            card_uuid: card.into(),
            service: "choosing-wisely-order-select".into(),
            family: "choosing-wisely".into(),
            hook: Hook::OrderSelect,
            hook_instance: format!("hi-{card}"),
            rule_id: rule.into(),
            rule_version: "1.0.0".into(),
            suggestion_uuids: vec![],
            patient_hash: format!("p-{card}"),
            encounter_hash: None,
            draft_order_hash: Some(order.into()),
            indicator: Indicator::Warning,
            issued_at: at,
        }
    }

    fn feedback(card: &str, outcome: FeedbackOutcome, minute: u8) -> Feedback {
        let reason = Coding {
            system: "s".into(),
            code: "c".into(),
            display: None,
        };
        Feedback {
            card: card.into(),
            outcome,
            accepted_suggestions: vec![],
            override_reason: (outcome == FeedbackOutcome::Overridden).then_some(OverrideReason {
                reason: Some(reason),
                user_comment: None,
            }),
            outcome_at: datetime!(2026-01-10 10:00 UTC) + Duration::minutes(minute.into()),
        }
    }

    fn week(monday: Date, cards: u64, overridden: u64) -> WeekCount {
        WeekCount {
            monday,
            cards,
            overridden,
        }
    }

    #[test]
    fn week_numbers_start_on_mondays() {
        // The SQL's literals: a week, and the three days from Monday to the epoch.
        assert_eq!(Duration::weeks(1).whole_milliseconds(), 604_800_000);
        assert_eq!(Duration::days(3).whole_milliseconds(), 259_200_000);
        assert_eq!(WEEK_ZERO.weekday(), time::Weekday::Monday);
        assert_eq!(monday_of(0), WEEK_ZERO);
        let monday = monday_of(2922);
        assert_eq!(monday.weekday(), time::Weekday::Monday);
        assert_eq!(monday.to_string(), "2025-12-29");
    }

    /// Cards count once per week however many draft orders they matched,
    /// a card overridden twice counts once, Sunday night and Monday
    /// morning are different weeks, and the window and the rule filter.
    #[tokio::test]
    async fn cards_are_counted_per_iso_week() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let rule = "cw-psa-screening-70-plus";
        let rows = [
            // ISO week 2026-W02 (Monday 2026-01-05).
            entry("a", rule, "o1", datetime!(2026-01-05 00:00 UTC)),
            entry("a", rule, "o2", datetime!(2026-01-05 00:00 UTC)),
            entry("b", rule, "", datetime!(2026-01-11 23:59:59 UTC)),
            entry("c", rule, "", datetime!(2026-01-07 12:00 UTC)),
            // 2026-W03.
            entry("d", rule, "", datetime!(2026-01-12 00:00 UTC)),
            // Another rule on the same card, and a card outside the window.
            entry("a", "other-rule", "", datetime!(2026-01-05 00:00 UTC)),
            entry("e", rule, "", datetime!(2025-12-01 00:00 UTC)),
        ];
        store.insert_card_log(&rows).await.unwrap();
        let known: HashSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        let said = [
            feedback("a", FeedbackOutcome::Overridden, 0),
            feedback("a", FeedbackOutcome::Overridden, 1),
            feedback("b", FeedbackOutcome::Accepted, 0),
            feedback("d", FeedbackOutcome::Overridden, 0),
        ];
        let now = datetime!(2026-01-20 00:00 UTC);
        store
            .record_feedback("s", &said, &known, now)
            .await
            .unwrap();

        let from = datetime!(2026-01-01 00:00 UTC);
        let weeks = store.weekly_cards(rule, from, now).await.unwrap();
        let (w02, w03) = (
            Date::from_iso_week_date(2026, 2, time::Weekday::Monday).unwrap(),
            Date::from_iso_week_date(2026, 3, time::Weekday::Monday).unwrap(),
        );
        assert_eq!(weeks, [week(w02, 3, 1), week(w03, 1, 1)]);
        let early = store
            .weekly_cards(rule, OffsetDateTime::UNIX_EPOCH - Duration::days(9), from)
            .await
            .unwrap();
        let december = Date::from_calendar_date(2025, Month::December, 1).unwrap();
        assert_eq!(early, [week(december, 1, 0)]);
        assert!(
            store
                .weekly_cards("no-such-rule", from, now)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
