//! The HTTP error type: every error leaves as a 4xx (or a 503 when
//! saturated or a dependency is down) with an OperationOutcome. The 401 is
//! not one of these: it is empty, see [`super::security`].

use super::logging::Outcome;
use crate::cds::OperationOutcome;
use crate::engine::CallError;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    path: Option<String>,
    retry_after: Option<u64>,
    /// A body with several issues, sent instead of the one built from the fields above.
    outcome: Option<Box<OperationOutcome>>,
}

impl ApiError {
    /// 400 naming the offending field by JSON path.
    pub fn bad_request(path: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message: message.into(),
            path: Some(path.to_string()).filter(|p| !p.is_empty()),
            retry_after: None,
            outcome: None,
        }
    }

    /// 400 for a call over a configured limit (prefetch keys, draft orders),
    /// naming the field by JSON path.
    pub fn too_costly(path: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: "too-costly",
            ..ApiError::bad_request(path, message)
        }
    }

    /// 503 with `Retry-After`: every request slot, or the in-flight body budget, is taken.
    pub fn overloaded(retry_after_secs: u64) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "throttled",
            message: "too many requests in progress; retry shortly".into(),
            path: None,
            retry_after: Some(retry_after_secs),
            outcome: None,
        }
    }

    /// 413: the request body is larger than `max_body_bytes`.
    pub fn too_large(max_body_bytes: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too-long",
            message: format!("request body larger than {max_body_bytes} bytes"),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }

    /// 408: the request body did not arrive within the body read timeout.
    pub fn body_timeout(timeout: Duration) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "timeout",
            message: format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            message: message.into(),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "not-supported",
            message: "method not allowed on this endpoint".into(),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }
}

impl ApiError {
    /// 503: a dependency (the feedback store) is unavailable; retrying may help.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "transient",
            message: message.into(),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub fn retry_after(self, seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// 400 naming several bad fields, each `(JSON path, message)`, followed
    /// by an information issue `note` (e.g. what of the request was still done).
    pub fn bad_entries(problems: Vec<(String, String)>, note: impl Into<String>) -> Self {
        let mut problems = problems.into_iter();
        let (first_path, first) = problems.next().unwrap_or_default();
        let message = format!("{first_path}: {first}");
        let mut outcome =
            OperationOutcome::error("invalid", message.clone(), Some(first_path.clone()));
        for (path, problem) in problems {
            outcome =
                outcome.with_issue("error", "invalid", format!("{path}: {problem}"), Some(path));
        }
        outcome = outcome.with_issue("information", "informational", note, None);
        ApiError {
            outcome: Some(Box::new(outcome)),
            ..ApiError::bad_request(&first_path, message)
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::UnknownService { .. } => ApiError::not_found(error.to_string()),
            CallError::BadRequest { path, message } => {
                let message = if path.is_empty() {
                    message
                } else {
                    format!("{path}: {message}")
                };
                ApiError {
                    path: Some(path).filter(|p| !p.is_empty()),
                    ..ApiError::bad_request("", message)
                }
            }
            CallError::PreconditionFailed(message) => ApiError {
                status: StatusCode::PRECONDITION_FAILED,
                code: "incomplete",
                message,
                path: None,
                retry_after: None,
                outcome: None,
            },
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-long"
        } else {
            "invalid"
        };
        ApiError {
            status,
            code,
            message: rejection.body_text(),
            path: None,
            retry_after: None,
            outcome: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let outcome = match self.outcome {
            Some(outcome) => *outcome,
            None => OperationOutcome::error(self.code, self.message, self.path),
        };
        let mut response = (self.status, Json(outcome)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/fhir+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
            .extensions_mut()
            .insert(Outcome(log_outcome(self.code)));
        response
    }
}

/// The log outcome of an error, by its issue code.
fn log_outcome(code: &str) -> &'static str {
    match code {
        "invalid" => "bad-request",
        "not-found" => "not-found",
        "not-supported" => "method-not-allowed",
        "too-long" => "too-large",
        "too-costly" => "over-limit",
        "incomplete" => "precondition-failed",
        "throttled" => "overloaded",
        "timeout" => "body-timeout",
        "transient" => "unavailable",
        _ => "rejected",
    }
}
