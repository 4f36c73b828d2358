//! The logs of full requests, successful and failed, captured as production
//! writes them (JSON, debug level): structured fields are there, and the
//! patient id, the FHIR access token, the JWT, names and resource bodies are
//! not. The only test of this binary, since it installs the global subscriber
//! and expects exactly its own requests in the log.

// The harness of tests/api, of which this binary uses a part.
#[allow(dead_code)]
mod common;

use axum::http::StatusCode;
use common::auth::*;
use common::logs::Buffer;
use common::*;
use hookwise::config::{LogFormat, Secret};
use hookwise::pseudonym::Pseudonymizer;
use serde_json::{Value, json};
use std::time::Duration;

const PATIENT_ID: &str = "pt-5830-zebulon";
const ACCESS_TOKEN: &str = "fhir-access-token-9f8e7d6c";
const NAME: &str = "Quuxwhistle";
const HASH_KEY: &str = "test-hash-key";
const EHR: &str = "https://ehr.example.org";

fn patient_resource() -> Value {
    json!({"resourceType": "Patient", "id": PATIENT_ID, "gender": "male", "birthDate": born_years_ago(76),
        "name": [{"family": NAME, "given": ["Zebulon"]}]})
}

fn request(fhir: &str) -> Value {
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["context"]["patientId"] = json!(PATIENT_ID);
    request["fhirServer"] = json!(fhir);
    request["fhirAuthorization"] = json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer",
        "expires_in": 300, "scope": "user/*.read", "subject": "hookwise"});
    request
}

#[tokio::test]
async fn logs_carry_request_fields_and_never_phi_or_secrets() {
    let buffer = Buffer::install("debug");

    let fhir = fake_fhir(Duration::ZERO, |path, _| match path {
        p if p.ends_with(&format!("/Patient/{PATIENT_ID}")) => (StatusCode::OK, patient_resource()),
        // Every search finds nothing, as a server's would for a patient with no such records.
        search if search.matches('/').count() == 2 => (StatusCode::OK, searchset(vec![])),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"resourceType": "OperationOutcome"}),
        ),
    })
    .await;
    // Fails the Condition search; a failed Patient read is in logging_fhir_errors.rs.
    let failing = fake_fhir(Duration::ZERO, |path, _| match path {
        "/fhir/Condition" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"resourceType": "OperationOutcome"}),
        ),
        _ => (StatusCode::OK, patient_resource()),
    })
    .await;
    let key = TestKey::es384("log-key");
    let mut ehr = client(EHR);
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    let mut settings = auth_settings(vec![ehr]);
    settings.log_format = LogFormat::Json;
    settings.patient_id_hash_key = Some(Secret::new(HASH_KEY));
    let app = spawn_app_with(settings).await;
    let path = "/cds-services/choosing-wisely-order-select";
    let forger = TestKey::es384("log-key");
    let jwts: Vec<String> = (0..5)
        .map(|_| key.sign(&claims(EHR, &app.url(path)), None))
        .collect();
    let forged = forger.sign(&claims(EHR, &app.url(path)), None);

    // A full successful call with a fallback fetch using the access token.
    let ok = &jwts[0];
    let raw = app.post_token(path, ok, &request(&fhir.base())).await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
    assert!(raw.body.contains("PSA"), "a card: {}", raw.body);
    assert!(
        fhir.seen
            .lock()
            .unwrap()
            .authorizations
            .iter()
            .all(|a| a == &format!("Bearer {ACCESS_TOKEN}"))
    );
    // The same JWT again: replayed, 401.
    assert_eq!(
        app.post_token(path, ok, &request(&fhir.base()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A JWT signed by another key: 401.
    assert_eq!(
        app.post_token(path, &forged, &request(&fhir.base()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The FHIR server fails: 412.
    let raw = app
        .post_token(path, &jwts[1], &request(&failing.base()))
        .await;
    assert_eq!(raw.status, StatusCode::PRECONDITION_FAILED);
    // A bad envelope: 400.
    let mut bad = request(&fhir.base());
    bad["hook"] = json!(7);
    assert_eq!(
        app.post_token(path, &jwts[2], &bad).await.status,
        StatusCode::BAD_REQUEST
    );
    // The same patient pasted into the console's try-a-patient: its
    // token, id and name stay out of the log too.
    let mut pasted = request(&fhir.base());
    pasted["prefetch"] =
        as_discovery_asks(json!({"patient": patient_resource(), "conditions": searchset(vec![])}));
    let pasted = pasted.to_string();
    let (status, page) = app.post_form("/console/try", &[("input", &pasted)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("PSA"), "a card");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = buffer.text();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(!lines.is_empty());

    // Nothing that identifies the patient or grants access.
    for secret in [
        PATIENT_ID,
        ACCESS_TOKEN,
        NAME,
        "Zebulon",
        "birthDate",
        "resourceType",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
    for jwt in jwts.iter().chain([&forged]) {
        for part in jwt.split('.').filter(|p| p.len() > 8) {
            assert!(
                !logs.contains(part),
                "a JWT part leaked into the logs:\n{logs}"
            );
        }
    }

    // What is there: one closing event per request, with its fields.
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 6, "{logs}");
    let hash = Pseudonymizer::new(HASH_KEY.as_bytes()).hash(PATIENT_ID);
    let outcomes: Vec<&str> = requests
        .iter()
        .map(|l| l["fields"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "unauthorized",
            "unauthorized",
            "precondition-failed",
            "bad-request",
            "ok"
        ]
    );
    assert_eq!(requests[5]["span"]["route"], "/console/try", "{logs}");
    let first = requests[0];
    assert_eq!(first["fields"]["status"], 200);
    assert!(first["fields"]["latency_ms"].as_f64().is_some());
    let span = &first["span"];
    assert_eq!(span["service"], "choosing-wisely-order-select", "{first}");
    assert_eq!(span["hook"], "order-select");
    assert_eq!(span["patient"], hash.as_str());
    assert_eq!(span["client"], EHR);
    assert_eq!(span["cards"], 1);
    assert_eq!(span["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(
        requests[3]["span"]["patient"],
        hash.as_str(),
        "failed calls are correlated too"
    );
    assert!(
        requests[1]["span"].get("patient").is_none(),
        "nothing is read before authentication"
    );
    let reasons: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "authentication failed")
        .map(|l| l["fields"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["jti already used", "signature does not verify"]);
}
