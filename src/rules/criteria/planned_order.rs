//! The `plannedOrder` criterion: orders placed for the future (active,
//! non-draft ServiceRequests and Procedures in preparation) whose code is in
//! a value set.
//!
//! A planned order's date is usually ahead, so `within` here looks forward:
//! scheduled from today up to N from now. An order dated before today is
//! overdue or stale, not planned, and never matches. An undated order
//! matches only without `within` and `relative`, which need a date.

use super::coded::CodedItem;
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::{DataNeed, PlannedOrderFact};
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Planned orders from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedOrderCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Look-ahead window: scheduled from today up to this long from now.
    pub within: Option<Span>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

impl PlannedOrderCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> PlannedOrderCriterion {
        PlannedOrderCriterion {
            value_set: ids.resolve(self.value_set),
            within: self.within,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl PlannedOrderCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let today = ev.now.date();
        let ahead = |p: &PlannedOrderFact<'_>| match (p.when, self.within) {
            (Some(when), _) if when.date() < today => false,
            (Some(when), Some(Span(span))) => when.date() <= (ev.now + span).date(),
            (Some(_), None) => true,
            (None, within) => within.is_none() && self.relative.is_none(),
        };
        let mut matched = ev.coded_items(&ev.record.planned_orders, &self.value_set, None, ahead);
        // The soonest first: the card names the next planned order.
        matched.sort_by_key(|p| (p.when.is_none(), p.when));
        matched.into_iter().map(CodedItem::bound).collect()
    }
}

impl Leaf for PlannedOrderCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        format!(
            "planned order for {}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within the next")
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // ServiceRequests need their own prefetch; scheduled Procedures
        // arrive with the Procedure one, which does not filter by status.
        [DataNeed::PlannedOrders, DataNeed::Procedures]
            .into_iter()
            .flat_map(Need::of)
            .collect()
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::PlannedOrder,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::cds::Hook;
    use crate::rules::criteria::testing::{At, evaluate};
    use serde_json::{Value, json};
    use time::macros::datetime;

    /// Whether `criterion` matches the planned orders read from `resources`
    /// on 2026-06-01, and the count of skipped elements.
    fn run(criterion: Value, resources: Value) -> (bool, usize) {
        let surgery = json!({"resourceType": "ValueSet", "url": "surgery",
            "compose": {"include": [{"system": "s", "concept": [{"code": "cataract"}]}]}});
        let at = At {
            now: datetime!(2026-06-01 9:00 UTC),
            hook: Hook::PatientView,
            encounter_id: None,
        };
        let seen = evaluate(
            json!({"plannedOrder": criterion}),
            &[surgery],
            resources,
            at,
        );
        (seen.holds == Some(true), seen.skipped)
    }

    fn request(status: &str, intent: &str, occurrence: Value) -> Value {
        let mut r = json!({"resourceType": "ServiceRequest", "status": status, "intent": intent,
            "code": {"coding": [{"system": "s", "code": "cataract"}]}});
        if let (Some(r), Some(o)) = (r.as_object_mut(), occurrence.as_object()) {
            r.extend(o.clone());
        }
        r
    }

    #[test]
    fn within_looks_ahead_from_today_and_past_orders_never_match() {
        let within = json!({"valueSet": "surgery", "within": "30d"});
        let on = |date: &str| json!({"occurrenceDateTime": date});
        assert!(
            run(
                within.clone(),
                json!([request("active", "order", on("2026-06-15"))])
            )
            .0
        );
        assert!(
            run(
                within.clone(),
                json!([request("active", "order", on("2026-07-01"))])
            )
            .0,
            "the 30th day"
        );
        assert!(
            !run(
                within.clone(),
                json!([request("active", "order", on("2026-07-02"))])
            )
            .0
        );
        assert!(
            !run(
                within.clone(),
                json!([request("active", "order", on("2026-05-20"))])
            )
            .0,
            "in the past"
        );
        assert!(
            run(
                within.clone(),
                json!([request("active", "order", on("2026-06-01"))])
            )
            .0,
            "today"
        );
        let period = json!({"occurrencePeriod": {"start": "2026-06-10"}});
        assert!(run(within.clone(), json!([request("on-hold", "plan", period)])).0);
        let timing = json!({"occurrenceTiming": {"event": ["2026-06-10T08:00:00Z"]}});
        assert!(
            run(
                within.clone(),
                json!([request("active", "original-order", timing)])
            )
            .0
        );
    }

    #[test]
    fn drafts_proposals_and_finished_requests_are_not_planned() {
        let any = json!({"valueSet": "surgery"});
        let on = json!({"occurrenceDateTime": "2026-06-15"});
        assert!(run(any.clone(), json!([request("active", "order", on.clone())])).0);
        assert!(!run(any.clone(), json!([request("draft", "order", on.clone())])).0);
        assert!(
            !run(
                any.clone(),
                json!([request("completed", "order", on.clone())])
            )
            .0
        );
        assert!(!run(any.clone(), json!([request("active", "proposal", on)])).0);
        let procedure = |status: &str| {
            json!([{"resourceType": "Procedure", "status": status,
            "code": {"coding": [{"system": "s", "code": "cataract"}]}, "performedDateTime": "2026-06-20"}])
        };
        assert!(run(any.clone(), procedure("preparation")).0);
        assert!(!run(any, procedure("not-done")).0);
    }

    #[test]
    fn undated_or_badly_dated_orders_match_only_without_a_window() {
        let undated = json!([request("active", "order", json!({}))]);
        assert!(run(json!({"valueSet": "surgery"}), undated.clone()).0);
        assert!(!run(json!({"valueSet": "surgery", "within": "30d"}), undated).0);
        let bad = json!([request(
            "active",
            "order",
            json!({"occurrenceTiming": {"event": "2026-06-10"}})
        )]);
        assert_eq!(
            run(json!({"valueSet": "surgery", "within": "30d"}), bad),
            (false, 1)
        );
        let garbled = json!([request(
            "active",
            "order",
            json!({"occurrenceDateTime": "soon"})
        )]);
        assert_eq!(
            run(json!({"valueSet": "surgery", "within": "30d"}), garbled),
            (false, 1)
        );
    }
}
