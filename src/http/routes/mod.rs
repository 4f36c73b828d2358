//! The HTTP routes' handlers, one file per endpoint, and the prologue the
//! service endpoints share: the `{id}` in the URL, checked against the
//! loaded rules (an unknown id is a 404 naming the ids that replaced it) and
//! recorded on the request span, done once by the [`KnownService`] and
//! [`FeedbackService`] extractors.

pub mod discovery;
pub mod feedback;
pub mod service_call;

use super::{ApiError, AppState};
use crate::engine::CallError;
use crate::rules::Service;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use tracing::Span;

/// The service a call's URL names.
pub struct KnownService(pub Service);

impl FromRequestParts<AppState> for KnownService {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let rules = &state.engine.rules;
        let id = path_id(parts).await?;
        let service = rules
            .service(&id)
            .ok_or_else(|| CallError::unknown_service(rules, &id))?;
        Span::current().record("service", id.as_str());
        Ok(KnownService(service.clone()))
    }
}

/// The service id a feedback URL names: a service's, or a rule family's.
/// A family id was the service id before each hook had its own: an EHR may
/// still send feedback on cards issued then to that URL. Taking it loses
/// nothing (feedback is keyed by card uuid); it is not in discovery.
pub struct FeedbackService(pub String);

impl FromRequestParts<AppState> for FeedbackService {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let rules = &state.engine.rules;
        let id = path_id(parts).await?;
        if rules.service(&id).is_none() && rules.family(&id).is_none() {
            return Err(CallError::unknown_service(rules, &id).into());
        }
        Span::current().record("service", id.as_str());
        Ok(FeedbackService(id))
    }
}

/// The `{id}` of the URL. A segment that is not UTF-8 is a 400
/// OperationOutcome like every other bad request (axum's own rejection is
/// plain text).
async fn path_id(parts: &mut Parts) -> Result<String, ApiError> {
    match Path::<String>::from_request_parts(parts, &()).await {
        Ok(Path(id)) => Ok(id),
        Err(rejection) => Err(ApiError::BadRequest {
            path: String::new(),
            message: format!("invalid service id in the URL: {}", rejection.body_text()),
        }),
    }
}
