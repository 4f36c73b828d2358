//! The `draftOrder` criterion: draft orders in context whose code is in a
//! value set, and for medications by daily dose, as needed, route and dose
//! form. On order hooks a rule fires only when one of these matched.

use super::coded::CodedItem;
use super::dose::{self, DoseTest};
use super::{Items, Kind, Leaf, Need, NewStart, Outcome, Relative, title};
use crate::fhir::DataNeed;
use crate::fhir::DraftOrder;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use crate::terminology::drugs::RouteClass;
use serde::Deserialize;

/// One value set or several, as a criterion may write either: a reason
/// to order a test is often one of several kinds (symptoms, a known
/// disease, a finding), each its own value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum ValueSets<V = ValueSetRef> {
    /// A single value set.
    One(V),
    /// Any of these value sets.
    Any(Vec<V>),
}

impl<V> ValueSets<V> {
    /// The value sets, one or more.
    pub fn sets(&self) -> &[V] {
        match self {
            ValueSets::One(set) => std::slice::from_ref(set),
            ValueSets::Any(sets) => sets,
        }
    }
}

impl ValueSets<String> {
    fn resolve(self, ids: &mut ValueSetIds) -> ValueSets {
        match self {
            ValueSets::One(set) => ValueSets::One(ids.resolve(set)),
            ValueSets::Any(sets) => {
                ValueSets::Any(sets.into_iter().map(|s| ids.resolve(s)).collect())
            }
        }
    }
}

/// Draft orders from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraftOrderCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Resource type filter.
    pub resource_type: Option<OrderType>,
    /// Daily dose test (medication orders).
    pub dose: Option<DoseTest>,
    /// Whether the order is (true) or is not (false) as needed.
    pub as_needed: Option<bool>,
    /// Route classes accepted: the dosage route, else the dose form's.
    pub route: Option<Vec<RouteClass>>,
    /// Dose-form classes accepted (from the drug table).
    pub form: Option<Vec<RouteClass>>,
    /// Dose-form classes excluded (from the drug table).
    pub not_form: Option<Vec<RouteClass>>,
    /// Only new starts: no prescription of the same ingredient in the window before.
    pub new_start: Option<NewStart>,
    /// Only orders with a reason in one of these value sets: a
    /// `reasonCode`, or the code of a Condition in `reasonReference`.
    pub reason: Option<ValueSets<V>>,
    /// Only orders with no reason in any of these value sets (a screening
    /// order is one without a diagnostic reason).
    pub not_reason: Option<ValueSets<V>>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

/// The resource types a draft order can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum OrderType {
    /// A test, imaging or procedure order.
    ServiceRequest,
    /// A prescription.
    MedicationRequest,
    /// A diet order.
    NutritionOrder,
    /// Glasses or lenses.
    VisionPrescription,
    /// A device.
    DeviceRequest,
}

impl OrderType {
    /// The FHIR resource type name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::ServiceRequest => "ServiceRequest",
            OrderType::MedicationRequest => "MedicationRequest",
            OrderType::NutritionOrder => "NutritionOrder",
            OrderType::VisionPrescription => "VisionPrescription",
            OrderType::DeviceRequest => "DeviceRequest",
        }
    }
}

