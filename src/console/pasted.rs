//! What is pasted into try-a-patient, read: a CDS Hooks request, run as
//! it is but offline, or a FHIR Bundle from which the console builds the
//! request an EHR would send (the patient in context, the order picked as
//! the draft, the rest of the record as the prefetch the services ask for).
//!
//! Nothing here keeps or logs what was pasted.

use crate::audit::replay::{is_order, procedure_as_request};
use crate::cds::{Hook, MAX_JSON_DEPTH, depth_exceeded};
use crate::fhir::PrefetchKey;
use crate::fhir::timeline::started;
use crate::json::{Json, borrow_value, resource_type, str_field};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The most text read: the largest Synthea record bundled is 2.4 MB.
pub const MAX_PASTE_BYTES: usize = 8 * 1024 * 1024;

/// The most draft orders offered for a Bundle: the newest of each kind.
const MAX_ORDERS_OFFERED: usize = 300;

/// The user the console's requests name: no clinician is signed in.
const CONSOLE_USER: &str = "Practitioner/console";

/// Pasted text, read as one of the two things it may be.
#[derive(Debug)]
pub enum Pasted {
    /// A CDS Hooks request (it has a `hook`).
    Request(Value),
    /// A FHIR Bundle holding a patient's record.
    Bundle(Value),
}

/// Reads pasted text, or says in words what is wrong with it.
pub fn read(text: &str) -> Result<Pasted, String> {
    if text.trim().is_empty() {
        return Err("Nothing was pasted: paste a CDS Hooks request or a FHIR Bundle.".into());
    }
    if text.len() > MAX_PASTE_BYTES {
        return Err(too_large());
    }
    if let Some(offset) = depth_exceeded(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(format!(
            "The JSON nests deeper than {MAX_JSON_DEPTH} levels (at character {}); \
             real requests and Bundles stay under 30.",
            offset + 1
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("This is not JSON: {e}."))?;
    match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => Ok(Pasted::Bundle(value)),
        Some(other) => Err(format!(
            "This is a FHIR {other}, not a Bundle: paste a Bundle holding the patient's \
             record, or a CDS Hooks request."
        )),
        None if value.get("hook").is_some() => Ok(Pasted::Request(value)),
        None => Err(
            "This JSON is neither a CDS Hooks request (it has no hook) nor a FHIR \
                     Bundle (it has no resourceType Bundle)."
                .into(),
        ),
    }
}

/// Why text over [`MAX_PASTE_BYTES`] is refused.
pub fn too_large() -> String {
    format!(
        "The pasted text is larger than {} MiB; a patient's record is far smaller.",
        MAX_PASTE_BYTES / (1024 * 1024)
    )
}

/// A pasted request made to run offline: its `fhirServer` and
/// `fhirAuthorization` are dropped, so nothing is fetched from an EHR and
/// no pasted token is used. Says whether there were any.
pub fn offline(mut request: Value) -> (Value, bool) {
    let mut dropped = false;
    if let Some(fields) = request.as_object_mut() {
        for key in ["fhirServer", "fhirAuthorization"] {
            dropped |= fields.remove(key).is_some();
        }
    }
    (request, dropped)
}

/// An order in a Bundle that can be tried as the draft order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its index in the Bundle's `entry`.
    pub entry: usize,
    /// What it orders and when, for the picker.
    pub label: String,
    /// When it was ordered, if the resource says.
    pub at: Option<OffsetDateTime>,
}

/// The Bundle's resources by entry index.
fn resources(bundle: &Value) -> impl Iterator<Item = (usize, &Value)> {
    let entries = bundle.get("entry").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, entry)| entry.get("resource").map(|r| (i, r)))
}

/// The orders a Bundle holds (as `hookwise audit` replays them: requests
/// with an order intent, procedures done without one), newest first, the
/// newest of each kind only, at most 300.
pub fn orders(bundle: &Value) -> Vec<Order> {
    let mut newest: BTreeMap<(String, String), Order> = BTreeMap::new();
    for (entry, resource) in resources(bundle) {
        let json = borrow_value(resource);
        if is_order(&json) {
            keep_if_newest(&mut newest, entry, &json);
        }
    }
    let mut orders: Vec<Order> = newest.into_values().collect();
    orders.sort_by(|a, b| b.at.cmp(&a.at).then(a.entry.cmp(&b.entry)));
    orders.truncate(MAX_ORDERS_OFFERED);
    orders
}

