//! The HTTP error type, one variant per cause. Every error leaves as a 4xx
//! (or a 503 when saturated or a dependency is down) with an
//! OperationOutcome, except the 401, which is empty (see
//! [`super::security`]). [`ApiError`]'s `IntoResponse` is the one table of
//! status, issue code, headers and log outcome.

use super::logging::Outcome;
use crate::cds::OperationOutcome;
use crate::engine::CallError;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Why a request was refused.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest {
        /// JSON path of the offending field; empty for the body itself.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// 400: a call over a configured limit (prefetch keys, draft orders).
    OverLimit {
        /// JSON path of the field over the limit.
        path: String,
        /// By how much.
        message: String,
    },
    /// 400: feedback entries with bad fields, each `(JSON path, message)`,
    /// followed by an information issue `note` saying what of the batch
    /// was still stored.
    BadEntries {
        /// The bad fields.
        problems: Vec<(String, String)>,
        /// What was done with the rest.
        note: String,
    },
    /// 401: no valid token. Empty, with `WWW-Authenticate: Bearer`: the
    /// reason is for the debug log only.
    Unauthorized,
    /// 404.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 408: the request body did not arrive within the body read timeout.
    BodyTimeout(Duration),
    /// 412: data the rules need could not be had.
    PreconditionFailed(String),
    /// 413: the request body is larger than `max_body_bytes` (the value).
    TooLarge(usize),
    /// 503 with `Retry-After`: every request slot, or the in-flight body
    /// budget, is taken.
    Overloaded {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 503: a dependency (the feedback store, the replay store) is
    /// unavailable; retrying may help.
    Unavailable {
        /// What is unavailable.
        message: String,
        /// Seconds to wait, when known.
        retry_after: Option<u64>,
    },
    /// The body could not be handed to the handler.
    Body(BytesRejection),
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::UnknownService { .. } => ApiError::NotFound(error.to_string()),
            CallError::BadRequest { path, message } => ApiError::BadRequest {
                message: if path.is_empty() {
                    message
                } else {
                    format!("{path}: {message}")
                },
                path,
            },
            CallError::PreconditionFailed(message) => ApiError::PreconditionFailed(message),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::Body(rejection)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let (status, logged, body, retry_after) = match self {
            ApiError::BadRequest { path, message } => (
                S::BAD_REQUEST,
                Outcome::BadRequest,
                issue("invalid", message, path),
                None,
            ),
            ApiError::OverLimit { path, message } => (
                S::BAD_REQUEST,
                Outcome::OverLimit,
                issue("too-costly", message, path),
                None,
            ),
            ApiError::BadEntries { problems, note } => (
                S::BAD_REQUEST,
                Outcome::BadRequest,
                Some(bad_entries(problems, note)),
                None,
            ),
            ApiError::Unauthorized => (S::UNAUTHORIZED, Outcome::Unauthorized, None, None),
            ApiError::NotFound(message) => (
                S::NOT_FOUND,
                Outcome::NotFound,
                issue("not-found", message, ""),
                None,
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                Outcome::MethodNotAllowed,
                issue("not-supported", "method not allowed on this endpoint", ""),
                None,
            ),
            ApiError::BodyTimeout(timeout) => (
                S::REQUEST_TIMEOUT,
                Outcome::BodyTimeout,
                issue(
                    "timeout",
                    format!(
                        "the request body did not arrive within {} ms",
                        timeout.as_millis()
                    ),
                    "",
                ),
                None,
            ),
            ApiError::PreconditionFailed(message) => (
                S::PRECONDITION_FAILED,
                Outcome::PreconditionFailed,
                issue("incomplete", message, ""),
                None,
            ),
            ApiError::TooLarge(max) => (
                S::PAYLOAD_TOO_LARGE,
                Outcome::TooLarge,
                issue(
                    "too-long",
                    format!("request body larger than {max} bytes"),
                    "",
                ),
                None,
            ),
            ApiError::Overloaded { retry_after } => (
                S::SERVICE_UNAVAILABLE,
                Outcome::Overloaded,
                issue(
                    "throttled",
                    "too many requests in progress; retry shortly",
                    "",
                ),
                Some(retry_after),
            ),
            ApiError::Unavailable {
                message,
                retry_after,
            } => (
                S::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                issue("transient", message, ""),
                retry_after,
            ),
            ApiError::Body(rejection) => {
                let status = rejection.status();
                let (code, logged) = match status {
                    S::PAYLOAD_TOO_LARGE => ("too-long", Outcome::TooLarge),
                    _ => ("invalid", Outcome::BadRequest),
                };
                (status, logged, issue(code, rejection.body_text(), ""), None)
            }
        };
        respond(status, logged, body, retry_after)
    }
}

