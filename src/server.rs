//! Running the server: load the rules, build the engine and the HTTP policy
//! (authentication, CORS, limits, log hashing), bind, serve until shutdown,
//! then drain within the shutdown deadline and write the card log out.
//! Tests use [`Server::start`] on port 0.
//!
//! Secure by default: a non-loopback address with no trusted client refuses
//! to start unless `allow_unauthenticated` is set; loopback with no client
//! runs open (the quick start), with a warning.
//!
//! The app is the CDS router ([`router`]) with the [`console`] merged
//! beside it.

use crate::audit::AuditReport;
use crate::auth::Authenticator;
use crate::auth::replay::ReplayStore;
use crate::card_log::{CardLog, CardRecorder};
use crate::config::{MAX_JSON_DEPTH_CEILING, Settings};
use crate::console::{self, ConsoleAccess, LoadedAudit};
use crate::engine::Engine;
use crate::fhir::{FhirClient, FhirClientConfig};
use crate::http::security::check_origin;
use crate::http::serve::{Transport, serve};
use crate::http::{AppState, AuthPolicy, Limits, MetricsAccess, Policy, logging, metrics, router};
use crate::pseudonym::Pseudonymizer;
use crate::rules::{Diagnostic, load_dir};
use crate::store::{Backend, HistoryCache, Store};
use axum::{Router, middleware};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The rule directory has problems.
    #[error("the rules in {dir} have {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules {
        /// The directory.
        dir: String,
        /// Every problem.
        problems: Vec<Diagnostic>,
    },
    /// Binding or client setup failed.
    #[error("{0}")]
    Io(String),
    /// The settings are inconsistent or unsafe.
    #[error("{0}")]
    Config(String),
}

/// Refusal to listen beyond loopback with nobody to authenticate.
const UNAUTHENTICATED_REFUSAL: &str = "refusing to serve patient data without authentication on a non-loopback address. \
Configure a trusted CDS client (an [[auth.clients]] entry with iss and jwks_file or jwks_url, and public_base_url; \
see \"Connecting an EHR\" in the README), or pass --allow-unauthenticated \
(HOOKWISE_AUTH__ALLOW_UNAUTHENTICATED=true) to run open on purpose";

/// Builds the engine from settings.
pub fn build_engine(settings: &Settings) -> Result<Engine, StartError> {
    let rules = load_dir(&settings.rules).map_err(|problems| StartError::Rules {
        dir: settings.rules.display().to_string(),
        problems,
    })?;
    let rules = rules
        .without(&settings.disabled_rules)
        .map_err(StartError::Config)?;
    let fhir = FhirClient::new(FhirClientConfig {
        insecure_hosts: settings.fhir.insecure_hosts.clone(),
        request_timeout: Duration::from_millis(settings.fhir.request_timeout_ms),
        max_pages: settings.fhir.max_pages,
        cache_ttl: Duration::from_secs(settings.fhir.cache_ttl_secs),
        cache_max_bytes: settings.fhir.cache_max_bytes,
        ..Default::default()
    })
    .map_err(|e| StartError::Io(format!("cannot build the FHIR client: {e}")))?;
    Ok(Engine {
        rules: Arc::new(rules),
        fhir,
        deadline: settings.deadline(),
        history: None,
        replay: false,
        counted: true,
    })
}

/// A running server.
pub struct Server {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    recorder: Arc<CardRecorder>,
}

/// Checks limits, timeouts and CORS origins.
fn check_settings(settings: &Settings) -> Result<(), StartError> {
    check_timeouts(settings)?;
    if settings.max_json_depth == 0 || settings.max_json_depth > MAX_JSON_DEPTH_CEILING {
        return Err(StartError::Config(format!(
            "max_json_depth must be between 1 and {MAX_JSON_DEPTH_CEILING} (the request parser's own ceiling)"
        )));
    }
    if settings.card_log_queue == 0 {
        return Err(StartError::Config(
            "card_log_queue must be at least 1".into(),
        ));
    }
    if settings.max_concurrent_requests == 0 {
        return Err(StartError::Config(
            "max_concurrent_requests must be at least 1".into(),
        ));
    }
    if settings.max_inflight_body_bytes < settings.max_body_bytes {
        return Err(StartError::Config(format!(
            "max_inflight_body_bytes ({}) must be at least max_body_bytes ({})",
            settings.max_inflight_body_bytes, settings.max_body_bytes
        )));
    }
    for origin in &settings.cors.allowed_origins {
        check_origin(origin).map_err(StartError::Config)?;
    }
    Ok(())
}