/// Keeps the order `json` in `newest` when it is the newest of its kind.
fn keep_if_newest(newest: &mut BTreeMap<(String, String), Order>, entry: usize, json: &Json<'_>) {
    let kind = resource_type(json).unwrap_or_default().to_string();
    let what = ordered(json);
    let at = started(json);
    let date = at.map(|t| t.date().to_string()).unwrap_or("no date".into());
    let label = format!("{kind} · {what} · {date}");
    let key = (kind, what);
    if newest.get(&key).is_none_or(|kept| kept.at < at) {
        newest.insert(key, Order { entry, label, at });
    }
}

/// What an order orders: its code's text or first display, or first code.
fn ordered(resource: &Json<'_>) -> String {
    let concept = crate::json::field(resource, "medicationCodeableConcept")
        .or_else(|| crate::json::field(resource, "code"));
    let Some(concept) = concept else {
        return "no code".into();
    };
    if let Some(text) = str_field(concept, "text") {
        return text.to_string();
    }
    let codings = crate::json::field(concept, "coding").and_then(Json::as_array);
    let first = codings.and_then(|c| c.first());
    first
        .and_then(|c| str_field(c, "display").or_else(|| str_field(c, "code")))
        .unwrap_or("no code")
        .to_string()
}

/// Why a Bundle cannot be made into a request.
#[derive(Debug, PartialEq, Eq)]
pub enum BundleProblem {
    /// An order hook was picked and no draft order.
    NoOrderPicked,
    /// Anything else, in words.
    Invalid(String),
}

/// The request an EHR would send for the patient of `bundle` on `hook`,
/// with the order at entry `order` as the draft (left out of the record:
/// it is being ordered, not on file) and the encounter it names in
/// context, and under each of `keys` what its prefetch template would
/// find in the Bundle.
pub fn request_from_bundle(
    bundle: &Value,
    hook: Hook,
    order: Option<usize>,
    keys: &[PrefetchKey],
) -> Result<Value, BundleProblem> {
    let invalid = |why: &str| BundleProblem::Invalid(why.to_string());
    let mut record: Vec<(usize, &Value)> = resources(bundle).collect();
    let patient = record
        .iter()
        .find(|(_, r)| r.get("resourceType") == Some(&json!("Patient")))
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            invalid("The Bundle holds no Patient resource, so there is no patient to try.")
        })?;
    let patient_id = patient
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("The Bundle's Patient has no id."))?;
    let mut context = Map::new();
    context.insert("userId".into(), json!(CONSOLE_USER));
    context.insert("patientId".into(), json!(patient_id));
    let mut encounter = None;
    if hook.is_order_hook() {
        let picked = order.ok_or(BundleProblem::NoOrderPicked)?;
        let position = record.iter().position(|(i, _)| *i == picked);
        let (_, resource) = position.map(|p| record.remove(p)).ok_or_else(|| {
            invalid("The draft order picked is not in this Bundle; pick it again.")
        })?;
        encounter = encounter_of(resource, &record);
        if let Some(id) = encounter.and_then(|e| e.get("id")) {
            context.insert("encounterId".into(), id.clone());
        }
        let draft = as_draft(resource);
        let reference = format!(
            "{}/{}",
            draft["resourceType"].as_str().unwrap_or_default(),
            draft["id"].as_str().unwrap_or_default()
        );
        context.insert(
            "draftOrders".into(),
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}),
        );
        if hook == Hook::OrderSelect {
            context.insert("selections".into(), json!([reference]));
        }
    }
    let record: Vec<&Value> = record.into_iter().map(|(_, r)| r).collect();
    let prefetch: Map<String, Value> = keys
        .iter()
        .map(|key| {
            let found = answer(&key.template, patient, encounter, &record);
            (key.key.to_string(), found)
        })
        .collect();
    Ok(json!({
        "hook": hook.as_str(),
        "hookInstance": format!("console-trial-{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
        "context": context,
        "prefetch": prefetch,
    }))
}

