//! The `encounter` criterion: the class or type of the current encounter, or
//! of any encounter within a look-back window.

use super::{Items, Kind, Leaf, Need, Outcome, title};
use crate::fhir::{DataNeed, EncounterFact};
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
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

/// Encounter class and type: one of the two is required; with both, an
/// encounter must have both.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncounterCriterion<V = ValueSetRef> {
    /// Accepted class codes (v3 ActCode).
    pub class: Option<Vec<String>>,
    /// Accepted `Encounter.type` codes: a canonical URL as written,
    /// resolved at load.
    #[serde(rename = "type")]
    pub kind: Option<V>,
    /// Which encounters.
    #[serde(default)]
    pub scope: EncounterScope,
    /// Look-back for `any`.
    pub within: Option<Span>,
    /// Binding name: the matched encounters by their type (needs `type`).
    #[serde(rename = "as")]
    pub bind: Option<String>,
}

impl EncounterCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> EncounterCriterion {
        EncounterCriterion {
            class: self.class,
            kind: self.kind.map(|k| ids.resolve(k)),
            scope: self.scope,
            within: self.within,
            bind: self.bind,
        }
    }
}

impl EncounterCriterion {
    /// Whether one encounter has an accepted class and type.
    fn accepts(&self, ev: &Evaluator<'_, '_>, e: &EncounterFact<'_>) -> bool {
        let class_ok = self
            .class
            .as_ref()
            .is_none_or(|classes| e.class.is_some_and(|k| classes.iter().any(|w| w == k)));
        let type_ok = self
            .kind
            .as_ref()
            .is_none_or(|set| ev.value_sets[set.id].first_match(&e.types).is_some());
        class_ok && type_ok
    }
}

impl EncounterCriterion {
    /// The accepted encounters in scope.
    fn matches<'e, 'a>(&self, ev: &'e Evaluator<'_, 'a>) -> Vec<&'e EncounterFact<'a>> {
        let encounters = &ev.record.encounters;
        match self.scope {
            EncounterScope::Current => (ev.record.current_encounter.iter())
                .flat_map(|current| encounters.iter().filter(move |e| e.id == Some(*current)))
                .filter(|e| self.accepts(ev, e))
                .collect(),
            EncounterScope::Any => (encounters.iter())
                .filter(|e| self.accepts(ev, e) && ev.within(e.start, self.within))
                .collect(),
        }
    }
}