/// A body of one error issue; `path` empty names no field.
fn issue(
    code: &'static str,
    message: impl Into<String>,
    path: impl Into<String>,
) -> Option<OperationOutcome> {
    let path = Some(path.into()).filter(|p| !p.is_empty());
    Some(OperationOutcome::error(code, message.into(), path))
}

/// One error issue per bad field, then the information issue `note`.
fn bad_entries(problems: Vec<(String, String)>, note: String) -> OperationOutcome {
    let mut problems = problems.into_iter();
    let (first_path, first) = problems.next().unwrap_or_default();
    let message = format!("{first_path}: {first}");
    let mut outcome = OperationOutcome::error("invalid", message, Some(first_path));
    for (path, problem) in problems {
        outcome = outcome.with_issue("error", "invalid", format!("{path}: {problem}"), Some(path));
    }
    outcome.with_issue("information", "informational", note, None)
}

/// The response: the OperationOutcome as `application/fhir+json`, or empty
/// with the Bearer challenge; `Retry-After` when given; the log outcome.
fn respond(
    status: StatusCode,
    logged: Outcome,
    body: Option<OperationOutcome>,
    retry_after: Option<u64>,
) -> Response {
    let mut response = match body {
        Some(outcome) => {
            let fhir_json = HeaderValue::from_static("application/fhir+json");
            let mut response = (status, Json(outcome)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, fhir_json);
            response
        }
        None => (status, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response(),
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.extensions_mut().insert(logged);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_status_log_outcome_and_headers() {
        let bad = |path: &str| ApiError::BadRequest {
            path: path.into(),
            message: "m".into(),
        };
        let cases = [
            (bad(""), 400, "bad-request"),
            (
                ApiError::OverLimit {
                    path: "prefetch".into(),
                    message: "m".into(),
                },
                400,
                "over-limit",
            ),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::NotFound("m".into()), 404, "not-found"),
            (ApiError::MethodNotAllowed, 405, "method-not-allowed"),
            (
                ApiError::BodyTimeout(Duration::from_millis(5)),
                408,
                "body-timeout",
            ),
            (
                ApiError::PreconditionFailed("m".into()),
                412,
                "precondition-failed",
            ),
            (ApiError::TooLarge(1), 413, "too-large"),
            (ApiError::Overloaded { retry_after: 2 }, 503, "overloaded"),
            (
                ApiError::Unavailable {
                    message: "m".into(),
                    retry_after: None,
                },
                503,
                "unavailable",
            ),
        ];
        for (error, status, logged) in cases {
            let what = format!("{error:?}");
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{what}");
            let outcome = response.extensions().get::<Outcome>().copied();
            assert_eq!(outcome.map(Outcome::as_str), Some(logged), "{what}");
            let content_type = response.headers().get(header::CONTENT_TYPE);
            let challenge = response.headers().get(header::WWW_AUTHENTICATE);
            match status {
                401 => assert!(content_type.is_none() && challenge.is_some(), "{what}"),
                _ => assert_eq!(
                    content_type.and_then(|v| v.to_str().ok()),
                    Some("application/fhir+json"),
                    "{what}"
                ),
            }
            let retry_after = response.headers().get(header::RETRY_AFTER);
            assert_eq!(retry_after.is_some(), logged == "overloaded", "{what}");
        }
    }
}
