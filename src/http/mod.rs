//! HTTP: the axum router, its handlers, the [`Policy`] around them
//! (authentication and CORS in [`security`], limits in [`limits`], request
//! bodies in [`body`], request logs in [`logging`]), the one error type
//! whose responses are OperationOutcome JSON, and the connections they are
//! served on ([`serve`]).
//!
//! Layers, outermost first: request log span, metrics ([`metrics`]), CORS
//! (answers every `OPTIONS`), concurrency limit, JWT check, body reader
//! (timeout, size, in-flight budget), handler. `/metrics` sits outside the
//! JWT check, behind its own access rule.

pub mod body;
mod error;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod security;
pub mod serve;

pub use self::metrics::MetricsAccess;
pub use error::ApiError;
pub use limits::Limits;

pub use security::AuthPolicy;

use crate::cds::{CdsRequest, Discovery, Hook, ServiceDescriptor, parse_request};
use crate::engine::{CallError, Engine};
use crate::pseudonym::Pseudonymizer;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use body::BodyReader;
use limits::Gate;
use logging::Outcome;
use serde_json::{Map, Value};
use std::sync::Arc;
use time::OffsetDateTime;
use tracing::Span;

/// Shared state of the HTTP layer.
pub struct AppState {
    /// The request path's engine.
    pub engine: Engine,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

/// What surrounds the handlers: who may call, from which origins, within
/// which limits, and how patient ids are hashed in logs.
pub struct Policy {
    /// JWT authentication; `None` serves anyone (loopback or explicitly allowed).
    pub auth: Option<AuthPolicy>,
    /// Allowed CORS origins (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// Per-call limits.
    pub limits: Limits,
    /// Keyed hashing of patient ids for logs.
    pub patients: Pseudonymizer,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
}

impl Policy {
    /// No authentication, no CORS origins, default limits, a random hash key.
    pub fn open() -> Policy {
        Policy {
            auth: None,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            patients: Pseudonymizer::random().unwrap_or_else(|| Pseudonymizer::new(b"hookwise")),
            metrics: MetricsAccess::Open,
        }
    }
}

/// Builds the router with an open [`Policy`] (no authentication): for
/// benchmarks and embedding. [`crate::server`] uses [`router_with`].
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Arc::new(Policy::open()))
}

/// Builds the router under `policy`.
pub fn router_with(state: Arc<AppState>, policy: Arc<Policy>) -> Router {
    let limit = state.max_body_bytes;
    let gate = Arc::new(Gate::new(&policy.limits));
    let reader = Arc::new(BodyReader::new(&policy.limits, limit));
    crate::metrics::register(&state.engine.rules.label_values());
    Router::new()
        .route("/cds-services", get(discovery))
        .route("/cds-services/{id}", post(call_service))
        .route(
            "/cds-services/{id}/feedback",
            post(routes::feedback::receive),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The body reader enforces the limit; this keeps axum's extractors
        // from applying their own (2 MB) below it.
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(reader, body::read_body))
        .layer(middleware::from_fn_with_state(
            policy.clone(),
            security::authenticate,
        ))
        .merge(metrics::routes(policy.metrics.clone()))
        .layer(middleware::from_fn_with_state(
            gate,
            limits::limit_concurrency,
        ))
        .layer(security::cors(&policy.cors_origins))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(logging::log_request))
        .layer(Extension(policy))
        .with_state(state)
}

/// `GET /cds-services`: one entry per (service, hook).
async fn discovery(State(state): State<Arc<AppState>>) -> Json<Discovery> {
    Json(discovery_document(&state.engine))
}

/// The discovery document: one entry per service (one rule family at one
/// hook, each with its own id), with prefetch templates derived from the
/// rules.
pub fn discovery_document(engine: &Engine) -> Discovery {
    let rules = &engine.rules;
    let services = rules
        .services
        .iter()
        .map(|service| {
            let family = rules.family_of(service);
            ServiceDescriptor {
                hook: service.hook.as_str().to_string(),
                id: service.id.clone(),
                title: format!("{} ({})", family.title, service.hook),
                description: family.description.clone(),
                prefetch: rules
                    .advertised_prefetch(service)
                    .iter()
                    .map(|k| (k.key.to_string(), Value::String(k.template.clone())))
                    .collect::<Map<String, Value>>(),
                usage_requirements: family.usage_requirements.clone(),
            }
        })
        .collect();
    Discovery { services }
}

/// The `{id}` of a service URL. A segment that is not UTF-8 is a 400
/// OperationOutcome like every other bad request (axum's own rejection is
/// plain text).
pub struct ServiceId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ServiceId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(ServiceId(id)),
            Err(rejection) => Err(ApiError::bad_request(
                "",
                format!("invalid service id in the URL: {}", rejection.body_text()),
            )),
        }
    }
}

/// `POST /cds-services/{id}`: the service, the body (parsed once, within
/// the depth limit), the other limits, then the engine. The span gets the
/// service, hook, hashed patient id and card count.
async fn call_service(
    State(state): State<Arc<AppState>>,
    Extension(policy): Extension<Arc<Policy>>,
    Extension(started): Extension<metrics::RequestStarted>,
    ServiceId(id): ServiceId,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let Some(service) = state.engine.rules.service(&id) else {
        return Err(CallError::unknown_service(&state.engine.rules, &id).into());
    };
    Span::current().record("service", id.as_str());
    let request = parse_request(&body, policy.limits.max_json_depth).map_err(CallError::from)?;
    record_call(&policy, &request);
    policy.limits.check_counts(&request)?;
    let call = state
        .engine
        .call(&id, &request, OffsetDateTime::now_utc(), started.0)
        .await?;
    Span::current().record("cards", call.response.cards.len());
    if !call.held.is_empty() {
        Span::current().record("held", call.held.len());
    }
    let outcome = if call.deadline_exceeded {
        "deadline-exceeded"
    } else {
        "ok"
    };
    let mut response = Json(call.response).into_response();
    response.extensions_mut().insert(Outcome(outcome));
    if let Some(issued) = call.issued {
        // For the card log layer (crate::feedback), which hashes and queues them.
        response
            .extensions_mut()
            .insert(crate::card_log::IssuedCards {
                family: state.engine.rules.family_of(service).id.clone(),
                service: id,
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
        Hook::parse(&request.hook).map_or("unsupported", Hook::as_str),
    );
    metrics::note_hook(&request.hook);
    if let Some(patient) = request.context_str("patientId") {
        span.record("patient", policy.patients.hash(patient).as_str());
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; CDS services are listed at /cds-services")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
