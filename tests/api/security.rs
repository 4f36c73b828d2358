//! CDS client JWT authentication, over a real socket with keys made here.
//! Every rejection must be an empty 401.

use crate::common;

use axum::http::StatusCode;
use common::auth::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const EHR: &str = "https://ehr.example.org";
const DISCOVERY: &str = "/cds-services";
const CW: &str = "/cds-services/choosing-wisely-order-select";
const CW_FEEDBACK: &str = "/cds-services/choosing-wisely-order-select/feedback";

fn feedback_body() -> Value {
    json!({"feedback": [{"card": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "outcome": "overridden",
        "outcomeTimestamp": "2026-01-01T10:00:00Z"}]})
}

fn call_body() -> Value {
    // No usable draft: an answer of no cards that needs no data.
    let draft = json!({"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order"});
    order_request("order-select", vec![draft], None)
}

/// hookwise trusting `EHR` with a pinned ES384 key, and that key.
async fn es384_app() -> (TestApp, TestKey) {
    let key = TestKey::es384("ehr-key-1");
    let mut ehr = client(EHR);
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    (spawn_auth_app(vec![ehr]).await, key)
}

fn assert_401(raw: &Raw, what: &str) {
    assert_eq!(raw.status, StatusCode::UNAUTHORIZED, "{what}: {}", raw.body);
    assert!(
        raw.body.is_empty(),
        "{what}: a 401 carries no detail, got {:?}",
        raw.body
    );
    assert_eq!(
        raw.headers.get("www-authenticate").unwrap(),
        "Bearer",
        "{what}"
    );
}

/// A token with a service-call audience for `app`, with `edit` applied to the claims.
fn token_with(app: &TestApp, key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims(EHR, &app.url(CW));
    edit(&mut claims);
    key.sign(&claims, None)
}

/// POSTs the call to `CW` with `token` and asserts a 200; `what` names
/// the case.
async fn assert_ok_call(app: &TestApp, token: &str, what: &str) {
    let raw = app.post_token(CW, token, &call_body()).await;
    assert_eq!(raw.status, StatusCode::OK, "{what}: {}", raw.body);
}

