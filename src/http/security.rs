//! Who may call, and from which browser origins: the JWT check in front of
//! every endpoint, and CORS.
//!
//! Any authentication failure is an empty 401 with `WWW-Authenticate:
//! Bearer`; the reason goes to the debug log, never the token. A token whose
//! `jti` cannot be recorded against replay gets a 503 OperationOutcome with
//! `Retry-After` instead: it is not known to be bad, and must not pass.
//! Preflight (`OPTIONS`) is answered by the CORS layer on every path before
//! the JWT check, so it never needs a token and never gets a 404 or 405.

use super::ApiError;
use super::Policy;
use super::logging::REQUEST_ID;
use crate::auth::{AuthError, Authenticator, audiences};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Authentication in force: the verifier and the base URL audiences are built on.
pub struct AuthPolicy {
    /// The JWT verifier.
    pub authenticator: Authenticator,
    /// The URL the EHR calls, up to but excluding `/cds-services`.
    pub public_base_url: String,
}

/// Verifies the caller's JWT when authentication is configured.
pub async fn authenticate(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = &policy.auth else {
        return next.run(request).await;
    };
    let expected = audiences(&auth.public_base_url, request.uri().path());
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match auth.authenticator.verify(header, &expected).await {
        Ok(caller) => {
            tracing::Span::current().record("client", caller.iss.as_str());
            next.run(request).await
        }
        Err(AuthError::Unrecorded(why)) => {
            // Counted and warned about by the replay store; the token may be good.
            tracing::debug!(reason = %why, "token not checked against replay");
            ApiError::Unavailable {
                message: why.to_string(),
                retry_after: Some(why.retry_after_secs()),
            }
            .into_response()
        }
        Err(reason) => {
            tracing::debug!(%reason, "authentication failed");
            ApiError::Unauthorized.into_response()
        }
    }
}

/// CORS for `origins` (`*` for any): GET and POST with `Authorization` and
/// `Content-Type`, on every path.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static(REQUEST_ID)])
        .max_age(Duration::from_secs(600))
}

/// Checks a configured origin: `*`, or `scheme://host[:port]` with no path.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let trimmed = origin.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty()
                && !host.contains('/')
                && HeaderValue::from_str(trimmed).is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "CORS origin {origin:?} must be \"*\" or scheme://host[:port], e.g. https://sandbox.cds-hooks.org"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_host_only() {
        assert!(check_origin("https://sandbox.cds-hooks.org").is_ok());
        assert!(check_origin("https://sandbox.cds-hooks.org/").is_ok());
        assert!(check_origin("http://localhost:3000").is_ok());
        assert!(check_origin("*").is_ok());
        assert!(check_origin("sandbox.cds-hooks.org").is_err());
        assert!(check_origin("https://x.org/path").is_err());
    }
}
