//! The endpoint: a small HTTP/1 server (hyper) with four read-only routes, and the one GET
//! `rmq-wasm status` makes.
//!
//! | route | answer |
//! |---|---|
//! | `/metrics` | Prometheus text ([`super::exposition`]) |
//! | `/livez` | 200 while the process serves requests |
//! | `/readyz` | 200 when every listener placed all its topics, else 503 naming the others |
//! | `/status` | JSON ([`super::status::Status`]) |
//!
//! Bounded like every other input of the host: at most [`MAX_CONNECTIONS`] connections at
//! once (more are closed at accept), request headers within [`HEADER_TIMEOUT`], a connection
//! at most [`CONNECTION_LIFETIME`]; only GET. The server task and its connections stop when the
//! [`Endpoint`] is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::exposition;
use super::reading::Source;
use super::status::Status;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection is kept (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// A running endpoint; dropping it stops the server.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` and serves `source`'s readings.
    pub async fn start(addr: SocketAddr, source: Arc<dyn Source>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, source));
        Ok(Self { addr, task })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, source: Arc<dyn Source>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned here: aborted with this task.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections; closing");
            continue;
        };
        let source = Arc::clone(&source);
        connections.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve(stream, source)).await;
        });
    }
}

async fn serve(stream: TcpStream, source: Arc<dyn Source>) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(&*source, req.method(), req.uri().path());
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
    }
}

/// The answer to one request.
pub(crate) fn respond(source: &dyn Source, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, exposition::render(source.read()));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(exposition::CONTENT_TYPE),
            );
            r
        }
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let status = Status::of(&source.read());
            if status.ready {
                text(StatusCode::OK, "ready\n".into())
            } else {
                let waiting = status.not_ready().join(", ");
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {waiting}\n"))
            }
        }
        "/status" => {
            let body = serde_json::to_string_pretty(&Status::of(&source.read()))
                .expect("a Status always serializes");
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "routes: /metrics /livez /readyz /status\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Why a GET to an endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

/// GETs `path` from the endpoint at `addr` (`host:port`): the status code and the body.
pub async fn get(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), FetchError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| FetchError::Connect { addr: addr.to_owned(), source })?;
        let http = |source| FetchError::Http { addr: addr.to_owned(), source };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, addr)
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("a GET with a path and host is a valid request");
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        driver.abort();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout { addr: addr.to_owned(), timeout })?
}
