//! The evaluator: a pure function of (rules, patient record, hook, now).
//! No I/O and no clock reads happen here. This file holds the combinators
//! (`all`, `any`, `not`) and the binding of matches to `as:` names; each
//! leaf evaluates itself in its file under `criteria/`.

use super::criteria::{Criterion, Kind, Node, Outcome};
use super::model::Rule;
use super::valueset::ValueSet;
use crate::cds::Hook;
use crate::fhir::PatientRecord;
use time::OffsetDateTime;

/// One item a criterion matched, as the card text may name it.
#[derive(Debug, Clone)]
pub struct Bound<'a> {
    /// Human-readable name.
    pub display: &'a str,
    /// Onset, start, or effective date.
    pub date: Option<OffsetDateTime>,
    /// Days a medication has been active.
    pub days_active: Option<i64>,
    /// Observation value and unit.
    pub value: Option<(f64, Option<&'a str>)>,
    /// `Type/id` of the matched resource (draft order or medication request).
    pub reference: Option<String>,
    /// The matched medication resource, for suggestions that update it.
    pub resource: Option<&'a crate::json::Json<'a>>,
}

/// What a rule's named criteria matched.
pub type Bindings<'r, 'a> = Vec<(&'r str, Vec<Bound<'a>>)>;

/// A rule that fired, with what it matched.
#[derive(Debug)]
pub struct Finding<'r, 'a> {
    /// The rule.
    pub rule: &'r Rule,
    /// Its named matches.
    pub bindings: Bindings<'r, 'a>,
    /// Patient age at `now`.
    pub age: Option<i32>,
    /// Patient.gender.
    pub sex: Option<&'a str>,
}

impl<'a> Finding<'_, 'a> {
    /// The items bound to `name` (empty when that criterion did not match).
    pub fn bound(&self, name: &str) -> &[Bound<'a>] {
        self.bindings
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, items)| items.as_slice())
    }
}

/// The outcome of one rule.
#[derive(Debug)]
pub enum Verdict<'r, 'a> {
    /// The rule fires.
    Fires(Finding<'r, 'a>),
    /// The rule matched but this named exclusion holds.
    Excluded(&'r str),
    /// The rule does not apply.
    DoesNotApply,
}

/// Evaluates rules against one patient record at one instant.
pub struct Evaluator<'e, 'a> {
    /// Compiled value sets, indexed by `ValueSetRef::id`.
    pub value_sets: &'e [ValueSet],
    /// The patient.
    pub record: &'e PatientRecord<'a>,
    /// The evaluation time.
    pub now: OffsetDateTime,
    /// The hook being served.
    pub hook: Hook,
}

#[derive(Default)]
struct State<'r, 'a> {
    bindings: Bindings<'r, 'a>,
    draft_matched: bool,
}

impl<'e, 'a> Evaluator<'e, 'a> {
    /// Evaluates one rule. On order hooks a rule fires only when one of its
    /// draft-order criteria matched: order hooks judge the orders.
    pub fn evaluate<'r>(&self, rule: &'r Rule) -> Verdict<'r, 'a> {
        let mut state = State::default();
        if !self.holds(&rule.when, &mut state) {
            return Verdict::DoesNotApply;
        }
        if self.hook.is_order_hook() && !state.draft_matched {
            return Verdict::DoesNotApply;
        }
        for exclusion in &rule.exclusions {
            if self.holds(&exclusion.when, &mut State::default()) {
                return Verdict::Excluded(&exclusion.id);
            }
        }
        Verdict::Fires(Finding {
            rule,
            bindings: state.bindings,
            age: self.record.age_on(self.now.date()),
            sex: self.record.gender,
        })
    }

