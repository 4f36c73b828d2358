//! The short forms of a rule case: a line per medication, condition,
//! observation, procedure, planned order, encounter or draft service order
//! instead of a whole FHIR resource.
//!
//! Each short form expands to the R4 resource a conformant EHR would send
//! (and is validated as strictly as a hand-written one), so a case written
//! either way tests the same record builder.

use serde::Deserialize;
use serde_json::{Value, json};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// A code system as a case names it: an alias or the system URL.
fn system_url(name: &str) -> &str {
    match name {
        "icd10" => "http://hl7.org/fhir/sid/icd-10-cm",
        "snomed" => "http://snomed.info/sct",
        "rxnorm" => RXNORM,
        "loinc" => LOINC,
        "cpt" => "http://www.ama-assn.org/go/cpt",
        "hcpcs" => "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        url => url,
    }
}

/// A medication: an active order (or a draft, under `draftMedications`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Medication {
    rxnorm: String,
    display: String,
    #[serde(default = "active")]
    status: String,
    authored_on: Option<String>,
    /// A sig as text, or a FHIR R4 Dosage object.
    dosage: Option<Value>,
    /// Coded reasons: `{code, system?, display?}` (system defaults to ICD-10-CM).
    #[serde(default)]
    reason: Vec<Coded>,
}

/// A code with its system (default ICD-10-CM) and display.
#[derive(Debug, Deserialize)]
pub struct Coded {
    code: String,
    #[serde(default = "icd10")]
    system: String,
    display: Option<String>,
}

/// A condition on the problem list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(flatten)]
    coded: Coded,
    #[serde(default = "active")]
    status: String,
    onset: Option<String>,
    recorded: Option<String>,
}

/// A final observation: a quantity, a coded result, or neither.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    loinc: String,
    display: Option<String>,
    date: String,
    value: Option<f64>,
    unit: Option<String>,
    /// A score sent as `valueInteger` (Gleason, ORAI), without a unit.
    integer: Option<i64>,
    result: Option<Coded>,
    /// A v3 ObservationInterpretation code (`H`, `L`, `POS`, `NEG` ...).
    interpretation: Option<String>,
}

/// A procedure: completed unless `status` says otherwise (`preparation`
/// for one that is scheduled).
#[derive(Debug, Deserialize)]
pub struct Procedure {
    #[serde(flatten)]
    coded: Coded,
    date: String,
    #[serde(default = "completed")]
    status: String,
}

/// A service order: a draft (under `draftServices`) or an active order
/// planned for a date (under `plannedOrders`). Orders name their system:
/// no default fits LOINC tests, CPT procedures and SNOMED CT alike.
#[derive(Debug, Deserialize)]
pub struct Order {
    code: String,
    system: String,
    display: Option<String>,
    /// When a planned order is to happen (`occurrenceDateTime`).
    date: Option<String>,
    #[serde(default = "active")]
    status: String,
    /// Why it is ordered: coded reasons (system defaults to ICD-10-CM).
    #[serde(default)]
    reason: Vec<Coded>,
}

/// An encounter: its v3 ActCode class, an optional type and its date.
#[derive(Debug, Deserialize)]
pub struct Encounter {
    #[serde(default = "ambulatory")]
    class: String,
    #[serde(rename = "type")]
    kind: Option<Coded>,
    date: String,
    end: Option<String>,
    #[serde(default = "finished")]
    status: String,
}

fn active() -> String {
    "active".into()
}

fn completed() -> String {
    "completed".into()
}

fn finished() -> String {
    "finished".into()
}

fn ambulatory() -> String {
    "AMB".into()
}

fn icd10() -> String {
    "icd10".into()
}

impl Coded {
    fn concept(&self) -> Value {
        let mut coding = json!({"system": system_url(&self.system), "code": self.code});
        if let Some(display) = &self.display {
            coding["display"] = json!(display);
        }
        json!({"coding": [coding]})
    }
}

impl Medication {
    /// The MedicationRequest; `status` is forced to `draft` for a draft order.
    pub fn resource(&self, id: &str, patient: &str, draft: bool) -> Value {
        let status = if draft { "draft" } else { self.status.as_str() };
        let mut r = json!({
            "resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": self.rxnorm, "display": self.display}],
                "text": self.display},
            "subject": {"reference": format!("Patient/{patient}")}});
        if let Some(authored) = &self.authored_on {
            r["authoredOn"] = json!(authored);
        }
        match &self.dosage {
            Some(Value::String(text)) => r["dosageInstruction"] = json!([{"text": text}]),
            Some(dosage) => r["dosageInstruction"] = json!([dosage]),
            None => {}
        }
        if !self.reason.is_empty() {
            r["reasonCode"] = self.reason.iter().map(Coded::concept).collect();
        }
        r
    }
}

impl Condition {
    /// The Condition, with its clinical status and onset or recorded date.
    pub fn resource(&self, id: &str, patient: &str) -> Value {
        let status_system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        let mut r = json!({
            "resourceType": "Condition", "id": id,
            "clinicalStatus": {"coding": [{"system": status_system, "code": self.status}]},
            "code": self.coded.concept(),
            "subject": {"reference": format!("Patient/{patient}")}});
        if let Some(onset) = &self.onset {
            r["onsetDateTime"] = json!(onset);
        }
        if let Some(recorded) = &self.recorded {
            r["recordedDate"] = json!(recorded);
        }
        r
    }
}

