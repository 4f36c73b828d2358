//! `GET /metrics` over real HTTP: what service calls add to it (cards per
//! rule, 412s, deadline overruns, prefetch keys served, missing and
//! fetched, latency, the replay store's occupancy and refusals), who may
//! read it, and that it never names a patient.
//!
//! Every server in this binary shares one recorder, so each test compares
//! values before and after its calls, and the tests run one at a time.
//! That is why this is a binary of its own, not a module of `tests/api`:
//! the servers of the tests there would move the counters between two
//! scrapes. It also installs the log subscriber (for the overrun warning).

// The harness of tests/api, of which this binary uses a part.
#[allow(dead_code)]
mod common;

use axum::http::StatusCode;
use common::auth::*;
use common::logs::Buffer;
use common::*;
use hookwise::config::Secret;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

const PSA_RULE: &str = "cw-psa-screening-70-plus";
const SERVICE_ROUTE: &str = "/cds-services/{id}";

/// Serializes the tests: their counter deltas would mix otherwise.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The warn-level log of this binary.
fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| Buffer::install("warn"))
}

/// GET /metrics with an optional bearer token: status and body.
async fn scrape_with(app: &TestApp, token: Option<&str>) -> (StatusCode, String) {
    let mut request = app.client.get(format!("{}/metrics", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

/// The metrics text of an open `/metrics`.
async fn scrape(app: &TestApp) -> Metrics {
    let (status, text) = scrape_with(app, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    Metrics(text)
}

/// A scraped exposition.
struct Metrics(String);

impl Metrics {
    /// The series `name` with exactly these labels; 0 when not recorded yet.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .find(|(l, _)| same_labels(l, labels))
            .map_or(0.0, |(_, v)| v)
    }

    /// The sum of every series of `name`.
    fn total(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }

    fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (Vec<(String, String)>, f64)> + 'a {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(move |line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, labels) = series.split_once('{').unwrap_or((series, "}"));
                (series_name == name).then(|| {
                    (
                        parse_labels(labels.trim_end_matches('}')),
                        value.parse().unwrap(),
                    )
                })
            })
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn same_labels(got: &[(String, String)], want: &[(&str, &str)]) -> bool {
    got.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| got.iter().any(|(gk, gv)| gk == k && gv == v))
}

fn psa_request(prefetch: Option<Value>) -> Value {
    order_request("order-select", vec![psa_order("sr-1")], prefetch)
}

fn cw_order_select() -> [(&'static str, &'static str); 3] {
    [
        ("family", "choosing-wisely"),
        ("service", "choosing-wisely-order-select"),
        ("hook", "order-select"),
    ]
}

#[tokio::test]
async fn cards_are_counted_per_rule_with_latency_and_status_class() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(74)), "conditions": searchset(vec![])});
    let (status, body) = app
        .call("choosing-wisely", &psa_request(Some(prefetch)))
        .await;
    assert_eq!(
        (status, body["cards"].as_array().unwrap().len()),
        (StatusCode::OK, 1),
        "{body}"
    );
    let after = scrape(&app).await;

    let rule = [("rule", PSA_RULE)];
    let cards = "hookwise_cards_issued_total";
    assert_eq!(after.get(cards, &rule) - before.get(cards, &rule), 1.0);
    assert_eq!(
        after.total(cards) - before.total(cards),
        1.0,
        "only the rule that fired"
    );
    let count = "hookwise_request_duration_seconds_count";
    assert_eq!(
        after.get(count, &cw_order_select()) - before.get(count, &cw_order_select()),
        1.0
    );
    let ok = [("route", SERVICE_ROUTE), ("class", "2xx")];
    assert_eq!(
        after.get("hookwise_requests_total", &ok) - before.get("hookwise_requests_total", &ok),
        1.0
    );
    assert!(
        after
            .0
            .contains("hookwise_request_duration_seconds_bucket{"),
        "latency is a histogram"
    );
}

fn active_drug(id: &str, rxnorm: &str, display: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": rxnorm, "display": display}]},
        "subject": {"reference": "Patient/p1"}, "authoredOn": days_ago(200)})
}

