//! A site turns rules off by id (`disabled_rules`): the server stops
//! issuing their cards, and an id that names no rule stops it from starting.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

/// The summaries of the cards for a PSA order for a 75-year-old man.
async fn psa_card_summaries(app: &TestApp) -> Vec<String> {
    let prefetch = json!({"patient": patient("p-disabled", "male", &born_years_ago(75)),
        "conditions": searchset(vec![])});
    let request = order_request("order-select", vec![psa_order("psa-1")], Some(prefetch));
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cards = body["cards"].as_array().cloned().unwrap_or_default();
    let summary = |card: &Value| card["summary"].as_str().map(String::from);
    cards.iter().filter_map(summary).collect()
}

#[tokio::test]
async fn a_disabled_rule_issues_no_card_and_the_others_still_do() {
    let enabled = spawn_app().await;
    let summaries = psa_card_summaries(&enabled).await;
    assert!(summaries.iter().any(|s| s.contains("PSA")), "{summaries:?}");

    let mut settings = test_settings();
    settings.disabled_rules = vec!["cw-psa-screening-70-plus".into()];
    let disabled = spawn_app_with(settings).await;
    assert_eq!(psa_card_summaries(&disabled).await, Vec::<String>::new());
    let (status, discovery) = disabled.get("/cds-services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        discovery["services"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
}

#[tokio::test]
async fn an_unknown_disabled_rule_stops_the_server_from_starting() {
    let mut settings = test_settings();
    settings.disabled_rules = vec!["rx-no-such-rule".into()];
    let error = hookwise::server::build_engine(&settings)
        .err()
        .expect("refused");
    assert!(
        error
            .to_string()
            .contains("\"rx-no-such-rule\", which is not a loaded rule"),
        "{error}"
    );
}
