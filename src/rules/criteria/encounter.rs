//! The `encounter` criterion: the class of the current encounter, or of any
//! encounter within a look-back window.

use super::{Items, Leaf, Need, Outcome};
use crate::fhir::DataNeed;
use crate::rules::eval::Evaluator;
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use serde::Deserialize;

/// Encounter scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EncounterScope {
    /// The encounter in context.
    #[default]
    Current,
    /// Any encounter in the window.
    Any,
}

/// Encounter class.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncounterCriterion {
    /// Accepted class codes.
    pub class: Vec<String>,
    /// Which encounters.
    #[serde(default)]
    pub scope: EncounterScope,
    /// Look-back for `any`.
    pub within: Option<Span>,
}

impl Leaf for EncounterCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let class_ok =
            |class: Option<&str>| class.is_some_and(|k| self.class.iter().any(|w| w == k));
        let encounters = &ev.record.encounters;
        let holds = match self.scope {
            EncounterScope::Current => ev.record.current_encounter.is_some_and(|current| {
                encounters
                    .iter()
                    .any(|e| e.id == Some(current) && class_ok(e.class))
            }),
            EncounterScope::Any => encounters
                .iter()
                .any(|e| class_ok(e.class) && ev.within(e.start, self.within)),
        };
        Outcome::Test(holds)
    }

    fn describe(&self, _: &[ValueSet]) -> String {
        format!("encounter class {}", self.class.join("/"))
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(match self.scope {
            EncounterScope::Current => DataNeed::CurrentEncounter,
            EncounterScope::Any => DataNeed::Encounters,
        })
    }

    fn items(&self) -> Option<Items<'_>> {
        None
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}
