//! The feedback store through real HTTP: the card log, the feedback
//! endpoint, idempotency, restarts and the history query. Every scenario
//! runs on SQLite and on PostgreSQL (`on_sqlite::*`, `on_postgres::*`).

use crate::common;
use crate::on_both_backends;

use axum::http::StatusCode;
use common::binary::start_binary;
use common::db::{TestDb, spawn_on};
use common::*;
use hookwise::cds::{Hook, Indicator};
use hookwise::engine::ShownOrder;
use hookwise::pseudonym::Pseudonymizer;
use hookwise::store::{OverriddenPatients, Store};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

on_both_backends!(
    feedback_is_stored_with_its_card,
    combined_cards_are_logged_per_rule,
    the_same_feedback_twice_counts_once,
    concurrent_feedback_is_all_stored_once,
    bad_entries_are_named_and_good_ones_kept,
    a_restart_keeps_everything,
    history_finds_overrides_and_order_select_orders,
    overridden_patients_are_reread_after_their_ttl,
    a_killed_server_keeps_every_acknowledged_feedback,
    the_report_matches_hand_computed_figures,
    the_audit_joins_the_stores_acceptance,
);

const PSA_RULE: &str = "cw-psa-screening-70-plus";
const BENZO_RULE: &str = "rx-benzodiazepine-65-plus";
const PPI_RULE: &str = "rx-ppi-beyond-8-weeks";
const REASONS: &str = "https://hookwise.dev/fhir/CodeSystem/override-reason";

/// A PSA order-select for `patient`, aged 75; returns the card.
async fn psa_card(
    app: &TestApp,
    hook_instance: &str,
    patient_id: &str,
    encounter: Option<&str>,
) -> Value {
    let prefetch = json!({"patient": patient(patient_id, "male", &born_years_ago(75)), "conditions": searchset(vec![])});
    let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    request["hookInstance"] = json!(hook_instance);
    request["context"]["patientId"] = json!(patient_id);
    if let Some(encounter) = encounter {
        request["context"]["encounterId"] = json!(encounter);
    }
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().map(Vec::len), Some(1), "{body:#}");
    body["cards"][0].clone()
}

fn medication(id: &str, code: &str, display: &str, days: i64) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"}, "authoredOn": days_ago(days)})
}

/// A patient-view deprescribing review with a benzodiazepine and a PPI: one
/// combined card with a suggestion from each rule.
async fn review_card(app: &TestApp, hook_instance: &str, patient_id: &str) -> Value {
    let request = json!({
        "hook": "patient-view",
        "hookInstance": hook_instance,
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
        "prefetch": {
            "patient": patient(patient_id, "female", &born_years_ago(81)),
            "medications": searchset(vec![
                medication("m1", "197901", "lorazepam 1 MG Oral Tablet", 200),
                medication("m2", "104099", "omeprazole 20 MG Delayed Release Oral Capsule [Losec]", 120),
            ]),
            "conditions": searchset(vec![]),
            "observations": searchset(vec![]),
            "procedures": null
        }
    });
    let (status, body) = app.call("deprescribing", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cards"].as_array().map(Vec::len), Some(1), "{body:#}");
    assert_eq!(
        body["cards"][0]["suggestions"].as_array().map(Vec::len),
        Some(2),
        "{body:#}"
    );
    body["cards"][0].clone()
}

async fn post_feedback(app: &TestApp, service: &str, entries: Vec<Value>) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&json!({"feedback": entries})).unwrap();
    app.post_raw(&format!("/cds-services/{service}/feedback"), body)
        .await
}

fn accepted(card: &Value, suggestions: &[&Value], at: &str) -> Value {
    let ids: Vec<Value> = suggestions
        .iter()
        .map(|s| json!({"id": s["uuid"]}))
        .collect();
    json!({"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": ids, "outcomeTimestamp": at})
}

