//! The JWT itself: header, claims, signature, times and audience.
//!
//! jsonwebtoken checks the signature, `exp` and `nbf`; this file adds the
//! CDS Hooks claims (`iat`, `jti`, `tenant`) and the audience rule, and maps
//! library errors to reasons that never quote the token.

use super::AuthError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest `jti` accepted (it is kept in memory until the token expires).
const MAX_JTI_LEN: usize = 256;

/// The claims hookwise reads. `sub` and others (Epic sends `sub`) are ignored.
#[derive(Debug, Deserialize)]
pub(super) struct Claims {
    /// Audience: one URL or a list.
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch (Epic sends it).
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Nonce against replay.
    pub jti: String,
    /// Opaque organisation id.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The `aud` claim.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences; one must match.
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: String,
}

/// Seconds since the epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Decodes the header; `none`, unknown algorithms, HMAC and `crit` are
/// rejected here.
pub(super) fn header(jwt: &str) -> Result<Header, AuthError> {
    let members = header_members(jwt)?;
    // RFC 7515 §4.1.11: a recipient must refuse a JWS whose `crit` names an
    // extension it does not understand, and hookwise understands none. Any
    // `crit` member is refused, even null or empty (both invalid anyway):
    // jsonwebtoken's `Header` would read those as absent.
    if members.contains_key("crit") {
        return Err(AuthError::Malformed(
            "crit header (hookwise understands no JWS extension)",
        ));
    }
    let header: Header = serde_json::from_value(Value::Object(members))
        .map_err(|_| AuthError::Malformed("header (or alg none/unknown)"))?;
    if header.alg.family() == AlgorithmFamily::Hmac {
        return Err(AuthError::Algorithm("HMAC is never accepted"));
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(AuthError::Malformed("typ is not JWT"));
    }
    Ok(header)
}

/// The members of the JWT's protected header, as JSON.
fn header_members(jwt: &str) -> Result<Map<String, Value>, AuthError> {
    let encoded = jwt
        .split_once('.')
        .map(|(header, _)| header)
        .ok_or(AuthError::Malformed("not a JWS compact serialization"))?;
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed("header is not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed("header is not a JSON object"))
}

/// The `iss` claim, read before verification only to pick the client.
pub(super) fn unverified_issuer(jwt: &str) -> Result<String, AuthError> {
    jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(jwt)
        .map(|c| c.iss)
        .map_err(|_| AuthError::Malformed("payload or iss"))
}

/// Verifies the signature with `jwk` and `alg`, then `exp`, `nbf` and `iss`.
pub(super) fn verify(
    jwt: &str,
    jwk: &Jwk,
    alg: Algorithm,
    iss: &str,
    skew: u64,
) -> Result<Claims, AuthError> {
    let key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::KeyMismatch("unusable key"))?;
    let mut validation = Validation::new(alg);
    validation.leeway = skew;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false; // checked by `audience_matches`, which tolerates a trailing slash
    validation.set_issuer(&[iss]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Time("expired"),
            ErrorKind::ImmatureSignature => AuthError::Time("nbf in the future"),
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm("does not match the key"),
            ErrorKind::InvalidIssuer => AuthError::Malformed("iss"),
            ErrorKind::MissingRequiredClaim(_) => {
                AuthError::Malformed("a required claim is missing")
            }
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => AuthError::KeyMismatch("unusable key"),
            _ => AuthError::Malformed("claims (exp, iat, aud and jti are required)"),
        })
}

/// `iat` not in the future, a bounded lifetime, and a sane `jti`.
pub(super) fn check_times(claims: &Claims, skew: u64, max_lifetime: u64) -> Result<(), AuthError> {
    if claims.iat > now().saturating_add(skew) {
        return Err(AuthError::Time("iat in the future"));
    }
    if claims.exp.saturating_sub(claims.iat) > max_lifetime {
        return Err(AuthError::Time("lifetime (exp - iat) too long"));
    }
    if claims.nbf.is_some_and(|nbf| nbf > claims.exp) {
        return Err(AuthError::Time("nbf after exp"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(AuthError::Malformed("jti empty or too long"));
    }
    Ok(())
}

/// Whether one of the token's audiences is one of `expected`, ignoring a
/// trailing slash on either side.
pub(super) fn audience_matches(aud: &Audience, expected: &[String]) -> bool {
    let one = |a: &String| {
        expected
            .iter()
            .any(|e| e.trim_end_matches('/') == a.trim_end_matches('/'))
    };
    match aud {
        Audience::One(a) => one(a),
        Audience::Many(list) => list.iter().any(one),
    }
}

/// The audiences accepted for a call to `path` on `base` (the public base
/// URL): the URL invoked, and for `/cds-services/{id}/feedback` also the
/// service URL, since the CDS Hooks sandbox signs feedback with it.
pub fn audiences(base: &str, path: &str) -> Vec<String> {
    let base = base.trim_end_matches('/');
    let mut list = vec![format!("{base}{path}")];
    let service = path.trim_end_matches('/').strip_suffix("/feedback");
    if let Some(service) =
        service.filter(|s| s.starts_with("/cds-services/") && s.len() > "/cds-services/".len())
    {
        list.push(format!("{base}{service}"));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsigned token with `header`: `header` fails before any signature check.
    fn with_header(header: &Value) -> String {
        format!("{}.e30.", URL_SAFE_NO_PAD.encode(header.to_string()))
    }

    #[test]
    fn any_crit_member_is_refused_and_named() {
        let plain = serde_json::json!({"alg": "ES384", "typ": "JWT", "kid": "k"});
        assert!(header(&with_header(&plain)).is_ok());
        for crit in [
            serde_json::json!(["exp"]),
            serde_json::json!([]),
            Value::Null,
        ] {
            let mut members = plain.clone();
            members["crit"] = crit.clone();
            let error = header(&with_header(&members)).unwrap_err();
            assert!(
                matches!(error, AuthError::Malformed(_)) && error.to_string().contains("crit"),
                "crit {crit}: {error}"
            );
        }
    }

    #[test]
    fn feedback_accepts_the_service_url_too() {
        let list = audiences("https://cds.example.org/", "/cds-services/cw/feedback");
        assert_eq!(
            list,
            [
                "https://cds.example.org/cds-services/cw/feedback",
                "https://cds.example.org/cds-services/cw"
            ]
        );
        assert_eq!(
            audiences("https://x.org", "/cds-services"),
            ["https://x.org/cds-services"]
        );
    }

    #[test]
    fn audience_tolerates_a_trailing_slash_only() {
        let expected = audiences("https://x.org", "/cds-services/cw");
        assert!(audience_matches(
            &Audience::One("https://x.org/cds-services/cw/".into()),
            &expected
        ));
        assert!(audience_matches(
            &Audience::Many(vec!["a".into(), "https://x.org/cds-services/cw".into()]),
            &expected
        ));
        assert!(!audience_matches(
            &Audience::One("https://x.org/cds-services".into()),
            &expected
        ));
        assert!(!audience_matches(
            &Audience::One("https://x.org/cds-services/cw2".into()),
            &expected
        ));
    }
}
