//! The Bulk Data `$export` client (`hookwise::audit::bulk`) against an
//! in-process fake Bulk server on a loopback port: kick-off, status polls
//! with `Retry-After`, NDJSON files (one gzipped), error files, DELETE, and
//! a SMART Backend Services token endpoint that verifies the client
//! assertion with the client's public key and hands out short-lived tokens
//! that the other endpoints require.
//!
//! The keys are made fresh by each test binary (RSA 2048 and EC P-384), so
//! no private key is kept in the repository.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use hookwise::audit::bulk::{
    BulkAuth, BulkError, BulkProgress, BulkSource, DEFAULT_SCOPE, Downloaded, ExportLevel,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLIENT_ID: &str = "hookwise-audit";
const KEY_ID: &str = "audit-key-1";

/// A private key as the client holds it, and the public key the server
/// verifies with.
#[derive(Clone)]
struct KeyPair {
    private_pem: String,
    public_pem: String,
    alg: Algorithm,
}

/// One RSA key pair per `slot` for the whole binary: generation is slow.
/// `pkcs1` gives the private key as `RSA PRIVATE KEY` instead of PKCS#8.
fn rsa_key(slot: usize, pkcs1: bool) -> KeyPair {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    static KEYS: OnceLock<Mutex<HashMap<usize, rsa::RsaPrivateKey>>> = OnceLock::new();
    let key = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(slot)
        .or_insert_with(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
        .clone();
    let private_pem = match pkcs1 {
        true => key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        false => key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
    };
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    KeyPair {
        private_pem,
        public_pem,
        alg: Algorithm::RS384,
    }
}

fn ec_p384_key() -> KeyPair {
    use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
    KeyPair {
        private_pem: secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public_pem: secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
        alg: Algorithm::ES384,
    }
}

/// How the fake server authorizes requests to its FHIR endpoints.
#[derive(Clone)]
enum ServerAuth {
    Open,
    Static(String),
    /// Tokens from `/token`, for clients that prove they hold `key` and
    /// ask for `scope`.
    Backend {
        key: KeyPair,
        expires_in: u64,
        scope: &'static str,
    },
}

/// One NDJSON file the server serves.
#[derive(Clone)]
struct Served {
    kind: &'static str,
    name: &'static str,
    body: String,
    gzip: bool,
}

/// The `Retry-After` of a 202.
#[derive(Clone, Copy)]
enum RetryAfter {
    Seconds(u64),
    /// An HTTP-date this many seconds ahead.
    DateIn(i64),
}

/// How the fake server behaves.
#[derive(Clone)]
struct Script {
    auth: ServerAuth,
    /// Kick-off answers this status and OperationOutcome diagnostics
    /// instead of 202.
    kick_off_failure: Option<(u16, &'static str)>,
    /// 202 answers before the manifest (`usize::MAX`: never complete).
    pending_polls: usize,
    retry_after: RetryAfter,
    /// The first this-many polls answer this status with diagnostics.
    status_failures: Option<(u16, usize, &'static str)>,
    requires_access_token: bool,
    output: Vec<Served>,
    error: Vec<Served>,
    /// Raw items added to the manifest's `output`; `{base}` in them
    /// becomes the server's address.
    extra_output: Vec<Value>,
    /// After kick-off, every token issued so far stops being accepted.
    revoke_after_kick_off: bool,
    /// Gzipped files are sent plain, still labelled gzip.
    corrupt_gzip: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            auth: ServerAuth::Open,
            kick_off_failure: None,
            pending_polls: 0,
            retry_after: RetryAfter::Seconds(0),
            status_failures: None,
            requires_access_token: true,
            output: standard_files(),
            error: Vec::new(),
            extra_output: Vec::new(),
            revoke_after_kick_off: false,
            corrupt_gzip: false,
        }
    }
}

/// Three patients and four observations, the second Observation file gzipped.
fn standard_files() -> Vec<Served> {
    let patients = (1..=3)
        .map(|i| json!({"resourceType": "Patient", "id": format!("p{i}")}).to_string() + "\n")
        .collect::<String>();
    let observations = |ids: [&str; 2]| {
        ids.iter()
            .map(|id| {
                json!({"resourceType": "Observation", "id": id,
                       "subject": {"reference": "Patient/p1"}})
                .to_string()
                    + "\n"
            })
            .collect::<String>()
    };
    vec![
        Served {
            kind: "Patient",
            name: "patients",
            body: patients,
            gzip: false,
        },
        Served {
            kind: "Observation",
            name: "obs-a",
            body: observations(["o1", "o2"]),
            gzip: false,
        },
        Served {
            kind: "Observation",
            name: "obs-b",
            body: observations(["o3", "o4"]),
            gzip: true,
        },
    ]
}

struct Issued {
    token: String,
    expires: Instant,
    revoked: bool,
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Method and path of every request, token requests included.
    requests: Vec<(Method, String)>,
    kick_off_query: HashMap<String, String>,
    kick_off_headers: HeaderMap,
    polls: Vec<Instant>,
    deletes: usize,
    issued: Vec<Issued>,
    jtis: HashSet<String>,
    /// 401 answers to requests without a valid token.
    unauthorized: usize,
    /// Why the token endpoint refused assertions.
    refusals: Vec<String>,
}

struct Fake {
    base: String,
    script: Script,
    seen: Mutex<Seen>,
}

type Shared = Arc<Fake>;

impl Fake {
    async fn start(script: Script) -> Shared {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Fake {
            base,
            script,
            seen: Mutex::new(Seen::default()),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/fhir/Patient/$export", get(kick_off))
            .route("/fhir/$export", get(kick_off))
            .route("/fhir/Group/{id}/$export", get(kick_off))
            .route("/status/{job}", get(status).delete(delete))
            .route("/files/{name}", get(file))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), record))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    fn fhir(&self) -> String {
        format!("{}/fhir", self.base)
    }

    fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Whether `headers` carry a token this server accepts now.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (&self.script.auth, given) {
            (ServerAuth::Open, _) => true,
            (ServerAuth::Static(token), Some(given)) => token == given,
            (ServerAuth::Backend { .. }, Some(given)) => self
                .seen()
                .issued
                .iter()
                .any(|i| i.token == given && !i.revoked && Instant::now() < i.expires),
            (_, None) => false,
        }
    }

    /// The status client backends serve in `/status`'s manifest.
    fn manifest(&self) -> Value {
        let item = |f: &Served| {
            json!({"type": f.kind,
                   "url": format!("{}/files/{}?sig=topsecret", self.base, f.name),
                   "count": f.body.lines().count()})
        };
        let mut output: Vec<Value> = self.script.output.iter().map(item).collect();
        output.extend(self.script.extra_output.iter().map(|item| {
            serde_json::from_str(&item.to_string().replace("{base}", &self.base)).unwrap()
        }));
        json!({
            "transactionTime": "2026-03-01T12:00:00Z",
            "request": format!("{}/Patient/$export", self.fhir()),
            "requiresAccessToken": self.script.requires_access_token,
            "output": output,
            "error": self.script.error.iter().map(item).collect::<Vec<_>>(),
        })
    }
}

