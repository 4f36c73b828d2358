//! The CDS Hooks HTTP interface, driven over a real socket.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";

fn psa_prefetch(birth_date: &str, conditions: Vec<Value>) -> Value {
    json!({"patient": patient("p1", "male", birth_date), "conditions": searchset(conditions)})
}

#[tokio::test]
async fn discovery_lists_one_service_per_hook_with_derived_prefetch() {
    let app = spawn_app().await;
    let (status, body) = app.get("/cds-services").await;
    assert_eq!(status, StatusCode::OK);
    assert_no_empty_optionals(&body, "$");
    let services = body["services"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["hook"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("choosing-wisely-order-select", "order-select"),
            ("choosing-wisely-order-sign", "order-sign"),
            ("deprescribing-patient-view", "patient-view"),
            ("deprescribing-order-select", "order-select"),
            ("deprescribing-order-sign", "order-sign"),
        ]
    );
    let cw = &services[0];
    assert_eq!(cw["title"], "Choosing Wisely (order-select)");
    assert!(cw["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(cw["prefetch"]["patient"], "Patient/{{context.patientId}}");
    assert_eq!(
        cw["prefetch"]["conditions"],
        "Condition?patient={{context.patientId}}"
    );
    for template in services
        .iter()
        .flat_map(|s| s["prefetch"].as_object().unwrap().values())
    {
        let template = template.as_str().unwrap();
        for token in template
            .split("{{")
            .skip(1)
            .map(|t| t.split("}}").next().unwrap())
        {
            assert!(
                token.starts_with("context.") || token.starts_with("user"),
                "template {template} uses a non-2.0 token"
            );
        }
    }
}

/// The kidney rules compute creatinine clearance with `kidney`, so the
/// deprescribing services prefetch the Patient and Observations; when the
/// query is narrowed to codes (it is, while the codes fit in a URL), the body
/// weight and serum creatinine codes are among them.
#[tokio::test]
async fn discovery_prefetches_weight_and_creatinine_for_a_kidney_criterion() {
    let app = spawn_app().await;
    let (_, body) = app.get("/cds-services").await;
    let services = body["services"].as_array().unwrap();
    let view = services
        .iter()
        .find(|s| s["id"] == "deprescribing-patient-view")
        .unwrap();
    assert_eq!(view["prefetch"]["patient"], "Patient/{{context.patientId}}");
    let observations = view["prefetch"]["observations"].as_str().unwrap();
    assert!(observations.starts_with("Observation?patient={{context.patientId}}"));
    if !observations.contains("&code=") {
        return;
    }
    for code in ["29463-7", "3141-9", "2160-0", "14682-9", "62238-1"] {
        assert!(
            observations.contains(&format!("http://loinc.org|{code}")),
            "{code} missing from {observations}"
        );
    }
}

/// The preoperative cataract rules read planned orders (a surgery already
/// scheduled), so the Choosing Wisely services ask for active ServiceRequests.
#[tokio::test]
async fn a_rule_using_planned_orders_puts_the_service_request_template_in_discovery() {
    let app = spawn_app().await;
    let (status, body) = app.get("/cds-services").await;
    assert_eq!(status, StatusCode::OK);
    let services = body["services"].as_array().unwrap();
    for service in services.iter().filter(|s| {
        s["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("choosing-wisely"))
    }) {
        assert_eq!(
            service["prefetch"]["plannedOrders"],
            "ServiceRequest?patient={{context.patientId}}&status=active",
            "{}",
            service["id"]
        );
        assert_eq!(
            service["prefetch"]["procedures"], "Procedure?patient={{context.patientId}}",
            "scheduled Procedures come unfiltered by status"
        );
    }
}

/// What a client such as the CDS Hooks sandbox does with discovery: services
/// kept in a map keyed by id (a repeated id would overwrite an earlier
/// hook), each called for its one hook with its prefetch templates filled.
#[tokio::test]
async fn every_family_and_hook_is_reachable_through_discovery_keyed_by_id() {
    let app = spawn_app().await;
    let (_, body) = app.get("/cds-services").await;
    let listed = body["services"].as_array().unwrap();
    let by_id: std::collections::HashMap<&str, &Value> = listed
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by_id.len(), listed.len(), "every id is listed once");

    let rules = hookwise::rules::load_dir(&root().join("cds-rules")).unwrap();
    let mut served = Vec::new();
    for family in &rules.families {
        for rule in family.rules.iter().map(|i| &rules.rules[*i]) {
            for hook in rule.hooks.iter().copied() {
                served.push((family.id.clone(), hook));
            }
        }
    }
    served.sort();
    served.dedup();
    assert_eq!(served.len(), 5, "{served:?}");
    for (family, hook) in served {
        let reached = by_id
            .values()
            .filter(|s| s["hook"] == hook.as_str())
            .find(|s| {
                let id = s["id"].as_str().unwrap();
                id == hookwise::rules::Service::id_for(&family, hook)
            });
        let Some(service) = reached else {
            panic!(
                "{family} at {hook}: no service in discovery: {:?}",
                by_id.keys()
            );
        };
        let id = service["id"].as_str().unwrap();
        let request = client_request(hook.as_str(), &service["prefetch"]);
        let (status, answer) = app
            .post_raw(
                &format!("/cds-services/{id}"),
                serde_json::to_vec(&request).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{id}: {answer}");
        let cards = answer["cards"].as_array().unwrap();
        assert!(
            !cards.is_empty(),
            "{family} at {hook} ({id}) gave no card: {answer}"
        );

        // The card's feedback goes to its own service's feedback URL.
        let feedback = json!({"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden",
            "outcomeTimestamp": "2026-01-01T10:00:00Z"}]});
        let (status, receipt) = app
            .post_raw(
                &format!("/cds-services/{id}/feedback"),
                serde_json::to_vec(&feedback).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{id}: {receipt}");
        assert_eq!(
            receipt,
            json!({"stored": 1, "duplicates": 0, "unknownCards": 0}),
            "{id}"
        );
    }
}

/// A call for `hook` about an 81-year-old man on lorazepam, with a PSA test
/// and more lorazepam as draft orders on order hooks, and every advertised
/// prefetch key filled as a client fills templates.
fn client_request(hook: &str, templates: &Value) -> Value {
    let lorazepam = |id: &str, status: &str| {
        json!({"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "197901", "display": "lorazepam 1 MG Oral Tablet"}]},
            "subject": {"reference": "Patient/p1"}, "authoredOn": days_ago(200)})
    };
    let prefetch: serde_json::Map<String, Value> = templates
        .as_object()
        .unwrap()
        .keys()
        .map(|key| {
            let value = match key.as_str() {
                "patient" => patient("p1", "male", &born_years_ago(81)),
                "medications" => searchset(vec![lorazepam("m1", "active")]),
                _ => searchset(vec![]),
            };
            (key.clone(), value)
        })
        .collect();
    let prefetch = Some(Value::Object(prefetch));
    let mut request = match hook {
        "patient-view" => json!({"hook": hook,
            "context": {"userId": "Practitioner/example", "patientId": "p1"}, "prefetch": prefetch}),
        _ => order_request(
            hook,
            vec![psa_order("sr-1"), lorazepam("draft-1", "draft")],
            prefetch,
        ),
    };
    // Each call is its own hook instance, so its cards have their own uuids.
    request["hookInstance"] = json!(uuid::Uuid::new_v4().to_string());
    request
}

#[tokio::test]
async fn a_call_for_another_hook_names_the_service_that_serves_it() {
    let app = spawn_app().await;
    let review = json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "p1"}});
    let (status, outcome) = app
        .post_raw(
            "/cds-services/deprescribing-order-select",
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "hook");
    let message = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        message.contains("\"deprescribing-patient-view\""),
        "{message}"
    );

    // Choosing Wisely has no patient-view service: the error says so.
    let (status, outcome) = app
        .post_raw(
            "/cds-services/choosing-wisely-order-sign",
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        message.contains("do not serve \"patient-view\""),
        "{message}"
    );

    // An unknown hook name, likewise a 400 on the hook field.
    let mut unknown = review.clone();
    unknown["hook"] = json!("encounter-start");
    let (status, outcome) = app
        .post_raw(
            "/cds-services/deprescribing-patient-view",
            serde_json::to_vec(&unknown).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "hook");
}