#[tokio::test]
async fn a_combined_card_counts_once_for_each_rule_it_gathers() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let request = json!({
        "hook": "patient-view",
        "hookInstance": "5b2ba0c5-8a7e-4a43-9a43-1f4c6c1b3a10",
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
        "prefetch": {"patient": patient("p1", "female", &born_years_ago(81)),
            "medications": searchset(vec![active_drug("m1", "197901", "lorazepam 1 MG Oral Tablet"),
                active_drug("m2", "1049621", "oxycodone hydrochloride 5 MG Oral Tablet")]),
            "conditions": searchset(vec![]),
            "observations": searchset(vec![]), "procedures": null}
    });
    let before = scrape(&app).await;
    let (status, body) = app.call("deprescribing", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{body:#}");
    let sections = cards[0]["detail"].as_str().unwrap().matches("### ").count();
    let after = scrape(&app).await;

    let name = "hookwise_cards_issued_total";
    assert!(
        sections >= 2,
        "a benzodiazepine alone and with an opioid: {body:#}"
    );
    assert_eq!(
        after.total(name) - before.total(name),
        sections as f64,
        "one per section of the card"
    );
    for rule in ["rx-benzodiazepine-65-plus", "rx-opioid-benzodiazepine"] {
        assert_eq!(
            after.get(name, &[("rule", rule)]) - before.get(name, &[("rule", rule)]),
            1.0,
            "{rule}"
        );
    }
}

#[tokio::test]
async fn a_412_is_counted() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let (status, _) = app.call("choosing-wisely", &psa_request(None)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let after = scrape(&app).await;

    let name = "hookwise_precondition_failed_total";
    assert_eq!(
        after.get(name, &cw_order_select()) - before.get(name, &cw_order_select()),
        1.0
    );
    let rejected = [("route", SERVICE_ROUTE), ("class", "4xx")];
    assert_eq!(
        after.get("hookwise_requests_total", &rejected)
            - before.get("hookwise_requests_total", &rejected),
        1.0
    );
}

#[tokio::test]
async fn a_deadline_overrun_while_fetching_is_counted() {
    let _serial = serial().await;
    let (app, request) = slow_fhir_call().await;
    let before = scrape(&app).await;
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cards": []})));
    let after = scrape(&app).await;

    assert_eq!(deadline_overruns(&before, &after), 1.0);
}

/// How many choosing-wisely order-select calls overran their deadline
/// between two scrapes.
fn deadline_overruns(before: &Metrics, after: &Metrics) -> f64 {
    let name = "hookwise_deadline_exceeded_total";
    after.get(name, &cw_order_select()) - before.get(name, &cw_order_select())
}

/// A copy of the bundled rules whose services set no alert-fatigue
/// controls, so that an order-select call reads no history.
fn rules_without_alert_fatigue() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("cds-rules"), dir.path());
    for service in ["choosing-wisely", "deprescribing"] {
        let path = dir.path().join(service).join("service.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().any(|l| l == "alertFatigue:"),
            "the bundled services set alertFatigue"
        );
        // Drop the `alertFatigue:` key and its indented block, nothing else.
        let mut inside = false;
        let kept: Vec<&str> = (text.lines())
            .filter(|line| {
                if *line == "alertFatigue:" {
                    inside = true;
                    return false;
                }
                inside &= line.starts_with(' ');
                !inside
            })
            .collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    }
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        match path.is_dir() {
            true => copy_dir(&path, &target),
            false => drop(std::fs::copy(&path, &target).unwrap()),
        }
    }
}

