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
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl ConditionCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let conditions = &ev.record.conditions;
        let mut matched = ev.coded_items(conditions, &self.value_set, self.within, |f| {
            self.status == ConditionStatus::Any || f.active
        });
        if let Some(span) = self.first_within {
            // An acute problem: the earliest matching record must be recent,
            // and the card names it.
            let earliest = matched.iter().filter_map(|f| f.onset).min();
            if !ev.within(earliest, Some(span)) {
                return Vec::new();
            }
            matched.sort_by_key(|f| f.onset);
        } else {
            latest_first(&mut matched);
        }
        matched.into_iter().map(CodedItem::bound).collect()
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