fn overridden(card: &str, code: Option<&str>, at: &str) -> Value {
    let mut entry = json!({"card": card, "outcome": "overridden", "outcomeTimestamp": at});
    if let Some(code) = code {
        entry["overrideReason"] =
            json!({"reason": {"system": REASONS, "code": code}, "userComment": "private note"});
    }
    entry
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn feedback_is_stored_with_its_card(db: TestDb) {
    let app = spawn_on(&db).await;
    let card = psa_card(&app, &uuid(), "p1", None).await;
    let entry = accepted(&card, &[&card["suggestions"][0]], "2026-01-01T10:00:00Z");
    let (status, body) = post_feedback(&app, "choosing-wisely-order-select", vec![entry]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"stored": 1, "duplicates": 0, "unknownCards": 0})
    );

    let store = app.server.store();
    let stored = store
        .feedback_for_card(card["uuid"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].outcome.as_str(), stored[0].unknown_card),
        ("accepted", false)
    );
    assert_eq!(
        stored[0].accepted_suggestions,
        [card["suggestions"][0]["uuid"].as_str().unwrap()]
    );
    let rows = store
        .card_log_for(card["uuid"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].rule_id.as_str(),
            rows[0].hook.as_str(),
            rows[0].service.as_str(),
            rows[0].family.as_str()
        ),
        (
            PSA_RULE,
            "order-select",
            "choosing-wisely-order-select",
            "choosing-wisely"
        )
    );
    assert_ne!(rows[0].patient_hash, "p1", "the patient id is hashed");
    assert!(
        rows[0].draft_order_hash.is_some(),
        "order hooks keep the draft order hash"
    );

    // A card hookwise never issued: stored, flagged.
    let stranger = uuid();
    let (status, body) = post_feedback(
        &app,
        "choosing-wisely-order-sign",
        vec![overridden(&stranger, None, "2026-01-01T10:00:00Z")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["unknownCards"], 1);
    assert!(store.feedback_for_card(&stranger).await.unwrap()[0].unknown_card);

    // Unknown service: 404, as before the store.
    let (status, _) = post_feedback(
        &app,
        "nope",
        vec![overridden(&stranger, None, "2026-01-01T10:00:00Z")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn combined_cards_are_logged_per_rule(db: TestDb) {
    let app = spawn_on(&db).await;
    let card = review_card(&app, &uuid(), "p7").await;
    app.server.flush_card_log().await;
    let rows = app
        .server
        .store()
        .card_log_for(card["uuid"].as_str().unwrap())
        .await
        .unwrap();
    let by_rule: Vec<(&str, &[String])> = rows
        .iter()
        .map(|r| (r.rule_id.as_str(), r.suggestion_uuids.as_slice()))
        .collect();
    let suggestions: Vec<&str> = card["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(by_rule.len(), 2, "{by_rule:?}");
    assert_eq!(by_rule[0].0, BENZO_RULE);
    assert_eq!(by_rule[1].0, PPI_RULE);
    let logged: HashSet<&str> = by_rule
        .iter()
        .flat_map(|(_, s)| s.iter().map(String::as_str))
        .collect();
    assert_eq!(
        logged,
        suggestions.iter().copied().collect(),
        "each suggestion belongs to exactly one rule"
    );
    assert!(by_rule.iter().all(|(_, s)| s.len() == 1));
    assert!(rows.iter().all(|r| r.draft_order_hash.is_none()
        && r.hook == Hook::PatientView
        && r.indicator == Indicator::Warning));

    // A retried call (same hookInstance, same card uuid) is logged once.
    let again = review_card(&app, rows[0].hook_instance.as_str(), "p7").await;
    assert_eq!(again["uuid"], card["uuid"]);
    app.server.flush_card_log().await;
    assert_eq!(app.server.store().counts().await.unwrap().card_log_rows, 2);
}

async fn the_same_feedback_twice_counts_once(db: TestDb) {
    let app = spawn_on(&db).await;
    let card = psa_card(&app, &uuid(), "p1", None).await;
    let card_id = card["uuid"].as_str().unwrap();
    let entry = overridden(card_id, Some("patient-preference"), "2026-01-01T10:00:00Z");
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", vec![entry.clone()])
            .await
            .1["stored"],
        1
    );
    let (status, body) = post_feedback(
        &app,
        "choosing-wisely-order-select",
        vec![entry.clone(), entry],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"stored": 0, "duplicates": 2, "unknownCards": 0})
    );
    // The same instant written another way is the same feedback.
    let same = overridden(
        card_id,
        Some("patient-preference"),
        "2026-01-01T11:00:00+01:00",
    );
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", vec![same])
            .await
            .1["duplicates"],
        1
    );
    // Another time is another event.
    let later = overridden(card_id, Some("patient-preference"), "2026-01-01T10:05:00Z");
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", vec![later])
            .await
            .1["stored"],
        1
    );
    assert_eq!(
        app.server
            .store()
            .feedback_for_card(card_id)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn concurrent_feedback_is_all_stored_once(db: TestDb) {
    const POSTS: usize = 1000;
    const TASKS: usize = 20;
    const DISTINCT: usize = 800; // posts 800..1000 repeat earlier entries
    let app = Arc::new(spawn_on(&db).await);
    let card = psa_card(&app, &uuid(), "p1", None).await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let base = OffsetDateTime::now_utc().unix_timestamp();
    let entry = move |i: usize| {
        let at = OffsetDateTime::from_unix_timestamp(base - (i % DISTINCT) as i64).unwrap();
        overridden(
            &card,
            None,
            &at.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        )
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let app = app.clone();
            let entry = entry.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in (t..POSTS).step_by(TASKS) {
                    results.push(
                        post_feedback(&app, "choosing-wisely-order-select", vec![entry(i)]).await,
                    );
                }
                results
            })
        })
        .collect();
    let (mut stored, mut duplicates) = (0, 0);
    for task in tasks {
        for (status, body) in task.await.unwrap() {
            assert_eq!(status, StatusCode::OK, "{body}");
            stored += body["stored"].as_u64().unwrap();
            duplicates += body["duplicates"].as_u64().unwrap();
        }
    }
    assert_eq!(
        (stored, duplicates),
        (DISTINCT as u64, (POSTS - DISTINCT) as u64)
    );
    assert_eq!(
        app.server.store().counts().await.unwrap().feedback,
        DISTINCT as u64
    );
}

