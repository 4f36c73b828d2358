//! HTTP: the axum router, its handlers, and the one error type whose
//! responses are OperationOutcome JSON.

mod error;

pub use error::ApiError;

use crate::cds::{Discovery, ServiceDescriptor};
use crate::pipeline::{CallError, Engine};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

/// Shared state of the HTTP layer.
pub struct AppState {
    /// The request path's engine.
    pub engine: Engine,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/cds-services", get(discovery))
        .route("/cds-services/{id}", post(call_service))
        .route("/cds-services/{id}/feedback", post(feedback))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(answer_preflight))
        .with_state(state)
}

/// `GET /cds-services`: one entry per (service, hook).
async fn discovery(State(state): State<Arc<AppState>>) -> Json<Discovery> {
    Json(discovery_document(&state.engine))
}

/// The discovery document, with prefetch templates derived from the rules.
pub fn discovery_document(engine: &Engine) -> Discovery {
    let rules = &engine.rules;
    let services = rules
        .services
        .iter()
        .flat_map(|service| {
            service.hooks.iter().map(move |hook| ServiceDescriptor {
                hook: hook.as_str().to_string(),
                id: service.id.clone(),
                title: service.title.clone(),
                description: service.description.clone(),
                prefetch: rules
                    .advertised_prefetch(service, *hook)
                    .iter()
                    .map(|k| (k.key.to_string(), Value::String(k.template.clone())))
                    .collect::<Map<String, Value>>(),
                usage_requirements: service.usage_requirements.clone(),
            })
        })
        .collect();
    Discovery { services }
}

/// `POST /cds-services/{id}`.
async fn call_service(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let body = body?;
    let result = state.engine.call(&id, &body, OffsetDateTime::now_utc()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(call) => {
            tracing::info!(service = %id, hook = %call.hook, cards = call.response.cards.len(),
                deadline_exceeded = call.deadline_exceeded, latency_ms, "service call");
            Ok(Json(call.response).into_response())
        }
        Err(error) => {
            tracing::info!(service = %id, outcome = error_kind(&error), latency_ms, "service call rejected");
            Err(error.into())
        }
    }
}

fn error_kind(error: &CallError) -> &'static str {
    match error {
        CallError::UnknownService(_) => "unknown-service",
        CallError::BadRequest { .. } => "bad-request",
        CallError::PreconditionFailed(_) => "precondition-failed",
    }
}

/// `POST /cds-services/{id}/feedback`: accepted for known services. Storage
/// and measurement of feedback come with the feedback store.
async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    if state.engine.rules.service(&id).is_none() {
        return Err(CallError::UnknownService(id).into());
    }
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("", format!("invalid JSON: {e}")))?;
    if !parsed.get("feedback").is_some_and(Value::is_array) {
        return Err(ApiError::bad_request("feedback", "must be an array of feedback entries"));
    }
    Ok(StatusCode::OK.into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; CDS services are listed at /cds-services")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Browsers preflight every path (the EHR sends `Authorization`), so every
/// `OPTIONS` gets an answer instead of a 404 or 405.
async fn answer_preflight(request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        return next.run(request).await;
    }
    (
        StatusCode::NO_CONTENT,
        [(header::ALLOW, "GET, POST, OPTIONS")],
    )
        .into_response()
}
