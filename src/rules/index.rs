//! The trigger index: finds the rules that could fire for a record by looking
//! up the record's codes, so that evaluation does not grow with rules that
//! cannot match.
//!
//! Each rule gets a trigger: the value sets of which at least one must match
//! for the rule to hold. On order hooks that is its draft-order criteria (a
//! rule fires there only on a matching draft). On patient-view it is derived
//! from `when`: a leaf, the first child of an `all` that has a trigger, or
//! every child of an `any` when each has one. Rules without a trigger are
//! always candidates.

use super::criteria::{Criterion, Kind, Node};
use super::model::Rule;
use super::valueset::{ValueSet, ValueSetId};
use crate::fhir::{Code, PatientRecord};
use std::collections::HashMap;

/// (kind, system, code) → rules.
#[derive(Debug, Default)]
struct CodeMap(HashMap<(Kind, String), HashMap<String, Vec<usize>>>);

impl CodeMap {
    fn insert(&mut self, kind: Kind, vs: &ValueSet, rule: usize) {
        for (system, code) in vs.codes() {
            let rules = self
                .0
                .entry((kind, system.to_string()))
                .or_default()
                .entry(code.to_string())
                .or_default();
            if rules.last() != Some(&rule) {
                rules.push(rule);
            }
        }
    }

    fn hits(&self, kind: Kind, codes: &[Code<'_>], out: &mut Vec<usize>) {
        for code in codes {
            let system = super::valueset::canonical_system(code.system);
            if let Some(rules) = self
                .0
                .get(&(kind, system.to_string()))
                .and_then(|m| m.get(code.code))
            {
                out.extend_from_slice(rules);
            }
        }
    }
}

/// Trigger indexes for order hooks and for patient-view.
#[derive(Debug, Default)]
pub(crate) struct TriggerIndex {
    orders: CodeMap,
    view: CodeMap,
    /// Rules that have no patient-view trigger.
    untriggered_view: Vec<usize>,
}

impl TriggerIndex {
    pub(crate) fn build(rules: &[Rule], value_sets: &[ValueSet]) -> TriggerIndex {
        let mut index = TriggerIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            for trigger in rule.draft_triggers() {
                index
                    .orders
                    .insert(Kind::DraftOrder, &value_sets[trigger.id], i);
            }
            match view_trigger(&rule.when) {
                Some(leaves) => {
                    for (kind, vs) in leaves {
                        index.view.insert(kind, &value_sets[vs], i);
                    }
                }
                None => index.untriggered_view.push(i),
            }
        }
        index
    }

    /// Indexes of the rules that could fire on this record, sorted.
    pub(crate) fn candidates(&self, order_hook: bool, record: &PatientRecord<'_>) -> Vec<usize> {
        let mut hits = Vec::new();
        if order_hook {
            for draft in record.draft_orders.iter().filter(|d| d.selected) {
                self.orders
                    .hits(Kind::DraftOrder, &draft.coded.codes, &mut hits);
            }
        } else {
            hits.extend_from_slice(&self.untriggered_view);
            for m in &record.medications {
                self.view.hits(Kind::Medication, &m.coded.codes, &mut hits);
            }
            for c in &record.conditions {
                self.view.hits(Kind::Condition, &c.coded.codes, &mut hits);
            }
            for o in &record.observations {
                self.view.hits(Kind::Observation, &o.coded.codes, &mut hits);
            }
            for p in &record.procedures {
                self.view.hits(Kind::Procedure, &p.coded.codes, &mut hits);
            }
            for p in &record.planned_orders {
                self.view
                    .hits(Kind::PlannedOrder, &p.coded.codes, &mut hits);
            }
            for e in &record.encounters {
                self.view.hits(Kind::Encounter, &e.types, &mut hits);
            }
        }
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

/// The leaves of which one must match for `c` to hold, if that can be told.
fn view_trigger(c: &Criterion) -> Option<Vec<(Kind, ValueSetId)>> {
    match c.node() {
        Node::Leaf(leaf) => leaf
            .items()
            .filter(|i| i.kind != Kind::DraftOrder)
            .map(|i| vec![(i.kind, i.value_set.id)]),
        Node::All(children) => children.iter().find_map(view_trigger),
        Node::Any(children) => {
            // Draft-order branches never match on patient-view, so they need no trigger.
            let live: Vec<&Criterion> = children.iter().filter(|c| !c.is_draft_order()).collect();
            if live.is_empty() {
                return None;
            }
            live.into_iter()
                .map(view_trigger)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat())
        }
        // Nothing in particular must match for a negation to hold.
        Node::Not(_) => None,
    }
}
