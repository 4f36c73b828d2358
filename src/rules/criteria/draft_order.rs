//! The `draftOrder` criterion: draft orders in context whose code is in a
//! value set. On order hooks a rule fires only when one of these matched.

use super::coded::CodedItem;
use super::{Items, Kind, Leaf, Need, Outcome, Relative, title};
use crate::fhir::DraftOrder;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Draft orders from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraftOrderCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Resource type filter.
    pub resource_type: Option<OrderType>,
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
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl DraftOrderCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let of_type = |d: &DraftOrder<'_>| {
            d.selected
                && self
                    .resource_type
                    .is_none_or(|t| t.as_str() == d.resource_type)
        };
        ev.coded_items(&ev.record.draft_orders, &self.value_set, None, of_type)
            .into_iter()
            .map(|d| Bound {
                reference: d.reference(),
                ..d.bound()
            })
            .collect()
    }
}

impl Leaf for DraftOrderCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        format!("draft order for {}", title(value_sets, &self.value_set))
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // Draft orders arrive in the request's context, never by prefetch.
        Vec::new()
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
        None
    }
}
