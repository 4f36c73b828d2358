//! CDS client authentication: the JWT an EHR sends in `Authorization: Bearer`
//! on every call (CDS Hooks 2.0, Security and Safety).
//!
//! This module owns the trusted-client table built from
//! [`crate::config::AuthSettings`], the verification rules ([`Authenticator::verify`]),
//! key resolution ([`keys`]) and the replay store ([`replay`]). The HTTP layer
//! only extracts the header, names the audiences of the path invoked
//! ([`audiences`]) and turns any error into an empty 401 (or, for
//! [`AuthError::Unrecorded`], a 503).
//!
//! Rules, in order: a well-formed `Bearer` JWT; `alg` never `none` nor HMAC;
//! a known `iss`; `alg` allowed for that client (ES384 and RS384 by default);
//! `kid` resolved in the client's JWKS (a pinned file, a JWKS URL, or an
//! allowlisted `jku`); a valid signature; `exp`, `nbf` and `iat` within the
//! clock skew; a bounded lifetime; `aud` equal to the URL invoked; an
//! allowlisted `tenant` when the client has a tenant list; and a `jti` not
//! seen before. Reasons are for debug logs and never contain the token.
//!
//! A header with `crit` is refused: hookwise understands no JWS extension
//! (RFC 7515 §4.1.11). A `jti` that cannot be recorded is refused too, with
//! a 503 rather than a 401 ([`replay::Unrecorded`]): the token may be good,
//! but it cannot be checked against replay now.

pub mod keys;
pub mod replay;
mod token;

pub use token::audiences;

use crate::config::{AuthSettings, TrustedClient};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use keys::{KeyStore, check_url};
use replay::{ReplayStore, Unrecorded};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Why a call was not authenticated. Shown only in debug logs; never
/// contains the token or claim values other than `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// Not a decodable JWT, or a required claim is missing or mistyped.
    Malformed(&'static str),
    /// `alg` is HMAC, or not allowed for this client.
    Algorithm(&'static str),
    /// No trusted client has this `iss`.
    UnknownIssuer(String),
    /// No key with this `kid` (after one permitted refresh).
    UnknownKey,
    /// The token's `jku` is not on the client's allowlist.
    JkuNotAllowed,
    /// The client's keys could not be had.
    KeysUnavailable(String),
    /// The key in the JWKS does not suit the algorithm.
    KeyMismatch(&'static str),
    /// The signature does not verify.
    BadSignature,
    /// `exp`, `nbf`, `iat` or the lifetime is out of bounds.
    Time(&'static str),
    /// `aud` is not the URL invoked.
    WrongAudience,
    /// `tenant` is missing or not allowlisted.
    WrongTenant,
    /// The `jti` was already used.
    Replayed,
    /// The `jti` could not be recorded, so the call cannot be checked
    /// against replay: refused with a 503, not a 401.
    Unrecorded(Unrecorded),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingToken => f.write_str("no bearer token"),
            AuthError::Malformed(what) => write!(f, "malformed token: {what}"),
            AuthError::Algorithm(what) => write!(f, "algorithm rejected: {what}"),
            AuthError::UnknownIssuer(iss) => write!(f, "unknown issuer {iss:?}"),
            AuthError::UnknownKey => f.write_str("kid not found in the client's JWKS"),
            AuthError::JkuNotAllowed => f.write_str("jku is not on the client's allowlist"),
            AuthError::KeysUnavailable(why) => write!(f, "client keys unavailable: {why}"),
            AuthError::KeyMismatch(what) => write!(f, "key does not suit the token: {what}"),
            AuthError::BadSignature => f.write_str("signature does not verify"),
            AuthError::Time(what) => write!(f, "time claim rejected: {what}"),
            AuthError::WrongAudience => f.write_str("aud is not the URL invoked"),
            AuthError::WrongTenant => f.write_str("tenant missing or not allowlisted"),
            AuthError::Replayed => f.write_str("jti already used"),
            AuthError::Unrecorded(why) => write!(f, "jti not recorded: {why}"),
        }
    }
}

/// The authenticated caller, for logs.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's `iss`.
    pub iss: String,
}