impl DraftOrderCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> DraftOrderCriterion {
        DraftOrderCriterion {
            value_set: ids.resolve(self.value_set),
            resource_type: self.resource_type,
            dose: self.dose,
            as_needed: self.as_needed,
            route: self.route,
            form: self.form,
            not_form: self.not_form,
            new_start: self.new_start,
            reason: self.reason.map(|v| v.resolve(ids)),
            not_reason: self.not_reason.map(|v| v.resolve(ids)),
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl DraftOrderCriterion {
    /// Whether the order's reasons satisfy `reason` and `notReason`.
    fn reasons_pass(&self, ev: &Evaluator<'_, '_>, order: &DraftOrder<'_>) -> bool {
        let has_one = |set: &ValueSetRef| {
            let coded = |codes: &[crate::fhir::Code<'_>]| {
                ev.value_sets[set.id].first_match(codes).is_some()
            };
            coded(&order.reason_codes)
                || order.reason_references.iter().any(|reference| {
                    let id = reference.strip_prefix("Condition/");
                    ev.record
                        .conditions
                        .iter()
                        .any(|c| id.is_some() && c.coded.id == id && coded(&c.coded.codes))
                })
        };
        let has = |sets: &ValueSets| sets.sets().iter().any(has_one);
        self.reason.as_ref().is_none_or(has) && !self.not_reason.as_ref().is_some_and(has)
    }

    fn filter(&self) -> dose::Filter<'_> {
        dose::Filter {
            as_needed: self.as_needed,
            route: self.route.as_deref(),
            form: self.form.as_deref(),
            not_form: self.not_form.as_deref(),
        }
    }

    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let of_type = |d: &DraftOrder<'_>| {
            d.selected
                && self
                    .resource_type
                    .is_none_or(|t| t.as_str() == d.resource_type)
        };
        let filter = self.filter();
        ev.coded_items(&ev.record.draft_orders, &self.value_set, None, of_type)
            .into_iter()
            .filter(|d| filter.passes(&d.coded, &d.dosage))
            .filter(|d| self.reasons_pass(ev, d))
            .filter(|d| {
                let start = d.authored.unwrap_or(ev.now);
                let new = |n: &NewStart| n.holds(ev.record, &d.coded, start, true);
                self.new_start.as_ref().is_none_or(new)
            })
            .filter_map(|d| {
                let value = match &self.dose {
                    Some(test) => Some((test.passes(&d.coded, &d.dosage)?, Some(test.unit()))),
                    None => None,
                };
                Some(Bound {
                    reference: d.reference(),
                    value,
                    ..d.bound()
                })
            })
            .collect()
    }
}

impl Leaf for DraftOrderCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let dose = self
            .dose
            .as_ref()
            .map(|d| format!(" with {}", d.describe()))
            .unwrap_or_default();
        let reason = |prefix: &str, sets: &Option<ValueSets>| {
            let titles = |sets: &ValueSets| {
                let titles: Vec<String> =
                    sets.sets().iter().map(|s| title(value_sets, s)).collect();
                titles.join(" or ")
            };
            sets.as_ref()
                .map(|sets| format!(" {prefix} {}", titles(sets)))
                .unwrap_or_default()
        };
        let new = self
            .new_start
            .as_ref()
            .map(NewStart::describe)
            .unwrap_or_default();
        format!(
            "draft order for {}{dose}{}{new}{}{}",
            title(value_sets, &self.value_set),
            self.filter().describe(),
            reason("for", &self.reason),
            reason("not for", &self.not_reason)
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // Draft orders arrive in the request's context, never by prefetch;
        // a reason may reference one of the patient's Conditions.
        let mut needs = Vec::new();
        if self.reason.is_some() || self.not_reason.is_some() {
            needs.extend(Need::of(DataNeed::Conditions));
        }
        if self.new_start.is_some() {
            needs.extend(Need::of(DataNeed::MedicationHistory));
        }
        needs
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::DraftOrder,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        let medication_only = self.dose.is_some()
            || self.as_needed.is_some()
            || self.route.is_some()
            || self.form.is_some()
            || self.not_form.is_some()
            || self.new_start.is_some();
        if medication_only
            && self
                .resource_type
                .is_some_and(|t| t != OrderType::MedicationRequest)
        {
            return Some(
                "dose, asNeeded, route, form, notForm and newStart apply only to resourceType: MedicationRequest"
                    .to_owned(),
            );
        }
        self.dose
            .as_ref()
            .and_then(DoseTest::problem)
            .or_else(|| self.filter().problem())
    }
}
