//! The `age` criterion: the patient's age in whole years, inclusive bounds.

use super::{Criterion, Items, Leaf, Need, Outcome};
use crate::fhir::DataNeed;
use crate::rules::eval::Evaluator;
use crate::rules::valueset::ValueSet;
use serde::Deserialize;

/// Inclusive age bounds.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AgeBounds {
    /// Lowest age that matches.
    pub min: Option<i32>,
    /// Highest age that matches.
    pub max: Option<i32>,
}

impl Leaf for AgeBounds {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        // Without a birth date the age is unknown: neither in nor out of bounds.
        let Some(age) = ev.record.age_on(ev.now.date()) else {
            return Outcome::Unknown("no birth date on record".into());
        };
        Outcome::Test(
            self.min.is_none_or(|min| age >= min) && self.max.is_none_or(|max| age <= max),
        )
    }

    fn describe(&self, _: &[ValueSet]) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("age {min}–{max}"),
            (Some(min), None) => format!("age ≥ {min}"),
            (None, Some(max)) => format!("age ≤ {max}"),
            (None, None) => "any age".into(),
        }
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(DataNeed::Patient)
    }

    fn items(&self) -> Option<Items<'_>> {
        None
    }

    fn unreachable(&self) -> Option<String> {
        let (min, max) = (self.min?, self.max?);
        (min > max).then(|| format!("unreachable: age min {min} is above max {max}"))
    }
}

/// Why the age bounds among `children` of one `all` cannot all hold.
pub(super) fn contradiction(children: &[Criterion]) -> Option<String> {
    let (mut low, mut high) = (i32::MIN, i32::MAX);
    for child in children {
        if let Criterion::Age(b) = child {
            low = low.max(b.min.unwrap_or(i32::MIN));
            high = high.min(b.max.unwrap_or(i32::MAX));
        }
    }
    (low > high).then(|| format!("unreachable: `all` requires age ≥ {low} and ≤ {high}"))
}