#[tokio::test]
async fn a_family_id_is_no_service_and_points_to_the_ids_that_replaced_it() {
    let app = spawn_app().await;
    let request = order_request("order-select", vec![psa_order("sr-1")], None);
    let (status, outcome) = app
        .post_raw(
            "/cds-services/choosing-wisely",
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let message = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        message.contains("choosing-wisely-order-select, choosing-wisely-order-sign"),
        "{message}"
    );

    // Feedback on cards issued under the old id still arrives there: taken.
    let feedback = json!({"feedback": [{"card": "0c3f6f4e-1d7a-4c55-9a39-0f1b2c3d4e5f", "outcome": "overridden",
        "outcomeTimestamp": "2026-01-01T10:00:00Z"}]});
    let (status, receipt) = app
        .post_raw(
            "/cds-services/choosing-wisely/feedback",
            serde_json::to_vec(&feedback).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["stored"], 1);
    let (status, _) = app
        .post_raw(
            "/cds-services/choosing/feedback",
            serde_json::to_vec(&feedback).unwrap(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "neither a service nor a family"
    );
}

#[tokio::test]
async fn a_service_id_that_is_not_utf8_is_a_400_operation_outcome() {
    let app = spawn_app().await;
    for path in ["/cds-services/%ff%fe", "/cds-services/%ff%fe/feedback"] {
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(outcome["issue"][0]["code"], "invalid");
    }
}

#[tokio::test]
async fn order_select_with_prefetch_returns_a_complete_card() {
    let app = spawn_app().await;
    let request = order_request(
        "order-select",
        vec![psa_order("sr-1")],
        Some(psa_prefetch(&born_years_ago(74), vec![])),
    );
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_no_empty_optionals(&body, "$");
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{body:#}");
    let card = &cards[0];
    assert!(card["uuid"].as_str().unwrap().len() == 36);
    let summary = card["summary"].as_str().unwrap();
    assert!(summary.chars().count() < 140, "{summary}");
    assert!(summary.contains("74"), "summary names the age: {summary}");
    assert_eq!(card["indicator"], "info");
    assert!(card["source"]["label"].as_str().is_some());
    assert!(
        card["source"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(
        card["detail"]
            .as_str()
            .unwrap()
            .contains("Prostate specific Ag")
    );
    assert!(!card["detail"].as_str().unwrap().contains("{{"));
    for link in card["links"].as_array().unwrap() {
        assert_eq!(link["type"], "absolute");
    }
    for reason in card["overrideReasons"].as_array().unwrap() {
        assert!(reason["display"].as_str().is_some());
    }
    assert_eq!(card["selectionBehavior"], "at-most-one");
    let suggestion = &card["suggestions"][0];
    assert_eq!(suggestion["uuid"].as_str().unwrap().len(), 36);
    assert_ne!(suggestion["uuid"], card["uuid"]);
    assert_eq!(suggestion["actions"][0]["type"], "delete");
    assert_eq!(
        suggestion["actions"][0]["resourceId"],
        "ServiceRequest/sr-1"
    );
    assert!(suggestion["actions"][0].get("resource").is_none());

    // A retry of the same hookInstance gets the same card uuid.
    let (_, again) = app.call("choosing-wisely", &request).await;
    assert_eq!(again["cards"][0]["uuid"], card["uuid"]);
}

#[tokio::test]
async fn order_sign_judges_every_draft() {
    let app = spawn_app().await;
    let request = order_request(
        "order-sign",
        vec![psa_order("sr-9")],
        Some(psa_prefetch(&born_years_ago(80), vec![])),
    );
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["cards"][0]["suggestions"][0]["actions"][0]["resourceId"],
        "ServiceRequest/sr-9"
    );
}

#[tokio::test]
async fn no_advice_is_an_empty_card_list() {
    let app = spawn_app().await;
    for (age, conditions) in [
        (69, vec![]),
        (
            75,
            vec![condition(
                "c1",
                ICD10,
                "C61",
                "Malignant neoplasm of prostate",
                "2019-01-01",
            )],
        ),
    ] {
        let request = order_request(
            "order-select",
            vec![psa_order("sr-1")],
            Some(psa_prefetch(&born_years_ago(age), conditions)),
        );
        let (status, body) = app.call("choosing-wisely", &request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"cards": []}), "age {age}");
    }
}

#[tokio::test]
async fn an_order_hook_without_usable_drafts_needs_no_data() {
    let app = spawn_app().await;
    // The order screen just opened: a draft with no code yet, and no prefetch or fhirServer.
    let empty_draft = json!({"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order"});
    let (status, body) = app
        .call(
            "choosing-wisely",
            &order_request("order-select", vec![empty_draft], None),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cards": []})));
    // A draft order bundle of the wrong shape altogether.
    let mut request = order_request("order-select", vec![], None);
    request["context"]["draftOrders"] = json!("not a bundle");
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cards": []})));
}

#[tokio::test]
async fn sloppy_fhir_is_read_leniently() {
    let app = spawn_app().await;
    let mut draft = psa_order("sr-1");
    draft["category"] = json!({"text": "an object where FHIR wants an array"});
    draft["code"]["coding"] = draft["code"]["coding"][0].clone(); // one Coding, not an array
    let mut request = order_request(
        "order-select",
        vec![draft],
        Some(psa_prefetch(&born_years_ago(72), vec![])),
    );
    request["context"]["draftOrders"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    request["prefetch"]["patient"]["birthDate"] = json!(born_years_ago(72));
    request["prefetch"]["patient"]["name"] = json!("a string where FHIR wants HumanName[]");
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().unwrap().len(), 1, "{body:#}");
}

#[tokio::test]
async fn missing_prefetch_is_fetched_with_the_bearer_token_across_pages() {
    let birth = born_years_ago(76);
    let fhir = fake_fhir(Duration::ZERO, move |path, query| match path {
        "/fhir/Patient/p1" => (StatusCode::OK, patient("p1", "male", &birth)),
        "/fhir/Condition" if query.contains("page=2") => (
            StatusCode::OK,
            searchset(vec![condition(
                "c2",
                ICD10,
                "C61",
                "Malignant neoplasm of prostate",
                "2018-05-01",
            )]),
        ),
        "/fhir/Condition" => {
            let mut page = searchset(vec![condition(
                "c1",
                ICD10,
                "I10",
                "Essential hypertension",
                "2010-01-01",
            )]);
            page["link"] = json!([{"relation": "next", "url": "Condition?patient=p1&page=2"}]);
            (StatusCode::OK, page)
        }
        // Every other search finds nothing.
        search if search.matches('/').count() == 2 => (StatusCode::OK, searchset(vec![])),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"resourceType": "OperationOutcome"}),
        ),
    })
    .await;
    let app = spawn_app().await;
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["fhirServer"] = json!(fhir.base());
    request["fhirAuthorization"] = json!({"access_token": "tok-123", "token_type": "Bearer",
        "expires_in": 300, "scope": "user/*.read", "subject": "hookwise"});
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The prostate cancer is only on page 2: no card proves the page was read.
    assert_eq!(body, json!({"cards": []}));
    let seen = fhir.seen.lock().unwrap();
    assert!(
        seen.requests.iter().any(|r| r.contains("page=2")),
        "{seen:?}"
    );
    assert_eq!(seen.authorizations.len(), seen.requests.len());
    assert!(seen.authorizations.iter().all(|a| a == "Bearer tok-123"));
}

