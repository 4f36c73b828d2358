//! `POST /cds-services/{id}`: a CDS service call. The service (checked by
//! [`KnownService`]), the body (parsed once, within the depth limit), the
//! other limits, then the engine. The request span gets the service, hook,
//! hashed patient id and card count; the response carries the hook label
//! for the latency metrics, the log outcome and the cards for the card log.

use super::KnownService;
use crate::card_log::IssuedCards;
use crate::cds::{CdsRequest, Hook, parse_request};
use crate::engine::{CallError, Engine};
use crate::http::logging::Outcome;
use crate::http::metrics::{CallHook, RequestStarted};
use crate::http::{ApiError, Policy};
use crate::metrics::UNKNOWN;
use crate::rules::Service;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Span;

/// The handler: parses the request, then answers it; every answer from
/// then on, errors included, is labelled with the request's hook.
pub async fn call(
    State(engine): State<Arc<Engine>>,
    State(policy): State<Arc<Policy>>,
    Extension(started): Extension<RequestStarted>,
    KnownService(service): KnownService,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let request = parse_request(&body, policy.limits.max_json_depth).map_err(CallError::from)?;
    record_call(&policy, &request);
    let hook = CallHook(request.hook.known().map_or(UNKNOWN, Hook::as_str));
    let mut response = match answer(&engine, &policy, service, &request, started.0).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(hook);
    Ok(response)
}

/// The answer to a parsed request: its limits, then the engine's cards.
async fn answer(
    engine: &Engine,
    policy: &Policy,
    service: Service,
    request: &CdsRequest<'_>,
    started: Instant,
) -> Result<Response, ApiError> {
    policy.limits.check_counts(request)?;
    let call = engine
        .call(&service.id, request, OffsetDateTime::now_utc(), started)
        .await?;
    Span::current().record("cards", call.response.cards.len());
    if !call.held.is_empty() {
        Span::current().record("held", call.held.len());
    }
    let outcome = if call.deadline_exceeded {
        Outcome::DeadlineExceeded
    } else {
        Outcome::Ok
    };
    let mut response = Json(call.response).into_response();
    response.extensions_mut().insert(outcome);
    if let Some(issued) = call.issued {
        // For the card log layer (crate::card_log), which hashes and queues them.
        response.extensions_mut().insert(IssuedCards {
            family: engine.rules.family_of(&service).id.clone(),
            service: service.id,
            hook: call.hook,
            issued,
        });
    }
    Ok(response)
}

/// Records on the request span what is safe to log about a call: a known
/// hook, and the patient id hashed.
fn record_call(policy: &Policy, request: &CdsRequest<'_>) {
    let span = Span::current();
    span.record(
        "hook",
        request.hook.known().map_or("unsupported", Hook::as_str),
    );
    if let Some(patient) = request.context_str("patientId") {
        span.record("patient", policy.patients.hash(patient).as_str());
    }
}
