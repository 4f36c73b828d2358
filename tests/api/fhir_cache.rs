//! The FHIR fetch cache over real HTTP, against a fake EHR FHIR server that
//! counts what it is asked: a chart read on order-select is reused on
//! order-sign for the same patient and token, and never for another token,
//! another patient or another server; failures are not kept; TTL 0 disables.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A FHIR server knowing patients p1 and p2 (men of 75, no conditions).
async fn ehr() -> FakeFhir {
    let birth = born_years_ago(75);
    fake_fhir(Duration::ZERO, move |path, _| {
        match path.strip_prefix("/fhir/Patient/") {
            Some(id) => (StatusCode::OK, patient(id, "male", &birth)),
            // Every search finds nothing, as a server's would for a patient
            // with no such records.
            None if path.matches('/').count() == 2 => (StatusCode::OK, searchset(vec![])),
            None => (
                StatusCode::NOT_FOUND,
                json!({"resourceType": "OperationOutcome"}),
            ),
        }
    })
    .await
}

/// A PSA order on `hook` for `patient`, nothing prefetched, read with `token`.
fn call(hook: &str, fhir: &FakeFhir, patient: &str, token: &str) -> Value {
    let mut request = order_request(hook, vec![psa_order("sr-1")], None);
    request["context"]["patientId"] = json!(patient);
    request["fhirServer"] = json!(fhir.base());
    request["fhirAuthorization"] = json!({"access_token": token, "token_type": "Bearer",
        "expires_in": 300, "scope": "user/*.read", "subject": "hookwise"});
    request
}

/// Calls choosing-wisely; the PSA card proves the data was read.
async fn psa_card(app: &TestApp, request: &Value) {
    let (status, body) = app.call("choosing-wisely", request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().map(Vec::len), Some(1), "{body:#}");
}

/// What one call for a PSA order reads from the EHR: the Patient, its
/// Conditions and the order services' other prefetch keys, each once.
const READS: usize = 2 + ORDER_PREFETCH_KEYS.len();

fn asked(fhir: &FakeFhir) -> Vec<String> {
    fhir.seen.lock().unwrap().requests.clone()
}

#[tokio::test]
async fn order_sign_reuses_what_order_select_read_for_the_same_patient_and_token() {
    let fhir = ehr().await;
    let app = spawn_app().await;
    psa_card(&app, &call("order-select", &fhir, "p1", "tok-a")).await;
    let first = asked(&fhir);
    assert_eq!(first.len(), READS, "every prefetch key once: {first:?}");
    psa_card(&app, &call("order-sign", &fhir, "p1", "tok-a")).await;
    assert_eq!(asked(&fhir), first, "nothing fetched again");
}

#[tokio::test]
async fn another_token_patient_or_server_is_fetched_again() {
    let fhir = ehr().await;
    let app = spawn_app().await;
    psa_card(&app, &call("order-select", &fhir, "p1", "tok-a")).await;
    assert_eq!(asked(&fhir).len(), READS);

    psa_card(&app, &call("order-sign", &fhir, "p1", "tok-b")).await;
    assert_eq!(asked(&fhir).len(), 2 * READS, "another token");
    let authorizations = fhir.seen.lock().unwrap().authorizations.clone();
    assert_eq!(
        authorizations[READS..],
        vec!["Bearer tok-b"; READS],
        "read with the new token"
    );

    psa_card(&app, &call("order-sign", &fhir, "p2", "tok-a")).await;
    let requests = asked(&fhir);
    assert_eq!(requests.len(), 3 * READS, "another patient");
    assert!(
        requests[2 * READS..].iter().all(|r| r.contains("p2")),
        "{requests:?}"
    );

    let other = ehr().await;
    psa_card(&app, &call("order-sign", &other, "p1", "tok-a")).await;
    assert_eq!(
        (asked(&fhir).len(), asked(&other).len()),
        (3 * READS, READS),
        "another server"
    );
}

#[tokio::test]
async fn a_zero_ttl_always_fetches() {
    let fhir = ehr().await;
    let mut settings = test_settings();
    settings.fhir.cache_ttl_secs = 0;
    let app = spawn_app_with(settings).await;
    psa_card(&app, &call("order-select", &fhir, "p1", "tok-a")).await;
    psa_card(&app, &call("order-sign", &fhir, "p1", "tok-a")).await;
    assert_eq!(asked(&fhir).len(), 2 * READS);
}

#[tokio::test]
async fn a_failed_read_is_not_kept() {
    let birth = born_years_ago(75);
    let patient_reads = Arc::new(AtomicUsize::new(0));
    let reads = patient_reads.clone();
    // The first Patient read fails; the next ones succeed.
    let fhir = fake_fhir(Duration::ZERO, move |path, _| match path {
        "/fhir/Patient/p1" if reads.fetch_add(1, Ordering::SeqCst) == 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"resourceType": "OperationOutcome"}),
        ),
        "/fhir/Patient/p1" => (StatusCode::OK, patient("p1", "male", &birth)),
        _ => (StatusCode::OK, searchset(vec![])),
    })
    .await;
    let app = spawn_app().await;
    let (status, _) = app
        .call(
            "choosing-wisely",
            &call("order-select", &fhir, "p1", "tok-a"),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    psa_card(&app, &call("order-sign", &fhir, "p1", "tok-a")).await;
    assert_eq!(
        patient_reads.load(Ordering::SeqCst),
        2,
        "the failure was not served from the cache"
    );
}