/// Refuses a zero read or shutdown timeout, which would end every
/// connection at once.
fn check_timeouts(settings: &Settings) -> Result<(), StartError> {
    let timeouts = [
        ("header_read_timeout_ms", settings.header_read_timeout_ms),
        ("body_read_timeout_ms", settings.body_read_timeout_ms),
        ("shutdown_timeout_ms", settings.shutdown_timeout_ms),
    ];
    match timeouts.iter().find(|(_, ms)| *ms == 0) {
        Some((name, _)) => Err(StartError::Config(format!("{name} must be at least 1"))),
        None => Ok(()),
    }
}

/// The authentication in force, or `None` to run open (when allowed).
/// `store` keeps the `jti`s when `auth.replay_store = "database"`.
fn build_auth(
    settings: &Settings,
    addr: SocketAddr,
    store: &Store,
) -> Result<Option<AuthPolicy>, StartError> {
    let auth = &settings.auth;
    let loopback = settings.listen.ip().is_loopback();
    if auth.clients.is_empty() {
        if !loopback && !auth.allow_unauthenticated {
            return Err(StartError::Config(UNAUTHENTICATED_REFUSAL.into()));
        }
        if loopback {
            tracing::warn!(
                "no trusted CDS client configured: serving WITHOUT authentication (loopback only)"
            );
        } else {
            tracing::warn!(listen = %settings.listen, "!!! --allow-unauthenticated: serving patient data on a non-loopback address \
                WITHOUT authentication; anyone who can reach this port can call every service !!!");
        }
        return Ok(None);
    }
    if auth.allow_unauthenticated {
        tracing::warn!(
            "allow_unauthenticated is ignored: trusted CDS clients are configured, so every call is authenticated"
        );
    }
    let public_base_url = match &settings.public_base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if loopback => format!("http://{addr}"),
        None => {
            return Err(StartError::Config(
                "public_base_url is required with trusted clients on a non-loopback address: \
                 JWT aud must equal the URL the EHR calls, e.g. https://cds.example.org"
                    .into(),
            ));
        }
    };
    let replay =
        ReplayStore::new(auth, store, settings.retry_after_secs).map_err(StartError::Config)?;
    let authenticator = Authenticator::new(auth, replay).map_err(StartError::Config)?;
    tracing::info!(clients = ?authenticator.issuers(), %public_base_url, replay_store = ?auth.replay_store, "authenticating CDS clients");
    Ok(Some(AuthPolicy {
        authenticator,
        public_base_url,
    }))
}

/// The patient-id hasher for logs and the feedback store: the configured
/// key, or the one kept in the store (generated on its first start), so that
/// hashes stay comparable across restarts and replicas.
async fn build_hasher(settings: &Settings, store: &Store) -> Result<Pseudonymizer, StartError> {
    if let Some(key) = &settings.patient_id_hash_key {
        return Ok(Pseudonymizer::new(key.expose().as_bytes()));
    }
    let key = store
        .hash_key()
        .await
        .map_err(|e| StartError::Io(format!("cannot read the patient hash key: {e}")))?;
    tracing::info!("no patient_id_hash_key configured: using the key kept in the feedback store");
    Ok(Pseudonymizer::new(key.as_bytes()))
}

/// Opens the feedback store (running its migrations) and starts the card log.
async fn build_recorder(settings: &Settings) -> Result<CardRecorder, StartError> {
    let kind = Backend::of(&settings.database_url).name();
    // The error names the backend, not the URL, which may hold a password.
    let store = Store::connect(&settings.database_url)
        .await
        .map_err(|e| StartError::Io(format!("cannot open the {kind} feedback store: {e}")))?;
    let hasher = build_hasher(settings, &store).await?;
    let card_log = CardLog::start(store.clone(), settings.card_log_queue);
    Ok(CardRecorder {
        store,
        card_log,
        hasher,
    })
}

