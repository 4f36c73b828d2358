//! The evaluator: a pure function of (rules, patient record, hook, now).
//! No I/O and no clock reads happen here. This file holds the combinators
//! (`all`, `any`, `not`) and the binding of matches to `as:` names; each
//! leaf evaluates itself in its file under `criteria/`.

use super::criteria::{Criterion, Kind, Node, Outcome, Relative};
use super::model::Rule;
use super::valueset::ValueSet;
use crate::cds::Hook;
use crate::fhir::PatientRecord;
use time::OffsetDateTime;

/// One item a criterion matched, as the card text may name it.
#[derive(Debug, Clone, Default)]
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
    /// Kidney function computed or read by a `kidney` criterion.
    pub kidney: Option<super::criteria::KidneyFunction>,
    /// The drug table's entry for an RxNorm-coded item (its ingredients
    /// name the drug on a card).
    pub drug: Option<&'static crate::terminology::drugs::ClinicalDrug>,
}

impl Bound<'_> {
    /// A drug's short name: its ingredients from the drug table, else its
    /// display up to the strength ("Clonazepam [Klonopin]" stays whole,
    /// "Simvastatin 10 MG" becomes "simvastatin"), lower-cased as RxNorm writes
    /// ingredients.
    pub fn drug_name(&self) -> String {
        if let Some(drug) = self.drug.filter(|d| !d.ingredients.is_empty()) {
            return drug.ingredients.join(" / ");
        }
        let words: Vec<&str> = self
            .display
            .split_whitespace()
            .take_while(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        match words.is_empty() {
            true => self.display.to_lowercase(),
            false => words.join(" ").to_lowercase(),
        }
    }
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
    /// The rule does not apply: this criterion of `when` (a child of its
    /// top-level `all`, or `when` itself) does not hold; `None` when `when`
    /// held but an order hook's rule matched no draft order.
    DoesNotApply(Option<&'r Criterion>),
    /// Whether the rule applies cannot be told: the data a criterion needs
    /// is missing (no weight for a creatinine clearance), for this reason.
    NoData(String),
}

/// A criterion's truth on a record: Kleene's three values, so that missing
/// data stays unknown through `not` instead of turning into a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Truth {
    /// It holds.
    True,
    /// It does not hold.
    False,
    /// The data needed to decide is missing, for this reason.
    Unknown(String),
}

impl Truth {
    fn of(holds: bool) -> Truth {
        if holds { Truth::True } else { Truth::False }
    }

    fn is_true(&self) -> bool {
        *self == Truth::True
    }

    /// `not`: true and false swap; unknown stays unknown.
    fn negate(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            unknown => unknown,
        }
    }
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

/// What one rule's evaluation has bound so far. Entries are only appended,
/// so a `not` or an exclusion sees what was bound before it and drops what
/// it bound itself by truncating back to where it started.
#[derive(Default)]
struct State<'r, 'a> {
    bindings: Vec<(&'r str, Kind, Vec<Bound<'a>>)>,
    draft_matched: bool,
}

impl<'r, 'a> State<'r, 'a> {
    /// The items bound to `name` so far, with the kind of leaf that bound them.
    fn bound(&self, name: &str) -> impl Iterator<Item = (Kind, &Bound<'a>)> {
        self.bindings
            .iter()
            .filter(move |(n, _, _)| *n == name)
            .flat_map(|(_, kind, items)| items.iter().map(move |b| (*kind, b)))
    }

    /// The bindings as a finding names them: one entry per name.
    fn into_bindings(self) -> Bindings<'r, 'a> {
        let mut merged: Bindings<'r, 'a> = Vec::new();
        for (name, _, items) in self.bindings {
            match merged.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => existing.extend(items),
                None => merged.push((name, items)),
            }
        }
        merged
    }
}

