//! Alert-fatigue controls through real HTTP: a rule overridden with a reason
//! is not shown again to the same patient for its configured days; a card
//! shown at order-select is not repeated at order-sign for the same draft
//! order in the same encounter; a service's cap keeps the most urgent cards.
//! Held-back cards are counted in the request log (`held`) and metrics.
//! Everything that reads history runs on SQLite and on PostgreSQL.

use crate::common;
use crate::on_both_backends;

use axum::http::StatusCode;
use common::db::{TestDb, spawn_on};
use common::*;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

on_both_backends!(
    an_override_with_a_reason_hides_the_rule_for_that_patient,
    an_override_without_a_reason_hides_nothing,
    an_order_sign_card_already_shown_at_order_select_for_the_same_order_is_not_repeated,
    de_duplication_follows_each_rule_s_setting,
);

const REASONS: &str = "https://hookwise.dev/fhir/CodeSystem/override-reason";

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

/// A PSA order for a 75-year-old man at `hook`; returns the cards.
async fn psa_cards(
    app: &TestApp,
    hook: &str,
    patient_id: &str,
    encounter: Option<&str>,
    order_id: &str,
) -> Vec<Value> {
    let prefetch = json!({"patient": patient(patient_id, "male", &born_years_ago(75)), "conditions": searchset(vec![])});
    let mut request = order_request(hook, vec![psa_order(order_id)], Some(prefetch));
    request["hookInstance"] = json!(uuid());
    request["context"]["patientId"] = json!(patient_id);
    if let Some(encounter) = encounter {
        request["context"]["encounterId"] = json!(encounter);
    }
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.server.flush_card_log().await;
    body["cards"].as_array().cloned().unwrap_or_default()
}

