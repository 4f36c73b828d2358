//! Structured request logs and their installation.
//!
//! Each request runs in a `request` span carrying a request id (the caller's
//! `X-Request-Id` when it is a short token, else a fresh uuid, echoed in the
//! response), the method and route template, and, once known, the service,
//! hook, client `iss`, card count and the patient id as a keyed hash
//! (HMAC-SHA256). One closing event gives status, outcome and latency.
//! Tokens, JWTs, names and resource bodies are never logged: handlers record
//! only the fields above, and error messages stay out of the logs.

use crate::config::LogFormat;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The request id header, read and echoed.
pub const REQUEST_ID: &str = "x-request-id";

/// A request's outcome for the closing log event, set on the response by
/// handlers and error responses; otherwise derived from the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// A service call answered with no cards: it ran out of time.
    DeadlineExceeded,
    /// A malformed request.
    BadRequest,
    /// A call over a configured limit.
    OverLimit,
    /// No valid token.
    Unauthorized,
    /// No such endpoint or service.
    NotFound,
    /// The endpoint does not take the method.
    MethodNotAllowed,
    /// The body did not arrive in time.
    BodyTimeout,
    /// Data the rules need could not be had.
    PreconditionFailed,
    /// The body is too large.
    TooLarge,
    /// Every request slot, or the in-flight body budget, is taken.
    Overloaded,
    /// A dependency is unavailable.
    Unavailable,
    /// Another 4xx.
    Rejected,
    /// A 5xx (or anything else) no handler explained.
    Error,
}

impl Outcome {
    /// The name in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::DeadlineExceeded => "deadline-exceeded",
            Outcome::BadRequest => "bad-request",
            Outcome::OverLimit => "over-limit",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not-found",
            Outcome::MethodNotAllowed => "method-not-allowed",
            Outcome::BodyTimeout => "body-timeout",
            Outcome::PreconditionFailed => "precondition-failed",
            Outcome::TooLarge => "too-large",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a response no handler labelled, by its status.
    fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            401 => Outcome::Unauthorized,
            404 => Outcome::NotFound,
            405 => Outcome::MethodNotAllowed,
            413 => Outcome::TooLarge,
            503 => Outcome::Overloaded,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Error,
        }
    }
}

/// Runs the request inside its span and logs its end.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = route.as_deref().unwrap_or("unmatched"),
        service = Empty,
        hook = Empty,
        patient = Empty,
        client = Empty,
        cards = Empty,
        held = Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .copied()
        .unwrap_or_else(|| Outcome::of_status(status))
        .as_str();
    span.in_scope(|| {
        if method == Method::OPTIONS {
            tracing::debug!(status, outcome, latency_ms, "request");
        } else {
            tracing::info!(status, outcome, latency_ms, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The caller's request id when it is 1 to 64 of `[A-Za-z0-9._-]`, else a new uuid.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// Installs the global subscriber: events passing `filter` (directive
/// syntax, e.g. `info`), as text or JSON lines, to `writer`. Fails if the
/// filter is invalid or a subscriber is already installed.
pub fn install<W>(format: LogFormat, filter: &str, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| format!("cannot install logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_only_when_harmless() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&headers), "abc-123_x.y");
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id\" injected"));
        assert_eq!(request_id(&headers).len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
