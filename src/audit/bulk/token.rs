//! Access tokens for the export: none, a static bearer token, or SMART
//! Backend Services (a `client_credentials` grant authenticated by a JWT
//! client assertion signed with the client's private key). A fetched token
//! is reused until shortly before it expires, or until a server refuses it.

use super::wire::{check_scheme, diagnostics, form_body, redact, small_body};
use super::{BulkAuth, BulkError, Step};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// How long a client assertion is valid: SMART allows at most five minutes.
const ASSERTION_LIFETIME_SECS: i64 = 240;

/// A token whose answer has no `expires_in` is used this long.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// A longer `expires_in` is taken as this (a day).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// A token is refreshed this long before it expires, or at a tenth of its
/// lifetime before, whichever is shorter.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the `Authorization` header comes from.
pub enum Authorizer {
    /// No header.
    None,
    /// The same `Bearer` token on every request.
    Static(String),
    /// Tokens from a SMART Backend Services token endpoint.
    Backend(Box<Backend>),
}

/// A SMART Backend Services client.
pub struct Backend {
    client_id: String,
    key_id: String,
    scope: String,
    token_url: Url,
    algorithm: Algorithm,
    key: EncodingKey,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

impl Authorizer {
    /// Reads the key and checks the token URL of `auth`.
    pub fn new(auth: BulkAuth) -> Result<Authorizer, BulkError> {
        match auth {
            BulkAuth::None => Ok(Authorizer::None),
            BulkAuth::Bearer(token) => Ok(Authorizer::Static(token)),
            BulkAuth::Backend {
                client_id,
                private_key_pem,
                token_url,
                scope,
                key_id,
            } => {
                let token_url = Url::parse(&token_url)
                    .map_err(|e| BulkError::Config(format!("the token URL is not a URL ({e})")))?;
                let (algorithm, key) = signing_key(&private_key_pem)?;
                let backend = Backend {
                    client_id,
                    key_id,
                    scope,
                    token_url,
                    algorithm,
                    key,
                    token: Mutex::new(None),
                };
                // Signing once now turns a key of the wrong curve into an
                // error before the export starts.
                backend.assertion()?;
                Ok(Authorizer::Backend(Box::new(backend)))
            }
        }
    }

    /// Checks the token endpoint's scheme.
    pub fn check(&self, insecure_http: bool) -> Result<(), BulkError> {
        match self {
            Authorizer::Backend(backend) => {
                check_scheme(&backend.token_url, insecure_http, "the token URL")
            }
            Authorizer::None | Authorizer::Static(_) => Ok(()),
        }
    }

    /// The `Authorization` header value, fetching a token if needed.
    pub async fn header(&self, http: &reqwest::Client) -> Result<Option<String>, BulkError> {
        match self {
            Authorizer::None => Ok(None),
            Authorizer::Static(token) => Ok(Some(format!("Bearer {token}"))),
            Authorizer::Backend(backend) => {
                Ok(Some(format!("Bearer {}", backend.token(http).await?)))
            }
        }
    }

    /// Drops a fetched token that a server refused; true if there was one,
    /// so that asking again may help.
    pub async fn forget(&self) -> bool {
        match self {
            Authorizer::Backend(backend) => backend.token.lock().await.take().is_some(),
            Authorizer::None | Authorizer::Static(_) => false,
        }
    }
}

/// RS384 for an RSA key (PKCS#1 or PKCS#8 PEM), ES384 for an EC key
/// (PKCS#8 PEM).
fn signing_key(pem: &str) -> Result<(Algorithm, EncodingKey), BulkError> {
    if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((Algorithm::RS384, key));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((Algorithm::ES384, key));
    }
    Err(BulkError::Config(
        "the private key is neither an RSA key (PKCS#1 or PKCS#8 PEM) nor an EC P-384 key \
         (PKCS#8 PEM)"
            .into(),
    ))
}

impl Backend {
    /// A valid token: the cached one, or a new one.
    async fn token(&self, http: &reqwest::Client) -> Result<String, BulkError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let token = self.fetch(http).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// A signed client assertion: iss = sub = client id, aud = token URL,
    /// a fresh `jti`, and the key's `kid` in the header.
    fn assertion(&self) -> Result<String, BulkError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            BulkError::Config(format!(
                "cannot sign the client assertion with the private key ({e}); \
                 EC keys must be on P-384"
            ))
        })
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Token, BulkError> {
        let url = &self.token_url;
        let assertion = self.assertion()?;
        let body = form_body(&[
            ("grant_type", "client_credentials"),
            ("scope", &self.scope),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ]);
        let mut response = http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| BulkError::transport(Step::Token, url, &e))?;
        let status = response.status().as_u16();
        let body = small_body(&mut response, Step::Token, url).await?;
        if status != 200 {
            return Err(BulkError::Status {
                step: Step::Token,
                url: redact(url),
                status,
                diagnostics: diagnostics(&body),
            });
        }
        let answer: Value = serde_json::from_slice(&body).map_err(|e| self.bad_answer(e))?;
        read_token(&answer).map_err(|reason| self.bad_answer(reason))
    }

    fn bad_answer(&self, reason: impl std::fmt::Display) -> BulkError {
        BulkError::Protocol {
            step: Step::Token,
            url: redact(&self.token_url),
            reason: format!("unusable token response: {reason}"),
        }
    }
}

/// The bearer token of a token response, and when to refresh it.
fn read_token(answer: &Value) -> Result<Token, String> {
    let value = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("no access_token")?;
    let kind = answer["token_type"].as_str().unwrap_or("bearer");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err("token_type is not bearer".into());
    }
    // `expires_in` is a number; some servers send it as a string.
    let lifetime = match &answer["expires_in"] {
        Value::Null => DEFAULT_TOKEN_LIFETIME,
        Value::String(s) => seconds(s.parse::<f64>().ok())?,
        other => seconds(other.as_f64())?,
    };
    let margin = REFRESH_MARGIN.min(lifetime / 10);
    Ok(Token {
        value: value.to_string(),
        refresh_at: Instant::now() + lifetime - margin,
    })
}

fn seconds(value: Option<f64>) -> Result<Duration, String> {
    value
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|lifetime| lifetime.min(MAX_TOKEN_LIFETIME))
        .ok_or_else(|| "expires_in is not a number of seconds".into())
}