/// Where a client's public keys come from.
#[derive(Debug)]
enum KeySource {
    /// Read from a file at start; a `jku` is never fetched.
    Pinned(JwkSet),
    /// Fetched from this URL (and from allowlisted `jku`s).
    Url(String),
    /// Only allowlisted `jku`s.
    JkuOnly,
}

/// One trusted client, ready to verify.
#[derive(Debug)]
struct Client {
    keys: KeySource,
    jku_allowlist: Vec<String>,
    algorithms: Vec<Algorithm>,
    tenants: Vec<String>,
}

/// Verifies CDS client JWTs; shared by all requests.
pub struct Authenticator {
    clients: HashMap<String, Client>,
    keys: KeyStore,
    replay: ReplayStore,
    skew: u64,
    max_lifetime: u64,
}

impl Authenticator {
    /// Builds the verifier, remembering `jti`s in `replay`; `Err` explains a
    /// bad client entry.
    pub fn new(settings: &AuthSettings, replay: ReplayStore) -> Result<Authenticator, String> {
        let mut clients = HashMap::new();
        for entry in &settings.clients {
            let client =
                build_client(entry).map_err(|e| format!("auth client {:?}: {e}", entry.iss))?;
            if clients.insert(entry.iss.clone(), client).is_some() {
                return Err(format!("auth client {:?} is configured twice", entry.iss));
            }
        }
        let keys = KeyStore::new(
            Duration::from_secs(settings.jwks_cache_secs),
            Duration::from_secs(settings.jwks_refresh_floor_secs),
            Duration::from_millis(settings.jwks_timeout_ms),
        )
        .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(Authenticator {
            clients,
            keys,
            replay,
            skew: settings.clock_skew_secs,
            max_lifetime: settings.max_token_lifetime_secs,
        })
    }

    /// The configured issuers, for the start-up log.
    pub fn issuers(&self) -> Vec<&str> {
        self.clients.keys().map(String::as_str).collect()
    }

