//! HTTP: the axum router, its handlers, the [`Policy`] around them
//! (authentication and CORS in [`security`], limits in [`limits`], request
//! bodies in [`body`], request logs in [`logging`]), the one error type
//! ([`ApiError`], an OperationOutcome or the empty 401), and the
//! connections they are served on ([`serve`]).
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

pub use routes::discovery::discovery_document;
pub use security::AuthPolicy;
pub use state::{AppState, NoRandomKey, Policy};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::post;
use body::BodyReader;
use limits::Gate;
use std::sync::Arc;

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
        .route("/cds-services", routes::discovery::route(&state.engine))
        .route("/cds-services/{id}", post(routes::service_call::call))
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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; CDS services are listed at /cds-services".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