async fn bad_entries_are_named_and_good_ones_kept(db: TestDb) {
    let app = spawn_on(&db).await;
    let good = uuid();
    let entries = vec![
        overridden(&good, None, "2026-01-01T10:00:00Z"),
        json!({"card": uuid(), "outcomeTimestamp": "2026-01-01T10:00:00Z"}),
        json!({"card": 42, "outcome": ["accepted"], "outcomeTimestamp": 1700000000}),
        json!({"card": uuid(), "outcome": "accepted", "outcomeTimestamp": "2026-01-01T10:00:00Z"}),
        json!({"card": uuid(), "outcome": "overridden", "outcomeTimestamp": "last tuesday"}),
        overridden(&good, Some("patient-preference"), "2026-01-02T10:00:00Z"),
    ];
    let (status, body) = post_feedback(&app, "choosing-wisely-order-select", entries).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let issues = body["issue"].as_array().unwrap();
    let paths: Vec<&str> = issues
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "feedback[1].outcome",
            "feedback[2].card",
            "feedback[2].outcome",
            "feedback[2].outcomeTimestamp",
            "feedback[3].acceptedSuggestions",
            "feedback[4].outcomeTimestamp",
        ]
    );
    let note = issues.last().unwrap();
    assert_eq!(note["severity"], "information");
    assert!(
        note["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("2 of 6 feedback entries were valid and are stored"),
        "{note}"
    );
    assert_eq!(
        app.server
            .store()
            .feedback_for_card(&good)
            .await
            .unwrap()
            .len(),
        2,
        "the good entries are stored"
    );
    assert_eq!(app.server.store().counts().await.unwrap().feedback, 2);

    // Batch-level problems.
    for (body, path) in [
        (b"{}".to_vec(), Some("feedback")),
        (b"not json".to_vec(), None),
        (b"{\"feedback\": 3}".to_vec(), Some("feedback")),
    ] {
        let (status, outcome) = app
            .post_raw("/cds-services/choosing-wisely-order-select/feedback", body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(outcome["issue"][0]["expression"][0].as_str(), path);
    }
    let deep = format!("{{\"feedback\": {}{}}}", "[".repeat(100), "]".repeat(100));
    let (status, _) = app
        .post_raw(
            "/cds-services/choosing-wisely-order-select/feedback",
            deep.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn a_restart_keeps_everything(db: TestDb) {
    let app = spawn_on(&db).await;
    let psa = psa_card(&app, &uuid(), "p1", Some("e1")).await;
    let review = review_card(&app, &uuid(), "p2").await;
    let override_psa = overridden(
        psa["uuid"].as_str().unwrap(),
        Some("specialist-ordered"),
        "2026-01-01T10:00:00Z",
    );
    let accept_review = accepted(
        &review,
        &[&review["suggestions"][1]],
        "2026-01-01T10:01:00Z",
    );
    assert_eq!(
        post_feedback(
            &app,
            "choosing-wisely-order-select",
            vec![override_psa.clone()]
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        post_feedback(&app, "deprescribing-patient-view", vec![accept_review])
            .await
            .0,
        StatusCode::OK
    );
    // Cards issued just before shutdown are still in the queue: shutdown drains it.
    let last = psa_card(&app, &uuid(), "p3", None).await;
    let before = Store::connect(&db.url)
        .await
        .unwrap()
        .hash_key()
        .await
        .unwrap();
    app.server.shutdown().await.unwrap();

    let app = spawn_on(&db).await;
    let store = app.server.store();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            counts.card_log_rows,
            counts.feedback,
            counts.unknown_card_feedback
        ),
        (4, 2, 0)
    );
    assert_eq!(
        store
            .card_log_for(last["uuid"].as_str().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.hash_key().await.unwrap(),
        before,
        "the generated hash key survives the restart"
    );
    let (_, body) = post_feedback(&app, "choosing-wisely-order-select", vec![override_psa]).await;
    assert_eq!(body["duplicates"], 1, "idempotency survives the restart");
    // The same patient hashes the same way after the restart.
    let hasher = Pseudonymizer::new(before.as_bytes());
    let history = store
        .history(&hasher.hash("p1"), None, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(history.overridden.len(), 1);
    assert_eq!(history.overridden[0].rule_id, PSA_RULE);
}

async fn history_finds_overrides_and_order_select_orders(db: TestDb) {
    let app = spawn_on(&db).await;
    let key = app.server.store().hash_key().await.unwrap();
    let hasher = Pseudonymizer::new(key.as_bytes());
    let psa = psa_card(&app, &uuid(), "p1", Some("enc-1")).await;
    let other = psa_card(&app, &uuid(), "p2", Some("enc-2")).await;
    let review = review_card(&app, &uuid(), "p1").await;
    let feedback = vec![
        overridden(
            psa["uuid"].as_str().unwrap(),
            Some("diagnostic-not-screening"),
            "2026-02-01T10:00:00Z",
        ),
        overridden(
            other["uuid"].as_str().unwrap(),
            Some("patient-preference"),
            "2026-02-01T10:00:00Z",
        ),
    ];
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", feedback)
            .await
            .0,
        StatusCode::OK
    );
    let review_feedback = vec![
        overridden(
            review["uuid"].as_str().unwrap(),
            Some("patient-declines"),
            "2026-03-01T10:00:00Z",
        ),
        // Without a reason: not a reason to suppress.
        overridden(
            review["uuid"].as_str().unwrap(),
            None,
            "2026-03-02T10:00:00Z",
        ),
    ];
    assert_eq!(
        post_feedback(&app, "deprescribing-patient-view", review_feedback)
            .await
            .0,
        StatusCode::OK
    );

    let store = app.server.store();
    let since = OffsetDateTime::parse(
        "2026-01-01T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let history = store
        .history(
            &hasher.hash("p1"),
            Some(&hasher.hash("Encounter/enc-1")),
            since,
        )
        .await
        .unwrap();
    let overridden: Vec<(&str, &str)> = history
        .overridden
        .iter()
        .map(|o| (o.rule_id.as_str(), o.reason.code.as_str()))
        .collect();
    assert_eq!(
        overridden,
        [
            (BENZO_RULE, "patient-declines"),
            (PPI_RULE, "patient-declines"),
            (PSA_RULE, "diagnostic-not-screening")
        ],
        "most recent first; a combined card's override counts for each of its rules"
    );
    assert_eq!(history.overridden[2].reason.system, REASONS);
    assert_eq!(
        history.shown_at_order_select,
        [ShownOrder {
            rule_id: PSA_RULE.into(),
            draft_order_hash: hasher.hash("ServiceRequest/sr-1")
        }]
    );

    // Another encounter, a later `since`, no encounter.
    let elsewhere = store
        .history(
            &hasher.hash("p1"),
            Some(&hasher.hash("Encounter/enc-9")),
            since,
        )
        .await
        .unwrap();
    assert!(elsewhere.shown_at_order_select.is_empty());
    let later = OffsetDateTime::parse(
        "2026-02-15T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let recent = store
        .history(&hasher.hash("p1"), None, later)
        .await
        .unwrap();
    assert_eq!(recent.overridden.len(), 2);
    assert!(recent.shown_at_order_select.is_empty());

    // Who has any override: p1 and p2 since January, only p1 since mid-February.
    let hashes =
        |names: &[&str]| -> HashSet<String> { names.iter().map(|n| hasher.hash(n)).collect() };
    assert_eq!(
        store.patients_with_overrides(since).await.unwrap(),
        hashes(&["p1", "p2"])
    );
    assert_eq!(
        store.patients_with_overrides(later).await.unwrap(),
        hashes(&["p1"])
    );
}

/// The set of patients with overrides is reread from the store at most
/// every `ttl` (an override stored by another replica is seen within it),
/// and takes this server's additions at once.
async fn overridden_patients_are_reread_after_their_ttl(db: TestDb) {
    let app = spawn_on(&db).await;
    let key = app.server.store().hash_key().await.unwrap();
    let hasher = Pseudonymizer::new(key.as_bytes());
    // Another replica's view of the same store.
    let ttl = Duration::from_millis(300);
    let replica =
        OverriddenPatients::new(app.server.store().clone(), ttl, time::Duration::days(90));
    let now = OffsetDateTime::now_utc();
    let p3 = hasher.hash("p3");
    assert!(!replica.may_include(&p3, now).await.unwrap());

    let card = psa_card(&app, &uuid(), "p3", None).await;
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let feedback = vec![overridden(
        card["uuid"].as_str().unwrap(),
        Some("patient-preference"),
        &at,
    )];
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", feedback)
            .await
            .0,
        StatusCode::OK
    );
    assert!(
        !replica.may_include(&p3, now).await.unwrap(),
        "within the ttl the replica has not reread the store"
    );
    tokio::time::sleep(ttl).await;
    assert!(replica.may_include(&p3, now).await.unwrap());

    let p4 = hasher.hash("p4");
    assert!(!replica.may_include(&p4, now).await.unwrap());
    replica.add(&p4);
    assert!(replica.may_include(&p4, now).await.unwrap());
}

async fn a_killed_server_keeps_every_acknowledged_feedback(db: TestDb) {
    const TASKS: usize = 8;
    let (mut server, base) = tokio::task::block_in_place(|| start_binary(&db, &[]));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let posters: Vec<_> = (0..TASKS)
        .map(|_| {
            let (acknowledged, stop, client) = (acknowledged.clone(), stop.clone(), client.clone());
            let url = format!("{base}/cds-services/choosing-wisely-order-select/feedback");
            tokio::spawn(async move {
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let card = uuid();
                    let body = json!({"feedback": [overridden(&card, Some("patient-preference"), "2026-01-01T10:00:00Z")]});
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status() == 200 => acknowledged.lock().unwrap().push(card),
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Kill while feedback is flowing: after a good number of 200s.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 100 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for poster in posters {
        poster.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 100,
        "only {} feedback posts answered before the kill",
        acknowledged.len()
    );

    // Restart on the same database: it starts, and every 200 is there.
    let (_server, base) = tokio::task::block_in_place(|| start_binary(&db, &[]));
    let store = Store::connect(&db.url).await.unwrap();
    let mut missing = Vec::new();
    for card in &acknowledged {
        if store.feedback_for_card(card).await.unwrap().is_empty() {
            missing.push(card);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged feedback lost: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    assert!(store.counts().await.unwrap().feedback >= acknowledged.len() as u64);
    let again = json!({"feedback": [overridden(&acknowledged[0], Some("patient-preference"), "2026-01-01T10:00:00Z")]});
    let response = client
        .post(format!(
            "{base}/cds-services/choosing-wisely-order-select/feedback"
        ))
        .json(&again)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["duplicates"], 1);
}

/// Runs `hookwise report --database URL ARGS` and returns its output.
fn report(db: &TestDb, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(["report", "--database", &db.url])
        .args(args)
        .current_dir(root())
        .output()
        .expect("hookwise report runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn the_report_matches_hand_computed_figures(db: TestDb) {
    let app = spawn_on(&db).await;
    // Four PSA cards for three patients; two reviews (benzodiazepine + PPI) for two more.
    let mut psa = Vec::new();
    for patient in ["pa", "pb", "pc", "pa"] {
        psa.push(psa_card(&app, &uuid(), patient, None).await);
    }
    let reviews = [
        review_card(&app, &uuid(), "pd").await,
        review_card(&app, &uuid(), "pe").await,
    ];
    let id = |card: &Value| card["uuid"].as_str().unwrap().to_string();
    let declines = |card: &Value| {
        json!({"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-03T10:00:00Z",
            "overrideReason": {"reason": {"system": REASONS, "code": "patient-declines",
                "display": "Patient declines change after discussion"}, "userComment": "private note"}})
    };
    let cw = vec![
        accepted(
            &psa[0],
            &[&psa[0]["suggestions"][0]],
            "2026-01-01T10:00:00Z",
        ),
        overridden(
            &id(&psa[1]),
            Some("diagnostic-not-screening"),
            "2026-01-01T10:00:00Z",
        ),
        overridden(
            &id(&psa[2]),
            Some("diagnostic-not-screening"),
            "2026-01-01T10:00:00Z",
        ),
        overridden(
            &id(&psa[2]),
            Some("diagnostic-not-screening"),
            "2026-01-01T10:00:00Z",
        ), // a duplicate
        overridden(&uuid(), Some("patient-preference"), "2026-01-01T10:00:00Z"), // an unknown card
    ];
    assert_eq!(
        post_feedback(&app, "choosing-wisely-order-select", cw)
            .await
            .1["stored"],
        4
    );
    // Review 1: the PPI suggestion (the second) accepted, the benzodiazepine one not. Review 2: overridden.
    let rx = vec![
        accepted(
            &reviews[0],
            &[&reviews[0]["suggestions"][1]],
            "2026-01-02T10:00:00Z",
        ),
        declines(&reviews[1]),
    ];
    assert_eq!(
        post_feedback(&app, "deprescribing-patient-view", rx)
            .await
            .0,
        StatusCode::OK
    );
    app.server.shutdown().await.unwrap();

    let today = OffsetDateTime::now_utc().date().to_string();
    let json_report: Value =
        serde_json::from_str(&report(&db, &["--format", "json", "--since", &today])).unwrap();
    let reason = |code: &str, display: &str, count: u64| json!({"system": REASONS, "code": code, "display": display, "count": count});
    let version = |file: &str| {
        let text = std::fs::read_to_string(root().join("cds-rules").join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("version:"))
            .unwrap()
            .to_string();
        json!([line.trim_start_matches("version:").trim()])
    };
    let (psa_v, benzo_v, ppi_v) = (
        version("choosing-wisely/psa-screening-70-plus.yaml"),
        version("deprescribing/benzodiazepine-65-plus.yaml"),
        version("deprescribing/ppi-beyond-8-weeks.yaml"),
    );
    let psa_reason = reason(
        "diagnostic-not-screening",
        "Diagnostic or surveillance test (symptoms, a finding, follow-up), not screening",
        2,
    );
    let declined = |count| {
        reason(
            "patient-declines",
            "Patient declines change after discussion",
            count,
        )
    };
    assert_eq!(
        json_report["rules"],
        json!([
            {"rule": PSA_RULE, "family": "choosing-wisely", "versions": psa_v, "cards": 4, "patients": 3,
             "accepted": 1, "overridden": 2, "noResponse": 1, "acceptanceRate": 0.25, "topOverrideReasons": [psa_reason]},
            {"rule": BENZO_RULE, "family": "deprescribing", "versions": benzo_v, "cards": 2, "patients": 2,
             "accepted": 0, "overridden": 1, "noResponse": 1, "acceptanceRate": 0.0, "topOverrideReasons": [declined(1)]},
            {"rule": PPI_RULE, "family": "deprescribing", "versions": ppi_v, "cards": 2, "patients": 2,
             "accepted": 1, "overridden": 1, "noResponse": 0, "acceptanceRate": 0.5, "topOverrideReasons": [declined(1)]},
        ])
    );
    assert_eq!(
        json_report["families"],
        json!([
            {"family": "choosing-wisely", "rules": 1, "distinctCards": 4, "cards": 4, "patients": 3,
             "accepted": 1, "overridden": 2, "noResponse": 1, "acceptanceRate": 0.25, "topOverrideReasons": [psa_reason]},
            {"family": "deprescribing", "rules": 2, "distinctCards": 2, "cards": 4, "patients": 2,
             "accepted": 1, "overridden": 2, "noResponse": 1, "acceptanceRate": 0.25, "topOverrideReasons": [declined(2)]},
        ])
    );
    assert_eq!(json_report["unknownCardFeedback"], 1);

    // Free text only on request; every format.
    let table = report(&db, &[]);
    assert!(
        table.contains(PSA_RULE) && table.contains("25.0%"),
        "{table}"
    );
    let csv = report(&db, &["--format", "csv"]);
    assert!(
        csv.lines().any(|l| l.starts_with(&format!(
            "rule,choosing-wisely,{PSA_RULE},4,3,1,2,1,0.2500,"
        ))),
        "{csv}"
    );
    for output in [&table, &csv] {
        assert!(!output.contains("private note"), "{output}");
    }
    assert!(report(&db, &["--include-comments"]).contains("private note"));
    assert!(report(&db, &["--format", "json", "--include-comments"]).contains("private note"));
    // A window without cards.
    let empty: Value =
        serde_json::from_str(&report(&db, &["--format", "json", "--until", "2020-01-01"])).unwrap();
    assert_eq!(empty["rules"], json!([]));
}

/// A store written before each hook had its own service id (rows under the
/// family's id) is migrated: its rows keep counting for their family in
/// reports and for alert fatigue, under the ids the services have now.
#[tokio::test]
async fn rows_stored_under_the_old_service_ids_still_count_for_their_family() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    let old_migrations = dir.path().join("migrations");
    std::fs::create_dir(&old_migrations).unwrap();
    for file in [
        "0001_feedback_store.sql",
        "0002_feedback_overrides_index.sql",
    ] {
        std::fs::copy(
            root().join("migrations").join(file),
            old_migrations.join(file),
        )
        .unwrap();
    }
    let options = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old_migrations.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(3);
    let ms = (issued.unix_timestamp_nanos() / 1_000_000) as i64;
    for (card, rule, service, hook) in [
        ("c-review", BENZO_RULE, "deprescribing", "patient-view"),
        ("c-psa", PSA_RULE, "choosing-wisely", "order-select"),
    ] {
        sqlx::query(
            "INSERT INTO card_log (card_uuid, rule_id, rule_version, service, hook, hook_instance, \
             patient_hash, indicator, issued_at) VALUES ($1, $2, '1.0.0', $3, $4, 'hi', 'h1', 'info', $5)",
        )
        .bind(card)
        .bind(rule)
        .bind(service)
        .bind(hook)
        .bind(ms)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO feedback (id, service, card_uuid, outcome, outcome_at, override_system, override_code, \
         unknown_card, received_at) VALUES ('f1', 'choosing-wisely', 'c-psa', 'overridden', $1, $2, \
         'diagnostic-not-screening', false, $1)",
    )
    .bind(ms)
    .bind(REASONS)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&url).await.unwrap();
    let review = store.card_log_for("c-review").await.unwrap();
    assert_eq!(
        (review[0].service.as_str(), review[0].family.as_str()),
        ("deprescribing-patient-view", "deprescribing")
    );
    let feedback = store.feedback_for_card("c-psa").await.unwrap();
    assert_eq!(feedback[0].service, "choosing-wisely-order-select");

    let report = hookwise::report::build(&store, &Default::default())
        .await
        .unwrap();
    let families: Vec<(&str, u64, u64)> = report
        .families
        .iter()
        .map(|f| (f.family.as_str(), f.counts.cards, f.counts.overridden))
        .collect();
    assert_eq!(
        families,
        [("choosing-wisely", 1, 1), ("deprescribing", 1, 0)]
    );
    let overrides = store
        .overrides("h1", issued - time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        overrides
            .iter()
            .map(|o| o.rule_id.as_str())
            .collect::<Vec<_>>(),
        [PSA_RULE],
        "the old override still suppresses the rule"
    );
}

/// `hookwise audit --database` puts the store's acceptance beside each
/// rule's prevalence, and pseudonymises the detail file with the store's
/// key, so its rows match the card log's hashes.
async fn the_audit_joins_the_stores_acceptance(db: TestDb) {
    let app = spawn_on(&db).await;
    let mut cards = Vec::new();
    for patient in ["pa", "pb", "pc"] {
        cards.push(psa_card(&app, &uuid(), patient, None).await);
    }
    let entries = vec![
        accepted(
            &cards[0],
            &[&cards[0]["suggestions"][0]],
            "2026-01-01T10:00:00Z",
        ),
        overridden(
            cards[1]["uuid"].as_str().unwrap(),
            Some("diagnostic-not-screening"),
            "2026-01-01T10:00:00Z",
        ),
    ];
    let (status, body) = post_feedback(&app, "choosing-wisely-order-select", entries).await;
    assert_eq!(
        (status, body["stored"].clone()),
        (StatusCode::OK, json!(2)),
        "{body}"
    );
    app.server.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let detail = dir.path().join("detail.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args([
            "audit",
            "--bundles",
            "fhir-fixtures/synthea",
            "--as-of",
            "2021-06-01",
        ])
        .args(["--format", "json", "--database", &db.url, "--detail"])
        .arg(&detail)
        .current_dir(root())
        .output()
        .expect("hookwise audit runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let audit: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = audit["rules"].as_array().unwrap();
    let psa = rows.iter().find(|r| r["id"] == PSA_RULE).unwrap();
    assert_eq!(
        psa["acceptance"],
        json!({"cards": 3, "accepted": 1, "overridden": 1, "rate": 1.0 / 3.0}),
        "{psa}"
    );
    let mut with_acceptance = rows.iter().filter(|r| r.get("acceptance").is_some());
    assert!(
        with_acceptance.all(|r| r["id"] == PSA_RULE),
        "only rules with cards in the store"
    );

    let store = Store::open_existing(&db.url).await.unwrap();
    let pseudonyms = Pseudonymizer::new(store.hash_key().await.unwrap().as_bytes());
    store.close().await;
    let synthea: HashSet<String> = std::fs::read_dir(root().join("fhir-fixtures/synthea"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            let entries = bundle["entry"].as_array().unwrap();
            let patient = entries
                .iter()
                .find(|e| e["resource"]["resourceType"] == "Patient")
                .unwrap();
            pseudonyms.hash(patient["resource"]["id"].as_str().unwrap())
        })
        .collect();
    let text = std::fs::read_to_string(&detail).unwrap();
    let patients: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap())
        .collect();
    assert!(!patients.is_empty(), "{text}");
    assert!(patients.iter().all(|p| synthea.contains(*p)), "{text}");
}
