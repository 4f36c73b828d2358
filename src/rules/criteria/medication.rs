//! The `medication` criterion: active medications whose drug is in a value
//! set, active long enough, counting distinct drugs.

use super::coded::CodedItem;
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Active medications from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MedicationCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Active at least this long.
    pub min_duration: Option<Span>,
    /// Distinct drugs needed (default 1).
    pub min_count: Option<usize>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

impl MedicationCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> MedicationCriterion {
        MedicationCriterion {
            value_set: ids.resolve(self.value_set),
            min_duration: self.min_duration,
            min_count: self.min_count,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl MedicationCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        // Record order: the card lists the drugs as the record has them.
        ev.coded_items(&ev.record.medications, &self.value_set, None, |_| true)
            .into_iter()
            .filter_map(|m| {
                let days = m.start.map(|s| (ev.now - s).whole_days());
                if let Some(Span(min)) = self.min_duration
                    && days.is_none_or(|d| d < min.whole_days())
                {
                    return None;
                }
                Some(Bound {
                    days_active: days,
                    reference: m.coded.id.map(|id| format!("{}/{id}", m.resource_type)),
                    resource: Some(m.resource),
                    ..m.bound()
                })
            })
            .collect()
    }
}

impl Leaf for MedicationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let matched = self.matches(ev);
        let enough = distinct_count(&matched) >= self.min_count.unwrap_or(1);
        Outcome::Matched(if enough { matched } else { Vec::new() })
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let count = self
            .min_count
            .filter(|n| *n > 1)
            .map(|n| format!("{n}+ of "))
            .unwrap_or_default();
        format!(
            "{count}active {}{}",
            title(value_sets, &self.value_set),
            span_words(self.min_duration, "for at least")
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(DataNeed::Medications)
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Medication,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// Distinct drugs among matches, by name.
fn distinct_count(items: &[Bound<'_>]) -> usize {
    let mut names: Vec<&str> = items.iter().map(|b| b.display).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}
