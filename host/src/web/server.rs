//! The accept loop of both HTTP servers (the web server and the admin
//! API): TCP (and TLS when configured) into hyper's HTTP/1.1 connection,
//! with
//!
//! - a cap on the request head (431 past it) and a deadline for it (and
//!   for the TLS handshake): a slow client cannot hold a connection open
//!   by trickling a header;
//! - a cap on connections open at once: past it, a new connection is
//!   answered 503 at once and closed, nothing spawned for it;
//! - a graceful shutdown: the listener closes, requests in flight get up
//!   to `grace` to finish, and a connection with no request in flight (an
//!   idle keep-alive, a half-sent head) is closed after [`IDLE_GRACE`], so
//!   slow clients cannot hold up a SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service as _;

use super::access::ClientAddr;

/// How long a connection with no request in flight stays open once
/// shutdown begins.
pub const IDLE_GRACE: Duration = Duration::from_millis(500);

pub struct Limits {
    /// The server, in logs and in the 503 body ("web server", "admin API").
    pub name: &'static str,
    /// The read buffer, so the largest request head (hyper answers 431).
    pub header_bytes: usize,
    /// Time to receive the request head (and the TLS handshake).
    pub header_timeout: Duration,
    /// How long requests in flight may take after shutdown begins.
    pub grace: Duration,
    /// Connections open at once at most.
    pub max_connections: usize,
}

/// Counts the requests a connection has in flight (a guard per request).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection past the cap with a 503 and closes it. The answer
/// is small enough for an empty socket buffer; nothing waits on the client.
fn refuse(tcp: TcpStream, limits: &Limits) {
    let body = format!(
        "{{\"error\":\"the {} has {} connections open, its limit: retry later\"}}",
        limits.name, limits.max_connections
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(answer.as_bytes());
    metrics::counter!("pipehost_http_connections_refused_total", "server" => limits.name)
        .increment(1);
}

/// Resolves once shutdown has begun and, [`IDLE_GRACE`] later, the
/// connection has no request in flight; never while one is.
async fn idle_at_shutdown(cancel: CancellationToken, in_flight: Arc<AtomicUsize>) {
    cancel.cancelled().await;
    tokio::time::sleep(IDLE_GRACE).await;
    if in_flight.load(Ordering::SeqCst) > 0 {
        // Served to its end: hyper closes the connection after it.
        std::future::pending::<()>().await;
    }
}

/// Serves `app` on `listener` until `cancel`, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(limits.header_bytes)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    while let Some((tcp, peer)) = accept(&listener, &cancel, limits.name).await {
        while conns.try_join_next().is_some() {}
        let Ok(permit) = open.clone().try_acquire_owned() else {
            refuse(tcp, &limits);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let app = app.clone();
        let counter = in_flight.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            let mut app = app.clone();
            let guard = InFlight::start(&counter);
            async move {
                let resp = app
                    .call(req.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {});
                drop(guard);
                Ok::<_, Infallible>(resp)
            }
        });
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake = limits.header_timeout;
        let idle = idle_at_shutdown(cancel.clone(), in_flight);
        let work = async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), svc))
                        .await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        };
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = work => {}
                () = idle => tracing::debug!(%peer, "closed at shutdown: no request in flight"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::warn!("{}: requests still running after {:?}; closing their connections", limits.name, limits.grace);
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// The next connection, or `None` once `cancel` is cancelled.
async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
    name: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!("{name}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
