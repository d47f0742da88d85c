//! The HTTP/1 server loop. `axum::serve` would do, but it hides hyper's settings, and hyper answers a request head
//! it will not read (over its buffer, or a URI over 64 KiB) with a bodiless 431 or 414 before the router sees it.
//! Here hyper's buffer is set well above the edge's own limits (`gw_http::MAX_HEADER_BYTES`, `MAX_URI_BYTES`), so
//! an oversized head reaches the edge and gets a problem+json answer like every other error. What hyper still
//! answers itself: heads past its 1 MiB buffer, more than 100 headers, and requests that are not HTTP at all (400).

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service as _;

/// hyper's read buffer for a request head: far above the edge's limits, far below anything that hurts.
const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// A client that has not sent a whole request head by then is dropped (hyper's default, stated).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for the connections in
/// flight to finish their requests.
pub async fn serve(listener: TcpListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(READ_BUFFER_BYTES).timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: back off instead of spinning on the error.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it small pipelined responses wait on Nagle's algorithm.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
        let Ok(service) = make_service.call(peer).await;
        let connection = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