#[tokio::test]
async fn null_keys_are_not_fetched_and_operation_outcome_keys_are() {
    let birth = born_years_ago(78);
    let fhir = fake_fhir(Duration::ZERO, move |path, _| match path {
        "/fhir/Patient/p1" => (StatusCode::OK, patient("p1", "male", &birth)),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"resourceType": "OperationOutcome"}),
        ),
    })
    .await;
    let app = spawn_app().await;
    let prefetch = json!({
        "patient": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        "conditions": null
    });
    let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    request["fhirServer"] = json!(fhir.base());
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().unwrap().len(), 1);
    let seen = fhir.seen.lock().unwrap();
    assert_eq!(
        seen.requests,
        ["/fhir/Patient/p1?"],
        "only the failed key is fetched"
    );
    assert!(
        seen.authorizations.is_empty(),
        "no token was given, none is sent"
    );
}

#[tokio::test]
async fn data_that_cannot_be_had_is_a_412() {
    let app = spawn_app().await;
    // Missing keys and no fhirServer.
    let (status, body) = app
        .call(
            "choosing-wisely",
            &order_request("order-select", vec![psa_order("sr-1")], None),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("fhirServer")
    );

    // The FHIR server fails.
    let fhir = fake_fhir(Duration::ZERO, |_, _| {
        (StatusCode::INTERNAL_SERVER_ERROR, json!({}))
    })
    .await;
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["fhirServer"] = json!(fhir.base());
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // A plain-http FHIR server that is not allowlisted.
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["fhirServer"] = json!("http://ehr.example.org/fhir");
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("https"),
        "{body}"
    );
}

