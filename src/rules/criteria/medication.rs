//! The `medication` criterion: active medications whose drug is in a value
//! set, active long enough, by daily dose, as needed, route and dose form,
//! counting distinct drugs by ingredient.

use super::coded::CodedItem;
use super::dose::{self, DoseTest};
use super::{Items, Kind, Leaf, Need, Outcome, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use crate::terminology::drugs::RouteClass;
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
    /// Distinct drugs needed (default 1), by ingredient set.
    pub min_count: Option<usize>,
    /// Daily dose test.
    pub dose: Option<DoseTest>,
    /// Whether the medication is (true) or is not (false) as needed.
    pub as_needed: Option<bool>,
    /// Route classes accepted: the dosage route, else the dose form's.
    pub route: Option<Vec<RouteClass>>,
    /// Dose-form classes accepted (from the drug table).
    pub form: Option<Vec<RouteClass>>,
    /// Dose-form classes excluded (from the drug table).
    pub not_form: Option<Vec<RouteClass>>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
}

impl MedicationCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> MedicationCriterion {
        MedicationCriterion {
            value_set: ids.resolve(self.value_set),
            min_duration: self.min_duration,
            min_count: self.min_count,
            dose: self.dose,
            as_needed: self.as_needed,
            route: self.route,
            form: self.form,
            not_form: self.not_form,
            bind: self.bind,
        }
    }
}

impl MedicationCriterion {
    fn filter(&self) -> dose::Filter<'_> {
        dose::Filter {
            as_needed: self.as_needed,
            route: self.route.as_deref(),
            form: self.form.as_deref(),
            not_form: self.not_form.as_deref(),
        }
    }

    /// The matches, each with the ingredient set that identifies its drug.
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<(Bound<'a>, Vec<String>)> {
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
                let value = self.prescribed(&m.coded, &m.dosage)?;
                Some((
                    Bound {
                        days_active: days,
                        value,
                        reference: m.coded.id.map(|id| format!("{}/{id}", m.resource_type)),
                        resource: Some(m.resource),
                        ..m.bound()
                    },
                    dose::drug_identity(&m.coded),
                ))
            })
            .collect()
    }

    /// Whether the drug as prescribed passes the dose, as-needed, route and
    /// form tests: `None` when not, else the daily dose when tested.
    fn prescribed(
        &self,
        coded: &crate::fhir::Coded<'_>,
        dosage: &[crate::fhir::Dosage<'_>],
    ) -> Option<Option<(f64, Option<&'static str>)>> {
        let filter = self.filter();
        if !filter.passes(coded, dosage) {
            return None;
        }
        match &self.dose {
            Some(test) => Some(Some((test.passes(coded, dosage)?, Some(test.unit())))),
            None => Some(None),
        }
    }
}

impl Leaf for MedicationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let matched = self.matches(ev);
        let enough = distinct_count(&matched) >= self.min_count.unwrap_or(1);
        Outcome::Matched(if enough {
            matched.into_iter().map(|(b, _)| b).collect()
        } else {
            Vec::new()
        })
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let count = self
            .min_count
            .filter(|n| *n > 1)
            .map(|n| format!("{n}+ of "))
            .unwrap_or_default();
        let filter = self.filter();
        let dose = self
            .dose
            .as_ref()
            .map(|d| format!(" with {}", d.describe()))
            .unwrap_or_default();
        format!(
            "{count}active {}{}{dose}{}",
            title(value_sets, &self.value_set),
            span_words(self.min_duration, "for at least"),
            filter.describe()
        )
    }

    fn data_need(&self) -> Option<Need<'_>> {
        Need::of(DataNeed::Medications)
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Medication,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        let filter = self.filter();
        self.dose
            .as_ref()
            .and_then(DoseTest::problem)
            .or_else(|| filter.problem())
    }
}

/// Distinct drugs among matches, by ingredient set (two strengths of one
/// drug, or a renewal, are one drug; a combination product is one drug,
/// distinct from each of its single-ingredient parts).
fn distinct_count(items: &[(Bound<'_>, Vec<String>)]) -> usize {
    let mut drugs: Vec<&[String]> = items.iter().map(|(_, d)| d.as_slice()).collect();
    drugs.sort_unstable();
    drugs.dedup();
    drugs.len()
}