#[tokio::test]
async fn the_deadline_covers_evaluation_too() {
    let _serial = serial().await;
    let logs = logs();
    let patient_id = "pt-overrun-4417";
    let mut settings = test_settings();
    // No budget at all: everything is prefetched and no alert-fatigue history
    // is read, so nothing is fetched and only the time spent reading and
    // evaluating can overrun.
    settings.deadline_ms = 0;
    let rules = rules_without_alert_fatigue();
    settings.rules = rules.path().to_path_buf();
    let app = spawn_app_with(settings).await;
    let prefetch = json!({"patient": patient(patient_id, "male", &born_years_ago(74)), "conditions": searchset(vec![])});
    let mut request = psa_request(Some(prefetch));
    request["context"]["patientId"] = json!(patient_id);
    let before = scrape(&app).await;
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cards": []})));
    let after = scrape(&app).await;

    assert_eq!(deadline_overruns(&before, &after), 1.0);
    let rule = [("rule", PSA_RULE)];
    let cards = "hookwise_cards_issued_total";
    assert_eq!(
        after.get(cards, &rule),
        before.get(cards, &rule),
        "a dropped card is not counted as issued"
    );
    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("evaluating rules"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        warning.contains("\"level\":\"WARN\"") && warning.contains("deadline exceeded"),
        "{warning}"
    );
    assert!(
        warning.contains("choosing-wisely") && warning.contains("order-select"),
        "{warning}"
    );
    assert!(!text.contains(patient_id), "the patient id is never logged");
}

#[tokio::test]
async fn prefetch_keys_are_counted_served_missing_and_fetched() {
    let _serial = serial().await;
    let fhir = fake_fhir(Duration::ZERO, |path, _| match path {
        "/fhir/Condition" => (StatusCode::OK, searchset(vec![])),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"resourceType": "OperationOutcome"}),
        ),
    })
    .await;
    let app = spawn_app().await;
    // The patient is prefetched; the conditions are not.
    let mut request = psa_request(Some(
        json!({"patient": patient("p1", "male", &born_years_ago(74))}),
    ));
    request["fhirServer"] = json!(fhir.base());
    let before = scrape(&app).await;
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = scrape(&app).await;

    let delta = |name: &str, key: &str| {
        after.get(name, &[("key", key)]) - before.get(name, &[("key", key)])
    };
    assert_eq!(delta("hookwise_prefetch_served_total", "patient"), 1.0);
    assert_eq!(delta("hookwise_prefetch_served_total", "conditions"), 0.0);
    assert_eq!(delta("hookwise_prefetch_missing_total", "conditions"), 1.0);
    assert_eq!(delta("hookwise_prefetch_missing_total", "patient"), 0.0);
    assert_eq!(delta("hookwise_prefetch_fetched_total", "conditions"), 1.0);
    assert_eq!(delta("hookwise_prefetch_fetched_total", "patient"), 0.0);
    assert_eq!(
        fhir.seen.lock().unwrap().requests.len(),
        1,
        "only the conditions were fetched"
    );
}

