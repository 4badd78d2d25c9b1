//! The HTTP endpoints on a thread of their own: hyper's HTTP/1 server on a current-thread tokio
//! runtime, so the process embedding it (the recorder's synchronous loop) keeps its own threads
//! untouched. At most [`MAX_CONNECTIONS`] connections are served at once; a client that does not
//! send its request headers within [`HEADER_TIMEOUT`] is dropped.
//!
//! - `GET /metrics`: the exposition, in OpenMetrics when the `Accept` header asks for it (as
//!   Prometheus does), else in the Prometheus text format 0.0.4;
//! - `GET /healthz`: 200 `ok` while the process serves;
//! - `GET /readyz`: 200 `ready`, or 503 with one `check: reason` line per failing check.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, thread::JoinHandle, time::Duration};

use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use super::{Exporter, Format, MetricsConfig};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `metrics.listen` is not an address.
    #[error("metrics.listen {0:?} is not an IP address and port")]
    Listen(String),
    /// Binding the listener failed (address in use, not local, permission).
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be created.
    #[error("metrics: cannot start the server thread: {0}")]
    Thread(std::io::Error),
}

/// A running metrics server; stopped by [`stop`](Self::stop) or on drop.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `config.listen` (before returning, so a taken port is reported to the caller) and
    /// serves `exporter` on a thread named `metrics`.
    pub fn start(config: &MetricsConfig, exporter: Exporter) -> Result<MetricsServer, ServerError> {
        let addr: SocketAddr = config.listen.parse().map_err(|_| ServerError::Listen(config.listen.clone()))?;
        let listener = std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr, source })?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServerError::Thread)?;
        let (stop, stopped) = oneshot::channel();
        let exporter = Arc::new(exporter);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(serve(listener, exporter, stopped)))
            .map_err(ServerError::Thread)?;
        tracing::info!("metrics: serving /metrics, /healthz and /readyz on http://{addr}");
        Ok(MetricsServer { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: std::net::TcpListener, exporter: Arc<Exporter>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics: listener: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let exporter = exporter.clone();
                async move { Ok::<_, Infallible>(respond(&exporter, &req)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Answers one request.
fn respond(exporter: &Exporter, req: &Request<Incoming>) -> Response<String> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found: the endpoints are /metrics, /healthz and /readyz\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let format = Format::negotiate(accept);
            match exporter.encode(format) {
                Ok(body) => {
                    let mut response = Response::new(body);
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
                    response
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics failed: {e}\n")),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        _ => {
            let readiness = exporter.readiness();
            let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, readiness.to_string())
        }
    }
}
