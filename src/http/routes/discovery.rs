//! `GET /cds-services`: the discovery document, built once from the loaded
//! rules when the router is built (the rules do not change while it runs).

use crate::cds::{Discovery, ServiceDescriptor};
use crate::engine::Engine;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The route, serving the document of `engine`'s rules.
pub fn route<S: Clone + Send + Sync + 'static>(engine: &Engine) -> MethodRouter<S> {
    get(serve).with_state(Arc::new(discovery_document(engine)))
}

/// One entry per (service, hook).
async fn serve(State(document): State<Arc<Discovery>>) -> Response {
    Json(document.as_ref()).into_response()
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
