//! Process plumbing both binaries share: tracing set-up, the shutdown signal, and the HTTP
//! server for `/metrics` and `/healthz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Sets up tracing: `RUST_LOG` (default `info`) and plain or JSON lines on stderr.
pub fn init_tracing(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C). A second signal is left to the default
/// handler's absence: the process keeps draining, bounded by each task's own time limit.
pub fn shutdown_on_signals() -> CancellationToken {
    survive_file_size_limit();
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; draining.");
        t.cancel();
    });
    token
}

/// A file-size limit (`ulimit -f`, `LimitFSIZE=`) would kill the process by SIGXFSZ without a
/// word. With a handler installed the write fails with EFBIG instead, which the spool and the
/// store handle as any write error (logged, retried, the data kept in memory meanwhile); each
/// signal is logged (at most once a second).
#[cfg(unix)]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGXFSZ is 25 on every Linux architecture this runs on.
    match signal(SignalKind::from_raw(25)) {
        Ok(mut s) => {
            tokio::spawn(async move {
                static LOG: LogLimiter = LogLimiter::new();
                while s.recv().await.is_some() {
                    if let Some(suppressed) = LOG.allow() {
                        tracing::error!(
                            suppressed,
                            "A file reached the process's file-size limit (SIGXFSZ): its writes fail and are retried; data is kept in memory meanwhile. Raise LimitFSIZE or free the file."
                        );
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot handle SIGXFSZ; a file-size limit would stop the process.")
        }
    }
}

#[cfg(not(unix))]
fn survive_file_size_limit() {}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("Cannot install signal handlers; falling back to Ctrl-C only.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// What `/healthz` reports: healthy or not, and details as JSON.
pub type HealthFn = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    health: HealthFn,
}

/// A router with `/metrics` (OpenMetrics text) and `/healthz` (200 or 503 with JSON details).
pub fn observability_router(registry: Arc<Registry>, health: HealthFn) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(HttpState { registry, health })
}

async fn metrics(State(st): State<HttpState>, headers: axum::http::HeaderMap) -> Response {
    let mut body = String::with_capacity(64 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &st.registry) {
        tracing::error!(error = %e, "Encoding metrics failed.");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response();
    }
    // Prometheus asks for OpenMetrics; everything else (curl, promtool, older scrapers) gets
    // the classic text format, as the official Go client does.
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            to_classic_text(&body),
        )
            .into_response()
    }
}

/// Rewrites OpenMetrics text into the classic Prometheus text format (0.0.4): counter families
/// are named with their `_total` suffix, `unknown` becomes `untyped`, and `# UNIT` / `# EOF`
/// lines go. Sample lines stay as they are.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
            && !name.ends_with("_total")
        {
            counters.insert(name.to_owned());
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# TYPE ", "# HELP "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(prefix);
                out.push_str(&name);
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

async fn healthz(State(st): State<HttpState>) -> Response {
    let (ok, details) = (st.health)();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({ "status": if ok { "ok" } else { "degraded" } });
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), details) {
        obj.extend(more);
    }
    (status, axum::Json(body)).into_response()
}

/// Serves `router` on `listener` until `token` is cancelled, then finishes open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, token, HttpLimits::for_process()).await;
    Ok(())
}