    /// Checks the `Authorization` header value of a call whose acceptable
    /// audiences are `audiences` (see [`audiences`]).
    pub async fn verify(
        &self,
        authorization: Option<&[u8]>,
        audiences: &[String],
    ) -> Result<Caller, AuthError> {
        let jwt = bearer(authorization).ok_or(AuthError::MissingToken)?;
        let header = token::header(jwt)?;
        let iss = token::unverified_issuer(jwt)?;
        let client = self
            .clients
            .get(&iss)
            .ok_or_else(|| AuthError::UnknownIssuer(iss.clone()))?;
        if !client.algorithms.contains(&header.alg) {
            return Err(AuthError::Algorithm("not allowed for this client"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or(AuthError::Malformed("no kid"))?;
        let jwk = self.key(client, header.jku.as_deref(), kid).await?;
        check_key(&jwk, header.alg)?;
        let claims = token::verify(jwt, &jwk, header.alg, &iss, self.skew)?;
        token::check_times(&claims, self.skew, self.max_lifetime)?;
        if !token::audience_matches(&claims.aud, audiences) {
            return Err(AuthError::WrongAudience);
        }
        if !client.tenants.is_empty()
            && !claims
                .tenant
                .as_ref()
                .is_some_and(|t| client.tenants.contains(t))
        {
            return Err(AuthError::WrongTenant);
        }
        let ttl = Duration::from_secs(
            claims
                .exp
                .saturating_add(self.skew)
                .saturating_sub(token::now())
                .max(1),
        );
        let first_use = self.replay.first_use(&iss, &claims.jti, ttl).await;
        if !first_use.map_err(AuthError::Unrecorded)? {
            return Err(AuthError::Replayed);
        }
        Ok(Caller { iss })
    }

    /// Resolves `kid` for `client`, honouring its key source and `jku` allowlist.
    async fn key(&self, client: &Client, jku: Option<&str>, kid: &str) -> Result<Jwk, AuthError> {
        if let KeySource::Pinned(set) = &client.keys {
            return set.find(kid).cloned().ok_or(AuthError::UnknownKey);
        }
        let url = match (jku, &client.keys) {
            (Some(jku), KeySource::Url(url)) if jku == url => url.as_str(),
            (Some(jku), _) if client.jku_allowlist.iter().any(|a| a == jku) => jku,
            (Some(_), _) => return Err(AuthError::JkuNotAllowed),
            (None, KeySource::Url(url)) => url.as_str(),
            (None, _) => return Err(AuthError::KeysUnavailable("no jku and no jwks_url".into())),
        };
        self.keys.find(url, kid).await
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer(value: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(value?).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn build_client(entry: &TrustedClient) -> Result<Client, String> {
    if entry.iss.trim().is_empty() {
        return Err("iss must not be empty".into());
    }
    let algorithms = entry
        .algorithms
        .iter()
        .map(|a| parse_algorithm(a))
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err("algorithms must not be empty".into());
    }
    for url in entry.jwks_url.iter().chain(&entry.jku_allowlist) {
        check_url(url)?;
    }
    let keys = match (&entry.jwks_file, &entry.jwks_url) {
        (Some(_), Some(_)) => return Err("set jwks_file or jwks_url, not both".into()),
        (Some(file), None) => KeySource::Pinned(load_jwks(file)?),
        (None, Some(url)) => KeySource::Url(url.clone()),
        (None, None) if !entry.jku_allowlist.is_empty() => KeySource::JkuOnly,
        (None, None) => return Err("needs jwks_file, jwks_url or jku_allowlist".into()),
    };
    Ok(Client {
        keys,
        jku_allowlist: entry.jku_allowlist.clone(),
        algorithms,
        tenants: entry.tenants.clone(),
    })
}

/// Parses a configured algorithm name; HMAC and unknown names are errors.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = Algorithm::from_str(name).map_err(|_| format!("unknown algorithm {name:?}"))?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(format!(
            "{name} is symmetric (HMAC), which CDS Hooks forbids"
        ));
    }
    Ok(alg)
}

/// Reads a pinned JWKS file; every key must be usable.
pub fn load_jwks(path: &Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JWKS: {e}", path.display()))?;
    if set.keys.is_empty() {
        return Err(format!("{} holds no keys", path.display()));
    }
    for jwk in &set.keys {
        jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "{}: key {:?} is unusable: {e}",
                path.display(),
                jwk.common.key_id
            )
        })?;
    }
    Ok(set)
}

/// Checks that `jwk` is a public signing key for `alg`.
fn check_key(jwk: &Jwk, alg: Algorithm) -> Result<(), AuthError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err(AuthError::KeyMismatch("key use is not sig"));
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && Algorithm::try_from(key_alg).ok() != Some(alg)
    {
        return Err(AuthError::KeyMismatch("key alg differs from token alg"));
    }
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::RSA(rsa), _) => {
            alg.family() == AlgorithmFamily::Rsa && modulus_bits(&rsa.n) >= 2048
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(AuthError::KeyMismatch("key type, curve or size"))
    }
}

/// Approximate size of a base64url RSA modulus, in bits.
fn modulus_bits(n: &str) -> usize {
    n.trim_end_matches('=').len() * 6 / 8 * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_extracted_case_insensitively() {
        assert_eq!(bearer(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some(b"Basic abc")), None);
        assert_eq!(bearer(Some(b"Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn hmac_and_unknown_algorithms_cannot_be_configured() {
        assert!(parse_algorithm("ES384").is_ok());
        assert!(parse_algorithm("HS256").unwrap_err().contains("HMAC"));
        assert!(parse_algorithm("none").is_err());
    }

    #[test]
    fn the_sandbox_jwks_parses_into_an_es384_key() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cds-hooks-sandbox-jwks.json");
        let set = load_jwks(&path).unwrap();
        let jwk = set.find("44823f3d-0b01-4a6c-a80e-b9d3e8a7226f").unwrap();
        assert_eq!(check_key(jwk, Algorithm::ES384), Ok(()));
        assert!(check_key(jwk, Algorithm::ES256).is_err());
        assert!(check_key(jwk, Algorithm::RS384).is_err());
    }
}
