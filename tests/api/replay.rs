//! The `jti` replay store over real HTTP: it fails closed (a full memory
//! store or an unreachable database answers 503 with `Retry-After`, never
//! 200), and with `auth.replay_store = "database"` replicas sharing one
//! database refuse a token another replica has seen, on SQLite and
//! PostgreSQL alike.

use crate::common;
use crate::on_both_backends;

use axum::http::StatusCode;
use common::auth::*;
use common::db::TestDb;
use common::*;
use hookwise::config::{ReplayStoreKind, Settings};
use serde_json::{Value, json};
use sqlx::Connection;

const EHR: &str = "https://ehr.example.org";
const CW: &str = "/cds-services/choosing-wisely-order-select";
/// The URL replicas behind one load balancer all answer to.
const PUBLIC_BASE: &str = "https://cds.example.org";

fn call_body() -> Value {
    // No usable draft: an answer of no cards that needs no data.
    let draft = json!({"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order"});
    order_request("order-select", vec![draft], None)
}

/// Settings trusting `EHR` with a pinned ES384 key, and that key.
fn trusting_ehr() -> (Settings, TestKey) {
    let key = TestKey::es384("replay-key");
    let mut ehr = client(EHR);
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    (auth_settings(vec![ehr]), key)
}

/// Replica settings on `db`: one public URL, so one token suits every replica.
fn replica(settings: &Settings, db: &TestDb, store: ReplayStoreKind) -> Settings {
    let mut settings = settings.clone();
    settings.database_url = db.url.clone();
    settings.public_base_url = Some(PUBLIC_BASE.into());
    settings.auth.replay_store = store;
    settings
}

/// A token for a service call behind [`PUBLIC_BASE`].
fn replica_token(key: &TestKey) -> String {
    key.sign(&claims(EHR, &format!("{PUBLIC_BASE}{CW}")), None)
}

async fn status(app: &TestApp, token: &str) -> StatusCode {
    app.post_token(CW, token, &call_body()).await.status
}

/// A 503 OperationOutcome with `Retry-After`; returns the seconds.
fn assert_503(raw: &Raw, what: &str) -> u64 {
    assert_eq!(
        raw.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        raw.body
    );
    assert_eq!(
        raw.headers.get("content-type").unwrap(),
        "application/fhir+json",
        "{what}"
    );
    let outcome: Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(outcome["issue"][0]["code"], "transient", "{what}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("replay"),
        "{what}: {outcome}"
    );
    raw.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_full_memory_store_answers_503_with_retry_after_never_200() {
    let (mut settings, key) = trusting_ehr();
    settings.auth.replay_cache_capacity = 2;
    let app = spawn_app_with(settings).await;
    let token = || key.sign(&claims(EHR, &app.url(CW)), None);
    let held = [token(), token()];
    for token in &held {
        assert_eq!(status(&app, token).await, StatusCode::OK);
    }
    let third = token();
    for attempt in ["first", "second"] {
        let raw = app.post_token(CW, &third, &call_body()).await;
        let retry_after = assert_503(&raw, attempt);
        // Tokens live 300 s plus 60 s of clock skew: the first held id
        // frees its slot within that, and not much sooner.
        assert!(
            (300..=360).contains(&retry_after),
            "Retry-After {retry_after}"
        );
    }
    for token in &held {
        let raw = app.post_token(CW, token, &call_body()).await;
        assert_eq!(
            raw.status,
            StatusCode::UNAUTHORIZED,
            "a held id is still a replay"
        );
    }
    let bad = third.replace('.', "x.");
    assert_eq!(
        status(&app, &bad).await,
        StatusCode::UNAUTHORIZED,
        "a bad token is still a 401, full store or not"
    );
}

#[tokio::test]
async fn with_the_memory_store_each_replica_accepts_a_token_once() {
    let (settings, key) = trusting_ehr();
    let db = TestDb::sqlite();
    let a = spawn_app_with(replica(&settings, &db, ReplayStoreKind::Memory)).await;
    let b = spawn_app_with(replica(&settings, &db, ReplayStoreKind::Memory)).await;
    let token = replica_token(&key);
    assert_eq!(status(&a, &token).await, StatusCode::OK);
    assert_eq!(
        status(&b, &token).await,
        StatusCode::OK,
        "the gap the database store closes: B never saw A's jti"
    );
    assert_eq!(status(&a, &token).await, StatusCode::UNAUTHORIZED);
}

/// Two replicas on one database with the database store: a token used on
/// either is refused on both.
async fn a_token_used_on_one_replica_is_refused_on_another(db: TestDb) {
    let (settings, key) = trusting_ehr();
    let a = spawn_app_with(replica(&settings, &db, ReplayStoreKind::Database)).await;
    let b = spawn_app_with(replica(&settings, &db, ReplayStoreKind::Database)).await;
    let token = replica_token(&key);
    assert_eq!(status(&a, &token).await, StatusCode::OK, "{}", db.backend);
    assert_eq!(
        status(&b, &token).await,
        StatusCode::UNAUTHORIZED,
        "{}",
        db.backend
    );
    assert_eq!(
        status(&a, &token).await,
        StatusCode::UNAUTHORIZED,
        "{}",
        db.backend
    );
    let other = replica_token(&key);
    assert_eq!(status(&b, &other).await, StatusCode::OK, "{}", db.backend);
    assert_eq!(
        status(&a, &other).await,
        StatusCode::UNAUTHORIZED,
        "{}",
        db.backend
    );
}

/// The database store failing (here its pool closed under it) refuses the
/// call with 503 and the configured `Retry-After`, and never lets it through.
async fn an_unreachable_database_store_answers_503_never_200(db: TestDb) {
    let (settings, key) = trusting_ehr();
    let mut settings = replica(&settings, &db, ReplayStoreKind::Database);
    settings.retry_after_secs = 7;
    let app = spawn_app_with(settings).await;
    assert_eq!(status(&app, &replica_token(&key)).await, StatusCode::OK);
    app.server.store().close().await;
    let token = replica_token(&key);
    for attempt in ["first", "again"] {
        let raw = app.post_token(CW, &token, &call_body()).await;
        assert_eq!(assert_503(&raw, attempt), 7, "{}", db.backend);
    }
}

on_both_backends!(
    a_token_used_on_one_replica_is_refused_on_another,
    an_unreachable_database_store_answers_503_never_200,
);

/// A database that does not answer in time (another connection holds
/// SQLite's write lock) gets 503 after `replay_store_timeout_ms`, not a wait
/// of the database's own busy timeout, and not a 200.
#[tokio::test]
async fn a_database_store_that_does_not_answer_in_time_answers_503() {
    let (settings, key) = trusting_ehr();
    let db = TestDb::sqlite();
    let mut settings = replica(&settings, &db, ReplayStoreKind::Database);
    settings.auth.replay_store_timeout_ms = 200;
    let app = spawn_app_with(settings).await;
    let mut blocker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let raw = app.post_token(CW, &replica_token(&key), &call_body()).await;
    assert_503(&raw, "database locked");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(
        status(&app, &replica_token(&key)).await,
        StatusCode::OK,
        "served again once the database answers"
    );
}
