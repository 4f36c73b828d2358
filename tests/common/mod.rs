//! The integration tests' harness, shared by the `tests/api` binary and the
//! binaries beside it: a hookwise server on port 0 with the bundled rules,
//! a fake EHR FHIR server, and a headless browser ([`browser`]).

pub mod auth;
pub mod binary;
pub mod browser;
pub mod db;
pub mod logs;
pub mod raw;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookwise::config::Settings;
use hookwise::server::Server;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Where a browser test's screenshot `name` goes: `docs/` when
/// `HOOKWISE_DOCS_SCREENSHOTS` is set (to refresh the README's pictures),
/// else the build's scratch directory.
pub fn screenshot_path(name: &str) -> PathBuf {
    match std::env::var_os("HOOKWISE_DOCS_SCREENSHOTS") {
        Some(_) => root().join("docs").join(name),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name),
    }
}

/// This machine's address on its network (the one its default route
/// leaves by), if it has one: a connection to it is not loopback.
pub fn own_network_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // A UDP connect sends nothing: it only picks the route (TEST-NET-3).
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Whether tests that need a system program (PostgreSQL, Chromium) must
/// fail without it instead of passing as skipped: under CI, read as the
/// store tests read it ([`db::postgres_required`]).
pub fn required_under_ci() -> bool {
    db::postgres_required(std::env::var_os("CI").as_deref())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings for a test server: bundled rules, port 0, loopback FHIR over http.
pub fn test_settings() -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        rules: root().join("cds-rules"),
        ..Settings::default()
    };
    settings.fhir.insecure_hosts = vec!["127.0.0.1".into()];
    // Private to the server that opens it; spawn_app_with swaps it for a
    // fresh SQLite file per test, as a production server would use.
    settings.database_url = IN_MEMORY.into();
    settings
}

/// The database of [`test_settings`], before [`spawn_app_with`] gives each
/// test its own file.
pub const IN_MEMORY: &str = "sqlite::memory:";

/// A running hookwise and a client for it.
pub struct TestApp {
    pub server: Server,
    pub base: String,
    pub client: reqwest::Client,
    /// Holds the test's SQLite file while the server runs.
    pub db_dir: Option<tempfile::TempDir>,
}

/// Starts hookwise with the given settings; an in-memory database (the
/// [`test_settings`] default) becomes a fresh SQLite file in a temp dir.
pub async fn spawn_app_with(mut settings: Settings) -> TestApp {
    let mut db_dir = None;
    if settings.database_url == IN_MEMORY {
        let dir = tempfile::tempdir().expect("temp dir");
        settings.database_url = format!("sqlite:{}", dir.path().join("hookwise.db").display());
        db_dir = Some(dir);
    }
    let server = Server::start(&settings).await.expect("server starts");
    let base = format!("http://{}", server.addr);
    TestApp {
        server,
        base,
        client: reqwest::Client::new(),
        db_dir,
    }
}

/// Starts hookwise with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

impl TestApp {
    /// POSTs a JSON body to rule `family`'s service for the hook the body
    /// names (see [`service_for`]); returns status and parsed body.
    pub async fn call(&self, family: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(
            &format!("/cds-services/{}", service_for(family, body)),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// POSTs raw bytes to a path.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// POSTs an HTML form (URL-encoded `fields`) to a path: the status and
    /// the page.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.post_form_bytes(path, body.into_bytes()).await
    }

    /// POSTs bytes as a URL-encoded form body: the status and the page.
    pub async fn post_form_bytes(&self, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }

    /// GETs a path.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The id of `family`'s service for the hook `body` names, by the server's
/// own naming rule; the family id itself when the body names no known hook
/// (tests of bad hooks call a service id directly).
pub fn service_for(family: &str, body: &Value) -> String {
    body["hook"]
        .as_str()
        .and_then(hookwise::cds::Hook::parse)
        .map_or(family.to_string(), |hook| {
            hookwise::rules::Service::id_for(family, hook)
        })
}

/// A birth date that makes the patient `years` old today (birthday today).
pub fn born_years_ago(years: i32) -> String {
    let today = OffsetDateTime::now_utc().date();
    let year = today.year() - years;
    let date = today
        .replace_year(year)
        .unwrap_or_else(|_| today.replace_day(28).unwrap().replace_year(year).unwrap());
    date.to_string()
}

/// A date `days` ago, as FHIR dateTime.
pub fn days_ago(days: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::days(days))
        .date()
        .to_string()
}

pub fn patient(id: &str, gender: &str, birth_date: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "gender": gender, "birthDate": birth_date})
}

pub fn searchset(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "total": resources.len(),
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

pub fn condition(id: &str, system: &str, code: &str, display: &str, onset: &str) -> Value {
    json!({"resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"}, "onsetDateTime": onset})
}

