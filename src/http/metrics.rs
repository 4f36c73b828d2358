//! The HTTP side of metrics: `GET /metrics` and who may read it, and the
//! middleware that times and counts every request. What is recorded, and
//! how, is [`crate::metrics`].
//!
//! `/metrics` holds no PHI (labels are bounded, see [`crate::metrics`]) but
//! shows traffic and rule activity, so it is never open to the world when
//! the CDS services are not: see [`MetricsAccess::decide`]. Prometheus
//! cannot mint CDS Hooks JWTs, so the endpoint is outside the JWT check and
//! guarded by its own bearer token instead.

use super::{ApiError, AppState, Policy};
use crate::config::{BearerToken, Secret};
use crate::metrics::{self, UNKNOWN};
use axum::extract::State;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Router, routing::get};
use std::sync::Arc;
use tokio::time::Instant;

/// The route template of CDS service calls, whose latency is recorded.
const SERVICE_ROUTE: &str = "/cds-services/{id}";

/// Who may read `/metrics`.
#[derive(Clone)]
pub enum MetricsAccess {
    /// Anyone who can reach the server.
    Open,
    /// Callers presenting `Authorization: Bearer <token>`.
    Token(BearerToken),
    /// Nobody: authentication is on, the address is not loopback, and no
    /// `metrics_token` is set.
    Closed,
}

impl MetricsAccess {
    /// The rule: a configured `metrics_token` is always required. Without
    /// one, `/metrics` is open when the server itself runs open or listens
    /// on loopback only, and closed otherwise (it would be the one
    /// unauthenticated endpoint on a reachable address).
    pub fn decide(token: Option<&Secret>, authenticated: bool, loopback: bool) -> MetricsAccess {
        match token {
            Some(token) => MetricsAccess::Token(BearerToken::new(token)),
            None if !authenticated || loopback => MetricsAccess::Open,
            None => MetricsAccess::Closed,
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            MetricsAccess::Open => true,
            MetricsAccess::Closed => false,
            MetricsAccess::Token(token) => token.admits(
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            ),
        }
    }
}

/// The `/metrics` route, to be merged outside the JWT check.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(serve))
}

/// `GET /metrics`: the Prometheus text format, or an empty 401.
async fn serve(State(policy): State<Arc<Policy>>, headers: HeaderMap) -> Response {
    if !policy.metrics.allows(&headers) {
        tracing::debug!(
            "metrics scrape refused: missing or wrong metrics token, or metrics closed"
        );
        return ApiError::Unauthorized.into_response();
    }
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], metrics::render()).into_response()
}

/// When the request reached hookwise; the call deadline counts from here.
#[derive(Debug, Clone, Copy)]
pub struct RequestStarted(pub Instant);

/// The hook label of a service call (a hook hookwise serves, else
/// [`UNKNOWN`]), put on the response by the handler once it has read the
/// body; [`track`] labels the call's latency with it.
#[derive(Debug, Clone, Copy)]
pub struct CallHook(pub &'static str);

/// Times and counts every request: requests by route and status class;
/// for service calls also latency per service and hook, and 412s.
pub async fn track(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    request.extensions_mut().insert(RequestStarted(started));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| metrics::route_label(p.as_str()));
    if route != SERVICE_ROUTE || request.method() != Method::POST {
        let response = next.run(request).await;
        metrics::request(route, response.status().as_u16());
        return response;
    }
    let service = metrics::service_labels(service_id(request.uri().path()));
    let response = next.run(request).await;
    let hook = response
        .extensions()
        .get::<CallHook>()
        .map_or(UNKNOWN, |hook| hook.0);
    let status = response.status();
    metrics::request(route, status.as_u16());
    metrics::service_call(service, hook, started.elapsed());
    if status == StatusCode::PRECONDITION_FAILED {
        metrics::precondition_failed(service, hook);
    }
    response
}

/// The `{id}` of `/cds-services/{id}`.
fn service_id(path: &str) -> &str {
    path.strip_prefix("/cds-services/")
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn access_follows_token_authentication_and_address() {
        let token = Secret::new("scrape-me");
        assert!(matches!(
            MetricsAccess::decide(None, false, false),
            MetricsAccess::Open
        ));
        assert!(matches!(
            MetricsAccess::decide(None, true, true),
            MetricsAccess::Open
        ));
        assert!(matches!(
            MetricsAccess::decide(None, true, false),
            MetricsAccess::Closed
        ));
        let guarded = MetricsAccess::decide(Some(&token), false, true);
        assert!(guarded.allows(&with_auth("Bearer scrape-me")));
        assert!(guarded.allows(&with_auth("bearer scrape-me")));
        assert!(!guarded.allows(&with_auth("Bearer scrape-me-not")));
        assert!(!guarded.allows(&with_auth("Basic scrape-me")));
        assert!(!guarded.allows(&HeaderMap::new()));
        assert!(!MetricsAccess::Closed.allows(&with_auth("Bearer scrape-me")));
    }

    #[test]
    fn the_service_id_is_the_path_segment_after_cds_services() {
        assert_eq!(
            service_id("/cds-services/choosing-wisely-order-sign"),
            "choosing-wisely-order-sign"
        );
        assert_eq!(service_id("/cds-services/x/feedback"), "x");
        assert_eq!(service_id("/other"), "");
    }
}