impl<'e, 'a> Evaluator<'e, 'a> {
    /// Evaluates one rule. On order hooks a rule fires only when one of its
    /// draft-order criteria matched: order hooks judge the orders.
    /// Exclusions see what `when` bound, for timing relative to it.
    pub fn evaluate<'r>(&self, rule: &'r Rule) -> Verdict<'r, 'a> {
        let mut state = State::default();
        // The children of a top-level `all` one by one, to name the one unmet.
        let parts: &'r [Criterion] = match rule.when.node() {
            Node::All(children) => children,
            _ => std::slice::from_ref(&rule.when),
        };
        for part in parts {
            match self.holds(part, &mut state) {
                Truth::True => {}
                Truth::False => return Verdict::DoesNotApply(Some(part)),
                Truth::Unknown(why) => return Verdict::NoData(why),
            }
        }
        if self.hook.is_order_hook() && !state.draft_matched {
            return Verdict::DoesNotApply(None);
        }
        for exclusion in &rule.exclusions {
            let mark = state.bindings.len();
            let holds = self.holds(&exclusion.when, &mut state).is_true();
            state.bindings.truncate(mark);
            if holds {
                return Verdict::Excluded(&exclusion.id);
            }
        }
        Verdict::Fires(Finding {
            rule,
            bindings: state.into_bindings(),
            age: self.record.age_on(self.now.date()),
            sex: self.record.gender,
        })
    }

    fn holds<'r>(&self, criterion: &'r Criterion, state: &mut State<'r, 'a>) -> Truth {
        match criterion.node() {
            Node::All(children) => {
                let mut unknown = None;
                for child in children {
                    match self.holds(child, state) {
                        Truth::True => {}
                        Truth::False => return Truth::False,
                        Truth::Unknown(why) => unknown = unknown.or(Some(why)),
                    }
                }
                unknown.map_or(Truth::True, Truth::Unknown)
            }
            // Every branch is evaluated so that each binds what it matched.
            Node::Any(children) => {
                let (mut any, mut unknown) = (false, None);
                for child in children {
                    match self.holds(child, state) {
                        Truth::True => any = true,
                        Truth::False => {}
                        Truth::Unknown(why) => unknown = unknown.or(Some(why)),
                    }
                }
                match (any, unknown) {
                    (true, _) => Truth::True,
                    (false, Some(why)) => Truth::Unknown(why),
                    (false, None) => Truth::False,
                }
            }
            // What a negated criterion matched is not there to name.
            Node::Not(child) => {
                let mark = state.bindings.len();
                let truth = self.holds(child, state).negate();
                state.bindings.truncate(mark);
                truth
            }
            Node::Leaf(leaf) => match leaf.evaluate(self) {
                Outcome::Test(holds) => Truth::of(holds),
                Outcome::Unknown(why) => Truth::Unknown(why),
                Outcome::Matched(mut items) => {
                    let Some(declared) = leaf.items() else {
                        return Truth::of(!items.is_empty());
                    };
                    if let Some(relative) = declared.relative {
                        items.retain(|item| self.relative_holds(relative, item, state));
                    }
                    if declared.kind == Kind::DraftOrder {
                        state.draft_matched |= !items.is_empty();
                    }
                    let matched = !items.is_empty();
                    if let (Some(name), true) = (declared.binding, matched) {
                        state.bindings.push((name, declared.kind, items));
                    }
                    Truth::of(matched)
                }
            },
        }
    }

    /// Whether `item` is dated within the window around something bound to
    /// `relative.to`. A draft order without a date is dated now: it is
    /// being ordered.
    fn relative_holds(&self, relative: &Relative, item: &Bound<'a>, state: &State<'_, 'a>) -> bool {
        let Some(date) = item.date else {
            return false;
        };
        state.bound(&relative.to).any(|(kind, anchor)| {
            let anchor = match (anchor.date, kind) {
                (Some(date), _) => date,
                (None, Kind::DraftOrder) => self.now,
                (None, _) => return false,
            };
            relative.contains(anchor, date)
        })
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
            symptom_onset: None,
        };
        PatientRecord {
            conditions: vec![condition("c0"), condition("c1")],
            draft_orders: vec![DraftOrder {
                resource_type: "ServiceRequest",
                coded: coded("c2"),
                selected: true,
                dosage: Vec::new(),
                authored: None,
                reason_codes: Vec::new(),
                reason_references: Vec::new(),
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
        let holds = ev.holds(c, &mut state).is_true();
        let names = state
            .into_bindings()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
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

    /// [`record`] with c0 dated 2 days and c1 dated 12 days before [`NOW`].
    fn dated_record() -> PatientRecord<'static> {
        let mut record = record();
        record.conditions[0].onset = Some(NOW - time::Duration::days(2));
        record.conditions[1].onset = Some(NOW - time::Duration::days(12));
        record
    }

    #[test]
    fn relative_keeps_only_items_in_the_window_around_the_anchor() {
        let (sets, record) = (value_sets(), dated_record());
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::PatientView,
        };
        let holds = |before: &str, after: &str| {
            let c = criterion(json!({"all": [condition(0, "dx"),
                {"condition": {"valueSet": "vs1", "as": "near",
                    "relative": {"to": "dx", "before": before, "after": after}}}]}));
            ev.holds(&c, &mut State::default()).is_true()
        };
        assert!(!holds("9d", "0d"), "c1 is 10 days before c0");
        assert!(holds("10d", "0d"), "the window includes its first day");
        assert!(!holds("0d", "30d"), "c1 is before c0, not after");
        let unanchored = criterion(json!({"condition": {"valueSet": "vs1",
            "relative": {"to": "dx", "before": "30d"}}}));
        assert!(!ev.holds(&unanchored, &mut State::default()).is_true());
    }

    #[test]
    fn exclusions_and_negations_see_what_when_bound_and_keep_their_own_bindings_to_themselves() {
        let rule = |exclusion: Value| -> Rule {
            serde_json::from_value(json!({
                "id": "r", "version": "1.0.0", "title": "A rule", "category": "screening",
                "hooks": ["patient-view"], "when": {"all": [condition(0, "dx"),
                    {"not": {"condition": {"valueSet": "vs2", "as": "hidden"}}}]},
                "exclusions": [{"id": "near", "label": "near", "when": exclusion}],
                "evidence": {"society": "S", "recommendation": "Do not.", "year": 2020, "url": "https://e"},
                "card": {"summary": "s", "indicator": "info", "detail": "d",
                    "source": {"label": "S", "url": "https://e"}, "links": [],
                    "overrideReasons": [{"system": "s", "code": "x", "display": "X"}]},
            }))
            .map(|r: Rule<String>| r.resolve(&mut ValueSetIds::new(value_sets())))
            .unwrap()
        };
        let (sets, record) = (value_sets(), dated_record());
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::PatientView,
        };
        let within = |days: &str| {
            rule(json!({"condition": {"valueSet": "vs1", "as": "other",
                "relative": {"to": "dx", "before": days}}}))
        };
        assert!(matches!(
            ev.evaluate(&within("14d")),
            Verdict::Excluded("near")
        ));
        match ev.evaluate(&within("3d")) {
            Verdict::Fires(finding) => {
                let names: Vec<&str> = finding.bindings.iter().map(|(n, _)| *n).collect();
                assert_eq!(names, ["dx"], "neither the exclusion nor the `not` binds");
            }
            other => panic!("expected the rule to fire, got {other:?}"),
        }
    }

    #[test]
    fn missing_data_stays_unknown_through_not_and_never_fires() {
        let (sets, record) = (value_sets(), record());
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::PatientView,
        };
        let truth = |c: Value| ev.holds(&criterion(c), &mut State::default());
        let unknown = Truth::Unknown("no birth date on record".into());
        assert_eq!(truth(json!({"age": {"min": 65}})), unknown);
        assert_eq!(truth(json!({"not": {"age": {"min": 65}}})), unknown);
        assert_eq!(
            truth(json!({"any": [{"age": {"min": 65}}, condition(0, "a")]})),
            Truth::True
        );
        assert_eq!(
            truth(json!({"any": [{"age": {"min": 65}}, condition(2, "a")]})),
            unknown
        );
        assert_eq!(
            truth(json!({"all": [{"age": {"min": 65}}, condition(2, "a")]})),
            Truth::False
        );
        assert_eq!(
            truth(json!({"all": [condition(0, "a"), {"not": {"age": {"max": 64}}}]})),
            unknown
        );
    }

    #[test]
    fn an_order_reason_is_a_reason_code_or_a_referenced_condition() {
        let sets = value_sets();
        let mut record = record();
        record.draft_orders[0].reason_codes = coded("c0").codes;
        record.draft_orders[0].reason_references = vec!["Condition/c1"];
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::OrderSelect,
        };
        let holds = |extra: Value| {
            let mut draft = json!({"valueSet": "vs2"});
            draft
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let c = criterion(json!({"draftOrder": draft}));
            ev.holds(&c, &mut State::default()).is_true()
        };
        assert!(holds(json!({"reason": "vs0"})), "a reasonCode");
        assert!(holds(json!({"reason": "vs1"})), "a referenced Condition");
        assert!(!holds(json!({"reason": "vs2"})));
        assert!(!holds(json!({"notReason": "vs0"})));
        assert!(holds(json!({"notReason": "vs2"})));
        // A list means any of its value sets.
        assert!(holds(json!({"reason": ["vs2", "vs0"]})));
        assert!(!holds(json!({"notReason": ["vs2", "vs1"]})));
        assert!(holds(json!({"notReason": ["vs2"]})));
        let mut elsewhere = record.draft_orders[0].clone();
        elsewhere.reason_codes.clear();
        elsewhere.reason_references = vec!["Condition/elsewhere"];
        let record = PatientRecord {
            draft_orders: vec![elsewhere],
            conditions: record.conditions.clone(),
            ..PatientRecord::default()
        };
        let ev = Evaluator {
            record: &record,
            ..ev
        };
        let c = criterion(json!({"draftOrder": {"valueSet": "vs2", "reason": "vs1"}}));
        let holds = ev.holds(&c, &mut State::default()).is_true();
        assert!(!holds, "a reference to no Condition on record");
    }
}
