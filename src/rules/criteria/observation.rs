//! The `observation` criterion: Observations whose code is in a value set,
//! optionally with a comparison on the latest value.

use super::coded::{CodedItem, latest_first};
use super::{Items, Kind, Leaf, Need, Outcome, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Observations from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservationCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Look-back window.
    pub within: Option<Span>,
    /// Comparison on the latest value.
    pub value: Option<ValueTest>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
}

/// A numeric comparison.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ValueTest {
    /// How the value compares with the threshold.
    pub comparator: Comparator,
    /// Threshold.
    pub value: f64,
    /// Required unit.
    pub unit: Option<String>,
}

/// How an observed value compares with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum Comparator {
    /// `<`.
    #[serde(rename = "<")]
    Less,
    /// `<=`.
    #[serde(rename = "<=")]
    LessOrEqual,
    /// `>`.
    #[serde(rename = ">")]
    Greater,
    /// `>=`.
    #[serde(rename = ">=")]
    GreaterOrEqual,
    /// `=`.
    #[serde(rename = "=")]
    Equal,
}

impl Comparator {
    /// The symbol as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Less => "<",
            Comparator::LessOrEqual => "<=",
            Comparator::Greater => ">",
            Comparator::GreaterOrEqual => ">=",
            Comparator::Equal => "=",
        }
    }

    /// Whether `actual` compares so with `threshold`.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Comparator::Less => actual < threshold,
            Comparator::LessOrEqual => actual <= threshold,
            Comparator::Greater => actual > threshold,
            Comparator::GreaterOrEqual => actual >= threshold,
            Comparator::Equal => (actual - threshold).abs() < f64::EPSILON,
        }
    }
}

impl ObservationCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> ObservationCriterion {
        ObservationCriterion {
            value_set: ids.resolve(self.value_set),
            within: self.within,
            value: self.value,
            bind: self.bind,
        }
    }
}

impl ObservationCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let observations = &ev.record.observations;
        let mut matched = ev.coded_items(observations, &self.value_set, self.within, |_| true);
        latest_first(&mut matched);
        let Some(test) = &self.value else {
            return matched.into_iter().map(CodedItem::bound).collect();
        };
        // Only the latest value in the required unit is compared.
        let latest = matched.into_iter().find_map(|o| {
            let (value, unit) = o.value?;
            let unit_ok = test.unit.as_deref().is_none_or(|u| unit == Some(u));
            unit_ok.then_some((o, value, unit))
        });
        match latest {
            Some((o, value, unit)) if test.comparator.holds(value, test.value) => vec![Bound {
                value: Some((value, unit)),
                ..o.bound()
            }],
            Some(_) | None => Vec::new(),
        }
    }
}

impl Leaf for ObservationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let value = self
            .value
            .as_ref()
            .map(|v| {
                let unit = v
                    .unit
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default();
                format!(" latest {} {}{unit}", v.comparator.as_str(), v.value)
            })
            .unwrap_or_default();
        format!(
            "{}{value}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within")
        )
    }

    fn data_need(&self) -> Option<Need<'_>> {
        // Observations are many, so the query asks only for the codes read.
        Some(Need {
            data: DataNeed::Observations,
            codes: Some(&self.value_set),
        })
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Observation,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}
