//! Running the server: load the rules, build the engine, bind, serve until
//! shutdown. Tests use [`Server::start`] on port 0.

use crate::config::Settings;
use crate::fhir::{FhirClient, FhirClientConfig};
use crate::http::{AppState, router};
use crate::pipeline::Engine;
use crate::rules::{Diagnostic, load_dir};
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
}

/// Builds the engine from settings.
pub fn build_engine(settings: &Settings) -> Result<Engine, StartError> {
    let rules = load_dir(&settings.rules).map_err(|problems| StartError::Rules {
        dir: settings.rules.display().to_string(),
        problems,
    })?;
    let fhir = FhirClient::new(FhirClientConfig {
        insecure_hosts: settings.fhir.insecure_hosts.clone(),
        request_timeout: Duration::from_millis(settings.fhir.request_timeout_ms),
        max_pages: settings.fhir.max_pages,
        ..Default::default()
    })
    .map_err(|e| StartError::Io(format!("cannot build the FHIR client: {e}")))?;
    Ok(Engine { rules: Arc::new(rules), fhir, deadline: settings.deadline() })
}

/// A running server.
pub struct Server {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Loads everything, binds `settings.listen` and starts serving.
    pub async fn start(settings: &Settings) -> Result<Server, StartError> {
        let engine = build_engine(settings)?;
        let state = Arc::new(AppState { engine, max_body_bytes: settings.max_body_bytes });
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", settings.listen)))?;
        let addr = listener.local_addr().map_err(|e| StartError::Io(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Server { addr, shutdown: Some(tx), task })
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.map_err(std::io::Error::other)?
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
