//! A failed FHIR read of `Patient/{id}` must not put the patient id in the
//! logs. Its own binary, since it installs the global log subscriber.

// The harness of tests/api, of which this binary uses a part.
#[allow(dead_code)]
mod common;

use axum::http::StatusCode;
use common::logs::Buffer;
use common::*;
use serde_json::json;
use std::time::Duration;

const PATIENT_ID: &str = "pt-4471-failing-read";

#[tokio::test]
async fn a_failed_patient_read_does_not_log_the_patient_id() {
    let buffer = Buffer::install("debug");
    let fhir = fake_fhir(Duration::ZERO, |_, _| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"resourceType": "OperationOutcome"}),
        )
    })
    .await;
    let app = spawn_app().await;
    let mut request = order_request(
        "order-select",
        vec![psa_order("sr-1")],
        Some(json!({"conditions": searchset(vec![])})),
    );
    request["context"]["patientId"] = json!(PATIENT_ID);
    request["fhirServer"] = json!(fhir.base());
    let (status, _) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = buffer.text();
    assert!(logs.contains("precondition-failed"), "{logs}");
    assert!(
        !logs.contains(PATIENT_ID),
        "the patient id leaked into the logs:\n{logs}"
    );
}
