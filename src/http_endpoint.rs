//! The driver's HTTP endpoints (metrics, health), each connection bounded in
//! time and all of them in number: whoever reaches the port (any pod, for
//! the metrics port on the pod IP) cannot hold the driver's file
//! descriptors, which the CSI socket needs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; one more is closed as soon as it is
    /// accepted, not queued.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, counted from the
    /// connection or from the previous response: so also how long a
    /// kept-alive connection may stay idle.
    pub header_timeout: Duration,
    /// The longest a connection stays open whatever it does (a body
    /// trickled in, a response never read).
    pub max_connection_age: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 32,
            header_timeout: Duration::from_secs(10),
            max_connection_age: MAX_CONNECTION_AGE,
        }
    }
}

/// A scrape or a probe takes milliseconds; a minute is ample.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// How long a request under way may finish once its connection is told to
/// close (its age reached, or the server stopping).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// After a failed accept (out of descriptors, say): a pause instead of a
/// loop that logs millions of lines.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` over HTTP/1.1 on `listener` within `limits` until
/// `shutdown` resolves; requests under way then get [`CLOSE_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "connection refused: too many open"
            );
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = tokio::time::sleep(limits.max_connection_age) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: HttpLimits) -> (u16, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (port, stop, server)
    }

    async fn get(port: u16) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out).await;
        out
    }

    /// Whether the server closed `stream` (end of stream or reset).
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(limit, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_and_slots_come_back() {
        let limits = HttpLimits {
            max_connections: 3,
            header_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let (port, stop, server) = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(b"GET /heal").await.unwrap();
            held.push(s);
        }
        // Accepted in order: the three above hold every slot.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_secs(2)).await);
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get(port).await.ends_with("ok"));
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn half_sent_and_idle_connections_are_closed_after_the_header_timeout() {
        let limits = HttpLimits {
            max_connections: 8,
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (port, stop, server) = start(limits).await;
        let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A kept-alive connection after its answer.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let n = idle.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        for stream in [&mut half, &mut silent, &mut idle] {
            assert!(closed_within(stream, Duration::from_secs(3)).await);
        }
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_is_closed_at_its_age_whatever_it_does() {
        let limits = HttpLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_millis(300),
        };
        let (port, stop, server) = start(limits).await;
        // A client that never pauses long enough for the header timeout.
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let started = std::time::Instant::now();
        let mut answers = 0;
        while started.elapsed() < Duration::from_secs(5) {
            let request = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut answer = [0u8; 512];
            match (request, stream.read(&mut answer).await) {
                (Ok(()), Ok(n)) if n > 0 => answers += 1,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(answers > 1, "{answers}");
        assert!(started.elapsed() < Duration::from_secs(2), "still open");
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
