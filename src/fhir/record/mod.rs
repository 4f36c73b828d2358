//! The patient record: what the rules may read about one patient, built once
//! per request from FHIR JSON that the request already parsed.
//!
//! Reading is lenient. Real EHRs send sloppy FHIR (a `category` object where
//! an array belongs, a Bundle without `type`), so an element of the wrong
//! shape is skipped and counted, never an error, and the rest of the resource
//! still counts. The record borrows its strings from the request's JSON
//! ([`Json`]), so building it copies no text.
//!
//! One file per kind of resource: each holds its fact type and the reader
//! methods that build it. This file holds the record, the generic element
//! readers and the walk over the resources.

mod condition;
mod dosage;
mod encounter;
mod medication;
mod observation;
mod order;
mod planned;
mod procedure;

pub use condition::ConditionFact;
pub use dosage::{Dosage, DoseQuantity};
pub use encounter::EncounterFact;
pub use medication::{MedicationFact, Prescription};
pub use observation::ObservationFact;
pub use order::DraftOrder;
pub use planned::PlannedOrderFact;
pub use procedure::ProcedureFact;

use super::date::{parse_date, parse_datetime};
use crate::json::{Json, bundle_resources, field, resource_type, str_field};
use medication::{PastPrescription, carry_back_renewals};
use std::collections::{HashMap, HashSet};
use time::{Date, OffsetDateTime};

/// One coding: a (system, code) pair with its display text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code<'a> {
    /// Code system URI.
    pub system: &'a str,
    /// The code.
    pub code: &'a str,
    /// Display text, when the sender gave one.
    pub display: Option<&'a str>,
}

/// Something coded: a resource id, its codings and its text.
#[derive(Debug, Clone, Default)]
pub struct Coded<'a> {
    /// The resource id.
    pub id: Option<&'a str>,
    /// Every coding of the relevant CodeableConcept.
    pub codes: Vec<Code<'a>>,
    /// `CodeableConcept.text`.
    pub text: Option<&'a str>,
}

impl<'a> Coded<'a> {
    /// The best human-readable name: text, then the first display, then the first code.
    pub fn display(&self) -> &'a str {
        self.text
            .or_else(|| self.codes.iter().find_map(|c| c.display))
            .or_else(|| self.codes.first().map(|c| c.code))
            .unwrap_or("(uncoded)")
    }
}

/// Everything the rules may read about the patient.
#[derive(Debug, Default)]
pub struct PatientRecord<'a> {
    /// Patient.id.
    pub patient_id: Option<&'a str>,
    /// Patient.birthDate.
    pub birth_date: Option<Date>,
    /// Patient.gender.
    pub gender: Option<&'a str>,
    /// Conditions (not refuted or entered in error).
    pub conditions: Vec<ConditionFact<'a>>,
    /// Active medications.
    pub medications: Vec<MedicationFact<'a>>,
    /// Every dated MedicationRequest (active, completed or stopped), for
    /// telling a new start from a continuation.
    pub prescriptions: Vec<Prescription<'a>>,
    /// Observations (not cancelled or entered in error).
    pub observations: Vec<ObservationFact<'a>>,
    /// Performed procedures.
    pub procedures: Vec<ProcedureFact<'a>>,
    /// Encounters.
    pub encounters: Vec<EncounterFact<'a>>,
    /// Planned orders: active ServiceRequests and Procedures in preparation.
    pub planned_orders: Vec<PlannedOrderFact<'a>>,
    /// `context.encounterId`.
    pub current_encounter: Option<&'a str>,
    /// Draft orders with a code; uncoded drafts cannot be judged.
    pub draft_orders: Vec<DraftOrder<'a>>,
    /// Elements skipped because they had the wrong shape.
    pub skipped_elements: usize,
}

/// The JSON a record is built from.
#[derive(Default)]
pub struct RecordSources<'a> {
    /// Resources or Bundles (prefetch values, fetched pages, fixtures).
    pub data: Vec<&'a Json<'a>>,
    /// `context.draftOrders` (a Bundle, or sloppily an array of resources).
    pub draft_orders: Option<&'a Json<'a>>,
    /// `context.selections`.
    pub selections: Option<&'a Json<'a>>,
    /// `context.encounterId`.
    pub encounter_id: Option<&'a str>,
    /// Whether only selected drafts count (order-select).
    pub selections_only: bool,
    /// Build the record as it stood at this time (replays): resources that
    /// started later are left out ([`crate::fhir::timeline`]), and a
    /// condition or prescription that ended later was still going on.
    pub as_of: Option<OffsetDateTime>,
}

