//! The HTTP API under `/api/v1` (JSON). Errors are JSON `{"error": "..."}` with a fitting
//! status. Reads go to the store's reader connection on the blocking pool.
//!
//! Bearer tokens with roles arrive with the incident life cycle (issue #4); until then the
//! API is read-only.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::store::{EventFilter, IncidentFilter, Store, StoreError};

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "Store read failed.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; see the collector log",
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

#[derive(Clone)]
struct ApiState {
    store: Arc<dyn Store>,
}

/// The `/api/v1` routes.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/events", get(list_events))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(ApiState { store })
}

const STATES: [&str; 4] = ["open", "acknowledged", "resolved", "closed"];
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    state: Option<String>,
    customer: Option<String>,
    device: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

async fn list_incidents(
    State(st): State<ApiState>,
    q: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q?;
    if let Some(s) = &q.state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown state `{s}`; use one of {}", STATES.join(", ")),
        ));
    }
    let filter = IncidentFilter {
        state: q.state,
        customer: q.customer,
        device: q.device,
        limit: q.limit.unwrap_or(100).min(MAX_LIMIT),
        offset: q.offset.unwrap_or(0),
    };
    let store = st.store.clone();
    let incidents = blocking(move || store.list_incidents(&filter)).await?;
    Ok(Json(json!({ "incidents": incidents })))
}

async fn get_incident(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an incident id"),
        )
    })?;
    let store = st.store.clone();
    match blocking(move || store.get_incident(id)).await? {
        Some(detail) => Ok(Json(serde_json::to_value(detail).unwrap_or_default())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("incident {id} not found"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    device: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

async fn list_events(
    State(st): State<ApiState>,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q?;
    let filter = EventFilter {
        device: q.device,
        kind: q.kind,
        limit: q.limit.unwrap_or(100).min(MAX_LIMIT),
    };
    let store = st.store.clone();
    let events = blocking(move || store.list_events(&filter)).await?;
    Ok(Json(json!({ "events": events })))
}