/// A draft PSA ServiceRequest.
pub fn psa_order(id: &str) -> Value {
    json!({"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2857-1",
            "display": "Prostate specific Ag [Mass/volume] in Serum or Plasma"}]},
        "subject": {"reference": "Patient/p1"}})
}

/// An order-select request for patient p1 with the given drafts and prefetch.
pub fn order_request(hook: &str, drafts: Vec<Value>, prefetch: Option<Value>) -> Value {
    let selections: Vec<String> = drafts
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["resourceType"].as_str().unwrap(),
                d["id"].as_str().unwrap()
            )
        })
        .collect();
    let mut request = json!({
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "p1",
            "selections": selections,
            "draftOrders": {"resourceType": "Bundle", "type": "collection",
                "entry": drafts.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()}}
    });
    if hook == "order-sign" {
        request["context"]
            .as_object_mut()
            .unwrap()
            .remove("selections");
    }
    if let Some(prefetch) = prefetch {
        request["prefetch"] = as_discovery_asks(prefetch);
    }
    request
}

/// The prefetch keys the order services' discovery asks for beyond the
/// patient and conditions, which a client following discovery sends even
/// when the patient has none of them.
pub const ORDER_PREFETCH_KEYS: [&str; 5] = [
    "medications",
    "observations",
    "procedures",
    "encounters",
    "plannedOrders",
];

/// A prefetch as a client that follows discovery sends it: the keys a test
/// leaves out are empty searchsets ("nothing on record"); keys it gives,
/// `null` included, stay as they are.
pub fn as_discovery_asks(mut prefetch: Value) -> Value {
    if let Some(keys) = prefetch.as_object_mut() {
        for key in ORDER_PREFETCH_KEYS {
            keys.entry(key).or_insert_with(|| searchset(vec![]));
        }
    }
    prefetch
}

/// Sends a CORS preflight from `origin` for a POST to `path` with the
/// `authorization` and `content-type` headers.
pub async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

/// A hookwise with a 300 ms deadline, and an order-select call for a PSA
/// test with nothing prefetched, whose FHIR server answers after 5 s.
pub async fn slow_fhir_call() -> (TestApp, Value) {
    let fhir = fake_fhir(Duration::from_secs(5), |_, _| {
        (StatusCode::OK, json!({"resourceType": "Bundle"}))
    })
    .await;
    let mut settings = test_settings();
    settings.deadline_ms = 300;
    let app = spawn_app_with(settings).await;
    let mut request = order_request("order-select", vec![psa_order("sr-1")], None);
    request["fhirServer"] = json!(fhir.base());
    (app, request)
}

/// Asserts that no value anywhere is `null`, `""`, `[]` or `{}`, except `cards: []`.
pub fn assert_no_empty_optionals(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::String(s) if s.is_empty() => panic!("empty string at {path}"),
        Value::Array(items) => {
            assert!(
                !items.is_empty() || path == "$.cards",
                "empty array at {path}"
            );
            for (i, item) in items.iter().enumerate() {
                assert_no_empty_optionals(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(map) => {
            assert!(!map.is_empty(), "empty object at {path}");
            for (k, v) in map {
                assert_no_empty_optionals(v, &format!("{path}.{k}"));
            }
        }
        _ => {}
    }
}

/// What the fake FHIR server saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Path and query of each request.
    pub requests: Vec<String>,
    /// Authorization headers.
    pub authorizations: Vec<String>,
}

/// A fake EHR FHIR server answering from a routing function.
pub struct FakeFhir {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
}

impl FakeFhir {
    pub fn base(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }
}

type Responder = Arc<dyn Fn(&str, &str) -> (StatusCode, Value) + Send + Sync>;

/// Starts a fake FHIR server. `respond(path, query)` gives each answer;
/// `delay` slows every answer down.
pub async fn fake_fhir(
    delay: Duration,
    respond: impl Fn(&str, &str) -> (StatusCode, Value) + Send + Sync + 'static,
) -> FakeFhir {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state: (Arc<Mutex<Seen>>, Responder, Duration) = (seen.clone(), Arc::new(respond), delay);
    let app = Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeFhir { addr, seen }
}

async fn handle(
    State((seen, respond, delay)): State<(Arc<Mutex<Seen>>, Responder, Duration)>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    {
        let mut seen = seen.lock().unwrap();
        seen.requests.push(format!("{path}?{query}"));
        if let Some(auth) = request.headers().get("authorization") {
            seen.authorizations
                .push(auth.to_str().unwrap_or_default().to_string());
        }
    }
    tokio::time::sleep(delay).await;
    let (status, body) = respond(&path, &query);
    (status, axum::Json(body)).into_response()
}