/// Moves a damaged SQLite file and its WAL and shared-memory files aside, as
/// `<file>.damaged-<UTC time>` (kept for a post-mortem); returns the new name of the file.
pub fn set_aside(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut kept = path.as_os_str().to_owned();
    kept.push(format!(".damaged-{stamp}"));
    let kept = std::path::PathBuf::from(kept);
    for suffix in ["", "-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = kept.as_os_str().to_owned();
        to.push(suffix);
        match std::fs::rename(&from, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(kept)
}

/// File descriptors kept for everything but HTTP clients: MQTT, SQLite, SMTP and webhook
/// deliveries, SNMP sockets, logs.
pub const FD_RESERVE: u64 = 512;

/// Raises the soft limit on open files to the hard limit (systemd's default soft limit is
/// 1,024; the units set `LimitNOFILE`) and returns the soft limit now in force (None:
/// unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum || (limit.current.is_some() && limit.maximum.is_none()) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "Cannot raise the open-files limit.");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// What the HTTP server lets clients hold. Nobody, authenticated or not, can starve the
/// process of file descriptors (delivery and ingestion keep [`FD_RESERVE`]) or hold a
/// connection open by writing slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
    /// Connections open at once from one address (one host cannot take them all).
    pub per_peer: usize,
    /// A request's head must arrive within this.
    pub header_timeout: std::time::Duration,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
}

impl HttpLimits {
    /// Limits from the process's open-files limit (raised to its hard limit first): at most
    /// 1,024 connections, and never more than what leaves [`FD_RESERVE`] descriptors.
    pub fn for_process() -> HttpLimits {
        let soft = raise_open_files_limit().unwrap_or(u64::MAX);
        let room = soft.saturating_sub(FD_RESERVE).max(64);
        HttpLimits {
            max_connections: usize::try_from(room.min(1024)).unwrap_or(1024),
            per_peer: 64,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The client's address, in every request's extensions (`Option<Extension<PeerAddr>>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Longest request target (path and query) served; a longer one is 414.
pub const MAX_URI: usize = 8 * 1024;
/// Most header bytes served; more is 431.
pub const MAX_HEADERS: usize = 32 * 1024;

/// Answers an over-long request target or over-large header section with a JSON error
/// (hyper's own limit, far above these, stays as the last guard).
async fn limit_head(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri().to_string().len();
    if uri > MAX_URI {
        return (
            StatusCode::URI_TOO_LONG,
            axum::Json(serde_json::json!({ "error": format!("the request target is over {MAX_URI} bytes") })),
        )
            .into_response();
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > MAX_HEADERS {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(
                serde_json::json!({ "error": format!("the headers are over {MAX_HEADERS} bytes") }),
            ),
        )
            .into_response();
    }
    next.run(req).await
}

/// One open connection.
struct Conn {
    addr: std::net::IpAddr,
    /// Cancelled to close it (evicted).
    close: CancellationToken,
    /// Whether a whole request head has arrived on it.
    served: Arc<std::sync::atomic::AtomicBool>,
}

/// Open connections, oldest first, and how many per peer address.
#[derive(Default)]
struct Peers {
    next: u64,
    conns: std::collections::BTreeMap<u64, Conn>,
    by_addr: std::collections::HashMap<std::net::IpAddr, usize>,
}

impl Peers {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.by_addr.get_mut(&c.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_addr.remove(&c.addr);
            }
        }
        Some(c)
    }
}

/// A connection's place in [`Peers`], given back when it closes.
struct Slot {
    peers: Arc<std::sync::Mutex<Peers>>,
    id: u64,
    close: CancellationToken,
    served: Arc<std::sync::atomic::AtomicBool>,
}

impl Slot {
    /// A place for a new connection from `addr`: refused over the per-peer limit; at the
    /// total limit the oldest connection that has not sent a whole request head yet (a slow
    /// or half-open one) is closed to make room, and without one the new one is refused.
    fn take(
        peers: &Arc<std::sync::Mutex<Peers>>,
        addr: std::net::IpAddr,
        limits: &HttpLimits,
    ) -> Option<Slot> {
        let mut p = peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.by_addr.get(&addr).copied().unwrap_or(0) >= limits.per_peer {
            return None;
        }
        if p.conns.len() >= limits.max_connections {
            let idle = p
                .conns
                .iter()
                .find(|(_, c)| !c.served.load(std::sync::atomic::Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(c) = p.remove(idle) {
                c.close.cancel();
            }
        }
        let id = p.next;
        p.next += 1;
        let close = CancellationToken::new();
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        p.conns.insert(
            id,
            Conn {
                addr,
                close: close.clone(),
                served: served.clone(),
            },
        );
        *p.by_addr.entry(addr).or_default() += 1;
        Some(Slot {
            peers: peers.clone(),
            id,
            close,
            served,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(self.id);
    }
}

/// Serves `router` on `listener` under `limits` until `token` is cancelled; then stops
/// accepting, lets requests under way finish (bounded by 5 s) and returns.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
    limits: HttpLimits,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    static REFUSED: LogLimiter = LogLimiter::new();
    let router = router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(axum::middleware::from_fn(limit_head));
    let peers = Arc::new(std::sync::Mutex::new(Peers::default()));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, from) = tokio::select! {
            () = token.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    if let Some(suppressed) = REFUSED.allow() {
                        tracing::warn!(error = %e, suppressed, "Cannot accept an HTTP connection.");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(&peers, from.ip(), &limits) else {
            if let Some(suppressed) = REFUSED.allow() {
                tracing::warn!(peer = %from, suppressed, max = limits.max_connections, per_peer = limits.per_peer, "HTTP connection refused: at the connection limit.");
            }
            drop(stream);
            continue;
        };
        let served = slot.served.clone();
        let router = router.clone();
        let service = hyper_util::service::TowerToHyperService::new(tower::service_fn(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                served.store(true, std::sync::atomic::Ordering::Relaxed);
                req.extensions_mut().insert(PeerAddr(from));
                tower::ServiceExt::oneshot(router.clone(), req)
            },
        ));
        let token = token.clone();
        tracker.spawn(async move {
            let close = slot.close.clone();
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %from, error = %e, "HTTP connection ended with an error.");
                    }
                }
                () = close.cancelled() => {
                    tracing::debug!(peer = %from, "HTTP connection without a request closed to make room.");
                }
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), tracker.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_from_openmetrics() {
        let om = "# HELP a_events Events.\n# TYPE a_events counter\na_events_total{kind=\"x\"} 3\n# HELP ifHCInOctets Octets.\n# TYPE ifHCInOctets unknown\nifHCInOctets{ifIndex=\"1\"} 7\n# HELP up Up.\n# TYPE up gauge\n# UNIT up seconds\nup 1\n# EOF\n";
        let classic = to_classic_text(om);
        assert_eq!(
            classic,
            "# HELP a_events_total Events.\n# TYPE a_events_total counter\na_events_total{kind=\"x\"} 3\n# HELP ifHCInOctets Octets.\n# TYPE ifHCInOctets untyped\nifHCInOctets{ifIndex=\"1\"} 7\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}

/// Lets a repeated log line through at most once per interval (one second), counting what it
/// held back, so a flood of bad input is a few log lines and a metric, not a full disk.
/// Const-constructible: one `static` per call site.
#[derive(Debug)]
pub struct LogLimiter {
    /// Milliseconds since the Unix epoch of the last line let through.
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    /// Lines at most this often.
    pub const INTERVAL_MS: u64 = 1000;

    /// A limiter that lets the first line through.
    pub const fn new() -> LogLimiter {
        LogLimiter {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Some(lines held back since the last one) when this line may be logged.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.allow_at(now)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= Self::INTERVAL_MS)
            && self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new()
    }
}

#[cfg(test)]
mod http_limit_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(from: &str, port: u16) -> std::io::Result<String> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(format!("{from}:0").parse().unwrap())?;
        let mut s = socket
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await?;
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        Ok(out)
    }

    async fn send(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    /// Whether the server closed `s` (reads EOF or an error within a second).
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn half_open_connections_cannot_starve_the_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = Router::new().route("/x", get_route());
        let token = CancellationToken::new();
        let limits = HttpLimits {
            max_connections: 4,
            per_peer: 2,
            header_timeout: Duration::from_millis(1500),
            body_timeout: Duration::from_secs(1),
        };
        let server = tokio::spawn(serve_with(listener, router, token.clone(), limits));
        // Two half-written requests from one host: its third connection is closed at once.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nHost:").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(closed(&mut third).await, "over the per-host limit");
        // Two more from another host fill the server: a new client is still served, in the
        // place of the oldest half-open connection.
        for _ in 0..2 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
            let mut s = socket
                .connect(format!("127.0.0.1:{port}").parse().unwrap())
                .await
                .unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nHost:").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            get("127.0.0.2", port)
                .await
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            closed(&mut held[0]).await,
            "the oldest half-open one made room"
        );
        // The slow ones are cut off when their head does not arrive in time.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        for s in &mut held {
            assert!(
                closed(s).await,
                "a half-written request outlived the header timeout"
            );
        }
        assert!(
            get("127.0.0.1", port)
                .await
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
        // Over-long targets and headers get a JSON answer.
        let long = send(
            port,
            &format!(
                "GET /x?{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                "a".repeat(MAX_URI)
            ),
        )
        .await;
        assert!(
            long.starts_with("HTTP/1.1 414") && long.contains("{\"error\":"),
            "{long}"
        );
        let big = send(
            port,
            &format!(
                "GET /x HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "b".repeat(MAX_HEADERS)
            ),
        )
        .await;
        assert!(
            big.starts_with("HTTP/1.1 431") && big.contains("{\"error\":"),
            "{big}"
        );
        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }

    fn get_route() -> axum::routing::MethodRouter {
        axum::routing::get(|| async { "ok" })
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::LogLimiter;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let l = LogLimiter::new();
        assert_eq!(l.allow_at(10_000), Some(0));
        assert_eq!(l.allow_at(10_001), None);
        assert_eq!(l.allow_at(10_999), None);
        assert_eq!(l.allow_at(11_000), Some(2));
        assert_eq!(l.allow_at(11_500), None);
        assert_eq!(l.allow_at(20_000), Some(1));
    }
}
