//! The evaluator: a pure function of (rules, patient record, hook, now).
//! No I/O and no clock reads happen here.

use super::model::*;
use super::valueset::ValueSet;
use crate::cds::Hook;
use crate::fhir::{Coded, PatientRecord};
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
        match criterion {
            Criterion::All(children) => children.iter().all(|c| self.holds(c, state)),
            // Every branch is evaluated so that each binds what it matched.
            #[allow(clippy::unnecessary_fold)]
            Criterion::Any(children) => children
                .iter()
                .fold(false, |any, c| self.holds(c, state) || any),
            Criterion::Not(child) => !self.holds(child, &mut State::default()),
            Criterion::Age(bounds) => self.age_in(bounds),
            Criterion::Sex(sex) => self.record.gender == Some(sex.as_str()),
            Criterion::Condition(c) => self.bind(state, c.bind.as_deref(), self.conditions(c)),
            Criterion::Medication(c) => {
                let matched = self.medications(c);
                let distinct = distinct_count(&matched);
                let needed = c.min_count.unwrap_or(1);
                let matched = if distinct >= needed {
                    matched
                } else {
                    Vec::new()
                };
                self.bind(state, c.bind.as_deref(), matched)
            }
            Criterion::Observation(c) => self.bind(state, c.bind.as_deref(), self.observations(c)),
            Criterion::Procedure(c) => self.bind(state, c.bind.as_deref(), self.procedures(c)),
            Criterion::Encounter(c) => self.encounter(c),
            Criterion::DraftOrder(c) => {
                let matched = self.draft_orders(c);
                state.draft_matched |= !matched.is_empty();
                self.bind(state, c.bind.as_deref(), matched)
            }
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

    fn age_in(&self, bounds: &AgeBounds) -> bool {
        let Some(age) = self.record.age_on(self.now.date()) else {
            return false;
        };
        bounds.min.is_none_or(|min| age >= min) && bounds.max.is_none_or(|max| age <= max)
    }

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

    fn conditions(&self, c: &ConditionCriterion) -> Vec<Bound<'a>> {
        let mut matched: Vec<_> = self
            .record
            .conditions
            .iter()
            .filter(|f| c.status == ConditionStatus::Any || f.active)
            .filter(|f| self.in_set(&c.value_set, &f.coded))
            .filter(|f| self.within(f.onset, c.within))
            .collect();
        if let Some(span) = c.first_within {
            // An acute problem: the earliest matching record must be recent.
            let earliest = matched.iter().filter_map(|f| f.onset).min();
            if !self.within(earliest, Some(span)) {
                return Vec::new();
            }
            matched.sort_by_key(|f| f.onset);
        } else {
            matched.sort_by_key(|f| std::cmp::Reverse(f.onset));
        }
        matched
            .into_iter()
            .map(|f| self.item(&f.coded, f.onset))
            .collect()
    }

    fn medications(&self, c: &MedicationCriterion) -> Vec<Bound<'a>> {
        self.record
            .medications
            .iter()
            .filter(|m| self.in_set(&c.value_set, &m.coded))
            .filter_map(|m| {
                let days = m.start.map(|s| (self.now - s).whole_days());
                if let Some(Span(min)) = c.min_duration
                    && days.is_none_or(|d| d < min.whole_days())
                {
                    return None;
                }
                Some(Bound {
                    days_active: days,
                    reference: m.coded.id.map(|id| format!("{}/{id}", m.resource_type)),
                    resource: Some(m.resource),
                    ..self.item(&m.coded, m.start)
                })
            })
            .collect()
    }

    fn observations(&self, c: &ObservationCriterion) -> Vec<Bound<'a>> {
        let mut matched: Vec<_> = self
            .record
            .observations
            .iter()
            .filter(|o| self.in_set(&c.value_set, &o.coded))
            .filter(|o| self.within(o.when, c.within))
            .collect();
        matched.sort_by_key(|o| std::cmp::Reverse(o.when));
        let Some(test) = &c.value else {
            return matched
                .into_iter()
                .map(|o| self.item(&o.coded, o.when))
                .collect();
        };
        let latest = matched.into_iter().find(|o| {
            o.value
                .is_some_and(|(_, unit)| test.unit.as_deref().is_none_or(|u| unit == Some(u)))
        });
        let Some(latest) = latest else {
            return Vec::new();
        };
        let (value, unit) = latest.value.expect("filtered on value");
        if !compare(value, &test.comparator, test.value) {
            return Vec::new();
        }
        vec![Bound {
            value: Some((value, unit)),
            ..self.item(&latest.coded, latest.when)
        }]
    }

    fn procedures(&self, c: &ProcedureCriterion) -> Vec<Bound<'a>> {
        let mut matched: Vec<_> = self
            .record
            .procedures
            .iter()
            .filter(|p| self.in_set(&c.value_set, &p.coded))
            .filter(|p| self.within(p.when, c.within))
            .collect();
        matched.sort_by_key(|p| std::cmp::Reverse(p.when));
        matched
            .into_iter()
            .map(|p| self.item(&p.coded, p.when))
            .collect()
    }

    fn encounter(&self, c: &EncounterCriterion) -> bool {
        let class_ok = |class: Option<&str>| class.is_some_and(|k| c.class.iter().any(|w| w == k));
        match c.scope {
            EncounterScope::Current => {
                let Some(current) = self.record.current_encounter else {
                    return false;
                };
                self.record
                    .encounters
                    .iter()
                    .any(|e| e.id == Some(current) && class_ok(e.class))
            }
            EncounterScope::Any => self
                .record
                .encounters
                .iter()
                .any(|e| class_ok(e.class) && self.within(e.start, c.within)),
        }
    }

    fn draft_orders(&self, c: &DraftOrderCriterion) -> Vec<Bound<'a>> {
        self.record
            .draft_orders
            .iter()
            .filter(|d| d.selected)
            .filter(|d| {
                c.resource_type
                    .as_deref()
                    .is_none_or(|t| t == d.resource_type)
            })
            .filter(|d| self.in_set(&c.value_set, &d.coded))
            .map(|d| Bound {
                reference: d.reference(),
                ..self.item(&d.coded, None)
            })
            .collect()
    }

    fn item(&self, coded: &Coded<'a>, date: Option<OffsetDateTime>) -> Bound<'a> {
        Bound {
            display: coded.display(),
            date,
            days_active: None,
            value: None,
            reference: None,
            resource: None,
        }
    }
}

/// Distinct drugs among matches, by name.
fn distinct_count(items: &[Bound<'_>]) -> usize {
    let mut names: Vec<&str> = items.iter().map(|b| b.display).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

fn compare(actual: f64, comparator: &str, threshold: f64) -> bool {
    match comparator {
        "<" => actual < threshold,
        "<=" => actual <= threshold,
        ">" => actual > threshold,
        ">=" => actual >= threshold,
        "=" => (actual - threshold).abs() < f64::EPSILON,
        _ => false,
    }
}
