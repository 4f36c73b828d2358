//! The criteria of the rule language: the combinators `all`, `any` and `not`
//! (evaluated in `eval.rs`) and the leaves, one file each.
//!
//! A leaf's file owns everything about it: its serde model, its evaluation,
//! its words in the catalogue, the data it needs, the coded items it matches
//! (which give the trigger index, its `as:` binding and its value set) and
//! its load-time checks, all through [`Leaf`]. The only dispatch over the
//! criterion kinds is [`Criterion::node`] and [`Criterion::node_mut`], and
//! they are exhaustive, so a new leaf cannot compile with a piece missing.

mod age;
mod coded;
mod condition;
mod draft_order;
mod encounter;
mod medication;
mod observation;
mod procedure;
mod sex;

pub use age::AgeBounds;
pub use condition::{ConditionCriterion, ConditionStatus};
pub use draft_order::{DraftOrderCriterion, OrderType};
pub use encounter::{EncounterCriterion, EncounterScope};
pub use medication::MedicationCriterion;
pub use observation::{Comparator, ObservationCriterion, ValueTest};
pub use procedure::ProcedureCriterion;
pub use sex::Sex;

use super::eval::{Bound, Evaluator};
use super::model::{Span, ValueSetRef};
use super::valueset::ValueSet;
use crate::fhir::{Coded, DataNeed};
use serde::Deserialize;
use time::OffsetDateTime;

/// One criterion. Value-set references are resolved to ids at load time.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Criterion {
    /// Every child holds.
    All(Vec<Criterion>),
    /// At least one child holds.
    Any(Vec<Criterion>),
    /// The child does not hold.
    Not(Box<Criterion>),
    /// Age in whole years, inclusive bounds.
    Age(AgeBounds),
    /// Patient.gender.
    Sex(Sex),
    /// A Condition.
    Condition(ConditionCriterion),
    /// Active medications.
    Medication(MedicationCriterion),
    /// Observations.
    Observation(ObservationCriterion),
    /// Performed procedures.
    Procedure(ProcedureCriterion),
    /// Encounter class.
    Encounter(EncounterCriterion),
    /// A draft order.
    DraftOrder(DraftOrderCriterion),
}

/// A criterion seen as a combinator or a leaf.
pub(crate) enum Node<'c> {
    /// Every child holds.
    All(&'c [Criterion]),
    /// At least one child holds.
    Any(&'c [Criterion]),
    /// The child does not hold.
    Not(&'c Criterion),
    /// A leaf.
    Leaf(&'c dyn Leaf),
}

/// What every leaf criterion provides. No method has a default, so a new
/// leaf must say what it does for each.
pub(crate) trait Leaf {
    /// Evaluates the leaf against the evaluator's record.
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a>;
    /// Plain words for the generated catalogue.
    fn describe(&self, value_sets: &[ValueSet]) -> String;
    /// The record data the leaf reads, which becomes a prefetch template.
    fn data_need(&self) -> Option<Need<'_>>;
    /// The coded items the leaf matches; `None` for leaves that test the
    /// patient or the encounter, which no code can trigger.
    fn items(&self) -> Option<Items<'_>>;
    /// The value-set reference, for resolution at load.
    fn value_set_mut(&mut self) -> Option<&mut ValueSetRef>;
    /// Why the leaf can never hold, if it cannot.
    fn unreachable(&self) -> Option<String>;
}

/// The result of a leaf.
pub(crate) enum Outcome<'a> {
    /// A test of the patient or the encounter, which binds nothing.
    Test(bool),
    /// The items matched; the leaf holds when there are any.
    Matched(Vec<Bound<'a>>),
}

/// What kind of record item a leaf matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A draft order in context (order hooks only).
    DraftOrder,
    /// An active medication.
    Medication,
    /// A Condition.
    Condition,
    /// An Observation.
    Observation,
    /// A performed Procedure.
    Procedure,
}

/// The coded items a leaf matches.
pub(crate) struct Items<'c> {
    /// Which record items.
    pub kind: Kind,
    /// The codes that match.
    pub value_set: &'c ValueSetRef,
    /// The `as:` name its matches are bound to.
    pub binding: Option<&'c str>,
}

/// The data a leaf reads.
pub(crate) struct Need<'c> {
    /// What to prefetch.
    pub data: DataNeed,
    /// Codes the query may be narrowed to.
    pub codes: Option<&'c ValueSetRef>,
}

impl Need<'_> {
    /// A need not narrowed by codes.
    fn of(data: DataNeed) -> Option<Need<'static>> {
        Some(Need { data, codes: None })
    }
}

