//! Realistic requests: Synthea patients' records sent as prefetch over HTTP.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Map, Value, json};

/// Prefetch with one searchset per resource type of a Synthea bundle, as an
/// EHR that answers every template (and then some) would send it.
fn prefetch_from(fixture: &str) -> (String, Value) {
    let path = root().join("fhir-fixtures/synthea").join(fixture);
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let patient = resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    let keyed = [
        ("conditions", "Condition"),
        ("medications", "MedicationRequest"),
        ("procedures", "Procedure"),
        ("observations", "Observation"),
        ("encounters", "Encounter"),
    ];
    let mut prefetch = Map::new();
    prefetch.insert("patient".into(), (*patient).clone());
    for (key, kind) in keyed {
        let of_kind: Vec<Value> = resources
            .iter()
            .filter(|r| r["resourceType"] == kind)
            .map(|r| (*r).clone())
            .collect();
        prefetch.insert(key.into(), searchset(of_kind));
    }
    (
        patient["id"].as_str().unwrap().to_string(),
        Value::Object(prefetch),
    )
}

#[tokio::test]
async fn psa_orders_for_synthea_men() {
    let app = spawn_app().await;
    // Ali Herman: prostate neoplasm on record, so no card whatever his age.
    let (id, prefetch) = prefetch_from("Ali_Herman_75c71918-f07f-4492-af1a-ce006a1e8aaf.json");
    let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    request["context"]["patientId"] = json!(id);
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"cards": []}));
    // Abdul Koepp, born 1956-08-03: 70 and over from 2026-08-03, and no exclusion on record.
    let (id, prefetch) = prefetch_from("Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json");
    let mut request = order_request("order-sign", vec![psa_order("sr-2")], Some(prefetch));
    request["context"]["patientId"] = json!(id);
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().unwrap().len(), 1, "{body:#}");
    assert_eq!(
        body["cards"][0]["suggestions"][0]["actions"][0]["resourceId"],
        "ServiceRequest/sr-2"
    );
}

#[tokio::test]
async fn patient_view_over_whole_synthea_records_answers_within_the_protocol() {
    let app = spawn_app().await;
    for fixture in [
        "Margery_Gibson_cdb2d67c-173f-42e7-859a-d04a8088680e.json",
        "Ali_Herman_75c71918-f07f-4492-af1a-ce006a1e8aaf.json",
        "Blake_Eichmann_6c099f2d-1173-468d-b95f-4fbf960b3b55.json",
    ] {
        let (id, prefetch) = prefetch_from(fixture);
        let request = json!({"hook": "patient-view", "hookInstance": format!("hi-{id}"),
            "context": {"userId": "Practitioner/1", "patientId": id}, "prefetch": prefetch});
        let (status, body) = app.call("deprescribing", &request).await;
        assert_eq!(status, StatusCode::OK, "{fixture}: {body}");
        assert_no_empty_optionals(&body, "$");
        assert!(
            body["cards"].as_array().unwrap().len() <= 1,
            "one combined card at most: {body:#}"
        );
    }
}
