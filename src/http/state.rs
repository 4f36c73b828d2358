//! What the handlers and layers share: one [`AppState`] holding the engine,
//! the [`Policy`] around the handlers and the card recorder, each reachable
//! on its own as a substate (`State<Arc<Policy>>`, …) through `FromRef`, so
//! that a handler names only what it uses and the compiler checks it is there.

use super::limits::Limits;
use super::metrics::MetricsAccess;
use super::security::AuthPolicy;
use crate::card_log::CardRecorder;
use crate::engine::Engine;
use crate::pseudonym::Pseudonymizer;
use axum::extract::FromRef;
use std::sync::Arc;

/// The state of the router: cheap to clone, every part shared.
#[derive(Clone)]
pub struct AppState {
    /// The request path's engine.
    pub engine: Arc<Engine>,
    /// Who may call, within which limits.
    pub policy: Arc<Policy>,
    /// Where issued cards and feedback on them are recorded; `None` on a
    /// server without a store (benchmarks, embedding), which records no
    /// cards and answers feedback with 503.
    pub recorder: Option<Arc<CardRecorder>>,
}

impl FromRef<AppState> for Arc<Engine> {
    fn from_ref(state: &AppState) -> Self {
        state.engine.clone()
    }
}

impl FromRef<AppState> for Arc<Policy> {
    fn from_ref(state: &AppState) -> Self {
        state.policy.clone()
    }
}

impl FromRef<AppState> for Option<Arc<CardRecorder>> {
    fn from_ref(state: &AppState) -> Self {
        state.recorder.clone()
    }
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

/// The system's random source gave no key to hash patient ids with.
#[derive(Debug, thiserror::Error)]
#[error("no random key for hashing patient ids: the system's random source failed")]
pub struct NoRandomKey;

impl Policy {
    /// No authentication, no CORS origins, default limits, a random hash
    /// key. Fails without randomness rather than fall back to a known key,
    /// under which anyone could match logged patient hashes to ids.
    pub fn open() -> Result<Policy, NoRandomKey> {
        Ok(Policy {
            auth: None,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            patients: Pseudonymizer::random().ok_or(NoRandomKey)?,
            metrics: MetricsAccess::Open,
        })
    }
}