impl<'a> PatientRecord<'a> {
    /// Builds the record, reading every resource once.
    pub fn build(sources: RecordSources<'a>) -> Self {
        let mut resources = unique_resources(&sources.data);
        if let Some(as_of) = sources.as_of {
            resources.retain(|r| super::timeline::started_by(r, as_of));
        }
        let medications_by_id: HashMap<&'a str, &'a Json<'a>> = resources
            .iter()
            .filter(|r| resource_type(r) == Some("Medication"))
            .filter_map(|r| Some((str_field(r, "id")?, *r)))
            .collect();
        let mut reader = Reader {
            as_of: sources.as_of,
            skipped: 0,
            medications_by_id,
            past_prescriptions: Vec::new(),
            prescriptions: Vec::new(),
        };
        let mut record = PatientRecord {
            current_encounter: sources.encounter_id,
            ..Default::default()
        };
        for resource in &resources {
            reader.add(&mut record, resource);
        }
        record.draft_orders = reader.draft_orders(&sources);
        record.skipped_elements = reader.skipped;
        carry_back_renewals(&mut record.medications, &mut reader.past_prescriptions);
        record.prescriptions = reader.prescriptions;
        record
    }

    /// Age in whole years on `today`.
    pub fn age_on(&self, today: Date) -> Option<i32> {
        let birth = self.birth_date?;
        let mut age = today.year() - birth.year();
        if (today.month() as u8, today.day()) < (birth.month() as u8, birth.day()) {
            age -= 1;
        }
        Some(age)
    }
}

/// The resource types a record reads ([`Reader::add`], and Medications
/// for the prescriptions that reference them); others are ignored, so a
/// population audit need not keep them (Claims and ExplanationOfBenefits
/// are half of a Synthea export's bytes).
pub const RECORD_TYPES: [&str; 9] = [
    "Patient",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Medication",
    "Observation",
    "Procedure",
    "ServiceRequest",
    "Encounter",
];

/// Flattens Bundles into their entries and drops duplicates by (type, id).
fn unique_resources<'a>(data: &[&'a Json<'a>]) -> Vec<&'a Json<'a>> {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut out = Vec::new();
    let mut push = |r: &'a Json<'a>| {
        let Some(kind) = resource_type(r) else { return };
        if kind == "OperationOutcome" || kind == "Bundle" {
            return;
        }
        if let Some(id) = str_field(r, "id")
            && !seen.insert((kind, id))
        {
            return;
        }
        out.push(r);
    };
    for value in data {
        if resource_type(value) == Some("Bundle") {
            bundle_resources(value).for_each(&mut push);
        } else {
            push(value);
        }
    }
    out
}

/// Reads resources, counting elements of the wrong shape.
struct Reader<'a> {
    /// [`RecordSources::as_of`].
    as_of: Option<OffsetDateTime>,
    skipped: usize,
    medications_by_id: HashMap<&'a str, &'a Json<'a>>,
    past_prescriptions: Vec<PastPrescription<'a>>,
    prescriptions: Vec<Prescription<'a>>,
}

impl<'a> Reader<'a> {
    /// Counts a weight, creatinine or eGFR value whose unit does not convert
    /// (or that has none) as skipped: the kidney criterion will not read it,
    /// and the metric should say that data was dropped. The value stays in
    /// the record, unit as sent, for criteria that compare it as written.
    fn count_unreadable_kidney_input(&mut self, o: &ObservationFact<'a>) {
        let Some((value, unit)) = o.value else { return };
        let measured = o
            .coded
            .codes
            .iter()
            .filter(|c| c.system == "http://loinc.org")
            .find_map(|c| crate::terminology::units::Measured::of_loinc(c.code));
        if measured.is_some_and(|m| m.read(value, unit).is_none()) {
            self.skipped += 1;
        }
    }