/// The Encounter of the record that `order` was placed in, as its
/// `encounter` names it (`Encounter/id`, or a Bundle's `urn:uuid:id`).
fn encounter_of<'b>(order: &Value, record: &[(usize, &'b Value)]) -> Option<&'b Value> {
    let reference = order.get("encounter")?.get("reference")?.as_str()?;
    let id = (reference.strip_prefix("urn:uuid:"))
        .or_else(|| reference.strip_prefix("Encounter/"))
        .unwrap_or(reference);
    let is_it = |r: &Value| {
        r.get("resourceType") == Some(&json!("Encounter")) && r.get("id") == Some(&json!(id))
    };
    record.iter().map(|(_, r)| *r).find(|r| is_it(r))
}

/// An order as the draft an EHR would send: status draft, with an id.
fn as_draft(resource: &Value) -> Value {
    let json = borrow_value(resource);
    let mut draft = match resource_type(&json) {
        Some("Procedure") => procedure_as_request(&json),
        _ => resource.clone(),
    };
    draft["status"] = json!("draft");
    if draft.get("id").and_then(Value::as_str).is_none() {
        draft["id"] = json!("console-draft");
    }
    draft
}

/// What a prefetch template finds in the record: the Patient, or the
/// encounter in context (`null` without one), for a read of it; and for a
/// search a searchset of the resources of its type, narrowed by its
/// `status` parameter when it has one (other parameters only narrow what
/// the rules read anyway).
fn answer(template: &str, patient: &Value, encounter: Option<&Value>, record: &[&Value]) -> Value {
    let (path, query) = template.split_once('?').unwrap_or((template, ""));
    if path.contains('/') {
        let read = match path.split('/').next() {
            Some("Patient") => Some(patient),
            Some("Encounter") => encounter,
            _ => None,
        };
        return read.cloned().unwrap_or(Value::Null);
    }
    let statuses: Option<Vec<&str>> = query
        .split('&')
        .find_map(|param| param.strip_prefix("status="))
        .map(|list| list.split(',').collect());
    let entry: Vec<Value> = record
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(path))
        .filter(|r| {
            let status = r.get("status").and_then(Value::as_str).unwrap_or_default();
            statuses
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&status))
        })
        .map(|r| json!({"resource": r}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &'static str, template: &str) -> PrefetchKey {
        PrefetchKey {
            key,
            template: template.into(),
        }
    }

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1940-01-01"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m-old", "status": "stopped",
                "intent": "order", "authoredOn": "2019-01-01",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "308048", "display": "alprazolam 0.25 MG Oral Tablet"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m-new", "status": "active",
                "intent": "order", "authoredOn": "2023-05-01", "encounter": {"reference": "urn:uuid:e1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "308048", "display": "alprazolam 0.25 MG Oral Tablet"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "plan", "status": "active",
                "intent": "plan", "authoredOn": "2024-01-01",
                "medicationCodeableConcept": {"text": "a plan, not an order"}}},
            {"resource": {"resourceType": "Condition", "id": "c1"}},
            {"resource": {"resourceType": "Encounter", "id": "e1", "class": {"code": "AMB"}}},
            {"resource": {"resourceType": "Procedure", "id": "x1", "status": "completed",
                "performedDateTime": "2022-02-02", "code": {"text": "Knee X-ray"}}},
        ]})
    }

    #[test]
    fn pasted_text_is_a_request_a_bundle_or_a_reason() {
        assert!(matches!(
            read(r#"{"hook": "patient-view"}"#),
            Ok(Pasted::Request(_))
        ));
        assert!(matches!(
            read(r#"{"resourceType": "Bundle"}"#),
            Ok(Pasted::Bundle(_))
        ));
        let problem = |text: &str| read(text).unwrap_err();
        assert!(problem("  \n").starts_with("Nothing was pasted"));
        let not_json = problem("{\n  \"hook\": patient-view\n}");
        assert!(
            not_json.contains("not JSON") && not_json.contains("line 2"),
            "{not_json}"
        );
        assert!(problem(r#"{"resourceType": "Patient"}"#).contains("FHIR Patient, not a Bundle"));
        assert!(problem("[1, 2]").contains("neither a CDS Hooks request"));
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert!(problem(&deep).contains("deeper than 64 levels"));
        let huge = format!("\"{}\"", "x".repeat(MAX_PASTE_BYTES));
        assert!(problem(&huge).contains("larger than 8 MiB"));
    }

    #[test]
    fn offline_requests_lose_their_server_and_token() {
        let request = json!({"hook": "patient-view", "fhirServer": "https://ehr.example",
            "fhirAuthorization": {"access_token": "secret"}, "context": {}});
        let (offline_request, dropped) = offline(request);
        assert!(dropped);
        assert_eq!(
            offline_request,
            json!({"hook": "patient-view", "context": {}})
        );
        assert!(!offline(offline_request).1);
    }

    #[test]
    fn orders_are_the_newest_of_each_kind_newest_first() {
        let orders = orders(&bundle());
        let labels: Vec<&str> = orders.iter().map(|o| o.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "MedicationRequest · alprazolam 0.25 MG Oral Tablet · 2023-05-01",
                "Procedure · Knee X-ray · 2022-02-02",
            ]
        );
        assert_eq!(orders[0].entry, 2);
    }

    #[test]
    fn a_bundle_becomes_the_request_an_ehr_would_send() {
        let keys = [
            key("patient", "Patient/{{context.patientId}}"),
            key(
                "medications",
                "MedicationRequest?patient={{context.patientId}}&status=active",
            ),
            key("conditions", "Condition?patient={{context.patientId}}"),
            key("encounter", "Encounter/{{context.encounterId}}"),
        ];
        let request = request_from_bundle(&bundle(), Hook::OrderSelect, Some(2), &keys).unwrap();
        assert_eq!(request["hook"], "order-select");
        assert_eq!(request["context"]["patientId"], "p1");
        assert_eq!(
            request["context"]["selections"],
            json!(["MedicationRequest/m-new"])
        );
        let draft = &request["context"]["draftOrders"]["entry"][0]["resource"];
        assert_eq!(
            (draft["id"].as_str(), draft["status"].as_str()),
            (Some("m-new"), Some("draft"))
        );
        assert_eq!(request["prefetch"]["patient"]["id"], "p1");
        // The draft is not on file; the stopped order is not active.
        let active = &request["prefetch"]["medications"]["entry"];
        let ids: Vec<&str> = active
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        assert_eq!(ids, ["plan"]);
        assert_eq!(request["prefetch"]["conditions"]["total"], 1);
        // The encounter the order was placed in is the one in context.
        assert_eq!(request["context"]["encounterId"], "e1");
        assert_eq!(request["prefetch"]["encounter"]["class"]["code"], "AMB");
        assert!(request.get("fhirServer").is_none());
    }

    #[test]
    fn a_procedure_is_tried_as_the_request_that_ordered_it() {
        let keys = [key("encounter", "Encounter/{{context.encounterId}}")];
        let request = request_from_bundle(&bundle(), Hook::OrderSign, Some(6), &keys).unwrap();
        let draft = &request["context"]["draftOrders"]["entry"][0]["resource"];
        assert_eq!(draft["resourceType"], "ServiceRequest");
        assert_eq!(draft["code"]["text"], "Knee X-ray");
        assert!(request["context"].get("selections").is_none());
        // It names no encounter: none is in context.
        assert!(request["context"].get("encounterId").is_none());
        assert_eq!(request["prefetch"]["encounter"], Value::Null);
    }

    #[test]
    fn a_bundle_without_what_the_hook_needs_says_so() {
        assert_eq!(
            request_from_bundle(&bundle(), Hook::OrderSign, None, &[]),
            Err(BundleProblem::NoOrderPicked)
        );
        let view = request_from_bundle(&bundle(), Hook::PatientView, None, &[]).unwrap();
        assert!(view["context"].get("draftOrders").is_none());
        let Err(BundleProblem::Invalid(why)) =
            request_from_bundle(&bundle(), Hook::OrderSign, Some(99), &[])
        else {
            panic!("an order not in the Bundle was accepted");
        };
        assert!(why.contains("not in this Bundle"));
        let no_patient = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]});
        let Err(BundleProblem::Invalid(why)) =
            request_from_bundle(&no_patient, Hook::PatientView, None, &[])
        else {
            panic!("a Bundle without a patient was accepted");
        };
        assert!(why.contains("no Patient resource"));
    }
}