    fn holds<'r>(&self, criterion: &'r Criterion, state: &mut State<'r, 'a>) -> bool {
        match criterion.node() {
            Node::All(children) => children.iter().all(|c| self.holds(c, state)),
            // Every branch is evaluated so that each binds what it matched.
            #[allow(clippy::unnecessary_fold)]
            Node::Any(children) => children
                .iter()
                .fold(false, |any, c| self.holds(c, state) || any),
            // What a negated criterion matched is not there to name.
            Node::Not(child) => !self.holds(child, &mut State::default()),
            Node::Leaf(leaf) => match leaf.evaluate(self) {
                Outcome::Test(holds) => holds,
                Outcome::Matched(items) => {
                    let declared = leaf.items();
                    if declared
                        .as_ref()
                        .is_some_and(|i| i.kind == Kind::DraftOrder)
                    {
                        state.draft_matched |= !items.is_empty();
                    }
                    self.bind(state, declared.and_then(|i| i.binding), items)
                }
            },
        }
    }

    /// Records a leaf's matches under its name; true when anything matched.
    fn bind<'r>(
        &self,
        state: &mut State<'r, 'a>,
        name: Option<&'r str>,
        items: Vec<Bound<'a>>,
    ) -> bool {
        let matched = !items.is_empty();
        if let (Some(name), true) = (name, matched) {
            match state.bindings.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => existing.extend(items),
                None => state.bindings.push((name, items)),
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::{Code, Coded, ConditionFact, DraftOrder};
    use crate::rules::valueset::ValueSetIds;
    use serde_json::{Value, json};

    const NOW: OffsetDateTime = time::macros::datetime!(2026-01-01 0:00 UTC);

    /// Value set `n` holds code `c{n}`.
    fn value_sets() -> Vec<ValueSet> {
        (0..3)
            .map(|n| {
                let json = json!({"resourceType": "ValueSet", "url": format!("vs{n}"),
                    "compose": {"include": [{"system": "s", "concept": [{"code": format!("c{n}")}]}]}});
                ValueSet::from_fhir(&json).unwrap()
            })
            .collect()
    }

    fn coded(code: &'static str) -> Coded<'static> {
        Coded {
            id: Some(code),
            codes: vec![Code {
                system: "s",
                code,
                display: None,
            }],
            text: None,
        }
    }

    /// A record with active conditions c0 and c1 and a selected draft order c2.
    fn record() -> PatientRecord<'static> {
        let condition = |code| ConditionFact {
            coded: coded(code),
            active: true,
            onset: None,
        };
        PatientRecord {
            conditions: vec![condition("c0"), condition("c1")],
            draft_orders: vec![DraftOrder {
                resource_type: "ServiceRequest",
                coded: coded("c2"),
                selected: true,
                dosage: Vec::new(),
                authored: None,
            }],
            ..PatientRecord::default()
        }
    }

    /// A criterion from its JSON, resolved against [`value_sets`].
    fn criterion(json: Value) -> Criterion {
        let raw: Criterion<String> = serde_json::from_value(json).unwrap();
        raw.resolve(&mut ValueSetIds::new(value_sets()))
    }

    /// Whether `c` holds on [`record`], and the names it bound.
    fn run(c: &Criterion) -> (bool, Vec<String>) {
        let (sets, record) = (value_sets(), record());
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::PatientView,
        };
        let mut state = State::default();
        let holds = ev.holds(c, &mut state);
        let names = state.bindings.iter().map(|(n, _)| n.to_string()).collect();
        (holds, names)
    }

    fn condition(n: u8, name: &str) -> Value {
        json!({"condition": {"valueSet": format!("vs{n}"), "as": name}})
    }

    #[test]
    fn any_evaluates_and_binds_every_branch() {
        let c =
            criterion(json!({"any": [condition(0, "a"), condition(2, "none"), condition(1, "b")]}));
        assert_eq!(run(&c), (true, vec!["a".into(), "b".into()]));
    }

    #[test]
    fn not_holds_when_its_child_does_not_and_binds_nothing() {
        let c = criterion(json!({"not": condition(2, "absent")}));
        assert_eq!(run(&c), (true, vec![]));
        let c = criterion(json!({"not": {"not": condition(0, "present")}}));
        assert_eq!(run(&c), (true, vec![]), "a double negation binds nothing");
        let c = criterion(json!({"not": condition(0, "present")}));
        assert_eq!(run(&c), (false, vec![]));
    }

    #[test]
    fn all_needs_every_child_and_a_binding_name_gathers_each_match() {
        let c = criterion(json!({"all": [condition(0, "x"), condition(1, "x")]}));
        assert_eq!(run(&c), (true, vec!["x".into()]));
        let c = criterion(json!({"all": [condition(0, "x"), condition(2, "y")]}));
        assert!(!run(&c).0);
    }

    #[test]
    fn order_hooks_fire_only_on_a_matching_draft_order() {
        let rule = |when: Value| -> Rule {
            let coding = json!({"system": "s", "code": "x", "display": "X"});
            serde_json::from_value(json!({
                "id": "r", "version": "1.0.0", "title": "A rule", "category": "screening",
                "hooks": ["order-select"], "when": when,
                "evidence": {"society": "S", "recommendation": "Do not.", "year": 2020, "url": "https://e"},
                "card": {"summary": "s", "indicator": "info", "detail": "d",
                    "source": {"label": "S", "url": "https://e"}, "links": [], "overrideReasons": [coding]},
            }))
            .map(|r: Rule<String>| r.resolve(&mut ValueSetIds::new(value_sets())))
            .unwrap()
        };
        let (sets, record) = (value_sets(), record());
        let on = |hook, rule: &Rule| {
            let ev = Evaluator {
                value_sets: &sets,
                record: &record,
                now: NOW,
                hook,
            };
            matches!(ev.evaluate(rule), Verdict::Fires(_))
        };
        let without_draft =
            rule(json!({"any": [condition(0, "a"), {"draftOrder": {"valueSet": "vs1"}}]}));
        assert!(on(Hook::PatientView, &without_draft));
        assert!(!on(Hook::OrderSelect, &without_draft));
        let with_draft =
            rule(json!({"all": [condition(0, "a"), {"draftOrder": {"valueSet": "vs2"}}]}));
        assert!(on(Hook::OrderSelect, &with_draft));
    }
}
