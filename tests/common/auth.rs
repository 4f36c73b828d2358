//! Test side of CDS client authentication: real EC P-384 and RSA keys made
//! in the test, JWTs signed with them, JWKS files and a fake JWKS server,
//! and hookwise started with trusted clients.

use super::{TestApp, spawn_app_with, test_settings};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookwise::config::{Settings, TrustedClient, default_algorithms};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The CDS Hooks sandbox's issuer, key id and `jku`.
pub const SANDBOX_ISS: &str = "https://sandbox.cds-hooks.org";
pub const SANDBOX_KID: &str = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f";
pub const SANDBOX_JKU: &str = "https://sandbox.cds-hooks.org/.well-known/jwks.json";

/// A private key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub jwk: Value,
}

fn pkcs8_p384() -> String {
    use p384::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
    secret
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pkcs8")
        .to_string()
}

fn pkcs8_p256() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    secret
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pkcs8")
        .to_string()
}

impl TestKey {
    /// A fresh EC P-384 key for ES384.
    pub fn es384(kid: &str) -> TestKey {
        let pem = pkcs8_p384();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key");
        TestKey::with(kid, Algorithm::ES384, encoding)
    }

    /// A fresh EC P-256 key for ES256.
    pub fn es256(kid: &str) -> TestKey {
        let pem = pkcs8_p256();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key");
        TestKey::with(kid, Algorithm::ES256, encoding)
    }

    /// An RSA 2048 key for RS384 (or RS256). Generated once per test binary
    /// and per `slot`, since RSA generation is slow.
    pub fn rsa(kid: &str, alg: Algorithm, slot: usize) -> TestKey {
        static KEYS: OnceLock<Mutex<Vec<Option<String>>>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| Mutex::new(vec![None; 4]));
        let pem = {
            let mut keys = keys.lock().unwrap();
            keys[slot].get_or_insert_with(rsa_pem).clone()
        };
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA key");
        TestKey::with(kid, alg, encoding)
    }

    fn with(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        TestKey {
            kid: kid.into(),
            alg,
            encoding,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    /// The same key material under another `kid`.
    pub fn renamed(&self, kid: &str) -> TestKey {
        let mut key = self.clone();
        key.kid = kid.into();
        key.jwk["kid"] = json!(kid);
        key
    }

    /// Signs `claims` with header `alg`, `typ: JWT` and `kid` (and `jku`).
    pub fn sign(&self, claims: &Value, jku: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.jku = jku.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

fn rsa_pem() -> String {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa key");
    key.to_pkcs1_pem(LineEnding::LF).expect("pem").to_string()
}

/// A JWKS of the public keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// CDS Hooks claims as the sandbox sends them: iss, aud, iat, exp = iat + 300, a uuid jti.
pub fn claims(iss: &str, aud: &str) -> Value {
    let iat = now();
    json!({"iss": iss, "aud": aud, "iat": iat, "exp": iat + 300, "jti": uuid::Uuid::new_v4().to_string()})
}

/// A trusted client entry with default algorithms.
pub fn client(iss: &str) -> TrustedClient {
    TrustedClient {
        iss: iss.into(),
        jwks_file: None,
        jwks_url: None,
        jku_allowlist: Vec::new(),
        algorithms: default_algorithms(),
        tenants: Vec::new(),
    }
}

/// Writes `jwks` to a temporary file kept for the whole test binary.
pub fn jwks_file(jwks: &Value) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(format!("{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(jwks).unwrap()).unwrap();
    path
}

/// Test settings with these trusted clients (loopback, so `aud` is the bound address).
pub fn auth_settings(clients: Vec<TrustedClient>) -> Settings {
    let mut settings = test_settings();
    settings.auth.clients = clients;
    settings
}

/// hookwise trusting `clients`.
pub async fn spawn_auth_app(clients: Vec<TrustedClient>) -> TestApp {
    spawn_app_with(auth_settings(clients)).await
}

/// A raw response: status, headers and body text.
pub struct Raw {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl TestApp {
    /// The URL of `path` on this server (what `aud` must be).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method` to `path` with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Raw {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(body).unwrap());
        }
        let response = request.send().await.expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = response.headers().clone();
        Raw {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    /// POSTs `body` to `path` with `token`.
    pub async fn post_token(&self, path: &str, token: &str, body: &Value) -> Raw {
        self.send(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// GETs `path` with `token`.
    pub async fn get_token(&self, path: &str, token: &str) -> Raw {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }
}

/// A fake EHR JWKS endpoint: serves `set` at every path and records the paths asked.
pub struct FakeJwks {
    pub addr: SocketAddr,
    pub set: Arc<Mutex<Value>>,
    pub hits: Arc<Mutex<Vec<String>>>,
}

impl FakeJwks {
    /// The URL of `path` on the fake server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

type JwksState = (Arc<Mutex<Value>>, Arc<Mutex<Vec<String>>>);

/// Starts a fake JWKS server.
pub async fn fake_jwks(set: Value) -> FakeJwks {
    let set = Arc::new(Mutex::new(set));
    let hits = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .fallback(serve_jwks)
        .with_state((set.clone(), hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeJwks { addr, set, hits }
}

async fn serve_jwks(State((set, hits)): State<JwksState>, request: Request) -> Response {
    hits.lock().unwrap().push(request.uri().path().to_string());
    let body = set.lock().unwrap().clone();
    axum::Json(body).into_response()
}
