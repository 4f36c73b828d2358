//! The criteria of the rule language: the combinators `all`, `any` and `not`
//! (evaluated in `eval.rs`) and the leaves, one file each.
//!
//! A leaf's file owns everything about it: its serde model, its evaluation,
//! its words in the catalogue, the data it needs, the coded items it matches
//! (which give the trigger index, its `as:` binding and its value set) and
//! its load-time checks, all through `Leaf`. The only dispatches over the
//! criterion kinds are `Criterion::node` and `Criterion::resolve`, and
//! they are exhaustive, so a new leaf cannot compile with a piece missing.

mod age;
mod coded;
mod condition;
mod dose;
mod draft_order;
mod encounter;
mod kidney;
mod medication;
mod new_start;
mod observation;
mod planned_order;
mod procedure;
mod relative;
mod sex;

pub use age::AgeBounds;
pub use condition::{ConditionCriterion, ConditionStatus};
pub use dose::{DoseTest, DoseThreshold};
pub use draft_order::{DraftOrderCriterion, OrderType, ValueSets};
pub use encounter::{EncounterCriterion, EncounterScope};
pub use kidney::{KidneyCriterion, KidneyFunction, KidneyMeasure, KidneyTest};
pub use medication::MedicationCriterion;
pub use new_start::NewStart;
pub use observation::{Comparator, CountTest, Interpretation, ObservationCriterion, ValueTest};
pub use planned_order::PlannedOrderCriterion;
pub use procedure::ProcedureCriterion;
pub use relative::Relative;
pub use sex::Sex;

use super::eval::{Bound, Evaluator};
use super::model::Span;
use super::valueset::{ValueSet, ValueSetIds, ValueSetRef};
use crate::fhir::{Coded, DataNeed};
use serde::Deserialize;
use time::OffsetDateTime;

/// One criterion. Value sets are written as canonical URLs (`V = String`)
/// and resolved at load time (`V = ValueSetRef`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Criterion<V = ValueSetRef> {
    /// Every child holds.
    All(Vec<Criterion<V>>),
    /// At least one child holds.
    Any(Vec<Criterion<V>>),
    /// The child does not hold.
    Not(Box<Criterion<V>>),
    /// Age in whole years, inclusive bounds.
    Age(AgeBounds),
    /// Patient.gender.
    Sex(Sex),
    /// A Condition.
    Condition(ConditionCriterion<V>),
    /// Active medications.
    Medication(MedicationCriterion<V>),
    /// Observations.
    Observation(ObservationCriterion<V>),
    /// Performed procedures.
    Procedure(ProcedureCriterion<V>),
    /// Encounter class or type.
    Encounter(EncounterCriterion<V>),
    /// A draft order.
    DraftOrder(DraftOrderCriterion<V>),
    /// Kidney function: creatinine clearance or eGFR against a threshold.
    Kidney(KidneyCriterion<V>),
    /// A planned (active, scheduled) order.
    PlannedOrder(PlannedOrderCriterion<V>),
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
    /// The record data the leaf reads, which become prefetch templates (a
    /// leaf may read several: `kidney` reads the Patient and results).
    fn data_need(&self) -> Vec<Need<'_>>;
    /// The coded items the leaf matches; `None` for leaves that test the
    /// patient or the encounter, which no code can trigger.
    fn items(&self) -> Option<Items<'_>>;
    /// Why the leaf can never hold, if it cannot.
    fn unreachable(&self) -> Option<String>;
}

/// The result of a leaf.
pub(crate) enum Outcome<'a> {
    /// A test of the patient or the encounter, which binds nothing.
    Test(bool),
    /// The items matched; the leaf holds when there are any.
    Matched(Vec<Bound<'a>>),
    /// The data the leaf needs is missing (no birth date, no recent
    /// weight), for this reason: the leaf neither holds nor fails, and
    /// `not` keeps it unknown.
    Unknown(String),
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
    /// A planned order (active ServiceRequest, Procedure in preparation).
    PlannedOrder,
    /// An Encounter, by its type.
    Encounter,
}

/// The coded items a leaf matches.
pub(crate) struct Items<'c> {
    /// Which record items.
    pub kind: Kind,
    /// The codes that match.
    pub value_set: &'c ValueSetRef,
    /// The `as:` name its matches are bound to.
    pub binding: Option<&'c str>,
    /// The window around another criterion's matches that its items must
    /// be dated in.
    pub relative: Option<&'c Relative>,
}

/// The data a leaf reads.
pub(crate) struct Need<'c> {
    /// What to prefetch.
    pub data: DataNeed,
    /// Codes the query for this data may be narrowed to.
    pub codes: Option<&'c ValueSetRef>,
}

impl Need<'_> {
    /// A need not narrowed by codes.
    fn of(data: DataNeed) -> Vec<Need<'static>> {
        vec![Need { data, codes: None }]
    }
}

