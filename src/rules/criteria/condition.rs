//! The `condition` criterion: Conditions whose code is in a value set.

use super::{Items, Kind, Leaf, Need, Outcome, item, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::{Span, ValueSetRef};
use crate::rules::valueset::ValueSet;
use serde::Deserialize;

/// Condition status filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionCriterion {
    /// Codes.
    pub value_set: ValueSetRef,
    /// Status filter.
    #[serde(default)]
    pub status: ConditionStatus,
    /// Onset within this look-back.
    pub within: Option<Span>,
    /// The earliest matching onset is within this look-back (acute problem).
    pub first_within: Option<Span>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
}

impl ConditionCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let mut matched: Vec<_> = ev
            .record
            .conditions
            .iter()
            .filter(|f| self.status == ConditionStatus::Any || f.active)
            .filter(|f| ev.in_set(&self.value_set, &f.coded))
            .filter(|f| ev.within(f.onset, self.within))
            .collect();
        if let Some(span) = self.first_within {
            // An acute problem: the earliest matching record must be recent.
            let earliest = matched.iter().filter_map(|f| f.onset).min();
            if !ev.within(earliest, Some(span)) {
                return Vec::new();
            }
            matched.sort_by_key(|f| f.onset);
        } else {
            matched.sort_by_key(|f| std::cmp::Reverse(f.onset));
        }
        matched
            .into_iter()
            .map(|f| item(&f.coded, f.onset))
            .collect()
    }
}

impl Leaf for ConditionCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let status = if self.status == ConditionStatus::Any {
            " (ever)"
        } else {
            ""
        };
        format!(
            "{}{status}{}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within"),
            span_words(self.first_within, "first recorded within")
        )
    }

    fn data_need(&self) -> Option<Need<'_>> {
        Need::of(DataNeed::Conditions)
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Condition,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
        })
    }

    fn value_set_mut(&mut self) -> Option<&mut ValueSetRef> {
        Some(&mut self.value_set)
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}
