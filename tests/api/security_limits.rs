//! Secure-by-default start-up, CORS and preflight, request limits, and the
//! FHIR token never leaving the fhirServer.

use crate::common;

use axum::http::StatusCode;
use common::auth::*;
use common::*;
use hookwise::config::Settings;
use hookwise::server::{Server, StartError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const SANDBOX_ORIGIN: &str = "https://sandbox.cds-hooks.org";
const EHR: &str = "https://ehr.example.org";
const CW: &str = "/cds-services/choosing-wisely-order-select";
const PATHS: [&str; 4] = [
    "/cds-services",
    "/cds-services/choosing-wisely-order-select",
    "/cds-services/choosing-wisely-order-select/feedback",
    "/elsewhere",
];

async fn start_error(settings: hookwise::config::Settings) -> String {
    match Server::start(&settings).await {
        Ok(server) => {
            server.shutdown().await.unwrap();
            panic!("the server started")
        }
        Err(error @ StartError::Config(_)) => error.to_string(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn a_non_loopback_address_without_clients_refuses_to_start() {
    let mut settings = test_settings();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let message = start_error(settings.clone()).await;
    assert!(message.contains("[[auth.clients]]"), "{message}");
    assert!(message.contains("--allow-unauthenticated"), "{message}");

    // An explicit opt-out starts (with a loud warning).
    settings.auth.allow_unauthenticated = true;
    let server = Server::start(&settings)
        .await
        .expect("starts when explicitly allowed");
    server.shutdown().await.unwrap();

    // Trusted clients beyond loopback need the public base URL for `aud`.
    let key = TestKey::es384("k");
    let mut ehr = client("https://ehr.example.org");
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    let mut settings = auth_settings(vec![ehr]);
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let message = start_error(settings.clone()).await;
    assert!(message.contains("public_base_url"), "{message}");
    settings.public_base_url = Some("https://cds.example.org".into());
    Server::start(&settings)
        .await
        .expect("starts")
        .shutdown()
        .await
        .unwrap();
}

#[test]
fn the_cli_explains_how_to_configure_a_client() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(["serve", "--listen", "0.0.0.0:0", "--rules"])
        .arg(root().join("cds-rules"))
        .env_remove("HOOKWISE_AUTH__ALLOW_UNAUTHENTICATED")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--allow-unauthenticated") && stderr.contains("Connecting an EHR"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_client_entries_refuse_to_start() {
    let key = TestKey::es384("k");
    let file = jwks_file(&jwks(&[&key]));
    let mut hmac = client("https://ehr.example.org");
    hmac.jwks_file = Some(file.clone());
    hmac.algorithms = vec!["HS256".into()];
    assert!(
        start_error(auth_settings(vec![hmac]))
            .await
            .contains("HMAC")
    );
    let no_keys = client("https://ehr.example.org");
    assert!(
        start_error(auth_settings(vec![no_keys]))
            .await
            .contains("jwks_file")
    );
    let mut plain_http = client("https://ehr.example.org");
    plain_http.jwks_url = Some("http://ehr.example.org/jwks".into());
    assert!(
        start_error(auth_settings(vec![plain_http]))
            .await
            .contains("https")
    );
    let mut missing = client("https://ehr.example.org");
    missing.jwks_file = Some(root().join("tests/data/no-such-jwks.json"));
    assert!(
        start_error(auth_settings(vec![missing]))
            .await
            .contains("cannot read")
    );
    let mut settings = test_settings();
    settings.cors.allowed_origins = vec!["sandbox.cds-hooks.org".into()];
    assert!(start_error(settings).await.contains("CORS origin"));
}

#[tokio::test]
async fn preflight_works_on_every_path_without_a_token_for_allowed_origins() {
    let key = TestKey::es384("k");
    let mut ehr = client("https://ehr.example.org");
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    let mut settings = auth_settings(vec![ehr]);
    settings.cors.allowed_origins = vec![SANDBOX_ORIGIN.into()];
    let app = spawn_app_with(settings).await;
    for path in PATHS {
        let response = preflight(&app, path, SANDBOX_ORIGIN).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"], SANDBOX_ORIGIN,
            "{path}"
        );
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(
            methods.contains("GET") && methods.contains("POST"),
            "{methods}"
        );
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{allowed}"
        );

        // Another origin gets an answer, but no permission.
        let response = preflight(&app, path, "https://evil.example.org").await;
        assert_answered_without_permission(&response, path);
    }
    // The 401 of a real call carries CORS headers, so a browser EHR sees it.
    let response = app
        .client
        .post(app.url(PATHS[1]))
        .header("Origin", SANDBOX_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        SANDBOX_ORIGIN
    );
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let app = spawn_app().await;
    for path in PATHS {
        let response = preflight(&app, path, SANDBOX_ORIGIN).await;
        assert_answered_without_permission(&response, path);
    }
}

fn outcome_of(status: StatusCode, body: &Value, expected: StatusCode, expression: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    if let Some(expression) = expression {
        assert_eq!(body["issue"][0]["expression"][0], expression, "{body}");
    }
}

#[tokio::test]
async fn the_body_size_limit_is_configurable() {
    let mut settings = test_settings();
    settings.max_body_bytes = 2048;
    let app = spawn_app_with(settings).await;
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["pad"] = json!("x".repeat(4096));
    let (status, body) = app.call("choosing-wisely", &request).await;
    outcome_of(status, &body, StatusCode::PAYLOAD_TOO_LARGE, None);
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[tokio::test]
async fn the_json_depth_limit_is_configurable() {
    let mut request = order_request("order-select", vec![], None);
    request["extension"] = nested(12);
    let (status, body) = spawn_app().await.call("choosing-wisely", &request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "depth 14 is fine by default: {body}"
    );

    let mut settings = test_settings();
    settings.max_json_depth = 10;
    let app = spawn_app_with(settings).await;
    let (status, body) = app.call("choosing-wisely", &request).await;
    outcome_of(status, &body, StatusCode::BAD_REQUEST, None);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("10 levels"),
        "{body}"
    );
    let (status, _) = app
        .post_raw(
            "/cds-services/choosing-wisely-order-select/feedback",
            serde_json::to_vec(&json!({"feedback": [nested(12)]})).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let mut settings = test_settings();
    settings.max_json_depth = 65;
    assert!(start_error(settings).await.contains("max_json_depth"));
}

#[tokio::test]
async fn prefetch_keys_and_draft_orders_are_limited() {
    // The keys a client following discovery sends for a PSA order: patient,
    // conditions and the order services' other keys.
    let at_limit = 2 + ORDER_PREFETCH_KEYS.len();
    let mut settings = test_settings();
    settings.max_prefetch_keys = at_limit;
    settings.max_draft_orders = 1;
    let app = spawn_app_with(settings).await;
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(75)), "conditions": searchset(vec![]), "extra": null});
    let (status, body) = app
        .call(
            "choosing-wisely",
            &order_request("order-select", vec![psa_order("sr-1")], Some(prefetch)),
        )
        .await;
    outcome_of(status, &body, StatusCode::BAD_REQUEST, Some("prefetch"));
    assert_eq!(body["issue"][0]["code"], "too-costly");

    let two = order_request(
        "order-sign",
        vec![psa_order("sr-1"), psa_order("sr-2")],
        None,
    );
    let (status, body) = app.call("choosing-wisely", &two).await;
    outcome_of(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        Some("context.draftOrders"),
    );

    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(75)), "conditions": searchset(vec![])});
    let (status, body) = app
        .call(
            "choosing-wisely",
            &order_request("order-select", vec![psa_order("sr-1")], Some(prefetch)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "at the limits: {body}");
}

