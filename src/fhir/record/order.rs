//! Draft orders from `context.draftOrders`, and which are selected.

use super::{Code, Coded, Dosage, Reader, RecordSources};
use crate::json::{Json, bundle_resources, field, resource_type};

/// A draft order from `context.draftOrders`.
#[derive(Debug, Clone)]
pub struct DraftOrder<'a> {
    /// ServiceRequest, MedicationRequest, ...
    pub resource_type: &'a str,
    /// What is ordered: ServiceRequest.code or the medication.
    pub coded: Coded<'a>,
    /// Whether the order is among `context.selections` (always true on order-sign).
    pub selected: bool,
    /// A MedicationRequest's `dosageInstruction` (empty for other orders).
    pub dosage: Vec<Dosage<'a>>,
    /// A MedicationRequest's `authoredOn`.
    pub authored: Option<time::OffsetDateTime>,
    /// Why it is ordered: the codings of every `reasonCode`.
    pub reason_codes: Vec<Code<'a>>,
    /// Why it is ordered: each `reasonReference.reference` (`Condition/id`).
    pub reason_references: Vec<&'a str>,
}

impl DraftOrder<'_> {
    /// `Type/id`, as a delete action's `resourceId`.
    pub fn reference(&self) -> Option<String> {
        self.coded
            .id
            .map(|id| format!("{}/{}", self.resource_type, id))
    }
}

impl<'a> Reader<'a> {
    pub(super) fn draft_orders(&mut self, sources: &RecordSources<'a>) -> Vec<DraftOrder<'a>> {
        let Some(drafts) = sources.draft_orders else {
            return Vec::new();
        };
        let resources: Vec<&Json<'a>> = match drafts {
            Json::Array(items) => items.iter().collect(),
            bundle => bundle_resources(bundle).collect(),
        };
        let selections: Vec<&str> = sources
            .selections
            .and_then(Json::as_array)
            .map(|s| s.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        resources
            .into_iter()
            .filter_map(|r| {
                let resource_type = resource_type(r)?;
                let medication = resource_type == "MedicationRequest";
                let coded = if medication {
                    self.medication(r)
                } else {
                    self.coded(r, "code")
                };
                if coded.codes.is_empty() {
                    return None;
                }
                let reference = coded.id.map(|id| format!("{resource_type}/{id}"));
                let selected = !sources.selections_only
                    || selections.is_empty()
                    || reference.is_some_and(|r| selections.contains(&r.as_str()));
                let (dosage, authored) = if medication {
                    (
                        self.dosages(r, "dosageInstruction"),
                        self.datetime(r, "authoredOn"),
                    )
                } else {
                    (Vec::new(), None)
                };
                let (reason_codes, reason_references) = self.reasons(r);
                Some(DraftOrder {
                    resource_type,
                    coded,
                    selected,
                    dosage,
                    authored,
                    reason_codes,
                    reason_references,
                })
            })
            .collect()
    }

    /// An order's `reasonCode` codings and `reasonReference` references;
    /// elements of the wrong shape are skipped and counted.
    fn reasons(&mut self, r: &'a Json<'a>) -> (Vec<Code<'a>>, Vec<&'a str>) {
        let mut codes = Vec::new();
        for concept in self.array(r, "reasonCode") {
            codes.extend(self.concept_codes(concept));
        }
        let references = self
            .array(r, "reasonReference")
            .into_iter()
            .filter_map(|reference| field(reference, "reference").and_then(Json::as_str))
            .collect();
        (codes, references)
    }
}
