//! Request limits enforced by the HTTP layer: JSON nesting depth, prefetch
//! keys and draft orders per call, and concurrent requests and the body
//! bytes they hold (503 with `Retry-After` when either is saturated). Body
//! size is axum's `DefaultBodyLimit`, the call deadline is the engine's.
//!
//! A service call's depth is checked by the request parser on the one tree
//! it builds ([`crate::cds::parse_request`]); the counts are read from that
//! tree. Feedback bodies are scanned for depth before they are parsed.

use super::ApiError;
use crate::cds::{CdsRequest, depth_exceeded};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The configurable limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Most `prefetch` keys.
    pub max_prefetch_keys: usize,
    /// Most draft orders in `context.draftOrders`.
    pub max_draft_orders: usize,
    /// Most requests in flight.
    pub max_concurrent_requests: usize,
    /// Most request-body bytes in flight.
    pub max_inflight_body_bytes: usize,
    /// `Retry-After` seconds on a 503.
    pub retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let settings = crate::config::Settings::default();
        Limits {
            max_json_depth: settings.max_json_depth,
            max_prefetch_keys: settings.max_prefetch_keys,
            max_draft_orders: settings.max_draft_orders,
            max_concurrent_requests: settings.max_concurrent_requests,
            max_inflight_body_bytes: settings.max_inflight_body_bytes,
            retry_after_secs: settings.retry_after_secs,
        }
    }
}

impl Limits {
    /// Refuses bodies nested deeper than allowed, before they are parsed.
    pub fn check_depth(&self, body: &[u8]) -> Result<(), ApiError> {
        match depth_exceeded(body, self.max_json_depth) {
            Some(offset) => Err(ApiError::bad_request(
                "",
                format!(
                    "JSON nested deeper than {} levels (at byte {offset})",
                    self.max_json_depth
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses calls with too many prefetch keys or draft orders.
    pub fn check_counts(&self, request: &CdsRequest<'_>) -> Result<(), ApiError> {
        let (prefetch_keys, draft_orders) =
            (request.prefetch_key_count(), request.draft_order_count());
        if prefetch_keys > self.max_prefetch_keys {
            return Err(ApiError::too_costly(
                "prefetch",
                format!(
                    "{} prefetch keys; at most {} are accepted",
                    prefetch_keys, self.max_prefetch_keys
                ),
            ));
        }
        if draft_orders > self.max_draft_orders {
            return Err(ApiError::too_costly(
                "context.draftOrders",
                format!(
                    "{} draft orders; at most {} are accepted",
                    draft_orders, self.max_draft_orders
                ),
            ));
        }
        Ok(())
    }
}

/// Answers 503 with `Retry-After` when every request slot is taken, or
/// when the request's body would take the in-flight body bytes past their
/// budget.
pub async fn limit_concurrency(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(slot) = gate.slots.clone().try_acquire_owned() else {
        tracing::debug!("concurrency limit reached; answering 503");
        return ApiError::overloaded(gate.retry_after_secs).into_response();
    };
    let weight = gate.weight(&request);
    let body_bytes = match weight {
        0 => None,
        kib => match gate.body_kib.clone().try_acquire_many_owned(kib) {
            Ok(permit) => Some(permit),
            Err(_) => {
                tracing::debug!("in-flight body budget reached; answering 503");
                return ApiError::overloaded(gate.retry_after_secs).into_response();
            }
        },
    };
    let response = next.run(request).await;
    drop((slot, body_bytes));
    response
}

/// The concurrency limiter's state.
pub struct Gate {
    slots: Arc<Semaphore>,
    /// The in-flight body budget, in KiB.
    body_kib: Arc<Semaphore>,
    /// Largest body accepted, in KiB: the weight of a body of unknown length.
    max_body_kib: u32,
    retry_after_secs: u64,
}

impl Gate {
    /// A gate admitting `limits.max_concurrent_requests` at once, holding
    /// at most `limits.max_inflight_body_bytes` of bodies of at most
    /// `max_body_bytes` each.
    pub fn new(limits: &Limits, max_body_bytes: usize) -> Gate {
        let max_body_kib = kib(max_body_bytes);
        let budget_kib = kib(limits.max_inflight_body_bytes).max(max_body_kib);
        Gate {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            body_kib: Arc::new(Semaphore::new(budget_kib as usize)),
            max_body_kib,
            retry_after_secs: limits.retry_after_secs,
        }
    }

    /// What a request's body weighs against the budget, in KiB: its
    /// `Content-Length` (no body, nothing), or the largest accepted body
    /// when the length is not given (chunked).
    fn weight(&self, request: &Request) -> u32 {
        let length = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        match length {
            Some(0) => 0,
            Some(bytes) => kib(bytes).min(self.max_body_kib),
            None if has_no_body(request) => 0,
            None => self.max_body_kib,
        }
    }
}

/// Whether a request without `Content-Length` has no body either.
fn has_no_body(request: &Request) -> bool {
    request
        .headers()
        .get(axum::http::header::TRANSFER_ENCODING)
        .is_none()
}

/// Bytes in KiB, rounded up, within a semaphore's range.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_weighs_its_length_or_the_most_allowed_when_unknown() {
        let limits = Limits {
            max_inflight_body_bytes: 64 * 1024,
            ..Limits::default()
        };
        let gate = Gate::new(&limits, 16 * 1024);
        let request = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().method("POST").uri("/cds-services/x");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(gate.weight(&request(&[])), 0);
        assert_eq!(gate.weight(&request(&[("content-length", "0")])), 0);
        assert_eq!(gate.weight(&request(&[("content-length", "1")])), 1);
        assert_eq!(gate.weight(&request(&[("content-length", "3073")])), 4);
        assert_eq!(
            gate.weight(&request(&[("content-length", "999999999")])),
            16,
            "never more than the largest accepted body"
        );
        assert_eq!(
            gate.weight(&request(&[("transfer-encoding", "chunked")])),
            16
        );
    }

    #[test]
    fn depth_is_measured_outside_strings() {
        assert_eq!(depth_exceeded(b"[[[]]]", 3), None);
        assert_eq!(depth_exceeded(b"[[[[]]]]", 3), Some(3));
        assert_eq!(depth_exceeded(br#"["[[[[[["]"#, 2), None);
    }
}