/// A call in flight: its FHIR server answers after a second.
struct CallInFlight {
    result: tokio::task::JoinHandle<(StatusCode, Value)>,
    _fhir: FakeFhir,
}

/// Starts a call with `pad` bytes of padding whose data must be fetched
/// from a slow FHIR server, and returns once it is in flight.
async fn call_in_flight(app: &Arc<TestApp>, pad: usize) -> CallInFlight {
    let fhir = fake_fhir(Duration::from_millis(1000), |_, _| {
        (
            StatusCode::OK,
            json!({"resourceType": "Bundle", "type": "searchset"}),
        )
    })
    .await;
    let mut slow = order_request("order-select", vec![psa_order("sr-1")], None);
    slow["fhirServer"] = json!(fhir.base());
    slow["pad"] = json!("x".repeat(pad));
    let result = tokio::spawn({
        let app = app.clone();
        async move { app.call("choosing-wisely", &slow).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    CallInFlight {
        result,
        _fhir: fhir,
    }
}

/// Settings under which a call waiting on a slow FHIR server completes.
fn slow_fhir_settings() -> hookwise::config::Settings {
    let mut settings = test_settings();
    settings.fhir.request_timeout_ms = 3000;
    settings.deadline_ms = 4000;
    settings
}

#[tokio::test]
async fn a_saturated_server_answers_503_with_retry_after() {
    let mut settings = slow_fhir_settings();
    settings.max_concurrent_requests = 1;
    settings.retry_after_secs = 2;
    let app = Arc::new(spawn_app_with(settings).await);
    let first = call_in_flight(&app, 0).await;
    let response = app
        .client
        .get(app.url("/cds-services"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "throttled");
    let (status, _) = first.result.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    // Free again.
    assert_eq!(app.get("/cds-services").await.0, StatusCode::OK);
}

/// Bodies of at most 16 KiB, 24 KiB of them in flight.
fn small_body_budget(mut settings: Settings) -> Settings {
    settings.max_body_bytes = 16 * 1024;
    settings.max_inflight_body_bytes = 24 * 1024;
    settings
}

/// A call for the PSA card, everything prefetched, padded by `bytes`.
fn padded_call(bytes: usize) -> Value {
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(75)), "conditions": searchset(vec![])});
    let mut call = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    call["pad"] = json!("x".repeat(bytes));
    call
}

#[tokio::test]
async fn calls_holding_too_many_body_bytes_at_once_get_503() {
    let app = Arc::new(spawn_app_with(small_body_budget(slow_fhir_settings())).await);
    let first = call_in_flight(&app, 12 * 1024).await;

    let (status, body) = app.call("choosing-wisely", &padded_call(14 * 1024)).await;
    assert_eq!(status.as_u16(), 503, "12 + 14 KB > 24 KB: {body}");
    assert_eq!(body["issue"][0]["code"], "throttled");
    let (status, body) = app.call("choosing-wisely", &padded_call(4 * 1024)).await;
    assert_eq!(status, StatusCode::OK, "12 + 4 KB fit: {body}");
    assert_eq!(app.get("/cds-services").await.0, StatusCode::OK, "no body");

    assert_eq!(first.result.await.unwrap().0, StatusCode::OK);
    assert_eq!(
        app.call("choosing-wisely", &padded_call(14 * 1024)).await.0,
        StatusCode::OK,
        "the budget is free again"
    );

    let mut settings = test_settings();
    settings.max_inflight_body_bytes = settings.max_body_bytes - 1;
    assert!(
        start_error(settings)
            .await
            .contains("max_inflight_body_bytes")
    );
}

/// Far longer than any timeout set here.
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn bodies_declared_but_not_sent_take_no_budget() {
    let app = spawn_app_with(small_body_budget(test_settings())).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(raw::start_upload(app.server.addr, CW, &[], 16 * 1024, 0).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = app.call("choosing-wisely", &padded_call(14 * 1024)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "20 bodies of 16 KiB declared, none sent: {body}"
    );
}

/// hookwise trusting one ES384 client, with `edit`ed settings.
async fn authenticating_app(edit: impl FnOnce(Settings) -> Settings) -> (TestApp, TestKey) {
    let key = TestKey::es384("k");
    let mut ehr = client(EHR);
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    (spawn_app_with(edit(auth_settings(vec![ehr]))).await, key)
}

#[tokio::test]
async fn unauthenticated_uploads_cannot_starve_authenticated_calls() {
    let (app, key) = authenticating_app(small_body_budget).await;
    let addr = app.server.addr;
    // Some declare a body and send none of it, some send most of it.
    let mut silent = Vec::new();
    let mut partial = Vec::new();
    for _ in 0..9 {
        silent.push(raw::start_upload(addr, CW, &[], 16 * 1024, 0).await);
        partial.push(raw::start_upload(addr, CW, &[], 16 * 1024, 12 * 1024).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = key.sign(&claims(EHR, &app.url(CW)), None);
    let answer = app.post_token(CW, &token, &padded_call(14 * 1024)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // Refused on their head, before a byte of their body was waited for.
    for mut stream in silent {
        let refusal = raw::read_until_closed(&mut stream, BOUND).await;
        let refusal = refusal.expect("an unauthenticated upload is closed");
        assert!(refusal.starts_with("HTTP/1.1 401"), "{refusal}");
    }
    for mut stream in partial {
        // The answer may be lost to a reset: the body was never read.
        let closed = raw::read_until_closed(&mut stream, BOUND).await;
        assert!(closed.is_some(), "an unauthenticated upload is still open");
    }
}

#[tokio::test]
async fn an_authenticated_upload_holds_what_it_sent_until_its_body_times_out() {
    let (app, key) = authenticating_app(|settings| {
        let mut settings = small_body_budget(settings);
        settings.body_read_timeout_ms = 3000;
        settings.retry_after_secs = 2;
        settings
    })
    .await;
    let token = |app: &TestApp| key.sign(&claims(EHR, &app.url(CW)), None);
    let bearer = format!("Bearer {}", token(&app));
    let headers = [("Authorization", bearer.as_str())];
    let mut stalled = raw::start_upload(app.server.addr, CW, &headers, 16 * 1024, 12 * 1024).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let refused = app
        .post_token(CW, &token(&app), &padded_call(14 * 1024))
        .await;
    assert_eq!(
        refused.status.as_u16(),
        503,
        "12 + 14 KiB > 24 KiB: {}",
        refused.body
    );
    assert_eq!(refused.headers["retry-after"], "2");
    let fits = app
        .post_token(CW, &token(&app), &padded_call(4 * 1024))
        .await;
    assert_eq!(fits.status, StatusCode::OK, "12 + 4 KiB fit: {}", fits.body);

    let timed_out = raw::read_until_closed(&mut stalled, BOUND).await;
    let timed_out = timed_out.expect("the stalled upload is closed");
    assert!(timed_out.starts_with("HTTP/1.1 408"), "{timed_out}");
    let again = app
        .post_token(CW, &token(&app), &padded_call(14 * 1024))
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the budget is free again: {}",
        again.body
    );
}

#[tokio::test]
async fn a_fhir_redirect_is_not_followed_so_the_token_stays_home() {
    let elsewhere = fake_fhir(Duration::ZERO, |_, _| {
        (StatusCode::OK, patient("p1", "male", "1940-01-01"))
    })
    .await;
    let target = format!("{}/Patient/p1", elsewhere.base());
    let redirector = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::FOUND, [("location", target)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });

    let app = spawn_app().await;
    let mut request = order_request(
        "order-select",
        vec![psa_order("sr-1")],
        Some(json!({"conditions": searchset(vec![])})),
    );
    request["fhirServer"] = json!(format!("http://{addr}/fhir"));
    request["fhirAuthorization"] = json!({"access_token": "secret-token-1", "token_type": "Bearer", "expires_in": 300,
        "scope": "user/*.read", "subject": "hookwise"});
    let (status, body) = app.call("choosing-wisely", &request).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(!body.to_string().contains("secret-token-1"));
    assert!(
        elsewhere.seen.lock().unwrap().requests.is_empty(),
        "the redirect was followed"
    );
}

/// A preflight answered (2xx) but with no `Access-Control-Allow-Origin`:
/// the browser will not let the page call.
fn assert_answered_without_permission(response: &reqwest::Response, path: &str) {
    assert!(response.status().is_success(), "{path}");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{path}"
    );
}