    fn add(&mut self, record: &mut PatientRecord<'a>, r: &'a Json<'a>) {
        match resource_type(r) {
            Some("Patient") => self.patient(record, r),
            Some("Condition") => {
                if let Some(c) = self.condition(r) {
                    record.conditions.push(c);
                }
            }
            Some("MedicationRequest") => {
                if let Some(m) = self.medication_request(r) {
                    record.medications.push(m);
                }
            }
            Some("MedicationStatement") => {
                if let Some(m) = self.medication_statement(r) {
                    record.medications.push(m);
                }
            }
            Some("Observation") => {
                if let Some(o) = self.observation(r) {
                    self.count_unreadable_kidney_input(&o);
                    record.observations.push(o);
                }
            }
            Some("Procedure") => {
                if let Some(p) = self.procedure(r) {
                    record.procedures.push(p);
                } else if let Some(p) = self.planned_procedure(r) {
                    record.planned_orders.push(p);
                }
            }
            Some("ServiceRequest") => {
                if let Some(p) = self.planned_service_request(r) {
                    record.planned_orders.push(p);
                }
            }
            Some("Encounter") => record.encounters.push(EncounterFact {
                id: self.string(r, "id"),
                class: self.encounter_class(r),
                types: self.encounter_types(r),
                start: self.datetime_in(r, "period", "start"),
            }),
            _ => {}
        }
    }

    fn patient(&mut self, record: &mut PatientRecord<'a>, r: &'a Json<'a>) {
        // A later Patient refines an earlier one (a test may override a fixture's birthDate).
        record.patient_id = self.string(r, "id").or(record.patient_id);
        record.gender = self.string(r, "gender").or(record.gender);
        let birth_date = self
            .string(r, "birthDate")
            .and_then(|s| self.valid(parse_date(s)));
        record.birth_date = birth_date.or(record.birth_date);
    }

    /// Reads a CodeableConcept, tolerating a lone Coding object for `coding`.
    fn coded(&mut self, r: &'a Json<'a>, key: &str) -> Coded<'a> {
        let id = self.string(r, "id");
        let Some(concept) = field(r, key) else {
            return Coded {
                id,
                ..Default::default()
            };
        };
        Coded {
            id,
            codes: self.concept_codes(concept),
            text: field(concept, "text").and_then(Json::as_str),
        }
    }

    /// The items of an array element; a lone object counts as one item,
    /// anything else is skipped and counted.
    pub(super) fn array(&mut self, r: &'a Json<'a>, key: &str) -> Vec<&'a Json<'a>> {
        match field(r, key) {
            None => Vec::new(),
            Some(Json::Array(items)) => items.iter().collect(),
            Some(single @ Json::Object(_)) => vec![single],
            Some(_) => {
                self.skipped += 1;
                Vec::new()
            }
        }
    }

    /// The codings of one CodeableConcept that have a system and a code.
    fn concept_codes(&mut self, concept: &'a Json<'a>) -> Vec<Code<'a>> {
        let codings = self.array(concept, "coding");
        codings
            .into_iter()
            .filter_map(|c| {
                let code = Code {
                    system: field(c, "system").and_then(Json::as_str)?,
                    code: field(c, "code").and_then(Json::as_str)?,
                    display: field(c, "display").and_then(Json::as_str),
                };
                Some(code)
            })
            .collect()
    }

    /// The first coding's code of a status CodeableConcept; its system is
    /// implied by the element, so a coding without one still counts.
    fn concept_code(&mut self, r: &'a Json<'a>, key: &str) -> Option<&'a str> {
        let coding = field(field(r, key)?, "coding")?;
        let first = match coding {
            Json::Array(items) => items.first()?,
            single => single,
        };
        field(first, "code").and_then(Json::as_str)
    }

    /// A string element; present with another type counts as skipped.
    fn string(&mut self, r: &'a Json<'a>, key: &str) -> Option<&'a str> {
        match field(r, key)? {
            Json::Str(s) => Some(&**s),
            _ => {
                self.skipped += 1;
                None
            }
        }
    }

    fn datetime(&mut self, r: &'a Json<'a>, key: &str) -> Option<OffsetDateTime> {
        let s = self.string(r, key)?;
        self.valid(parse_datetime(s))
    }

    fn datetime_in(&mut self, r: &'a Json<'a>, outer: &str, key: &str) -> Option<OffsetDateTime> {
        let inner = field(r, outer)?;
        self.datetime(inner, key)
    }

    /// Whether something that ended at `end` was still going on at the
    /// replay time: only in a replay, and only when it ended after it.
    fn ongoing_at_as_of(&self, end: Option<OffsetDateTime>) -> bool {
        matches!((self.as_of, end), (Some(as_of), Some(end)) if end > as_of)
    }

    /// Counts a value that was present but did not parse.
    fn valid<T>(&mut self, parsed: Option<T>) -> Option<T> {
        if parsed.is_none() {
            self.skipped += 1;
        }
        parsed
    }
}

fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_reads_only_the_record_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fhir-fixtures/synthea");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            let bundle = crate::json::parse(&text).unwrap();
            let all: Vec<&Json<'_>> = bundle_resources(&bundle).collect();
            let kept: Vec<&Json<'_>> = (all.iter().copied())
                .filter(|r| resource_type(r).is_some_and(|t| RECORD_TYPES.contains(&t)))
                .collect();
            assert!(
                kept.len() < all.len(),
                "{}: some types are left out",
                path.display()
            );
            let record = |data| {
                format!(
                    "{:?}",
                    PatientRecord::build(RecordSources {
                        data,
                        ..Default::default()
                    })
                )
            };
            assert_eq!(record(all), record(kept), "{}", path.display());
            checked += 1;
        }
        assert!(checked > 0);
    }

    use super::*;
    use crate::json::borrow_value;
    use serde_json::json;
    use time::macros::date;

    fn build<'a>(data: &'a Json<'a>) -> PatientRecord<'a> {
        PatientRecord::build(RecordSources {
            data: vec![data],
            ..Default::default()
        })
    }

    #[test]
    fn kidney_inputs_in_units_that_do_not_convert_are_counted_as_skipped() {
        let observation = |id: &str, code: &str, quantity: serde_json::Value| {
            json!({"resource": {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": quantity}})
        };
        let bundle = json!({"resourceType": "Bundle", "entry": [
            observation("w-ok", "29463-7", json!({"value": 60, "code": "kg"})),
            observation("w-no-unit", "29463-7", json!({"value": 60})),
            observation("c-ok", "14682-9", json!({"value": 106, "code": "umol/L"})),
            observation("c-bad", "2160-0", json!({"value": 1.2, "code": "mg/mmol"})),
            observation("other", "2857-1", json!({"value": 4, "code": "furlongs"})),
        ]});
        let data = borrow_value(&bundle);
        let record = build(&data);
        assert_eq!(record.observations.len(), 5, "values stay, unit as sent");
        assert_eq!(
            record.skipped_elements, 2,
            "weight without a unit, creatinine in mg/mmol"
        );
    }

    #[test]
    fn a_score_sent_as_value_integer_is_a_unitless_value() {
        let observation = |id: &str, value: serde_json::Value| {
            json!({"resource": {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "35266-6"}]},
                "valueInteger": value}})
        };
        let bundle = json!({"resourceType": "Bundle", "entry": [
            observation("gleason", json!(6)),
            observation("not-a-number", json!("six")),
        ]});
        let data = borrow_value(&bundle);
        let record = build(&data);
        assert_eq!(record.observations[0].value, Some((6.0, None)));
        assert_eq!(record.observations[1].value, None);
        assert_eq!(record.skipped_elements, 1, "a valueInteger that is not one");
    }

    #[test]
    fn reads_sloppy_fhir_and_counts_what_it_skips() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "1950-06-15", "gender": "male"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
                "category": {"text": "one object, not an array"},
                "medicationCodeableConcept": {"coding": {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197901"}},
                "authoredOn": 12345}},
            {"resource": {"resourceType": "Condition", "id": "c", "code": {"coding": [{"system": "s", "code": "x"}]},
                "clinicalStatus": {"coding": [{"code": "resolved"}]}, "onsetDateTime": "2020-01-01"}}
        ]});
        let bundle = borrow_value(&bundle);
        let record = build(&bundle);
        assert_eq!(record.age_on(date!(2020 - 06 - 14)), Some(69));
        assert_eq!(record.age_on(date!(2020 - 06 - 15)), Some(70));
        assert_eq!(record.medications.len(), 1);
        assert_eq!(record.medications[0].coded.codes[0].code, "197901");
        assert_eq!(record.medications[0].start, None);
        assert_eq!(record.skipped_elements, 1, "authoredOn of the wrong type");
        assert!(!record.conditions[0].active);
    }

    #[test]
    fn resolves_contained_and_prefetched_medications() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Medication", "id": "med1",
                "code": {"coding": [{"system": "rxnorm", "code": "855332", "display": "Warfarin Sodium 5 MG Oral Tablet"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "a", "status": "active", "intent": "order",
                "medicationReference": {"reference": "Medication/med1"}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "b", "status": "active", "intent": "order",
                "contained": [{"resourceType": "Medication", "id": "x", "code": {"coding": [{"system": "rxnorm", "code": "197901"}]}}],
                "medicationReference": {"reference": "#x"}}}
        ]});
        let bundle = borrow_value(&bundle);
        let record = build(&bundle);
        let codes: Vec<&str> = record
            .medications
            .iter()
            .map(|m| m.coded.codes[0].code)
            .collect();
        assert_eq!(codes, ["855332", "197901"]);
        assert_eq!(
            record.medications[0].coded.display(),
            "Warfarin Sodium 5 MG Oral Tablet"
        );
    }

    #[test]
    fn draft_orders_follow_selections_and_skip_uncoded_drafts() {
        let drafts = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "code": {"coding": [{"system": "http://loinc.org", "code": "2857-1"}]}}},
            {"resource": {"resourceType": "ServiceRequest", "id": "s2", "status": "draft", "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "draft"}}
        ]});
        let selections = json!(["ServiceRequest/s2"]);
        let (drafts, selections) = (borrow_value(&drafts), borrow_value(&selections));
        let record = PatientRecord::build(RecordSources {
            draft_orders: Some(&drafts),
            selections: Some(&selections),
            selections_only: true,
            ..Default::default()
        });
        let selected: Vec<_> = record
            .draft_orders
            .iter()
            .map(|d| (d.reference().unwrap(), d.selected))
            .collect();
        assert_eq!(
            selected,
            [
                ("ServiceRequest/s1".to_string(), false),
                ("ServiceRequest/s2".to_string(), true)
            ]
        );
    }

    #[test]
    fn renewals_carry_the_start_back_to_the_first_prescription() {
        let rx = |id: &str, status: &str, authored: &str, code: &str| {
            json!({"resource": {
            "resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "rxnorm", "code": code}]}, "authoredOn": authored}})
        };
        let bundle = json!({"resourceType": "Bundle", "entry": [
            rx("a", "stopped", "2018-01-10", "1"),   // too long before the next: a gap
            rx("b", "stopped", "2019-06-01", "1"),
            rx("c", "completed", "2020-05-20", "1"),
            rx("d", "active", "2021-05-15", "1"),
            rx("e", "stopped", "2020-01-01", "2"),   // another drug
        ]});
        let bundle = borrow_value(&bundle);
        let record = build(&bundle);
        assert_eq!(record.medications.len(), 1);
        assert_eq!(
            record.medications[0].start.unwrap().date(),
            date!(2019 - 06 - 01)
        );
    }

    #[test]
    fn drops_duplicates_and_refuted_conditions() {
        let c = json!({"resourceType": "Condition", "id": "c", "code": {"coding": [{"system": "s", "code": "x"}]},
            "verificationStatus": {"coding": [{"code": "confirmed"}]}});
        let refuted = json!({"resourceType": "Condition", "id": "r", "code": {"coding": [{"system": "s", "code": "y"}]},
            "verificationStatus": {"coding": [{"code": "refuted"}]}});
        let (c, refuted) = (borrow_value(&c), borrow_value(&refuted));
        let record = PatientRecord::build(RecordSources {
            data: vec![&c, &c, &refuted],
            ..Default::default()
        });
        assert_eq!(record.conditions.len(), 1);
        assert!(record.conditions[0].active);
    }

    #[test]
    fn draft_order_reasons_are_codes_and_references_and_sloppy_shapes_are_counted() {
        let drafts = json!([
            {"resourceType": "ServiceRequest", "id": "s1", "status": "draft",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2857-1"}]},
                "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R35.0"}]}],
                "reasonReference": {"reference": "Condition/c1"}},
            {"resourceType": "ServiceRequest", "id": "s2", "status": "draft",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2857-1"}]},
                "reasonCode": "frequency of micturition"}
        ]);
        let drafts = borrow_value(&drafts);
        let record = PatientRecord::build(RecordSources {
            draft_orders: Some(&drafts),
            ..Default::default()
        });
        let first = &record.draft_orders[0];
        assert_eq!(first.reason_codes[0].code, "R35.0");
        assert_eq!(
            first.reason_references,
            ["Condition/c1"],
            "a lone Reference object counts"
        );
        assert!(record.draft_orders[1].reason_codes.is_empty());
        assert_eq!(record.skipped_elements, 1, "a reasonCode string is skipped");
    }
}