#[tokio::test]
async fn metrics_never_name_a_patient_or_a_raw_path() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let mut request = psa_request(None);
    request["context"]["patientId"] = json!("pt-secret-9921");
    app.call("choosing-wisely", &request).await;
    app.call("no-such-service-x7", &request).await;
    app.get("/some/probe/path-q3").await;
    let metrics = scrape(&app).await;
    for secret in ["pt-secret-9921", "no-such-service-x7", "path-q3"] {
        assert!(!metrics.0.contains(secret), "{secret} in\n{}", metrics.0);
    }
    assert!(
        metrics.get(
            "hookwise_requests_total",
            &[("route", "unmatched"), ("class", "4xx")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_metrics_token_is_required_when_set() {
    let _serial = serial().await;
    let mut settings = test_settings();
    settings.metrics_token = Some(Secret::new("scrape-token-1"));
    let app = spawn_app_with(settings).await;
    let (status, body) = scrape_with(&app, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    assert_eq!(
        scrape_with(&app, Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = scrape_with(&app, Some("scrape-token-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("# TYPE hookwise_requests_total counter"),
        "{body}"
    );
}

fn trusted_ehr() -> hookwise::config::TrustedClient {
    let mut ehr = client("https://ehr.example.org");
    ehr.jwks_file = Some(jwks_file(&jwks(&[&TestKey::es384("metrics-key")])));
    ehr
}

#[tokio::test]
async fn with_authentication_beyond_loopback_metrics_need_their_token() {
    let _serial = serial().await;
    let mut settings = auth_settings(vec![trusted_ehr()]);
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.public_base_url = Some("https://cds.example.org".into());
    let closed = spawn_app_with(settings.clone()).await;
    let closed_base = closed.base.replace("0.0.0.0", "127.0.0.1");
    let closed = TestApp {
        base: closed_base,
        ..closed
    };
    assert_eq!(
        scrape_with(&closed, None).await.0,
        StatusCode::UNAUTHORIZED,
        "no token configured: closed"
    );

    settings.metrics_token = Some(Secret::new("scrape-token-2"));
    let guarded = spawn_app_with(settings).await;
    let guarded = TestApp {
        base: guarded.base.replace("0.0.0.0", "127.0.0.1"),
        ..guarded
    };
    // The token opens /metrics without any CDS JWT, and nothing else.
    assert_eq!(
        scrape_with(&guarded, Some("scrape-token-2")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        scrape_with(&guarded, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let discovery = guarded
        .client
        .get(format!("{}/cds-services", guarded.base))
        .bearer_auth("scrape-token-2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        discovery.status().as_u16(),
        401,
        "the metrics token is no CDS credential"
    );
}

#[tokio::test]
async fn with_authentication_on_loopback_metrics_are_open() {
    let _serial = serial().await;
    let app = spawn_app_with(auth_settings(vec![trusted_ehr()])).await;
    assert_eq!(scrape_with(&app, None).await.0, StatusCode::OK);
    assert_eq!(
        app.get("/cds-services").await.0,
        StatusCode::UNAUTHORIZED,
        "the services still need a JWT"
    );
}

#[tokio::test]
async fn cards_held_back_by_alert_fatigue_controls_are_counted() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(74)), "conditions": searchset(vec![])});
    let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    request["context"]["encounterId"] = json!("enc-1");
    let (_, shown) = app.call("choosing-wisely", &request).await;
    assert_eq!(shown["cards"].as_array().unwrap().len(), 1, "{shown}");
    app.server.flush_card_log().await;
    let before = scrape(&app).await;

    request["hook"] = json!("order-sign");
    request["hookInstance"] = json!("8a1c6f0e-3b7d-4c55-9d2e-6f4b1a0c9e11");
    let (_, repeated) = app.call("choosing-wisely", &request).await;
    assert_eq!(
        repeated["cards"],
        json!([]),
        "the order-sign repeat is held back"
    );
    let after = scrape(&app).await;

    let held = [("rule", PSA_RULE), ("why", "duplicate")];
    let name = "hookwise_cards_suppressed_total";
    assert_eq!(after.get(name, &held) - before.get(name, &held), 1.0);
}

#[tokio::test]
async fn malformed_fhir_elements_are_skipped_and_counted() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let mut condition = condition(
        "c1",
        "http://snomed.info/sct",
        "38341003",
        "Hypertension",
        &days_ago(400),
    );
    condition["code"]["coding"] = json!("a string where FHIR wants Codings");
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(74)), "conditions": searchset(vec![condition])});
    let before = scrape(&app).await;
    let (status, body) = app
        .call("choosing-wisely", &psa_request(Some(prefetch)))
        .await;
    assert_eq!(
        (status, body["cards"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let after = scrape(&app).await;
    let name = "hookwise_fhir_elements_skipped_total";
    assert!(
        after.get(name, &[]) - before.get(name, &[]) >= 1.0,
        "{}",
        after.0
    );
}

#[tokio::test]
async fn feedback_outcomes_are_counted_per_rule_and_reason_once() {
    let _serial = serial().await;
    let app = spawn_app().await;
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(74)), "conditions": searchset(vec![])});
    let (_, body) = app
        .call("choosing-wisely", &psa_request(Some(prefetch)))
        .await;
    let card = body["cards"][0]["uuid"].clone();
    let feedback = json!({"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z",
        "overrideReason": {"reason": {"system": "https://hookwise.dev/fhir/CodeSystem/override-reason", "code": "specialist-ordered"}}}]});
    let before = scrape(&app).await;
    for _ in 0..2 {
        let (status, answer) = app
            .post_raw(
                "/cds-services/choosing-wisely-order-select/feedback",
                serde_json::to_vec(&feedback).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let after = scrape(&app).await;
    let labels = [
        ("rule", PSA_RULE),
        ("outcome", "overridden"),
        ("reason", "specialist-ordered"),
    ];
    let name = "hookwise_feedback_total";
    assert_eq!(
        after.get(name, &labels) - before.get(name, &labels),
        1.0,
        "the duplicate counts once"
    );
}

#[tokio::test]
async fn the_replay_store_shows_its_occupancy_counts_refusals_and_warns() {
    let _serial = serial().await;
    let logs = logs();
    let key = TestKey::es384("replay-key");
    let mut ehr = client("https://ehr.example.org");
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    let mut settings = auth_settings(vec![ehr]);
    settings.auth.replay_cache_capacity = 5;
    let app = spawn_app_with(settings).await;
    let call = || async {
        let token = key.sign(
            &claims("https://ehr.example.org", &app.url("/cds-services")),
            None,
        );
        app.get_token("/cds-services", &token).await.status
    };
    let warnings = |what: &str| logs.text().matches(what).count();
    let (near, full) = ("jti replay store over 80% full", "jti replay store full");
    let (near_before, full_before) = (warnings(near), warnings(full));
    let before = scrape(&app).await;
    let refused = [("why", "full")];
    for _ in 0..3 {
        assert_eq!(call().await, StatusCode::OK);
    }
    let three = scrape(&app).await;
    assert_eq!(three.get("hookwise_replay_store_jtis", &[]), 3.0);
    assert_eq!(three.get("hookwise_replay_store_capacity", &[]), 5.0);
    assert_eq!(warnings(near), near_before, "60 % is no cause for alarm");
    for _ in 0..2 {
        assert_eq!(call().await, StatusCode::OK);
    }
    assert_eq!(warnings(near), near_before + 1, "over 80 %, warned once");
    assert_eq!(call().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call().await, StatusCode::SERVICE_UNAVAILABLE);
    let after = scrape(&app).await;
    let name = "hookwise_replay_store_refused_total";
    assert_eq!(after.get(name, &refused) - before.get(name, &refused), 2.0);
    assert_eq!(after.get("hookwise_replay_store_jtis", &[]), 5.0);
    assert_eq!(
        warnings(full),
        full_before + 1,
        "full, warned once a minute"
    );
}

/// Posts `request` to the console's try-a-patient form.
async fn try_in_console(app: &TestApp, request: &Value) -> (StatusCode, String) {
    let input = request.to_string();
    app.post_form("/console/try", &[("input", &input)]).await
}

#[tokio::test]
async fn console_trials_move_no_card_prefetch_or_skipped_element_metric() {
    let _serial = serial().await;
    let app = spawn_app().await;
    // A card, the prefetch keys served, and a malformed element.
    let mut malformed = condition(
        "c1",
        "http://snomed.info/sct",
        "38341003",
        "Hypertension",
        &days_ago(400),
    );
    malformed["code"]["coding"] = json!("a string where FHIR wants Codings");
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(74)),
        "conditions": searchset(vec![malformed])});
    let request = psa_request(Some(prefetch));
    let names = [
        "hookwise_cards_issued_total",
        "hookwise_prefetch_served_total",
        "hookwise_fhir_elements_skipped_total",
    ];

    let before = scrape(&app).await;
    let (status, page) = try_in_console(&app, &request).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<article class=\"ehr-card"), "a card: {page}");
    let after = scrape(&app).await;
    for name in names {
        assert_eq!(after.total(name), before.total(name), "{name} moved");
    }

    // The same call from an EHR moves each of them: the check can fail.
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let called = scrape(&app).await;
    for name in names {
        assert!(
            called.total(name) > after.total(name),
            "{name} did not move"
        );
    }
}
