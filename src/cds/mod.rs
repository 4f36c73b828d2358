//! CDS Hooks 2.0 wire types: the service request, the response and its cards,
//! discovery, and the OperationOutcome used for every error body.
//!
//! Serialization follows the spec's JSON rules: optional fields that are empty
//! are omitted (never `null`, `""`, `[]` or `{}`), except `cards: []`.

mod request;
mod response;

pub use request::{
    CdsRequest, EnvelopeError, FhirAuthorization, Hook, HookName, MAX_JSON_DEPTH, depth_exceeded,
    parse_request,
};
pub use response::{
    Action, ActionType, Card, CdsResponse, Coding, Discovery, Indicator, Link, OperationOutcome,
    SelectionBehavior, ServiceDescriptor, Source, Suggestion,
};