async fn override_card(app: &TestApp, card: &Value, reason: Option<&str>) {
    let mut entry =
        json!({"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now()});
    if let Some(code) = reason {
        entry["overrideReason"] = json!({"reason": {"system": REASONS, "code": code}});
    }
    let body = serde_json::to_vec(&json!({"feedback": [entry]})).unwrap();
    let (status, answer) = app
        .post_raw("/cds-services/choosing-wisely-order-select/feedback", body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn an_override_with_a_reason_hides_the_rule_for_that_patient(db: TestDb) {
    let app = spawn_on(&db).await;
    let cards = psa_cards(&app, "order-select", "p1", None, "sr-1").await;
    assert_eq!(cards.len(), 1);
    override_card(&app, &cards[0], Some("patient-preference")).await;

    assert!(
        psa_cards(&app, "order-select", "p1", None, "sr-2")
            .await
            .is_empty(),
        "suppressed for p1"
    );
    assert!(
        psa_cards(&app, "order-sign", "p1", None, "sr-2")
            .await
            .is_empty(),
        "suppressed for p1 by the family's other service too"
    );
    assert_eq!(
        psa_cards(&app, "order-sign", "p2", None, "sr-3")
            .await
            .len(),
        1,
        "p2 never overrode it, at order-sign either"
    );
    assert_eq!(
        psa_cards(&app, "order-select", "p2", None, "sr-3")
            .await
            .len(),
        1,
        "p2 never overrode it"
    );
}

async fn an_override_without_a_reason_hides_nothing(db: TestDb) {
    let app = spawn_on(&db).await;
    let cards = psa_cards(&app, "order-select", "p1", None, "sr-1").await;
    override_card(&app, &cards[0], None).await;
    assert_eq!(
        psa_cards(&app, "order-select", "p1", None, "sr-2")
            .await
            .len(),
        1
    );
}

async fn an_order_sign_card_already_shown_at_order_select_for_the_same_order_is_not_repeated(
    db: TestDb,
) {
    let app = spawn_on(&db).await;
    assert_eq!(
        psa_cards(&app, "order-select", "p1", Some("enc-1"), "sr-1")
            .await
            .len(),
        1
    );

    assert!(
        psa_cards(&app, "order-sign", "p1", Some("enc-1"), "sr-1")
            .await
            .is_empty(),
        "same order, same encounter"
    );
    assert_eq!(
        psa_cards(&app, "order-sign", "p1", Some("enc-1"), "sr-9")
            .await
            .len(),
        1,
        "another order"
    );
    assert_eq!(
        psa_cards(&app, "order-sign", "p1", Some("enc-2"), "sr-1")
            .await
            .len(),
        1,
        "another encounter"
    );
    assert_eq!(
        psa_cards(&app, "order-sign", "p1", None, "sr-1")
            .await
            .len(),
        1,
        "no encounter to match"
    );
}

/// A rule directory with two rules that fire on the same PSA order, one
/// warning and one info, under `service`'s extra settings.
fn two_rule_family(service: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let valuesets = dir.path().join("valuesets");
    let family = dir.path().join("family");
    std::fs::create_dir_all(&valuesets).unwrap();
    std::fs::create_dir_all(&family).unwrap();
    std::fs::write(
        valuesets.join("psa.json"),
        r#"{"resourceType": "ValueSet", "url": "https://example.org/vs/psa", "status": "active",
            "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "2857-1"}]}]}}"#,
    )
    .unwrap();
    std::fs::write(
        family.join("service.yaml"),
        format!("id: family\ntitle: Family\ndescription: Two rules\n{service}"),
    )
    .unwrap();
    for (id, indicator, fatigue) in [
        ("rule-info", "info", ""),
        (
            "rule-warning",
            "warning",
            "alertFatigue: { deduplicateOrderSign: false }\n",
        ),
    ] {
        let rule = format!(
            "id: {id}\nversion: 1.0.0\ntitle: A {indicator} rule\ncategory: screening\nhooks: [order-select, order-sign]\n\
             evidence: {{ society: Test Society, recommendation: Do not do the test on old men., year: 2020, url: https://example.org }}\n\
             when:\n  draftOrder: {{ valueSet: https://example.org/vs/psa, as: order }}\n\
             card:\n  summary: The {indicator} card\n  indicator: {indicator}\n  detail: The order is low value.\n\
             \x20 source: {{ label: Test, url: https://example.org }}\n  links: [{{ label: More, url: https://example.org/more }}]\n\
             \x20 overrideReasons: [{{ system: https://example.org, code: x, display: X }}]\n{fatigue}"
        );
        std::fs::write(family.join(format!("{id}.yaml")), rule).unwrap();
    }
    dir
}

async fn spawn_family(dir: &tempfile::TempDir, db: &TestDb) -> TestApp {
    let mut settings = test_settings();
    settings.rules = dir.path().to_path_buf();
    settings.database_url = db.url.clone();
    spawn_app_with(settings).await
}

async fn family_cards(app: &TestApp, hook: &str, encounter: &str) -> Vec<String> {
    let mut request = order_request(hook, vec![psa_order("sr-1")], None);
    request["hookInstance"] = json!(uuid());
    request["context"]["encounterId"] = json!(encounter);
    let (status, body) = app.call("family", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.server.flush_card_log().await;
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["summary"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_cap_keeps_the_most_urgent_cards() {
    let db = TestDb::sqlite(); // the cap reads no history
    let capped = two_rule_family("alertFatigue: { maxCardsPerResponse: 1 }\n");
    let app = spawn_family(&capped, &db).await;
    assert_eq!(
        family_cards(&app, "order-select", "e1").await,
        ["The warning card"]
    );

    let uncapped = two_rule_family("");
    let app = spawn_family(&uncapped, &db).await;
    assert_eq!(
        family_cards(&app, "order-select", "e1").await,
        ["The warning card", "The info card"]
    );
}

async fn de_duplication_follows_each_rule_s_setting(db: TestDb) {
    let dir = two_rule_family("");
    let app = spawn_family(&dir, &db).await;
    assert_eq!(family_cards(&app, "order-select", "e1").await.len(), 2);
    // rule-warning turned de-duplication off; rule-info keeps the default.
    assert_eq!(
        family_cards(&app, "order-sign", "e1").await,
        ["The warning card"]
    );
}
