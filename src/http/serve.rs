//! The connections: accepting them and serving HTTP/1.1 on them with
//! hyper, in place of `axum::serve`, which gives a client all the time it
//! likes to send a request head and waits for every connection on shutdown.
//! (HTTP/1.1 only, as with `axum::serve` before: TLS and HTTP/2 are the
//! reverse proxy's.)
//!
//! - **Header read timeout.** A connection must deliver each request head
//!   within the timeout, counted from its acceptance and then from the end
//!   of the previous response, or hyper closes it: so a client that sends
//!   nothing, half a head, or nothing more on a keep-alive connection is
//!   let go. (The body read timeout is the body reader's, [`super::body`].)
//! - **Drain with a deadline.** On shutdown the listener is closed and each
//!   connection asked to finish: an idle one closes at once, a busy one
//!   after the response in progress. What is still open at the shutdown
//!   deadline is dropped, and counted in the log.
//! - **The peer's address.** Each request carries its connection's remote
//!   address as [`ConnectInfo`], as `axum::serve` with connect info would
//!   give it: the console opens to loopback peers only.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// Time a connection has to deliver a request head.
    pub header_read_timeout: Duration,
    /// Time connections have to finish once shutdown begins.
    pub shutdown_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains the
/// connections within the shutdown deadline (see the module docs). Returns
/// once every connection is closed or dropped.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(transport.header_read_timeout);
    let http = Arc::new(http);
    let (drain, draining) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            // Retries what a busy machine throws at accept (EMFILE and the like).
            (stream, _) = axum::serve::Listener::accept(&mut listener) => {
                connections.spawn(serve_connection(http.clone(), app.clone(), stream, draining.clone()));
            }
            Some(ended) = connections.join_next(), if !connections.is_empty() => note_end(ended),
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = connections.len();
    let _ = drain.send(());
    tracing::info!(
        connections = open,
        deadline_ms = transport.shutdown_timeout.as_millis(),
        "no longer accepting connections; draining"
    );
    let dropped = drain_within(&mut connections, transport.shutdown_timeout).await;
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "shutdown deadline reached: connections still open were dropped"
        );
    } else {
        tracing::info!("every connection finished");
    }
}

/// Waits for `connections` to end, at most `deadline`; then drops the rest
/// and returns how many were dropped.
async fn drain_within(connections: &mut JoinSet<()>, deadline: Duration) -> usize {
    let all_ended = async {
        while let Some(ended) = connections.join_next().await {
            note_end(ended);
        }
    };
    if tokio::time::timeout(deadline, all_ended).await.is_ok() {
        return 0;
    }
    let dropped = connections.len();
    connections.shutdown().await;
    dropped
}

/// Logs a connection task that did not end normally.
fn note_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!("a connection task panicked");
    }
}

/// Serves requests on `stream` until the client ends the connection, the
/// header read timeout closes it, or shutdown lets its last response go.
async fn serve_connection(
    http: Arc<http1::Builder>,
    app: Router,
    stream: TcpStream,
    mut draining: watch::Receiver<()>,
) {
    let peer = stream.peer_addr().ok();
    let app = app.map_request(move |mut request: axum::http::Request<Incoming>| {
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
        }
        request
    });
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = pin!(connection);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    // A head not received in time, a malformed request, a client gone.
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            Ok(()) = draining.changed() => connection.as_mut().graceful_shutdown(),
        }
    }
}
