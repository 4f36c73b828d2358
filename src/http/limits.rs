//! Request limits enforced by the HTTP layer: JSON nesting depth, prefetch
//! keys and draft orders per call, and concurrent requests (503 with
//! `Retry-After` when every slot is taken). Body size, the body read
//! timeout and the in-flight body budget are enforced where bodies are
//! received ([`super::body`]); the call deadline is the engine's.
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
use std::time::Duration;
use tokio::sync::Semaphore;

/// The configurable limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
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
    /// Time a request has to deliver its body, from the end of its head.
    pub body_read_timeout: Duration,
    /// `Retry-After` seconds on a 503.
    pub retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let settings = crate::config::Settings::default();
        Limits {
            max_body_bytes: settings.max_body_bytes,
            max_json_depth: settings.max_json_depth,
            max_prefetch_keys: settings.max_prefetch_keys,
            max_draft_orders: settings.max_draft_orders,
            max_concurrent_requests: settings.max_concurrent_requests,
            max_inflight_body_bytes: settings.max_inflight_body_bytes,
            body_read_timeout: settings.body_read_timeout(),
            retry_after_secs: settings.retry_after_secs,
        }
    }
}

impl Limits {
    /// Refuses bodies nested deeper than allowed, before they are parsed.
    pub fn check_depth(&self, body: &[u8]) -> Result<(), ApiError> {
        match depth_exceeded(body, self.max_json_depth) {
            Some(offset) => Err(ApiError::BadRequest {
                path: String::new(),
                message: format!(
                    "JSON nested deeper than {} levels (at byte {offset})",
                    self.max_json_depth
                ),
            }),
            None => Ok(()),
        }
    }

    /// Refuses calls with too many prefetch keys or draft orders.
    pub fn check_counts(&self, request: &CdsRequest<'_>) -> Result<(), ApiError> {
        let (prefetch_keys, draft_orders) =
            (request.prefetch_key_count(), request.draft_order_count());
        if prefetch_keys > self.max_prefetch_keys {
            return Err(ApiError::OverLimit {
                path: "prefetch".into(),
                message: format!(
                    "{} prefetch keys; at most {} are accepted",
                    prefetch_keys, self.max_prefetch_keys
                ),
            });
        }
        if draft_orders > self.max_draft_orders {
            return Err(ApiError::OverLimit {
                path: "context.draftOrders".into(),
                message: format!(
                    "{} draft orders; at most {} are accepted",
                    draft_orders, self.max_draft_orders
                ),
            });
        }
        Ok(())
    }
}

/// Answers 503 with `Retry-After` when every request slot is taken.
pub async fn limit_concurrency(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(slot) = gate.slots.clone().try_acquire_owned() else {
        tracing::debug!("concurrency limit reached; answering 503");
        let retry_after = gate.retry_after_secs;
        return ApiError::Overloaded { retry_after }.into_response();
    };
    let response = next.run(request).await;
    drop(slot);
    response
}

/// The concurrency limiter's state.
pub struct Gate {
    slots: Arc<Semaphore>,
    retry_after_secs: u64,
}

impl Gate {
    /// A gate admitting `limits.max_concurrent_requests` at once.
    pub fn new(limits: &Limits) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            retry_after_secs: limits.retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_measured_outside_strings() {
        assert_eq!(depth_exceeded(b"[[[]]]", 3), None);
        assert_eq!(depth_exceeded(b"[[[[]]]]", 3), Some(3));
        assert_eq!(depth_exceeded(br#"["[[[[[["]"#, 2), None);
    }
}