/// base64url without padding, as JWS uses.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_valid_es384_token_passes_on_every_endpoint() {
    let (app, key) = es384_app().await;
    let raw = app
        .get_token(
            DISCOVERY,
            &key.sign(&claims(EHR, &app.url(DISCOVERY)), None),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
    assert!(raw.body.contains("choosing-wisely"));
    let raw = app
        .post_token(
            CW,
            &key.sign(&claims(EHR, &app.url(CW)), None),
            &call_body(),
        )
        .await;
    assert_eq!(
        (raw.status, raw.body.as_str()),
        (StatusCode::OK, r#"{"cards":[]}"#)
    );
    let raw = app
        .post_token(
            CW_FEEDBACK,
            &key.sign(&claims(EHR, &app.url(CW_FEEDBACK)), None),
            &feedback_body(),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
}

#[tokio::test]
async fn a_valid_rs384_token_from_a_jwks_url_passes() {
    let key = TestKey::rsa("rsa-1", Algorithm::RS384, 0);
    let server = fake_jwks(jwks(&[&key])).await;
    let mut ehr = client(EHR);
    ehr.jwks_url = Some(server.url("/jwks.json"));
    let app = spawn_auth_app(vec![ehr]).await;
    for _ in 0..3 {
        assert_ok_call(&app, &token_with(&app, &key, |_| {}), "RS384").await;
    }
    assert_eq!(server.hits("/jwks.json"), 1, "the JWKS is cached");
}

#[tokio::test]
async fn epic_style_rs384_with_sub_nbf_and_its_jku_passes() {
    let key = TestKey::rsa("epic-1", Algorithm::RS384, 0);
    let server = fake_jwks(jwks(&[&key])).await;
    let jku = server.url("/api/epic/2019/Security/Open/PublicKeys/1/jwks.json");
    let mut epic = client("https://fhir.hospital.example.org/interconnect-fhir-oauth/api/FHIR/R4");
    epic.jwks_url = Some(jku.clone());
    epic.algorithms = vec!["RS384".into()];
    let app = spawn_auth_app(vec![epic.clone()]).await;
    let mut claims = claims(&epic.iss, &format!("{}/", app.url(CW))); // trailing slash, as hand-configured audiences have
    let iat = claims["iat"].as_u64().unwrap();
    claims["sub"] = json!("epic-cds-client-id");
    claims["nbf"] = json!(iat - 300);
    let raw = app
        .post_token(CW, &key.sign(&claims, Some(&jku)), &call_body())
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
}

#[tokio::test]
async fn no_token_is_401_on_every_path() {
    let (app, _) = es384_app().await;
    for (method, path) in [
        (reqwest::Method::GET, DISCOVERY),
        (reqwest::Method::POST, CW),
        (reqwest::Method::POST, CW_FEEDBACK),
        (reqwest::Method::POST, "/cds-services/unknown"),
        (reqwest::Method::GET, "/elsewhere"),
    ] {
        let raw = app.send(method, path, None, Some(&call_body())).await;
        assert_401(&raw, path);
    }
    let raw = app
        .client
        .get(app.url(DISCOVERY))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 401);
}

#[tokio::test]
async fn alg_none_is_401() {
    let (app, key) = es384_app().await;
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    let payload = claims(EHR, &app.url(CW));
    for signature in ["", "AAAA"] {
        let token = format!(
            "{}.{}.{signature}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        assert_401(&app.post_token(CW, &token, &call_body()).await, "alg none");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_as_secret_is_401() {
    let (app, key) = es384_app().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    for secret in [
        key.jwk.to_string(),
        jwks(&[&key]).to_string(),
        key.jwk["x"].as_str().unwrap().to_string(),
    ] {
        let token = jsonwebtoken::encode(
            &header,
            &claims(EHR, &app.url(CW)),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert_401(&app.post_token(CW, &token, &call_body()).await, "HS256");
    }
}

#[tokio::test]
async fn a_wrong_audience_is_401() {
    let (app, key) = es384_app().await;
    for aud in [
        app.url(DISCOVERY),
        app.url("/cds-services/deprescribing-patient-view"),
        "https://other.example.org/cds-services/choosing-wisely-order-select".into(),
    ] {
        let token = token_with(&app, &key, |c| c["aud"] = json!(aud));
        assert_401(&app.post_token(CW, &token, &call_body()).await, &aud);
    }
    let token = token_with(&app, &key, |c| {
        drop(c.as_object_mut().unwrap().remove("aud"))
    });
    assert_401(&app.post_token(CW, &token, &call_body()).await, "no aud");
    // A list of audiences passes when one is the URL invoked.
    let token = token_with(&app, &key, |c| {
        c["aud"] = json!(["https://x.example.org", app.url(CW)])
    });
    assert_ok_call(&app, &token, "a list of audiences").await;
}

#[tokio::test]
async fn feedback_accepts_its_own_url_and_the_service_url_as_audience() {
    let (app, key) = es384_app().await;
    for aud in [
        app.url(CW_FEEDBACK),
        app.url(CW),
        format!("{}/", app.url(CW_FEEDBACK)),
    ] {
        let token = key.sign(&claims(EHR, &aud), None);
        let raw = app.post_token(CW_FEEDBACK, &token, &feedback_body()).await;
        assert_eq!(raw.status, StatusCode::OK, "aud {aud}: {}", raw.body);
    }
    let token = key.sign(
        &claims(EHR, &app.url("/cds-services/deprescribing-patient-view")),
        None,
    );
    assert_401(
        &app.post_token(CW_FEEDBACK, &token, &feedback_body()).await,
        "another service's URL",
    );
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let (app, key) = es384_app().await;
    let token = token_with(&app, &key, |c| {
        c["iat"] = json!(now() - 900);
        c["exp"] = json!(now() - 600);
    });
    assert_401(&app.post_token(CW, &token, &call_body()).await, "expired");
    // Within the clock skew (60 s) it still passes.
    let token = token_with(&app, &key, |c| {
        c["iat"] = json!(now() - 300);
        c["exp"] = json!(now() - 30);
    });
    assert_ok_call(&app, &token, "within the clock skew").await;
}

#[tokio::test]
async fn nbf_in_the_future_is_401() {
    let (app, key) = es384_app().await;
    let token = token_with(&app, &key, |c| c["nbf"] = json!(now() + 600));
    assert_401(&app.post_token(CW, &token, &call_body()).await, "nbf");
}

#[tokio::test]
async fn iat_in_the_future_or_a_long_lifetime_is_401() {
    let (app, key) = es384_app().await;
    let token = token_with(&app, &key, |c| {
        c["iat"] = json!(now() + 600);
        c["exp"] = json!(now() + 900);
    });
    assert_401(&app.post_token(CW, &token, &call_body()).await, "iat");
    let token = token_with(&app, &key, |c| c["exp"] = json!(now() + 86_400));
    assert_401(&app.post_token(CW, &token, &call_body()).await, "lifetime");
    for missing in ["iat", "jti", "exp", "iss"] {
        let token = token_with(&app, &key, |c| {
            drop(c.as_object_mut().unwrap().remove(missing))
        });
        assert_401(&app.post_token(CW, &token, &call_body()).await, missing);
    }
}

#[tokio::test]
async fn a_replayed_jti_is_401() {
    let (app, key) = es384_app().await;
    let token = token_with(&app, &key, |_| {});
    assert_ok_call(&app, &token, "first use").await;
    assert_401(
        &app.post_token(CW, &token, &call_body()).await,
        "same token again",
    );
    let jti = uuid::Uuid::new_v4().to_string();
    let first = token_with(&app, &key, |c| c["jti"] = json!(jti));
    let second = token_with(&app, &key, |c| {
        c["jti"] = json!(jti);
        c["iat"] = json!(now() - 1);
    });
    assert_ok_call(&app, &first, "first use of the jti").await;
    assert_401(
        &app.post_token(CW, &second, &call_body()).await,
        "another token with the same jti",
    );
}

/// RFC 7515 §4.1.11: hookwise understands no JWS extension, so a validly
/// signed token whose header has `crit` is refused, whatever it lists.
#[tokio::test]
async fn a_signed_token_with_crit_is_401() {
    let (app, key) = es384_app().await;
    let sign = |crit: Option<Value>| {
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        if let Some(crit) = crit {
            header.extras.insert("crit", crit);
        }
        jsonwebtoken::encode(&header, &claims(EHR, &app.url(CW)), &key.encoding).unwrap()
    };
    assert_ok_call(&app, &sign(None), "the same token without crit").await;
    let mut typed = Header::new(key.alg);
    typed.kid = Some(key.kid.clone());
    typed.crit = Some(vec!["exp".into()]);
    let typed = jsonwebtoken::encode(&typed, &claims(EHR, &app.url(CW)), &key.encoding).unwrap();
    assert_401(
        &app.post_token(CW, &typed, &call_body()).await,
        "crit [exp]",
    );
    for crit in [json!(["http://example.org/ext"]), json!([]), Value::Null] {
        let token = sign(Some(crit.clone()));
        assert_401(
            &app.post_token(CW, &token, &call_body()).await,
            &crit.to_string(),
        );
    }
}

#[tokio::test]
async fn an_unknown_issuer_is_401() {
    let (app, key) = es384_app().await;
    let token = token_with(&app, &key, |c| {
        c["iss"] = json!("https://intruder.example.org")
    });
    assert_401(&app.post_token(CW, &token, &call_body()).await, "iss");
}

#[tokio::test]
async fn an_unknown_kid_is_401() {
    let (app, key) = es384_app().await;
    let token = key
        .renamed("not-in-the-jwks")
        .sign(&claims(EHR, &app.url(CW)), None);
    assert_401(&app.post_token(CW, &token, &call_body()).await, "kid");
    let mut header = Header::new(Algorithm::ES384);
    header.kid = None;
    let token = jsonwebtoken::encode(&header, &claims(EHR, &app.url(CW)), &key.encoding).unwrap();
    assert_401(&app.post_token(CW, &token, &call_body()).await, "no kid");
}

#[tokio::test]
async fn a_jku_off_the_allowlist_is_401_and_never_fetched() {
    let key = TestKey::es384("k1");
    let attacker = TestKey::es384("k1");
    let server = fake_jwks(jwks(&[&attacker])).await;
    let good = fake_jwks(jwks(&[&key])).await;
    let mut ehr = client(EHR);
    ehr.jwks_url = Some(good.url("/jwks.json"));
    ehr.jku_allowlist = vec![good.url("/rotated.json")];
    let app = spawn_auth_app(vec![ehr]).await;
    let token = attacker.sign(&claims(EHR, &app.url(CW)), Some(&server.url("/evil.json")));
    assert_401(&app.post_token(CW, &token, &call_body()).await, "jku");
    assert_eq!(
        server.hits("/evil.json"),
        0,
        "an off-list jku is never fetched"
    );
    // Allowlisted jkus and the configured URL are used.
    for jku in [good.url("/rotated.json"), good.url("/jwks.json")] {
        let token = key.sign(&claims(EHR, &app.url(CW)), Some(&jku));
        assert_ok_call(&app, &token, &jku).await;
    }
}

#[tokio::test]
async fn a_tampered_payload_is_401() {
    let (app, key) = es384_app().await;
    let token = key.sign(&claims(EHR, &app.url(DISCOVERY)), None);
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut payload = claims(EHR, &app.url(CW));
    payload["jti"] = json!("tampered");
    parts[1] = b64(payload.to_string().as_bytes());
    assert_401(
        &app.post_token(CW, &parts.join("."), &call_body()).await,
        "tampered",
    );
}

#[tokio::test]
async fn a_signature_from_another_key_is_401() {
    let (app, _) = es384_app().await;
    let impostor = TestKey::es384("ehr-key-1"); // same kid, other key
    assert_401(
        &app.post_token(
            CW,
            &impostor.sign(&claims(EHR, &app.url(CW)), None),
            &call_body(),
        )
        .await,
        "EC",
    );
    let rsa = TestKey::rsa("ehr-key-1", Algorithm::RS384, 1); // same kid, other algorithm family
    assert_401(
        &app.post_token(
            CW,
            &rsa.sign(&claims(EHR, &app.url(CW)), None),
            &call_body(),
        )
        .await,
        "RSA",
    );
}

#[tokio::test]
async fn es256_and_rs256_pass_only_where_configured() {
    let es256 = TestKey::es256("p256");
    let rs256 = TestKey::rsa("rs256", Algorithm::RS256, 2);
    let keys = jwks_file(&jwks(&[&es256, &rs256]));
    let mut strict = client(EHR);
    strict.jwks_file = Some(keys.clone());
    let app = spawn_auth_app(vec![strict.clone()]).await;
    for key in [&es256, &rs256] {
        assert_401(
            &app.post_token(
                CW,
                &key.sign(&claims(EHR, &app.url(CW)), None),
                &call_body(),
            )
            .await,
            &key.kid,
        );
    }
    let mut lenient = strict;
    lenient.algorithms = vec!["ES256".into(), "RS256".into()];
    let app = spawn_auth_app(vec![lenient]).await;
    for key in [&es256, &rs256] {
        assert_ok_call(&app, &token_with(&app, key, |_| {}), &key.kid).await;
    }
}

#[tokio::test]
async fn a_tenant_allowlist_requires_a_listed_tenant() {
    let key = TestKey::es384("t1");
    let mut ehr = client(EHR);
    ehr.jwks_file = Some(jwks_file(&jwks(&[&key])));
    ehr.tenants = vec!["hospital-a".into()];
    let app = spawn_auth_app(vec![ehr]).await;
    let ok = token_with(&app, &key, |c| c["tenant"] = json!("hospital-a"));
    assert_ok_call(&app, &ok, "listed tenant").await;
    let other = token_with(&app, &key, |c| c["tenant"] = json!("hospital-b"));
    assert_401(
        &app.post_token(CW, &other, &call_body()).await,
        "other tenant",
    );
    assert_401(
        &app.post_token(CW, &token_with(&app, &key, |_| {}), &call_body())
            .await,
        "no tenant",
    );
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_once_within_the_floor() {
    let old = TestKey::es384("2025");
    let new = TestKey::es384("2026");
    let server = fake_jwks(jwks(&[&old])).await;
    let mut ehr = client(EHR);
    ehr.jwks_url = Some(server.url("/jwks.json"));

    // A floor of 0: a rotated key is found by one refresh.
    let mut settings = auth_settings(vec![ehr.clone()]);
    settings.auth.jwks_refresh_floor_secs = 0;
    let app = spawn_app_with(settings).await;
    assert_ok_call(&app, &token_with(&app, &old, |_| {}), "old key").await;
    *server.set.lock().unwrap() = jwks(&[&old, &new]);
    assert_ok_call(&app, &token_with(&app, &new, |_| {}), "rotated key").await;
    assert_eq!(server.hits("/jwks.json"), 2);

    // The default floor (60 s): a flood of unknown kids costs the EHR no more requests.
    let app = spawn_auth_app(vec![ehr]).await;
    let before = server.hits("/jwks.json");
    assert_ok_call(&app, &token_with(&app, &old, |_| {}), "old key").await;
    for i in 0..20 {
        let token = old
            .renamed(&format!("bogus-{i}"))
            .sign(&claims(EHR, &app.url(CW)), None);
        assert_401(&app.post_token(CW, &token, &call_body()).await, "bogus kid");
    }
    assert_eq!(
        server.hits("/jwks.json") - before,
        1,
        "one fetch, no refresh inside the floor"
    );
}

/// The sandbox signs each call with ES384, header kid + jku, claims iss,
/// aud = the URL called, exp = iat + 300, a uuid jti, no sub or tenant.
fn sandbox_token(key: &TestKey, aud: &str) -> String {
    let claims = claims(SANDBOX_ISS, aud);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    key.sign(&claims, Some(SANDBOX_JKU))
}

#[tokio::test]
async fn a_sandbox_shaped_token_is_verified_against_a_pinned_jwks() {
    // The sandbox's real public JWKS, pinned from a file: it parses, its kid
    // resolves, and a signature made by any other key fails.
    let mut sandbox = client(SANDBOX_ISS);
    sandbox.jwks_file = Some(root().join("tests/data/cds-hooks-sandbox-jwks.json"));
    let app = spawn_auth_app(vec![sandbox.clone()]).await;
    let ours = TestKey::es384(SANDBOX_KID);
    assert_401(
        &app.post_token(CW, &sandbox_token(&ours, &app.url(CW)), &call_body())
            .await,
        "not the sandbox's key",
    );

    // The same shape signed by a key we hold, pinned under the sandbox kid:
    // the claim handling accepts exactly what the sandbox sends, on every
    // endpoint, and never fetches the jku.
    let published: Value =
        serde_json::from_slice(&std::fs::read(sandbox.jwks_file.as_ref().unwrap()).unwrap())
            .unwrap();
    let mut shaped = ours.jwk.clone();
    for field in ["kty", "use", "crv", "kid", "alg"] {
        assert_eq!(shaped[field], published["keys"][0][field], "{field}");
    }
    shaped["kid"] = json!(SANDBOX_KID);
    sandbox.jwks_file = Some(jwks_file(&json!({"keys": [shaped]})));
    let app = spawn_auth_app(vec![sandbox]).await;
    let raw = app
        .get_token(DISCOVERY, &sandbox_token(&ours, &app.url(DISCOVERY)))
        .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_ok_call(&app, &sandbox_token(&ours, &app.url(CW)), "sandbox-shaped").await;
    // The sandbox signs feedback with aud = {service-url}/feedback.
    let raw = app
        .post_token(
            CW_FEEDBACK,
            &sandbox_token(&ours, &app.url(CW_FEEDBACK)),
            &feedback_body(),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
}