#[tokio::test]
async fn a_slow_fhir_server_ends_in_no_cards_within_the_deadline() {
    let (app, request) = slow_fhir_call().await;
    let started = std::time::Instant::now();
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cards": []})));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

async fn assert_outcome(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    status: StatusCode,
    expression: Option<&str>,
) -> Value {
    let (got, outcome) = app.post_raw(path, body).await;
    assert_eq!(got, status, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "error");
    if let Some(expression) = expression {
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    outcome
}

#[tokio::test]
async fn bad_input_gets_a_4xx_operation_outcome() {
    let app = spawn_app().await;
    let cw = "/cds-services/choosing-wisely-order-select";
    assert_outcome(
        &app,
        cw,
        b"{not json".to_vec(),
        StatusCode::BAD_REQUEST,
        None,
    )
    .await;
    assert_outcome(&app, cw, b"[]".to_vec(), StatusCode::BAD_REQUEST, None).await;
    let wrong_context = json!({"hook": "order-select", "hookInstance": "x", "context": "patient"});
    assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&wrong_context).unwrap(),
        StatusCode::BAD_REQUEST,
        Some("context"),
    )
    .await;
    let no_instance = json!({"hook": "order-select", "context": {"patientId": "p1"}});
    let outcome = assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&no_instance).unwrap(),
        StatusCode::BAD_REQUEST,
        None,
    )
    .await;
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("hookInstance")
    );
    let wrong_type = json!({"hook": 7, "hookInstance": "x", "context": {"patientId": "p1"}});
    assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&wrong_type).unwrap(),
        StatusCode::BAD_REQUEST,
        Some("hook"),
    )
    .await;
    let no_patient = json!({"hook": "order-select", "hookInstance": "x", "context": {"userId": "Practitioner/1"}});
    assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&no_patient).unwrap(),
        StatusCode::BAD_REQUEST,
        Some("context.patientId"),
    )
    .await;
    let unknown_hook =
        json!({"hook": "appointment-book", "hookInstance": "x", "context": {"patientId": "p1"}});
    let outcome = assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&unknown_hook).unwrap(),
        StatusCode::BAD_REQUEST,
        Some("hook"),
    )
    .await;
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("order-select")
    );
    let unserved =
        json!({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"}});
    assert_outcome(
        &app,
        cw,
        serde_json::to_vec(&unserved).unwrap(),
        StatusCode::BAD_REQUEST,
        Some("hook"),
    )
    .await;
    assert_outcome(
        &app,
        "/cds-services/no-such-service",
        b"{}".to_vec(),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    assert_outcome(
        &app,
        "/elsewhere",
        b"{}".to_vec(),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = format!(
        r#"{{"hook":"order-select","hookInstance":"x","context":{{"patientId":"p1"}},"extension":{nested}}}"#
    );
    assert_outcome(&app, cw, deep.into_bytes(), StatusCode::BAD_REQUEST, None).await;
    let huge = format!(
        r#"{{"hook":"order-select","pad":"{}"}}"#,
        "x".repeat(6 * 1024 * 1024)
    );
    assert_outcome(
        &app,
        cw,
        huge.into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
    )
    .await;

    let (status, outcome) = app.get("/cds-services/choosing-wisely-order-select").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn every_path_answers_a_preflight() {
    let app = spawn_app().await;
    for path in [
        "/cds-services",
        "/cds-services/choosing-wisely-order-select",
        "/cds-services/choosing-wisely-order-select/feedback",
    ] {
        let response = preflight(&app, path, "https://sandbox.cds-hooks.org").await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn feedback_accepts_a_batch_for_a_known_service() {
    let app = spawn_app().await;
    let feedback = json!({"feedback": [{"card": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "outcome": "overridden",
        "outcomeTimestamp": "2026-01-01T10:00:00Z"}]});
    let (status, _) = app
        .post_raw(
            "/cds-services/choosing-wisely-order-select/feedback",
            serde_json::to_vec(&feedback).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post_raw(
            "/cds-services/nope/feedback",
            serde_json::to_vec(&feedback).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_outcome(
        &app,
        "/cds-services/choosing-wisely-order-select/feedback",
        b"{}".to_vec(),
        StatusCode::BAD_REQUEST,
        Some("feedback"),
    )
    .await;
}

fn lorazepam(id: &str, status: &str, authored: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "197901", "display": "lorazepam 1 MG Oral Tablet"}]},
        "subject": {"reference": "Patient/p1"}, "authoredOn": authored})
}

#[tokio::test]
async fn patient_view_gathers_deprescribing_findings_into_one_card() {
    let app = spawn_app().await;
    let request = json!({
        "hook": "patient-view",
        "hookInstance": "5b2ba0c5-8a7e-4a43-9a43-1f4c6c1b3a10",
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
        "prefetch": {
            "patient": patient("p1", "female", &born_years_ago(81)),
            "medications": searchset(vec![lorazepam("m1", "active", &days_ago(200))]),
            "conditions": searchset(vec![]),
            "observations": searchset(vec![]),
            "procedures": null
        }
    });
    let (status, body) = app.call("deprescribing", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_no_empty_optionals(&body, "$");
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{body:#}");
    let card = &cards[0];
    assert!(
        card["summary"]
            .as_str()
            .unwrap()
            .starts_with("Medication review"),
        "{card}"
    );
    assert!(
        card["summary"]
            .as_str()
            .unwrap()
            .ends_with("(1 to consider): lorazepam"),
        "the review names the drug by ingredient: {card}"
    );
    assert!(
        card["detail"].as_str().unwrap().contains("### "),
        "a section per rule"
    );
    assert_eq!(card["indicator"], "warning");

    // Younger than 65: no advice.
    let mut young = request.clone();
    young["prefetch"]["patient"]["birthDate"] = json!(born_years_ago(64));
    let (_, body) = app.call("deprescribing", &young).await;
    assert_eq!(body, json!({"cards": []}));
}

#[tokio::test]
async fn a_new_prescription_gets_its_own_card_on_order_select() {
    let app = spawn_app().await;
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(70)), "conditions": searchset(vec![]),
        "medications": searchset(vec![]), "procedures": searchset(vec![]), "observations": searchset(vec![])});
    let request = order_request(
        "order-select",
        vec![lorazepam("draft-1", "draft", &days_ago(0))],
        Some(prefetch),
    );
    let (status, body) = app.call("deprescribing", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{body:#}");
    let actions: Vec<&Value> = cards[0]["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap())
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a["type"] == "delete" && a["resourceId"] == "MedicationRequest/draft-1"),
        "{body:#}"
    );
}

/// The draft order the CDS Hooks sandbox's Rx Sign view sends: a
/// MedicationRequest with no `id` and no `intent`, in a Bundle with no
/// `type`, and no `selections` (order-sign). It must still be judged.
#[tokio::test]
async fn the_sandbox_s_rx_sign_draft_is_judged() {
    let app = spawn_app().await;
    let draft = json!({"resourceType": "MedicationRequest", "authoredOn": "2026-12-01", "status": "draft",
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"},
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
        "medicationCodeableConcept": {"text": "lorazepam 1 MG Oral Tablet",
            "coding": [{"display": "lorazepam 1 MG Oral Tablet",
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197901"}]}});
    let request = json!({"hook": "order-sign", "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": {"userId": "Practitioner/example", "patientId": "p1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}},
        "prefetch": {"patient": patient("p1", "female", &born_years_ago(81)),
            "medications": searchset(vec![]), "conditions": searchset(vec![]),
            "observations": searchset(vec![]), "procedures": searchset(vec![])}});
    let (status, body) = app
        .post_raw(
            "/cds-services/deprescribing-order-sign",
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{body:#}");
    assert!(
        cards[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Lorazepam at 81"),
        "the summary names the drug: {body:#}"
    );
    assert_no_empty_optionals(&body, "$");
}
