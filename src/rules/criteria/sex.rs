//! The `sex` criterion: Patient.gender.

use super::{Criterion, Items, Leaf, Need, Outcome};
use crate::fhir::DataNeed;
use crate::rules::eval::Evaluator;
use crate::rules::valueset::ValueSet;
use serde::Deserialize;
use std::collections::BTreeSet;

/// Patient.gender, as FHIR codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// `male`.
    Male,
    /// `female`.
    Female,
    /// `other`.
    Other,
    /// `unknown`.
    Unknown,
}

impl Sex {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
}

impl Leaf for Sex {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        match ev.record.gender {
            Some(gender) => Outcome::Test(gender == self.as_str()),
            None => Outcome::Unknown("no gender on record".into()),
        }
    }

    fn describe(&self, _: &[ValueSet]) -> String {
        self.as_str().to_string()
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(DataNeed::Patient)
    }

    fn items(&self) -> Option<Items<'_>> {
        None
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// Why the sexes among `children` of one `all` cannot all hold.
pub(super) fn contradiction(children: &[Criterion]) -> Option<String> {
    let sexes: BTreeSet<Sex> = children
        .iter()
        .filter_map(|c| {
            if let Criterion::Sex(s) = c {
                Some(*s)
            } else {
                None
            }
        })
        .collect();
    (sexes.len() > 1).then(|| "unreachable: `all` requires two different sexes".to_string())
}
