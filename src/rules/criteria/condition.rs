//! The `condition` criterion: Conditions whose code is in a value set.

use super::coded::{CodedItem, latest_first};
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Condition status filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConditionStatus {
    /// Active, recurrence or relapse.
    #[default]
    Active,
    /// Any clinical status, including resolved.
    Any,
}

/// Conditions from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Status filter.
    #[serde(default)]
    pub status: ConditionStatus,
    /// Onset within this look-back.
    pub within: Option<Span>,
    /// The earliest matching onset is within this look-back (acute problem).
    pub first_within: Option<Span>,
    /// It began within this look-back by its recorded onset (onsetDateTime
    /// or onsetPeriod), not its recordedDate; a matching condition with no
    /// recorded onset leaves the criterion unknown.
    pub onset_within: Option<Span>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

impl ConditionCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> ConditionCriterion {
        ConditionCriterion {
            value_set: ids.resolve(self.value_set),
            status: self.status,
            within: self.within,
            first_within: self.first_within,
            onset_within: self.onset_within,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl ConditionCriterion {
    /// The matching conditions, or why it cannot be told: with
    /// `onsetWithin`, none began recently by its recorded onset but some
    /// have no recorded onset at all.
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Result<Vec<Bound<'a>>, String> {
        let conditions = &ev.record.conditions;
        let mut matched = ev.coded_items(conditions, &self.value_set, self.within, |f| {
            self.status == ConditionStatus::Any || f.active
        });
        if let Some(span) = self.onset_within {
            let undated = matched.iter().find(|f| f.symptom_onset.is_none()).copied();
            matched.retain(|f| f.symptom_onset.is_some() && ev.within(f.symptom_onset, Some(span)));
            if let (true, Some(undated)) = (matched.is_empty(), undated) {
                return Err(format!(
                    "when {} began is not recorded (no onset)",
                    undated.coded.display()
                ));
            }
        }
        if let Some(span) = self.first_within {
            // An acute problem: the earliest matching record must be recent,
            // and the card names it.
            let earliest = matched.iter().filter_map(|f| f.onset).min();
            if !ev.within(earliest, Some(span)) {
                return Ok(Vec::new());
            }
            matched.sort_by_key(|f| f.onset);
        } else {
            latest_first(&mut matched);
        }
        Ok(matched.into_iter().map(CodedItem::bound).collect())
    }
}

impl Leaf for ConditionCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        match self.matches(ev) {
            Ok(matched) => Outcome::Matched(matched),
            Err(why) => Outcome::Unknown(why),
        }
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let status = if self.status == ConditionStatus::Any {
            " (ever)"
        } else {
            ""
        };
        format!(
            "{}{status}{}{}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within"),
            span_words(self.first_within, "first recorded within"),
            span_words(self.onset_within, "begun within")
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(DataNeed::Conditions)
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Condition,
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

    /// The outcome of `criterion` on a sinusitis Condition with the given
    /// date fields, on 2026-03-10: Some(matched) or None for unknown.
    fn run(criterion: Value, dates: Value) -> Option<bool> {
        let sinusitis = json!({"resourceType": "ValueSet", "url": "sinusitis",
            "compose": {"include": [{"system": "s", "concept": [{"code": "J01.90"}]}]}});
        let mut condition = json!({"resourceType": "Condition", "id": "c",
            "code": {"coding": [{"system": "s", "code": "J01.90"}]}});
        (condition.as_object_mut().unwrap()).extend(dates.as_object().unwrap().clone());
        let at = At {
            now: datetime!(2026-03-10 12:00 UTC),
            hook: Hook::OrderSelect,
            encounter_id: None,
        };
        evaluate(
            json!({"condition": criterion}),
            &[sinusitis],
            json!([condition]),
            at,
        )
        .holds
    }

    #[test]
    fn onset_within_reads_the_recorded_onset_and_not_the_record_date() {
        let c = json!({"valueSet": "sinusitis", "onsetWithin": "9d"});
        assert_eq!(
            run(c.clone(), json!({"onsetDateTime": "2026-03-02"})),
            Some(true),
            "8 days"
        );
        assert_eq!(
            run(c.clone(), json!({"onsetDateTime": "2026-02-28"})),
            Some(false),
            "10 days"
        );
        assert_eq!(
            run(c.clone(), json!({"onsetPeriod": {"start": "2026-03-05"}})),
            Some(true)
        );
        // Recorded today after two weeks of symptoms the record does not date:
        // `within` would call it recent, `onsetWithin` cannot tell.
        assert_eq!(run(c, json!({"recordedDate": "2026-03-10"})), None);
        let within = json!({"valueSet": "sinusitis", "within": "9d"});
        assert_eq!(
            run(within, json!({"recordedDate": "2026-03-10"})),
            Some(true)
        );
    }
}