/// The HTTP policy for a server bound to `addr`.
fn build_policy(
    settings: &Settings,
    addr: SocketAddr,
    patients: Pseudonymizer,
    store: &Store,
) -> Result<Policy, StartError> {
    let auth = build_auth(settings, addr, store)?;
    let metrics = MetricsAccess::decide(
        settings.metrics_token.as_ref(),
        auth.is_some(),
        addr.ip().is_loopback(),
    );
    Ok(Policy {
        auth,
        cors_origins: settings.cors.allowed_origins.clone(),
        limits: Limits {
            max_body_bytes: settings.max_body_bytes,
            max_json_depth: settings.max_json_depth,
            max_prefetch_keys: settings.max_prefetch_keys,
            max_draft_orders: settings.max_draft_orders,
            max_concurrent_requests: settings.max_concurrent_requests,
            max_inflight_body_bytes: settings.max_inflight_body_bytes,
            body_read_timeout: settings.body_read_timeout(),
            retry_after_secs: settings.retry_after_secs,
        },
        patients,
        metrics,
    })
}

/// The audit report the console shows from startup, when one is set; a
/// file that is not one stops the start, naming the file and the problem.
fn load_audit(settings: &Settings) -> Result<Option<LoadedAudit>, StartError> {
    let Some(path) = &settings.audit_report else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        StartError::Io(format!(
            "cannot read the audit report {}: {e}",
            path.display()
        ))
    })?;
    let report = AuditReport::from_json(&text).map_err(|e| {
        StartError::Config(format!(
            "{}: not an audit report (hookwise audit --format json): {e}",
            path.display()
        ))
    })?;
    Ok(Some(LoadedAudit {
        report,
        origin: path.display().to_string(),
    }))
}

/// How long a console trial may take: it has no EHR waiting on it, and a
/// whole pasted record takes longer to read than a prefetch.
const TRIAL_DEADLINE: Duration = Duration::from_secs(10);

/// The console at `/console`, beside the CDS routes and outside their JWT
/// check (it has its own access rule), counted and logged like them.
fn console_routes(
    settings: &Settings,
    engine: &Engine,
    store: &Store,
    audit: Option<LoadedAudit>,
) -> Router {
    let trial = Engine {
        rules: engine.rules.clone(),
        fhir: engine.fhir.clone(),
        deadline: TRIAL_DEADLINE,
        history: None,
        replay: true,
        // Trials are nobody's care: the metrics stay the server's.
        counted: false,
    };
    let sources = console::Sources {
        trial,
        rules: engine.rules.clone(),
        dir: settings.rules.clone(),
        access: ConsoleAccess::new(settings.console_token.as_ref()),
        store: store.clone(),
        audit,
    };
    console::router(sources)
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(logging::log_request))
}

impl Server {
    /// Checks the settings, loads everything, binds `settings.listen` and
    /// starts serving. Refuses to run open beyond loopback (see the module docs).
    pub async fn start(settings: &Settings) -> Result<Server, StartError> {
        check_settings(settings)?;
        if settings.auth.clients.is_empty()
            && !settings.listen.ip().is_loopback()
            && !settings.auth.allow_unauthenticated
        {
            return Err(StartError::Config(UNAUTHENTICATED_REFUSAL.into()));
        }
        let mut engine = build_engine(settings)?;
        let recorder = Arc::new(build_recorder(settings).await?);
        engine.history = Some(Arc::new(HistoryCache::new(
            recorder.store.clone(),
            recorder.hasher.clone(),
            &engine.rules,
        )));
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", settings.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let policy = build_policy(settings, addr, recorder.hasher.clone(), &recorder.store)?;
        let (tx, rx) = oneshot::channel::<()>();
        let audit = load_audit(settings)?;
        let console = console_routes(settings, &engine, &recorder.store, audit);
        let app = router(AppState {
            engine: Arc::new(engine),
            policy: Arc::new(policy),
            recorder: Some(recorder.clone()),
        })
        .merge(console);
        let transport = Transport {
            header_read_timeout: settings.header_read_timeout(),
            shutdown_timeout: settings.shutdown_timeout(),
        };
        let task = tokio::spawn(serve(listener, app, transport, async {
            let _ = rx.await;
        }));
        Ok(Server {
            addr,
            shutdown: Some(tx),
            task,
            recorder,
        })
    }

    /// The feedback store.
    pub fn store(&self) -> &Store {
        &self.recorder.store
    }

    /// Waits until the cards issued so far are in the card log.
    pub async fn flush_card_log(&self) {
        self.recorder.card_log.flush().await;
    }

    /// Stops accepting connections, lets in-flight requests finish until
    /// the shutdown deadline (dropping the connections still open then),
    /// writes the card log queue out, and closes the store.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = self.task.await.map_err(std::io::Error::other);
        // After the last request: nothing can be queued behind the close.
        self.recorder.card_log.close().await;
        self.recorder.store.close().await;
        tracing::info!("card log written out; store closed");
        served
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
