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
    pub resource: Option<&'a crate::fhir::Json<'a>>,
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
    /// Compiled value sets, indexed by `ValueSetRef::index`.
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