impl Leaf for EncounterCriterion {
    /// A class test holds or not; a type test matches encounters, which an
    /// `as:` name binds by the type that matched ("Hospice care").
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let matched = self.matches(ev);
        let Some(set) = &self.kind else {
            return Outcome::Test(!matched.is_empty());
        };
        let bound = matched.into_iter().map(|e| {
            let code = ev.value_sets[set.id].first_match(&e.types);
            Bound {
                display: code.map_or("encounter", |c| c.display.unwrap_or(c.code)),
                date: e.start,
                days_active: None,
                value: None,
                reference: e.id.map(|id| format!("Encounter/{id}")),
                resource: None,
                kidney: None,
                drug: None,
            }
        });
        Outcome::Matched(bound.collect())
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let class = self
            .class
            .as_ref()
            .map(|c| format!("encounter class {}", c.join("/")));
        let kind = self
            .kind
            .as_ref()
            .map(|k| format!("encounter type {}", title(value_sets, k)));
        [class, kind]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(match self.scope {
            EncounterScope::Current => DataNeed::CurrentEncounter,
            EncounterScope::Any => DataNeed::Encounters,
        })
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Encounter,
            value_set: self.kind.as_ref()?,
            binding: self.bind.as_deref(),
            relative: None,
        })
    }

    fn unreachable(&self) -> Option<String> {
        match (&self.class, &self.kind) {
            (None, None) => Some(
                "`encounter` needs `class` (e.g. `class: [AMB]`) or `type` (a value set URL), or both"
                    .into(),
            ),
            (Some(classes), _) if classes.is_empty() => {
                Some("`encounter` `class` lists no classes: write e.g. `class: [AMB]`".into())
            }
            (_, None) if self.bind.is_some() => Some(
                "`encounter` binds its matches by their type: `as` needs `type` (a value set URL)"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Hook;
    use crate::rules::criteria::testing::{At, evaluate};
    use serde_json::{Value, json};
    use time::macros::datetime;

    const AT: At = At {
        now: datetime!(2026-06-01 0:00 UTC),
        hook: Hook::PatientView,
        encounter_id: Some("e1"),
    };

    fn visit(code: &str) -> Value {
        json!({"resourceType": "ValueSet", "url": "visit",
            "compose": {"include": [{"system": "s", "concept": [{"code": code}]}]}})
    }

    /// Whether the criterion holds for the encounters, the current one `e1`.
    fn holds(criterion: Value, encounters: Value) -> (bool, usize) {
        let seen = evaluate(
            json!({"encounter": criterion}),
            &[visit("wellness")],
            encounters,
            AT,
        );
        (seen.holds == Some(true), seen.skipped)
    }

    fn encounter(id: &str, class: &str, types: Value) -> Value {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
            "type": types, "period": {"start": "2026-05-20"}})
    }

    #[test]
    fn a_type_binds_the_matched_encounters_by_the_type_that_matched() {
        let criterion = json!({"type": "visit", "scope": "any", "as": "limit"});
        let types = json!([{"coding": [{"system": "other", "code": "x", "display": "Visit"},
                                       {"system": "s", "code": "hospice", "display": "Hospice care"}]}]);
        let encounters = json!([encounter("e2", "HH", types)]);
        let seen = evaluate(
            json!({"encounter": criterion.clone()}),
            &[visit("hospice")],
            encounters,
            AT,
        );
        assert_eq!(seen.displays, ["Hospice care"]);
        assert_eq!(seen.references, ["Encounter/e2"]);
        let raw: EncounterCriterion<String> = serde_json::from_value(criterion).unwrap();
        let criterion = raw.resolve(&mut ValueSetIds::new(vec![]));
        assert_eq!(criterion.items().and_then(|i| i.binding), Some("limit"));
        let class_only: EncounterCriterion<String> =
            serde_json::from_value(json!({"class": ["EMER"], "as": "visit"})).unwrap();
        assert!(
            class_only
                .resolve(&mut ValueSetIds::new(vec![]))
                .unreachable()
                .is_some()
        );
    }

    #[test]
    fn type_alone_or_with_class_matches_the_encounter() {
        let wellness = json!([{"coding": [{"system": "s", "code": "wellness"}]}]);
        let other = json!([{"coding": [{"system": "s", "code": "urgent"}]}]);
        let by_type = json!({"type": "visit"});
        assert_eq!(
            holds(
                by_type.clone(),
                json!([encounter("e1", "AMB", wellness.clone())])
            ),
            (true, 0)
        );
        assert!(
            !holds(
                by_type.clone(),
                json!([encounter("e1", "AMB", other.clone())])
            )
            .0
        );
        let both = json!({"type": "visit", "class": ["EMER"]});
        assert!(!holds(both, json!([encounter("e1", "AMB", wellness.clone())])).0);
        let any = json!({"type": "visit", "scope": "any", "within": "30d"});
        assert!(
            holds(
                any,
                json!([
                    encounter("e1", "AMB", other),
                    encounter("e2", "AMB", wellness.clone())
                ])
            )
            .0
        );
        let lone = json!({"coding": [{"system": "s", "code": "wellness"}]});
        assert!(
            holds(by_type.clone(), json!([encounter("e1", "AMB", lone)])).0,
            "a lone CodeableConcept"
        );
        assert_eq!(
            holds(by_type, json!([encounter("e1", "AMB", json!("wellness"))])),
            (false, 1)
        );
    }

    #[test]
    fn neither_class_nor_type_is_unreachable() {
        let raw: EncounterCriterion<String> =
            serde_json::from_value(json!({"scope": "current"})).unwrap();
        let criterion = raw.resolve(&mut ValueSetIds::new(Vec::new()));
        assert!(
            criterion
                .unreachable()
                .is_some_and(|why| why.contains("`class`"))
        );
    }
}
