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
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; draining.");
        t.cancel();
    });
    token
}

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
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
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
