//! HTTP: the axum router, its handlers, the [`Policy`] around them
//! (authentication and CORS in [`security`], limits in [`limits`], request
//! bodies in [`body`], request logs in [`logging`]), the one error type
//! whose responses are OperationOutcome JSON, and the connections they are
//! served on ([`serve`]).
//!
//! [`router`] is the one builder of the app. Its layers, outermost first:
//! the card log (when the [`AppState`] has a recorder), request log span,
//! metrics ([`metrics`]), CORS (answers every `OPTIONS`), concurrency
//! limit, JWT check, body reader (timeout, size, in-flight budget),
//! handler. `/metrics` sits outside the JWT check, behind its own access
//! rule.

pub mod body;
mod error;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod security;
pub mod serve;
mod state;

pub use self::metrics::MetricsAccess;
pub use error::ApiError;
pub use limits::Limits;

pub use security::AuthPolicy;
pub use state::{AppState, NoRandomKey, Policy};

use crate::card_log::IssuedCards;
use crate::cds::{CdsRequest, Discovery, Hook, ServiceDescriptor, parse_request};
use crate::engine::{CallError, Engine};
use crate::rules::Service;
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
use metrics::CallHook;
use serde_json::{Map, Value};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Span;

/// Builds the app over `state`: the one way to assemble it, for the
/// server, the tests and the benchmarks alike. With a card recorder in the
/// state, the cards each call issues are queued for the card log.
pub fn router(state: AppState) -> Router {
    let recorder = state.recorder.clone();
    let app = app(state);
    match recorder {
        // Outermost: the cards are queued after the request's log line.
        Some(recorder) => app.layer(middleware::from_fn_with_state(
            recorder,
            crate::card_log::record_cards,
        )),
        None => app,
    }
}

/// The routes inside their limits, authentication, metrics and request log.
fn app(state: AppState) -> Router {
    let policy = &state.policy;
    let gate = Arc::new(Gate::new(&policy.limits));
    let reader = Arc::new(BodyReader::new(&policy.limits));
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
        .layer(DefaultBodyLimit::max(policy.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(reader, body::read_body))
        .layer(middleware::from_fn_with_state(
            policy.clone(),
            security::authenticate,
        ))
        .merge(metrics::routes())
        .layer(middleware::from_fn_with_state(
            gate,
            limits::limit_concurrency,
        ))
        .layer(security::cors(&policy.cors_origins))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(logging::log_request))
        .with_state(state)
}

/// `GET /cds-services`: one entry per (service, hook).
async fn discovery(State(engine): State<Arc<Engine>>) -> Json<Discovery> {
    Json(discovery_document(&engine))
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
    State(engine): State<Arc<Engine>>,
    State(policy): State<Arc<Policy>>,
    Extension(started): Extension<metrics::RequestStarted>,
    ServiceId(id): ServiceId,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let Some(service) = engine.rules.service(&id) else {
        return Err(CallError::unknown_service(&engine.rules, &id).into());
    };
    Span::current().record("service", id.as_str());
    let request = parse_request(&body, policy.limits.max_json_depth).map_err(CallError::from)?;
    record_call(&policy, &request);
    let hook = CallHook(Hook::parse(&request.hook).map_or(crate::metrics::UNKNOWN, Hook::as_str));
    let mut response = match answer(&engine, &policy, service, id, &request, started.0).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Errors past this point are labelled with the hook too.
    response.extensions_mut().insert(hook);
    Ok(response)
}

/// The call's answer, once its request is parsed.
async fn answer(
    engine: &Engine,
    policy: &Policy,
    service: &Service,
    id: String,
    request: &CdsRequest<'_>,
    started: Instant,
) -> Result<Response, ApiError> {
    policy.limits.check_counts(request)?;
    let call = engine
        .call(&id, request, OffsetDateTime::now_utc(), started)
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
        // For the card log layer (crate::card_log), which hashes and queues them.
        response.extensions_mut().insert(IssuedCards {
            family: engine.rules.family_of(service).id.clone(),
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