impl Observation {
    /// The final Observation, with its value and interpretation.
    pub fn resource(&self, id: &str, patient: &str) -> Value {
        let mut coding = json!({"system": LOINC, "code": self.loinc});
        if let Some(display) = &self.display {
            coding["display"] = json!(display);
        }
        let mut r = json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [coding]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": self.date});
        if let Some(value) = self.value {
            let mut quantity = json!({"value": value});
            if let Some(unit) = &self.unit {
                quantity["unit"] = json!(unit);
                quantity["system"] = json!(UCUM);
                quantity["code"] = json!(unit);
            }
            r["valueQuantity"] = quantity;
        }
        if let Some(integer) = self.integer {
            r["valueInteger"] = json!(integer);
        }
        if let Some(result) = &self.result {
            r["valueCodeableConcept"] = result.concept();
        }
        if let Some(code) = &self.interpretation {
            let system = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
            r["interpretation"] = json!([{"coding": [{"system": system, "code": code}]}]);
        }
        r
    }
}

impl Procedure {
    /// The Procedure, performed (or scheduled) on its date.
    pub fn resource(&self, id: &str, patient: &str) -> Value {
        json!({
            "resourceType": "Procedure", "id": id, "status": self.status,
            "code": self.coded.concept(),
            "subject": {"reference": format!("Patient/{patient}")},
            "performedDateTime": self.date})
    }
}

impl Order {
    /// The ServiceRequest; `status` is forced to `draft` for a draft order.
    pub fn resource(&self, id: &str, patient: &str, draft: bool) -> Value {
        let status = if draft { "draft" } else { self.status.as_str() };
        let code = Coded {
            code: self.code.clone(),
            system: self.system.clone(),
            display: self.display.clone(),
        };
        let mut r = json!({
            "resourceType": "ServiceRequest", "id": id, "status": status, "intent": "order",
            "code": code.concept(),
            "subject": {"reference": format!("Patient/{patient}")}});
        if let Some(date) = &self.date {
            r["occurrenceDateTime"] = json!(date);
        }
        if !self.reason.is_empty() {
            r["reasonCode"] = self.reason.iter().map(Coded::concept).collect();
        }
        r
    }
}

impl Encounter {
    /// The Encounter, over its date (to `end`, else the same day).
    pub fn resource(&self, id: &str, patient: &str) -> Value {
        let class_system = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
        let mut r = json!({
            "resourceType": "Encounter", "id": id, "status": self.status,
            "class": {"system": class_system, "code": self.class},
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": self.date, "end": self.end.as_ref().unwrap_or(&self.date)}});
        if let Some(kind) = &self.kind {
            r["type"] = json!([kind.concept()]);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_medication_expands_to_a_coded_medication_request() {
        let med: Medication = serde_json::from_value(json!({
            "rxnorm": "197901", "display": "lorazepam 1 MG Oral Tablet",
            "authoredOn": "2026-01-10", "dosage": "1 tablet at night",
            "reason": [{"code": "F41.1"}]}))
        .unwrap();
        let r = med.resource("med-1", "p", false);
        assert_eq!(r["status"], "active");
        assert_eq!(
            r["medicationCodeableConcept"]["coding"][0]["code"],
            "197901"
        );
        assert_eq!(r["dosageInstruction"][0]["text"], "1 tablet at night");
        assert_eq!(
            r["reasonCode"][0]["coding"][0]["system"],
            "http://hl7.org/fhir/sid/icd-10-cm"
        );
        assert_eq!(med.resource("d-1", "p", true)["status"], "draft");
    }

    #[test]
    fn an_observation_carries_its_ucum_unit_and_interpretation() {
        let obs: Observation = serde_json::from_value(json!({
            "loinc": "2160-0", "date": "2026-06-01", "value": 1.8, "unit": "mg/dL",
            "interpretation": "H"}))
        .unwrap();
        let r = obs.resource("obs-1", "p");
        assert_eq!(r["valueQuantity"]["code"], "mg/dL");
        assert_eq!(r["interpretation"][0]["coding"][0]["code"], "H");
        assert!(r.get("valueCodeableConcept").is_none());
    }

    #[test]
    fn a_service_order_names_its_system_and_carries_its_reasons() {
        let order: Order = serde_json::from_value(json!({
            "code": "2857-1", "system": "loinc", "date": "2026-04-01",
            "reason": [{"code": "R39.15"}]}))
        .unwrap();
        let draft = order.resource("order-1", "p", true);
        assert_eq!(draft["status"], "draft");
        assert_eq!(draft["code"]["coding"][0]["system"], LOINC);
        assert_eq!(draft["reasonCode"][0]["coding"][0]["code"], "R39.15");
        let planned = order.resource("plan-1", "p", false);
        assert_eq!(planned["status"], "active");
        assert_eq!(planned["occurrenceDateTime"], "2026-04-01");
        let unsystematic = serde_json::from_value::<Order>(json!({"code": "66984"}));
        assert!(unsystematic.is_err(), "an order must name its system");
    }

    #[test]
    fn an_encounter_spans_its_day_unless_it_has_an_end() {
        let enc: Encounter = serde_json::from_value(json!({
            "class": "EMER", "date": "2026-03-09",
            "type": {"code": "50849002", "system": "snomed"}}))
        .unwrap();
        let r = enc.resource("enc-1", "p");
        assert_eq!(r["class"]["code"], "EMER");
        assert_eq!(r["period"]["end"], "2026-03-09");
        assert_eq!(
            r["type"][0]["coding"][0]["system"],
            "http://snomed.info/sct"
        );
        let stay: Encounter =
            serde_json::from_value(json!({"date": "2026-03-01", "end": "2026-03-05"})).unwrap();
        let r = stay.resource("enc-2", "p");
        assert_eq!(
            (r["class"]["code"].as_str(), r["status"].as_str()),
            (Some("AMB"), Some("finished"))
        );
        assert_eq!(r["period"]["end"], "2026-03-05");
    }
}