impl Criterion {
    /// This criterion as a combinator or a leaf: the one dispatch over kinds.
    pub(crate) fn node(&self) -> Node<'_> {
        match self {
            Criterion::All(children) => Node::All(children),
            Criterion::Any(children) => Node::Any(children),
            Criterion::Not(child) => Node::Not(child),
            Criterion::Age(leaf) => Node::Leaf(leaf),
            Criterion::Sex(leaf) => Node::Leaf(leaf),
            Criterion::Condition(leaf) => Node::Leaf(leaf),
            Criterion::Medication(leaf) => Node::Leaf(leaf),
            Criterion::Observation(leaf) => Node::Leaf(leaf),
            Criterion::Procedure(leaf) => Node::Leaf(leaf),
            Criterion::Encounter(leaf) => Node::Leaf(leaf),
            Criterion::DraftOrder(leaf) => Node::Leaf(leaf),
        }
    }

    /// The children of a combinator, or the leaf, mutably.
    fn node_mut(&mut self) -> Result<Vec<&mut Criterion>, &mut dyn Leaf> {
        match self {
            Criterion::All(children) | Criterion::Any(children) => {
                Ok(children.iter_mut().collect())
            }
            Criterion::Not(child) => Ok(vec![child]),
            Criterion::Age(leaf) => Err(leaf),
            Criterion::Sex(leaf) => Err(leaf),
            Criterion::Condition(leaf) => Err(leaf),
            Criterion::Medication(leaf) => Err(leaf),
            Criterion::Observation(leaf) => Err(leaf),
            Criterion::Procedure(leaf) => Err(leaf),
            Criterion::Encounter(leaf) => Err(leaf),
            Criterion::DraftOrder(leaf) => Err(leaf),
        }
    }

    /// Visits this criterion and every descendant.
    pub fn walk<'c>(&'c self, visit: &mut impl FnMut(&'c Criterion)) {
        visit(self);
        match self.node() {
            Node::All(children) | Node::Any(children) => {
                children.iter().for_each(|c| c.walk(visit))
            }
            Node::Not(child) => child.walk(visit),
            Node::Leaf(_) => {}
        }
    }

    /// Visits every value-set reference mutably (for resolution at load).
    pub fn value_sets_mut(&mut self, visit: &mut impl FnMut(&mut ValueSetRef)) {
        match self.node_mut() {
            Ok(children) => children.into_iter().for_each(|c| c.value_sets_mut(visit)),
            Err(leaf) => leaf.value_set_mut().into_iter().for_each(visit),
        }
    }

    /// The coded items this criterion matches, if it is such a leaf.
    pub(crate) fn items(&self) -> Option<Items<'_>> {
        match self.node() {
            Node::Leaf(leaf) => leaf.items(),
            Node::All(_) | Node::Any(_) | Node::Not(_) => None,
        }
    }

    /// Whether this is a leaf matching draft orders.
    pub(crate) fn is_draft_order(&self) -> bool {
        self.items().is_some_and(|i| i.kind == Kind::DraftOrder)
    }

    /// Plain words for what a criterion checks, e.g. "age ≥ 70 and a draft
    /// order in PSA test", for the generated rule catalogue.
    pub fn describe(&self, value_sets: &[ValueSet]) -> String {
        let join = |children: &[Criterion], separator: &str| {
            children
                .iter()
                .map(|c| c.describe(value_sets))
                .collect::<Vec<_>>()
                .join(separator)
        };
        match self.node() {
            Node::All(children) => join(children, " and "),
            Node::Any(children) => format!("({})", join(children, " or ")),
            Node::Not(child) => format!("not {}", child.describe(value_sets)),
            Node::Leaf(leaf) => leaf.describe(value_sets),
        }
    }

    /// Why this criterion can never hold, for each reason found: a leaf
    /// that cannot hold, or an `all` whose leaves contradict each other.
    /// Children are not visited.
    pub(crate) fn unreachable(&self) -> Vec<String> {
        match self.node() {
            Node::All(children) => [age::contradiction(children), sex::contradiction(children)]
                .into_iter()
                .flatten()
                .collect(),
            Node::Any(_) | Node::Not(_) => Vec::new(),
            Node::Leaf(leaf) => leaf.unreachable().into_iter().collect(),
        }
    }
}

/// A value set's title for the catalogue, or its URL when it is not loaded.
fn title(value_sets: &[ValueSet], r: &ValueSetRef) -> String {
    value_sets
        .get(r.index)
        .map_or(r.url.clone(), |v| v.title.clone())
}

/// ` {prefix} N days` for a set span, else nothing.
fn span_words(span: Option<Span>, prefix: &str) -> String {
    span.map(|Span(d)| format!(" {prefix} {} days", d.whole_days()))
        .unwrap_or_default()
}

impl<'a> Evaluator<'_, 'a> {
    /// Whether one of the codes is in the value set.
    fn in_set(&self, vs: &ValueSetRef, coded: &Coded<'a>) -> bool {
        self.value_sets[vs.index]
            .first_match(&coded.codes)
            .is_some()
    }

    /// Whether `date` lies in the window ending now (inclusive of its first day).
    fn within(&self, date: Option<OffsetDateTime>, span: Option<Span>) -> bool {
        match span {
            None => true,
            Some(Span(span)) => date.is_some_and(|d| {
                let start = (self.now - span).date();
                d.date() >= start && d <= self.now
            }),
        }
    }
}