async fn record(
    State(fake): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let entry = (request.method().clone(), request.uri().path().to_string());
    fake.seen().requests.push(entry);
    next.run(request).await
}

fn outcome(status: u16, diagnostics: &str) -> Response {
    let body = json!({"resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}]});
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

impl Fake {
    fn refuse(&self) -> Response {
        self.seen().unauthorized += 1;
        outcome(401, "no valid access token")
    }
}

async fn kick_off(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    {
        let mut seen = fake.seen();
        seen.kick_off_query = query;
        seen.kick_off_headers = headers.clone();
    }
    if !fake.authorized(&headers) {
        return fake.refuse();
    }
    if let Some((status, diagnostics)) = fake.script.kick_off_failure {
        return outcome(status, diagnostics);
    }
    if fake.script.revoke_after_kick_off {
        for issued in &mut fake.seen().issued {
            issued.revoked = true;
        }
    }
    let location = format!("{}/status/job-1", fake.base);
    (StatusCode::ACCEPTED, [("content-location", location)]).into_response()
}

async fn status(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if !fake.authorized(&headers) {
        return fake.refuse();
    }
    let polls = {
        let mut seen = fake.seen();
        seen.polls.push(Instant::now());
        seen.polls.len()
    };
    if let Some((status, times, diagnostics)) = fake.script.status_failures
        && polls <= times
    {
        return outcome(status, diagnostics);
    }
    let failed = fake.script.status_failures.map_or(0, |(_, times, _)| times);
    if polls - failed <= fake.script.pending_polls {
        let wait = match fake.script.retry_after {
            RetryAfter::Seconds(seconds) => seconds.to_string(),
            RetryAfter::DateIn(seconds) => http_date(seconds),
        };
        return (
            StatusCode::ACCEPTED,
            [
                ("retry-after", wait),
                ("x-progress", "50% done".to_string()),
            ],
        )
            .into_response();
    }
    Json(fake.manifest()).into_response()
}

async fn delete(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if !fake.authorized(&headers) {
        return fake.refuse();
    }
    fake.seen().deletes += 1;
    StatusCode::ACCEPTED.into_response()
}

async fn file(
    State(fake): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if fake.script.requires_access_token && !fake.authorized(&headers) {
        return fake.refuse();
    }
    // Like a signed-URL store, which takes one kind of authorization only.
    if !fake.script.requires_access_token && headers.contains_key("authorization") {
        return outcome(400, "only one auth mechanism allowed");
    }
    let all = fake.script.output.iter().chain(&fake.script.error);
    let Some(served) = all.clone().find(|f| f.name == name) else {
        return outcome(404, "the file has expired");
    };
    if query.get("sig").map(String::as_str) != Some("topsecret") {
        return outcome(403, "bad signature");
    }
    if !served.gzip || fake.script.corrupt_gzip {
        let encoding = if served.gzip { "gzip" } else { "identity" };
        return (
            [
                ("content-type", "application/fhir+ndjson"),
                ("content-encoding", encoding),
            ],
            served.body.clone(),
        )
            .into_response();
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(served.body.as_bytes()).unwrap();
    let body = encoder.finish().unwrap();
    (
        [
            ("content-type", "application/fhir+ndjson"),
            ("content-encoding", "gzip"),
        ],
        body,
    )
        .into_response()
}

/// The SMART Backend Services token endpoint: verifies the assertion's
/// signature with the client's public key and its claims, then issues a
/// random token valid for `expires_in` seconds.
async fn token(State(fake): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let ServerAuth::Backend {
        key, expires_in, ..
    } = &fake.script.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(reason) = check_assertion(&fake, key, &form) {
        fake.seen().refusals.push(reason.clone());
        let body = json!({"error": "invalid_client", "error_description": reason});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let token = uuid::Uuid::new_v4().to_string();
    fake.seen().issued.push(Issued {
        token: token.clone(),
        expires: Instant::now() + Duration::from_secs(*expires_in),
        revoked: false,
    });
    Json(json!({"access_token": token, "token_type": "bearer",
                "expires_in": expires_in, "scope": DEFAULT_SCOPE}))
    .into_response()
}

fn check_assertion(
    fake: &Fake,
    key: &KeyPair,
    form: &HashMap<String, String>,
) -> Result<(), String> {
    let ServerAuth::Backend { scope, .. } = fake.script.auth else {
        return Err("no token endpoint".into());
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return Err("grant_type".into());
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return Err("client_assertion_type".into());
    }
    if field("scope") != scope {
        return Err(format!("scope {}", field("scope")));
    }
    let assertion = field("client_assertion");
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
    if header.kid.as_deref() != Some(KEY_ID) || header.alg != key.alg {
        return Err("kid or alg".into());
    }
    let decoding = match key.alg {
        Algorithm::ES384 => DecodingKey::from_ec_pem(key.public_pem.as_bytes()),
        _ => DecodingKey::from_rsa_pem(key.public_pem.as_bytes()),
    }
    .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(key.alg);
    validation.set_audience(&[fake.token_url()]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(assertion, &decoding, &validation)
        .map_err(|e| e.to_string())?
        .claims;
    if claims["sub"] != CLIENT_ID {
        return Err("sub".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if claims["exp"].as_u64().is_none_or(|exp| exp > now + 300) {
        return Err("exp more than five minutes ahead".into());
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?.to_string();
    if !fake.seen().jtis.insert(jti) {
        return Err("jti reused".into());
    }
    Ok(())
}

/// The client's side of `fake`'s token endpoint, signing with `key`.
fn backend_auth(fake: &Fake, key: &KeyPair) -> BulkAuth {
    let ServerAuth::Backend { scope, .. } = fake.script.auth else {
        panic!("the fake has no token endpoint");
    };
    BulkAuth::Backend {
        client_id: CLIENT_ID.into(),
        private_key_pem: key.private_pem.clone(),
        token_url: fake.token_url(),
        scope: scope.into(),
        key_id: KEY_ID.into(),
    }
}

/// Backend Services with `key`, tokens valid for `expires_in` seconds.
fn backend(key: &KeyPair, expires_in: u64) -> ServerAuth {
    ServerAuth::Backend {
        key: key.clone(),
        expires_in,
        scope: DEFAULT_SCOPE,
    }
}

/// An IMF-fixdate `seconds` from now.
fn http_date(seconds: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(format)
        .unwrap()
}

fn source(fake: &Fake, auth: BulkAuth) -> BulkSource {
    BulkSource::new(&fake.fhir(), auth)
        .unwrap()
        .insecure_http(true)
        .poll_interval(Duration::from_millis(20))
        .poll_timeout(Duration::from_secs(20))
}

/// Runs the export into a fresh directory, keeping the progress events.
async fn run(
    source: &BulkSource,
) -> (
    tempfile::TempDir,
    Result<Downloaded, BulkError>,
    Vec<BulkProgress>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let result = source
        .export(&dir.path().join("export"), &mut |p| events.push(p))
        .await;
    (dir, result, events)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Checks that the three standard files landed with the served contents.
fn assert_standard_files(fake: &Fake, dir: &Path, downloaded: &Downloaded) {
    let export = dir.join("export");
    let names: Vec<_> = downloaded
        .files
        .iter()
        .map(|p| {
            p.strip_prefix(&export)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "Patient.1.ndjson",
            "Observation.1.ndjson",
            "Observation.2.ndjson"
        ]
    );
    for (path, served) in downloaded.files.iter().zip(&fake.script.output) {
        assert_eq!(read(path), served.body, "{}", path.display());
    }
    assert_eq!(downloaded.resources, 7);
    assert_eq!(downloaded.transaction_time, "2026-03-01T12:00:00Z");
    let leftovers: Vec<_> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn backend_services_export_polls_with_retry_after_and_downloads_every_file() {
    let key = rsa_key(0, false);
    let fake = Fake::start(Script {
        auth: backend(&key, 300),
        pending_polls: 2,
        retry_after: RetryAfter::Seconds(1),
        ..Script::default()
    })
    .await;
    let (dir, result, events) = run(&source(&fake, backend_auth(&fake, &key))).await;
    let downloaded = result.unwrap_or_else(|e| panic!("{e}; refusals {:?}", fake.seen().refusals));
    assert_standard_files(&fake, dir.path(), &downloaded);
    assert!(downloaded.error_files.is_empty());
    assert_eq!(downloaded.errors, 0);

    let seen = fake.seen();
    assert_eq!(seen.issued.len(), 1, "one token, reused for every request");
    assert_eq!(seen.polls.len(), 3);
    let waited = seen.polls[2] - seen.polls[0];
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After ignored: {waited:?}"
    );
    assert_eq!(seen.deletes, 1, "the export is deleted after download");
    assert_eq!(
        seen.kick_off_headers["accept"].to_str().unwrap(),
        "application/fhir+json"
    );
    assert_eq!(
        seen.kick_off_headers["prefer"].to_str().unwrap(),
        "respond-async"
    );
    assert_eq!(
        seen.kick_off_query.get("_outputFormat").map(String::as_str),
        Some("application/fhir+ndjson")
    );
    let running = BulkProgress::Running {
        progress: Some("50% done".into()),
    };
    assert_eq!(
        events[..4],
        [
            BulkProgress::Accepted,
            running.clone(),
            running,
            BulkProgress::Ready {
                files: 3,
                error_files: 0
            }
        ]
    );
    let saved: Vec<u64> = events[4..]
        .iter()
        .map(|e| match e {
            BulkProgress::Saved { resources, .. } => *resources,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(saved, [3, 2, 2]);
}

#[tokio::test]
async fn an_ec_p384_key_signs_es384_and_a_pkcs1_rsa_key_is_read() {
    for key in [ec_p384_key(), rsa_key(0, true)] {
        let fake = Fake::start(Script {
            auth: backend(&key, 300),
            ..Script::default()
        })
        .await;
        let (dir, result, _) = run(&source(&fake, backend_auth(&fake, &key))).await;
        let downloaded = result.unwrap_or_else(|e| panic!("{e}; {:?}", fake.seen().refusals));
        assert_standard_files(&fake, dir.path(), &downloaded);
    }
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_use() {
    let key = rsa_key(0, false);
    let fake = Fake::start(Script {
        auth: backend(&key, 1),
        pending_polls: 2,
        retry_after: RetryAfter::Seconds(1),
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, backend_auth(&fake, &key))).await;
    let downloaded = result.unwrap_or_else(|e| panic!("{e}; {:?}", fake.seen().refusals));
    assert_standard_files(&fake, dir.path(), &downloaded);
    let seen = fake.seen();
    // Kick-off at 0 s, polls at 1 and 2 s: each needs a new token, and
    // none was sent after it expired (which a 401 would have told).
    assert!(seen.issued.len() >= 3, "tokens: {}", seen.issued.len());
    assert_eq!(seen.unauthorized, 0);
}

#[tokio::test]
async fn a_token_the_server_refuses_is_fetched_again_once() {
    let key = rsa_key(0, false);
    let fake = Fake::start(Script {
        auth: backend(&key, 300),
        revoke_after_kick_off: true,
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, backend_auth(&fake, &key))).await;
    let downloaded = result.unwrap_or_else(|e| panic!("{e}"));
    assert_standard_files(&fake, dir.path(), &downloaded);
    let seen = fake.seen();
    assert_eq!(seen.issued.len(), 2);
    assert_eq!(seen.unauthorized, 1);
}

#[tokio::test]
async fn a_static_bearer_token_is_sent_and_a_wrong_one_is_not_shown() {
    let fake = Fake::start(Script {
        auth: ServerAuth::Static("static-secret".into()),
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::Bearer("static-secret".into()))).await;
    assert_standard_files(&fake, dir.path(), &result.unwrap());

    let (_dir, result, _) = run(&source(&fake, BulkAuth::Bearer("wrong-secret".into()))).await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("kick-off"), "{message}");
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");
    assert_eq!(
        fake.seen().unauthorized,
        1,
        "a static token is not sent twice"
    );
}

#[tokio::test]
async fn files_are_fetched_without_the_token_when_the_manifest_does_not_require_it() {
    let fake = Fake::start(Script {
        requires_access_token: false,
        auth: ServerAuth::Static("static-secret".into()),
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::Bearer("static-secret".into()))).await;
    assert_standard_files(&fake, dir.path(), &result.unwrap());
}

#[tokio::test]
async fn a_refused_kick_off_names_the_url_the_status_and_the_diagnostics() {
    let fake = Fake::start(Script {
        kick_off_failure: Some((403, "Client not authorized for Patient export")),
        ..Script::default()
    })
    .await;
    let (_dir, result, events) = run(&source(&fake, BulkAuth::None)).await;
    let error = result.unwrap_err();
    assert!(
        matches!(error, BulkError::Status { status: 403, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [
        "the export kick-off",
        &format!("{}/Patient/$export", fake.fhir()),
        "HTTP 403",
        "Client not authorized for Patient export",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert!(events.is_empty());
    assert!(fake.seen().polls.is_empty());
}

#[tokio::test]
async fn a_status_url_that_keeps_failing_is_retried_then_an_error() {
    let fake = Fake::start(Script {
        status_failures: Some((500, usize::MAX, "the export database is unavailable")),
        ..Script::default()
    })
    .await;
    let (_dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    let message = result.unwrap_err().to_string();
    for part in [
        "the export status request",
        &format!("{}/status/job-1", fake.base),
        "HTTP 500",
        "the export database is unavailable",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    // The first poll and three retries.
    assert_eq!(fake.seen().polls.len(), 4);
}

#[tokio::test]
async fn a_status_url_that_fails_briefly_is_retried_to_success() {
    let fake = Fake::start(Script {
        status_failures: Some((503, 2, "busy")),
        pending_polls: 1,
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    assert_standard_files(&fake, dir.path(), &result.unwrap());
    assert_eq!(fake.seen().polls.len(), 4);
}

#[tokio::test]
async fn error_files_are_downloaded_apart_and_their_outcomes_counted() {
    let outcome = |text: &str| {
        json!({"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]})
        .to_string()
    };
    let fake = Fake::start(Script {
        error: vec![
            Served {
                kind: "OperationOutcome",
                name: "errors-a",
                body: format!("{}\n{}\n\n", outcome("a"), outcome("b")),
                gzip: false,
            },
            Served {
                kind: "OperationOutcome",
                name: "errors-b",
                body: outcome("c"),
                gzip: true,
            },
        ],
        ..Script::default()
    })
    .await;
    let (dir, result, events) = run(&source(&fake, BulkAuth::None)).await;
    let downloaded = result.unwrap();
    assert_standard_files(&fake, dir.path(), &downloaded);
    assert_eq!(downloaded.errors, 3);
    let errors = dir.path().join("export/errors");
    assert_eq!(
        downloaded.error_files,
        [
            errors.join("OperationOutcome.1.ndjson"),
            errors.join("OperationOutcome.2.ndjson")
        ]
    );
    assert_eq!(read(&downloaded.error_files[1]), outcome("c"));
    assert!(events.contains(&BulkProgress::Ready {
        files: 3,
        error_files: 2
    }));
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_the_assertion_stops_the_export() {
    // The client signs with another key than the one the server has.
    let fake = Fake::start(Script {
        auth: backend(&rsa_key(0, false), 300),
        ..Script::default()
    })
    .await;
    let (_dir, result, _) = run(&source(&fake, backend_auth(&fake, &rsa_key(1, false)))).await;
    let message = result.unwrap_err().to_string();
    for part in [
        "the token request",
        &fake.token_url(),
        "HTTP 401",
        "invalid_client",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    let seen = fake.seen();
    assert_eq!(seen.refusals.len(), 1, "{:?}", seen.refusals);
    assert!(
        seen.refusals[0].contains("InvalidSignature"),
        "{:?}",
        seen.refusals
    );
    assert_eq!(seen.requests, [(Method::POST, "/token".to_string())]);
}

#[tokio::test]
async fn a_missing_file_names_the_url_without_its_secret() {
    let fake = Fake::start(Script {
        extra_output: vec![json!({"type": "Condition",
            "url": "{base}/files/missing?sig=topsecret"})],
        ..Script::default()
    })
    .await;
    let (_dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    let message = result.unwrap_err().to_string();
    for part in [
        "the file download",
        &format!("{}/files/missing", fake.base),
        "HTTP 404",
        "the file has expired",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert!(!message.contains("topsecret"), "{message}");
}

#[tokio::test]
async fn a_manifest_type_that_is_no_resource_type_is_refused() {
    let fake = Fake::start(Script {
        extra_output: vec![
            json!({"type": "../../evil", "url": "{base}/files/patients?sig=topsecret"}),
        ],
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("unusable manifest"), "{message}");
    assert!(message.contains("no resource type"), "{message}");
    let written: Vec<_> = std::fs::read_dir(dir.path().join("export"))
        .unwrap()
        .collect();
    assert!(written.is_empty(), "{written:?}");
    assert!(!dir.path().join("evil").exists());
}

#[tokio::test]
async fn an_export_still_running_at_the_timeout_is_given_up_and_cancelled() {
    let fake = Fake::start(Script {
        pending_polls: usize::MAX,
        retry_after: RetryAfter::Seconds(1),
        ..Script::default()
    })
    .await;
    let source = source(&fake, BulkAuth::None).poll_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let (_dir, result, _) = run(&source).await;
    let took = started.elapsed();
    let error = result.unwrap_err();
    assert!(matches!(error, BulkError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("not complete after"), "{error}");
    assert!(error.to_string().contains("/status/job-1"), "{error}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let seen = fake.seen();
    assert_eq!(seen.polls.len(), 3, "polls at 0, 1 and 1.5 s");
    assert_eq!(seen.deletes, 1, "the running export is cancelled");
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let fake = Fake::start(Script::default()).await;
    let source = BulkSource::new(&fake.fhir(), BulkAuth::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("export");
    let error = source.export(&dest, &mut |_| {}).await.unwrap_err();
    assert!(matches!(error, BulkError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("plain http"), "{error}");
    assert!(fake.seen().requests.is_empty());
    assert!(!dest.exists());

    // An https server with a token endpoint over http.
    let auth = BulkAuth::Backend {
        client_id: CLIENT_ID.into(),
        private_key_pem: rsa_key(0, false).private_pem,
        token_url: fake.token_url(),
        scope: DEFAULT_SCOPE.into(),
        key_id: KEY_ID.into(),
    };
    let source = BulkSource::new("https://127.0.0.1:9/fhir", auth).unwrap();
    let error = source.export(&dest, &mut |_| {}).await.unwrap_err();
    assert!(error.to_string().contains("the token URL"), "{error}");
    assert!(error.to_string().contains("plain http"), "{error}");
    assert!(fake.seen().requests.is_empty());
}

#[tokio::test]
async fn a_system_level_export_sends_type_and_since() {
    let fake = Fake::start(Script::default()).await;
    let since = time::macros::datetime!(2024-01-01 00:00 UTC);
    let source = source(&fake, BulkAuth::None)
        .level(ExportLevel::System)
        .types(["Patient", "Observation"])
        .since(since);
    let (dir, result, _) = run(&source).await;
    assert_standard_files(&fake, dir.path(), &result.unwrap());
    let seen = fake.seen();
    assert_eq!(seen.requests[0], (Method::GET, "/fhir/$export".to_string()));
    let query = &seen.kick_off_query;
    assert_eq!(query["_type"], "Patient,Observation");
    assert_eq!(query["_since"], "2024-01-01T00:00:00Z");
    assert_eq!(query["_outputFormat"], "application/fhir+ndjson");
}

#[tokio::test]
async fn bad_settings_are_refused_before_any_request() {
    let fake = Fake::start(Script::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Patient.1.ndjson"), "{}\n").unwrap();
    let error = source(&fake, BulkAuth::None)
        .export(dir.path(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("is not empty"), "{error}");

    let error = source(&fake, BulkAuth::None)
        .types(["Patient", "../x"])
        .export(&dir.path().join("new"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a resource type"), "{error}");

    let error = source(&fake, BulkAuth::None)
        .level(ExportLevel::Group("a/b".into()))
        .export(&dir.path().join("new"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Group id"), "{error}");
    assert!(fake.seen().requests.is_empty());

    let auth = BulkAuth::Backend {
        client_id: CLIENT_ID.into(),
        private_key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        token_url: fake.token_url(),
        scope: DEFAULT_SCOPE.into(),
        key_id: KEY_ID.into(),
    };
    let error = BulkSource::new(&fake.fhir(), auth).err().unwrap();
    assert!(error.to_string().contains("private key"), "{error}");
}

#[test]
fn debug_output_hides_the_secrets() {
    let bearer = format!("{:?}", BulkAuth::Bearer("static-secret".into()));
    assert!(!bearer.contains("static-secret"), "{bearer}");
    let key = rsa_key(0, false);
    let backend = format!(
        "{:?}",
        BulkAuth::Backend {
            client_id: CLIENT_ID.into(),
            private_key_pem: key.private_pem.clone(),
            token_url: "https://auth.example/token".into(),
            scope: DEFAULT_SCOPE.into(),
            key_id: KEY_ID.into(),
        }
    );
    assert!(backend.contains(CLIENT_ID), "{backend}");
    assert!(!backend.contains("PRIVATE KEY"), "{backend}");
}

#[tokio::test]
async fn an_http_date_retry_after_is_honoured() {
    let fake = Fake::start(Script {
        pending_polls: 1,
        retry_after: RetryAfter::DateIn(2),
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    assert_standard_files(&fake, dir.path(), &result.unwrap());
    let seen = fake.seen();
    assert_eq!(seen.polls.len(), 2);
    // Two seconds ahead, written to the second: one to two seconds.
    let waited = seen.polls[1] - seen.polls[0];
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[tokio::test]
async fn several_scopes_reach_the_token_endpoint_intact() {
    let key = rsa_key(0, false);
    let fake = Fake::start(Script {
        auth: ServerAuth::Backend {
            key: key.clone(),
            expires_in: 300,
            scope: "system/Patient.rs system/Observation.rs system/*.read",
        },
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, backend_auth(&fake, &key))).await;
    let downloaded = result.unwrap_or_else(|e| panic!("{e}; {:?}", fake.seen().refusals));
    assert_standard_files(&fake, dir.path(), &downloaded);
}

#[tokio::test]
async fn a_corrupt_gzip_file_is_an_error_and_leaves_no_partial_file() {
    let fake = Fake::start(Script {
        corrupt_gzip: true,
        ..Script::default()
    })
    .await;
    let (dir, result, _) = run(&source(&fake, BulkAuth::None)).await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("gzip body is corrupt"), "{message}");
    assert!(message.contains("/files/obs-b"), "{message}");
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("export"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Observation.1.ndjson", "Patient.1.ndjson"]);
}

/// The population's NDJSON files, served as a Bulk export serves them.
fn served_population(dir: &Path) -> Vec<Served> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let gzip = name.ends_with(".gz");
            let mut body = String::new();
            let file = std::fs::File::open(path).unwrap();
            match gzip {
                true => flate2::read::GzDecoder::new(file).read_to_string(&mut body),
                false => std::io::BufReader::new(file).read_to_string(&mut body),
            }
            .unwrap();
            let kind = name.split('.').next().unwrap().to_string();
            Served {
                kind: Box::leak(kind.into_boxed_str()),
                name: Box::leak(name.into_boxed_str()),
                body,
                gzip,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookwise_audit_exports_from_a_fhir_server_and_reports_as_from_the_files() {
    let population = crate::audit::population();
    let key = rsa_key(0, false);
    let fake = Fake::start(Script {
        auth: backend(&key, 300),
        pending_polls: 1,
        output: served_population(&population.ndjson),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.pem");
    std::fs::write(&key_file, &key.private_pem).unwrap();
    let export_dir = dir.path().join("export");
    let window = [
        "--as-of",
        "2024-12-31",
        "--since",
        "2024-01-01",
        "--until",
        "2024-12-31",
    ];
    let mut args: Vec<String> = [
        "--fhir-server",
        &fake.fhir(),
        "--client-id",
        CLIENT_ID,
        "--key-id",
        KEY_ID,
        "--private-key",
        key_file.to_str().unwrap(),
        "--token-url",
        &fake.token_url(),
        "--export-dir",
        export_dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(window.iter().map(|s| s.to_string()));
    let exported = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::audit::audit_json(&args)
    })
    .await
    .unwrap();
    let ndjson = population.ndjson.clone();
    let from_files = tokio::task::spawn_blocking(move || {
        let mut args = vec!["--ndjson", crate::audit::path(&ndjson)];
        args.extend(window);
        crate::audit::audit_json(&args)
    })
    .await
    .unwrap();
    assert_eq!(
        crate::audit::findings(&exported),
        crate::audit::findings(&from_files)
    );
    assert_eq!(exported["input"]["source"], "fhir-server");
    assert_eq!(
        exported["input"]["resources"],
        from_files["input"]["resources"]
    );
    assert!(fake.seen().deletes >= 1, "the finished export is deleted");
    assert!(
        export_dir.join("Patient.1.ndjson").exists(),
        "--export-dir keeps the files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookwise_audit_names_the_failing_step_of_a_fhir_server() {
    let fake = Fake::start(Script {
        auth: ServerAuth::Static("right-token".into()),
        ..Default::default()
    })
    .await;
    let url = fake.fhir();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .args(["audit", "--fhir-server", &url, "--as-of", "2024-12-31"])
            .env("FHIR_BULK_TOKEN", "wrong-token")
            .current_dir(crate::common::root())
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("--fhir-server") && err.contains("kick-off") && err.contains("401"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-token"),
        "the token stays out of messages: {err}"
    );

    let (ok, _, err) = crate::audit::hookwise(&[
        "audit",
        "--fhir-server",
        "http://fhir.example.org/fhir",
        "--as-of",
        "2024-12-31",
    ]);
    assert!(!ok);
    assert!(
        err.contains("http"),
        "plain http beyond loopback is refused: {err}"
    );
}