impl Criterion<String> {
    /// The criterion with its value-set URLs resolved.
    pub(crate) fn resolve(self, ids: &mut ValueSetIds) -> Criterion {
        let all = |children: Vec<Criterion<String>>, ids: &mut ValueSetIds| {
            children.into_iter().map(|c| c.resolve(ids)).collect()
        };
        match self {
            Criterion::All(children) => Criterion::All(all(children, ids)),
            Criterion::Any(children) => Criterion::Any(all(children, ids)),
            Criterion::Not(child) => Criterion::Not(Box::new(child.resolve(ids))),
            Criterion::Age(leaf) => Criterion::Age(leaf),
            Criterion::Sex(leaf) => Criterion::Sex(leaf),
            Criterion::Condition(leaf) => Criterion::Condition(leaf.resolve(ids)),
            Criterion::Medication(leaf) => Criterion::Medication(leaf.resolve(ids)),
            Criterion::Observation(leaf) => Criterion::Observation(leaf.resolve(ids)),
            Criterion::Procedure(leaf) => Criterion::Procedure(leaf.resolve(ids)),
            Criterion::Encounter(leaf) => Criterion::Encounter(leaf.resolve(ids)),
            Criterion::DraftOrder(leaf) => Criterion::DraftOrder(leaf.resolve(ids)),
            Criterion::Kidney(leaf) => Criterion::Kidney(leaf.resolve(ids)),
            Criterion::PlannedOrder(leaf) => Criterion::PlannedOrder(leaf.resolve(ids)),
        }
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
            Criterion::Kidney(leaf) => Node::Leaf(leaf),
            Criterion::PlannedOrder(leaf) => Node::Leaf(leaf),
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
            Node::Leaf(leaf) => {
                let relative = leaf.items().and_then(|i| i.relative);
                leaf.describe(value_sets) + &relative.map(Relative::describe).unwrap_or_default()
            }
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

/// A value set's title, for the catalogue.
fn title(value_sets: &[ValueSet], r: &ValueSetRef) -> String {
    value_sets[r.id].title.clone()
}

/// ` {prefix} N days` for a set span, else nothing.
fn span_words(span: Option<Span>, prefix: &str) -> String {
    span.map(|Span(d)| format!(" {prefix} {} days", d.whole_days()))
        .unwrap_or_default()
}

impl<'a> Evaluator<'_, 'a> {
    /// Whether one of the codes is in the value set.
    fn in_set(&self, vs: &ValueSetRef, coded: &Coded<'a>) -> bool {
        self.value_sets[vs.id].first_match(&coded.codes).is_some()
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

/// What the leaves' unit tests share: one criterion, as a rule writes it,
/// evaluated over a handful of FHIR resources.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Criterion, Node, Outcome};
    use crate::cds::Hook;
    use crate::fhir::{PatientRecord, RecordSources};
    use crate::json::borrow_value;
    use crate::rules::eval::Evaluator;
    use crate::rules::valueset::{ValueSet, ValueSetIds};
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    /// When and where the criterion is evaluated.
    pub(crate) struct At {
        pub now: OffsetDateTime,
        pub hook: Hook,
        /// The encounter in context.
        pub encounter_id: Option<&'static str>,
    }

    /// What a leaf gave: `holds` is `None` when it was unknown.
    pub(crate) struct Seen {
        pub holds: Option<bool>,
        /// The matched items as the card would name them.
        pub displays: Vec<String>,
        /// The matched items' `Type/id`, where they have one.
        pub references: Vec<String>,
        /// Elements of the wrong shape the record skipped.
        pub skipped: usize,
    }

    /// Evaluates `criterion` (e.g. `{"encounter": {...}}`, one leaf) with
    /// the FHIR ValueSets `value_sets` over `resources`.
    pub(crate) fn evaluate(
        criterion: Value,
        value_sets: &[Value],
        resources: Value,
        at: At,
    ) -> Seen {
        let sets = value_sets
            .iter()
            .map(|v| ValueSet::from_fhir(v).unwrap())
            .collect();
        let mut ids = ValueSetIds::new(sets);
        let raw: Criterion<String> = serde_json::from_value(criterion).unwrap();
        let criterion = raw.resolve(&mut ids);
        let sets = ids.into_sets();
        let entries: Vec<Value> = (resources.as_array().unwrap().iter())
            .map(|r| json!({"resource": r}))
            .collect();
        let bundle = json!({"resourceType": "Bundle", "entry": entries});
        let data = borrow_value(&bundle);
        let record = PatientRecord::build(RecordSources {
            data: vec![&data],
            encounter_id: at.encounter_id,
            ..Default::default()
        });
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: at.now,
            hook: at.hook,
        };
        let Node::Leaf(leaf) = criterion.node() else {
            panic!("one leaf criterion, not a combinator");
        };
        let (holds, items) = match leaf.evaluate(&ev) {
            Outcome::Test(holds) => (Some(holds), Vec::new()),
            Outcome::Matched(items) => (Some(!items.is_empty()), items),
            Outcome::Unknown(_) => (None, Vec::new()),
        };
        Seen {
            holds,
            displays: items.iter().map(|i| i.display.to_string()).collect(),
            references: items.iter().filter_map(|i| i.reference.clone()).collect(),
            skipped: record.skipped_elements,
        }
    }
}
