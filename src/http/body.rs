//! Reading request bodies: the one place a body is received, behind the JWT
//! check, so that only authenticated callers make hookwise wait for bytes
//! or hold memory for them.
//!
//! [`read_body`] receives the whole body before the handler runs:
//!
//! - within the body read timeout, counted from the request's arrival (the
//!   end of its head): slower gets 408;
//! - within `max_body_bytes`: a larger `Content-Length` gets 413 before any
//!   byte is read, a longer body 413 once it passes the limit;
//! - charged to the in-flight body budget (`max_inflight_body_bytes`) as the
//!   bytes arrive, not by what the head declares, and held until the
//!   response: past the budget, 503 with `Retry-After`.
//!
//! A body left unread by one of these answers cannot be skipped, so the
//! answer says `Connection: close` and the connection ends.
//!
//! The handler gets the same bytes in one piece: a body that arrived in one
//! chunk is not copied, a body in several is copied once (as collecting it
//! in the extractor would).

use super::ApiError;
use super::limits::Limits;
use super::metrics::RequestStarted;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The body reader's settings and the in-flight body budget.
pub struct BodyReader {
    /// The budget, in KiB.
    budget_kib: Arc<Semaphore>,
    max_body_bytes: usize,
    timeout: Duration,
    retry_after_secs: u64,
}

impl BodyReader {
    /// A reader of bodies of at most `limits.max_body_bytes`, holding at
    /// most `limits.max_inflight_body_bytes` of them at once (never less
    /// than one largest body).
    pub fn new(limits: &Limits) -> BodyReader {
        let max_body_bytes = limits.max_body_bytes;
        let budget_kib = kib(limits.max_inflight_body_bytes).max(kib(max_body_bytes));
        BodyReader {
            budget_kib: Arc::new(Semaphore::new(budget_kib as usize)),
            max_body_bytes,
            timeout: limits.body_read_timeout,
            retry_after_secs: limits.retry_after_secs,
        }
    }

    /// Receives `body` (of `declared` length, if the head said) in full,
    /// charging the budget as its bytes arrive.
    async fn receive(&self, body: Body, declared: Option<u64>) -> Result<Received, ApiError> {
        let max = self.max_body_bytes;
        if declared.is_some_and(|length| length > max as u64) {
            return Err(ApiError::TooLarge(max));
        }
        let mut received = Received::default();
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| ApiError::BadRequest {
                path: String::new(),
                message: format!("the request body could not be read: {error}"),
            })?;
            let total = received.len + chunk.len();
            if total > max {
                return Err(ApiError::TooLarge(max));
            }
            received
                .charge(&self.budget_kib, kib(total))
                .map_err(|BudgetExhausted| {
                    tracing::debug!("in-flight body budget reached; answering 503");
                    ApiError::Overloaded {
                        retry_after: self.retry_after_secs,
                    }
                })?;
            received.push(chunk);
        }
        Ok(received)
    }
}

/// Layer: receives the request's body (see the module docs) and hands it
/// to the handler whole; the budget it took is released after the response.
pub async fn read_body(
    State(reader): State<Arc<BodyReader>>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let deadline = arrival(&request) + reader.timeout;
    let (parts, body) = request.into_parts();
    let declared = content_length(&parts.headers);
    match tokio::time::timeout_at(deadline, reader.receive(body, declared)).await {
        Ok(Ok(received)) => {
            let (bytes, charge) = received.finish();
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            drop(charge);
            response
        }
        Ok(Err(refusal)) => closing(refusal),
        Err(_elapsed) => {
            tracing::debug!("request body not received within the body read timeout");
            closing(ApiError::BodyTimeout(reader.timeout))
        }
    }
}

/// When the request arrived (its head was read): the metrics layer's
/// timestamp, which the call deadline counts from too.
fn arrival(request: &Request) -> Instant {
    request
        .extensions()
        .get::<RequestStarted>()
        .map_or_else(Instant::now, |started| started.0)
}

/// The `Content-Length` the head declares, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// The answer `refusal`, ending the connection whose request body was
/// left unread.
fn closing(refusal: ApiError) -> Response {
    let mut response = refusal.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The in-flight body budget has not enough left for a body's next bytes.
#[derive(Debug)]
struct BudgetExhausted;

/// A body as it arrives, and the budget it holds.
#[derive(Default)]
struct Received {
    /// The chunks as they arrived, joined once at the end (as axum's own
    /// body collection does). Copying each chunk into one buffer as it
    /// arrived held 15 MB more at peak under 876 KB bodies at c=16, and was
    /// about 10 % slower (docs/performance.md).
    chunks: Vec<Bytes>,
    len: usize,
    charge: Option<OwnedSemaphorePermit>,
}

impl Received {
    fn charge(&mut self, budget: &Arc<Semaphore>, total_kib: u32) -> Result<(), BudgetExhausted> {
        let held = self.charge.as_ref().map_or(0, |p| p.num_permits() as u32);
        if total_kib <= held {
            return Ok(());
        }
        let more = budget
            .clone()
            .try_acquire_many_owned(total_kib - held)
            .map_err(|_| BudgetExhausted)?;
        match &mut self.charge {
            Some(charge) => charge.merge(more),
            None => self.charge = Some(more),
        }
        Ok(())
    }

    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    fn finish(mut self) -> (Bytes, Option<OwnedSemaphorePermit>) {
        let bytes = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop().unwrap_or_default(),
            _ => {
                let mut joined = Vec::with_capacity(self.len);
                for chunk in &self.chunks {
                    joined.extend_from_slice(chunk);
                }
                Bytes::from(joined)
            }
        };
        (bytes, self.charge)
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_charged_by_the_bytes_received_in_kib() {
        let budget = Arc::new(Semaphore::new(4));
        let mut received = Received::default();
        for (chunk, held) in [(1, 1), (1000, 1), (100, 2), (1900, 3)] {
            let total = received.len + chunk;
            received.charge(&budget, kib(total)).unwrap();
            received.push(Bytes::from(vec![b'x'; chunk]));
            assert_eq!(budget.available_permits(), 4 - held, "after {total} bytes");
        }
        assert!(
            received.charge(&budget, 5).is_err(),
            "beyond the budget: refused"
        );
        assert_eq!(budget.available_permits(), 1, "a refusal takes nothing");
        let (bytes, charge) = received.finish();
        assert_eq!(bytes.len(), 3001);
        drop(charge);
        assert_eq!(budget.available_permits(), 4, "released with the body");
    }

    #[test]
    fn chunks_are_joined_in_order_and_a_single_chunk_is_not_copied() {
        let single = Bytes::from_static(b"{\"hook\":\"patient-view\"}");
        let mut received = Received::default();
        received.push(single.clone());
        let (bytes, _) = received.finish();
        assert_eq!(bytes.as_ptr(), single.as_ptr(), "the same buffer");

        let mut received = Received::default();
        for part in ["{\"a\"", ":", "1}"] {
            received.push(Bytes::from(part));
        }
        assert_eq!(received.finish().0, Bytes::from("{\"a\":1}"));
    }
}
