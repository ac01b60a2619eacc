//! The HTTP API under `/api/v1` (JSON; described in `docs/openapi.yaml`). Errors are JSON
//! `{"error": "..."}` with 400 (bad input), 401 (no or unknown token), 403 (role may not),
//! 404, 409 (the incident's state does not allow it) or 422 (a rule says no).
//!
//! Reads go to the store's reader connection on the blocking pool; changes go to the engine
//! thread (the only writer) and wait for its answer.
//!
//! With a tokens file every request needs `Authorization: Bearer <token>`. Without one the API
//! is read-only and anonymous (a development set-up; `check-config` warns).

mod auth;
mod changes;
pub mod limit;

pub use auth::{Principal, Role, TokenError, Tokens};

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::correlate::{Action, CommandError};
use crate::customers::Customer;
use crate::engine::{Envelope, Input};
use crate::store::{About, EventFilter, IncidentFilter, NotificationFilter, Store, StoreError};

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// The status it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for people.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
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

/// What the API and the dashboard work on. `engine` is weak so that neither keeps the engine
/// alive at shutdown.
#[derive(Clone)]
pub struct ApiState {
    /// The devices.
    pub inventory: Arc<crate::config::LiveInventory>,
    /// The customers.
    pub customers: Arc<Vec<Customer>>,
    /// Reads.
    pub store: Arc<dyn Store>,
    /// The bearer tokens; `None` means anonymous read-only access.
    pub tokens: Option<Arc<Tokens>>,
    /// Changes go to the engine thread.
    pub engine: tokio::sync::mpsc::WeakSender<Envelope>,
    /// Routing, the dispatcher's wake-up and the dashboard's revision.
    pub notices: crate::engine::Notices,
    /// Rate limits (writes per token, failed sign-ins per address).
    pub limits: Arc<limit::Limits>,
}

/// Takes one write from `principal`'s allowance, or 429 with when to try again.
pub(crate) fn allow_write(st: &ApiState, principal: &Principal) -> Result<(), ApiError> {
    st.limits
        .writes
        .take(&principal.name, std::time::Instant::now())
        .map_err(|wait| {
            tracing::warn!(actor = %principal.name, "Write refused: over the rate limit.");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many changes from `{}`; try again in {} s",
                    principal.name,
                    wait.as_secs().max(1)
                ),
            )
        })
}

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/{action}", post(act))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/notifications", get(list_notifications))
        .route(
            "/api/v1/notifications/{id}/resend",
            post(resend_notification),
        )
        .route("/api/v1/customers", get(list_customers))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/topology", get(get_topology))
        .route("/api/v1/devices/{name}/owner", delete(release_device))
        .route(
            "/api/v1/changes",
            get(changes::list_changes).post(changes::create_change),
        )
        .route(
            "/api/v1/changes/{id}/{action}",
            post(changes::change_action),
        )
        .route(
            "/api/v1/change-orders",
            get(changes::list_orders).post(changes::create_order),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Largest request body the API reads (a comment, a change): a larger one is 413.
pub const MAX_BODY: usize = 64 * 1024;

/// Every error the API answers is JSON `{"error": ...}`, also those axum makes itself (405 for
/// a method a route does not have, 413 for a body over [`MAX_BODY`], a body that is not JSON).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("the body is over {MAX_BODY} bytes"),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let json = Json(json!({ "error": message })).into_response();
    let (json_parts, body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

/// The customers with their contact points and the warnings about them (a customer token
/// sees its own only).
async fn list_customers(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let own = own_customer(&who);
    let list: Vec<&Customer> = st
        .customers
        .iter()
        .filter(|c| own.is_none_or(|o| o == c.id))
        .collect();
    Ok(Json(json!({ "customers": list })))
}

/// The caller, or 401. `None` means anonymous read access (no tokens file).
pub(crate) fn who(st: &ApiState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(tokens) = &st.tokens else {
        return Ok(None);
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <token>",
            )
        })?;
    tokens
        .check(token.trim())
        .cloned()
        .map(Some)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
}

pub(crate) fn own_customer(p: &Option<Principal>) -> Option<&str> {
    match p {
        Some(Principal {
            role: Role::Customer(id),
            ..
        }) => Some(id.as_str()),
        _ => None,
    }
}

/// History actions a customer sees on its incidents; everything else (internal comments,
/// escalations, channel failures, alarm bookkeeping) is for SSC and 2nd line.
pub(crate) const CUSTOMER_ACTIONS: [&str; 10] = [
    "opened",
    "reopened",
    "acknowledged",
    "resolved",
    "closed",
    "merged",
    "took_in",
    "public_comment",
    "local_work",
    "worsened",
];

/// What a customer may see of one of its incidents: the public history with actors named by
/// organisation (a token's name is SSC's business), no raw events, and of its own
/// notifications no channel error.
pub(crate) fn customer_view(
    st: &ApiState,
    own: &str,
    detail: &mut crate::store::IncidentDetail,
    notifications: &mut [crate::store::Notification],
) {
    let own_name = customer_name(&st.customers, own);
    detail
        .history
        .retain(|h| CUSTOMER_ACTIONS.contains(&h.action.as_str()));
    for h in &mut detail.history {
        let role = st.tokens.as_ref().and_then(|t| t.role_of(&h.actor));
        h.actor = match role {
            _ if h.actor == "system" => "system".to_owned(),
            Some(Role::Customer(c)) if c == own => own_name.clone(),
            _ => "Sikt".to_owned(),
        };
        h.event_id = None;
    }
    detail.events.clear();
    detail.events_total = 0;
    // The impact names only the customer's own devices.
    if let Some(impact) = &mut detail.incident.impact {
        let inventory = st.inventory.get();
        let mine = |d: &String| {
            inventory
                .devices
                .get(d)
                .is_some_and(|x| x.customer.as_deref() == Some(own))
        };
        impact.isolated.retain(mine);
        impact.degraded.retain(mine);
        impact.down.retain(mine);
        impact.customers.retain(|c| c == own);
    }
    for n in notifications.iter_mut() {
        n.last_error = None;
    }
}

/// Longest comment taken (characters); a longer one is refused with 413.
pub const MAX_COMMENT_CHARS: usize = 4000;
/// Most comments on one incident; more are refused with 409.
pub const MAX_COMMENTS: usize = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    comment: Option<String>,
    /// With `comment`: the customer sees it too (SSC and 2nd line; a customer's own comments
    /// are always visible to it).
    #[serde(default)]
    public: bool,
    /// With `resolve`: resolve although alarms are still active (each opens a new incident
    /// after its hold time).
    #[serde(default)]
    force: bool,
}

async fn act(
    State(st): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let Some(principal) = who.clone() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this collector has no tokens file; the API is read-only",
        ));
    };
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an incident id"),
        )
    })?;
    let action = parse_action(&action)?;
    let body: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?
    };
    let action = match action {
        Action::Resolve if body.force => Action::ForceResolve,
        Action::Comment if body.public => Action::PublicComment,
        other => other,
    };
    perform(&st, &principal, id, action, body.comment).await?;
    let store = st.store.clone();
    let mut detail = blocking(move || store.get_incident(id)).await?;
    if let (Some(own), Some(d)) = (own_customer(&who), detail.as_mut()) {
        customer_view(&st, own, d, &mut []);
    }
    Ok(Json(serde_json::to_value(detail).unwrap_or_default()))
}

/// The action named in a path (`ack`, `local-work`, ...), or 404.
pub(crate) fn parse_action(name: &str) -> Result<Action, ApiError> {
    Ok(match name {
        "ack" => Action::Ack,
        "escalate" => Action::Escalate,
        "resolve" => Action::Resolve,
        "close" => Action::Close,
        "comment" => Action::Comment,
        "local-work" => Action::LocalWork,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no action `{other}`; use ack, escalate, resolve, close, comment or local-work"
                ),
            ));
        }
    })
}

/// Checks that `principal` may do `action` on incident `id` and has the engine do it (the API
/// and the dashboard share this).
pub(crate) async fn perform(
    st: &ApiState,
    principal: &Principal,
    id: i64,
    action: Action,
    comment: Option<String>,
) -> Result<(), ApiError> {
    allow_write(st, principal)?;
    // A customer's comment is visible to it (it wrote it).
    let action = match (&principal.role, action) {
        (Role::Customer(_), Action::Comment) => Action::PublicComment,
        (_, a) => a,
    };
    // A customer may comment on its own incidents; changing them is for SSC and 2nd line.
    match (&principal.role, action) {
        (r, _) if r.operates() => {}
        (Role::Customer(own), Action::PublicComment) => {
            let store = st.store.clone();
            let incident = blocking(move || store.get_incident(id)).await?;
            if incident.is_none_or(|d| d.incident.customer.as_deref() != Some(own.as_str())) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("incident {id} not found"),
                ));
            }
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("role of `{}` may not {}", principal.name, action.as_str()),
            ));
        }
    }
    if let Some(text) = &comment
        && text.chars().count() > MAX_COMMENT_CHARS
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a comment is at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    if matches!(action, Action::Comment | Action::PublicComment) {
        let store = st.store.clone();
        let incident = blocking(move || store.get_incident(id)).await?;
        let comments = incident.map_or(0, |d| {
            d.history
                .iter()
                .filter(|h| matches!(h.action.as_str(), "comment" | "public_comment"))
                .count()
        });
        if comments >= MAX_COMMENTS {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("incident {id} has {MAX_COMMENTS} comments, the most it takes"),
            ));
        }
    }
    if action == Action::LocalWork {
        // Local work goes to the customer's local support point: there must be one.
        let store = st.store.clone();
        let incident = blocking(move || store.get_incident(id)).await?;
        let customer = incident.as_ref().and_then(|d| d.incident.customer.clone());
        if incident.is_some() && !customer.is_some_and(|c| st.customers.iter().any(|k| k.id == c)) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "incident {id} belongs to no registered customer: there is no local support point to ask"
                ),
            ));
        }
    }
    let engine = st.engine.upgrade().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down",
        )
    })?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let input = Input::Command {
        incident: id,
        action,
        actor: principal.name.clone(),
        comment,
        reply,
    };
    engine
        .send(Envelope { input, ack: None })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the collector is shutting down",
            )
        })?;
    match answer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(CommandError::NotFound(_))) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("incident {id} not found"),
        )),
        Ok(Err(e @ CommandError::Conflict(_))) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Ok(Err(e @ CommandError::Invalid(_))) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Ok(Err(CommandError::Store(e))) => Err(ApiError::from(e)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down",
        )),
    }
}

const STATES: [&str; 5] = ["open", "acknowledged", "resolved", "closed", "merged"];
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    state: Option<String>,
    customer: Option<String>,
    device: Option<String>,
    /// This severity or more severe.
    severity: Option<u8>,
    limit: Option<u32>,
    offset: Option<u32>,
}

pub(crate) async fn blocking<T: Send + 'static>(
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
    headers: HeaderMap,
    q: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let Query(mut q) = q?;
    // A customer sees its own incidents only.
    if let Some(own) = own_customer(&who) {
        if q.customer.as_deref().is_some_and(|c| c != own) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a customer token sees its own customer's incidents only",
            ));
        }
        q.customer = Some(own.to_owned());
    }
    if q.severity.is_some_and(|s| !(1..=5).contains(&s)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "severity is 1 (critical) to 5 (information)",
        ));
    }
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
        max_severity: q.severity,
        limit: q.limit.unwrap_or(100).min(MAX_LIMIT),
        offset: q.offset.unwrap_or(0),
    };
    let store = st.store.clone();
    let incidents = blocking(move || store.list_incidents(&filter)).await?;
    Ok(Json(json!({ "incidents": incidents })))
}

async fn get_incident(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an incident id"),
        )
    })?;
    let store = st.store.clone();
    match blocking(move || store.get_incident(id)).await? {
        // Another customer's incident does not exist for a customer token.
        Some(detail)
            if own_customer(&who)
                .is_some_and(|own| detail.incident.customer.as_deref() != Some(own)) =>
        {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("incident {id} not found"),
            ))
        }
        Some(mut detail) => {
            let mut notifications =
                incident_notifications(&st, id, own_customer(&who).is_some()).await?;
            if let Some(own) = own_customer(&who) {
                customer_view(&st, own, &mut detail, &mut notifications);
            }
            let mut v = serde_json::to_value(detail).unwrap_or_default();
            v["notifications"] = serde_json::to_value(notifications).unwrap_or_default();
            Ok(Json(v))
        }
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
    /// Only this incident's events.
    incident: Option<i64>,
    /// The `next` of the page before (keyset paging).
    before: Option<String>,
    limit: Option<u32>,
}

async fn list_events(
    State(st): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if own_customer(&who(&st, &headers)?).is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "raw events are for the service provider",
        ));
    }
    let Query(q) = q?;
    let before = match q.before.as_deref() {
        None => None,
        Some(text) => Some(crate::store::EventCursor::decode(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{text}` is not a cursor; pass the `next` of the page before"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let filter = EventFilter {
        device: q.device,
        kind: q.kind,
        incident: q.incident,
        before,
        limit,
    };
    let store = st.store.clone();
    let events = blocking(move || store.list_events(&filter)).await?;
    // A full page has a next one (perhaps empty); its cursor is the last event.
    let next = (events.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| {
            events
                .last()
                .map(|e| crate::store::EventCursor::after(e).encode())
        })
        .flatten();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// An incident's notifications, oldest first; for a customer's eyes only those sent to its
/// own people.
pub(crate) async fn incident_notifications(
    st: &ApiState,
    id: i64,
    customer_view: bool,
) -> Result<Vec<crate::store::Notification>, ApiError> {
    let store = st.store.clone();
    let filter = NotificationFilter {
        about: Some((About::Incident, id)),
        limit: MAX_LIMIT,
        ..NotificationFilter::default()
    };
    let mut notifications = blocking(move || store.list_notifications(&filter)).await?;
    if customer_view {
        notifications.retain(|n| is_customer_audience(&n.audience));
    }
    notifications.reverse();
    Ok(notifications)
}

/// A customer's name by id (the id itself when it is not registered).
pub(crate) fn customer_name(customers: &[Customer], id: &str) -> String {
    customers
        .iter()
        .find(|c| c.id == id)
        .map_or_else(|| id.to_owned(), |c| c.name.clone())
}

pub(crate) fn is_customer_audience(a: &str) -> bool {
    matches!(a, "incident" | "technical" | "local_support")
}

const NOTIFICATION_STATES: [&str; 4] = ["pending", "delivered", "failed", "superseded"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationQuery {
    incident: Option<i64>,
    change: Option<i64>,
    order: Option<i64>,
    state: Option<String>,
    channel: Option<String>,
    limit: Option<u32>,
}

/// Every delivery and its state, newest first. A customer token sees what was sent to its own
/// people about its own incidents.
/// SSC (or 2nd line) sends a notification again: a failed one is tried at once and marked
/// delayed when it goes through; a delivered one is queued again.
async fn resend_notification(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let principal = operator(&st, &headers, "resend notifications")?;
    allow_write(&st, &principal)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a notification id"),
        )
    })?;
    let store = st.store.clone();
    let before = blocking(move || store.resend(id, chrono::Utc::now())).await?;
    match before.as_deref() {
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("notification {id} not found"),
            ));
        }
        Some(state @ ("pending" | "superseded")) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "notification {id} is {state}; only a failed or delivered one can be sent again"
                ),
            ));
        }
        Some(_) => {}
    }
    tracing::info!(notification = id, actor = %principal.name, "Notification resent on request.");
    st.notices.wake.notify_one();
    Ok(Json(
        serde_json::json!({ "id": id, "resent": true, "was": before }),
    ))
}

/// The operator's side of the caller: 401 without a tokens file or token, 403 for a role that
/// does not operate (customers, read-only).
fn operator(st: &ApiState, headers: &HeaderMap, what: &str) -> Result<Principal, ApiError> {
    let Some(principal) = who(st, headers)? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this collector has no tokens file; the API is read-only",
        ));
    };
    if !principal.role.operates() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("role of `{}` may not {what}", principal.name),
        ));
    }
    Ok(principal)
}

/// Which agents may report each device: from the inventory's `agents`, or pinned at the
/// device's first event. Not for customers.
async fn list_devices(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(p) = who(&st, &headers)?
        && matches!(p.role, Role::Customer(_))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "role of `{}` may not see which agents report which devices",
                p.name
            ),
        ));
    }
    let store = st.store.clone();
    let pinned = blocking(move || store.device_owners()).await?;
    let mut devices = std::collections::BTreeMap::new();
    for o in pinned {
        devices.insert(
            o.device.clone(),
            json!({ "device": o.device, "agents": [o.agent], "source": "first_sight", "pinned_at": o.pinned_at }),
        );
    }
    for (name, d) in st.inventory.get().devices.iter() {
        if !d.agents.is_empty() {
            devices.insert(
                name.clone(),
                json!({ "device": name, "agents": d.agents, "source": "inventory", "pinned_at": null }),
            );
        } else {
            devices.entry(name.clone()).or_insert_with(
                || json!({ "device": name, "agents": [], "source": "none", "pinned_at": null }),
            );
        }
    }
    Ok(Json(
        json!({ "devices": devices.into_values().collect::<Vec<_>>() }),
    ))
}

/// The campus as the collector sees it: every device with its role, state (`isolated`:
/// shadowed, every path to the core cut; `down`; `degraded`: a parent down, another path
/// left; `up`), parents towards the core and neighbours; every link with the source(s) that know
/// it and its state; the latest LLDP neighbour changes. A customer sees its own devices and
/// the links that touch them.
async fn get_topology(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let own = match who(&st, &headers)? {
        Some(Principal {
            role: Role::Customer(c),
            ..
        }) => Some(c),
        _ => None,
    };
    let view = st
        .notices
        .topology
        .read()
        .map(|v| v.clone())
        .unwrap_or_default();
    Ok(Json(topology_json(
        &view,
        &st.inventory.get(),
        own.as_deref(),
    )))
}

/// The JSON of [`get_topology`] (also what the dashboard's topology page draws).
pub(crate) fn topology_json(
    view: &crate::engine::TopologyView,
    inventory: &crate::config::Inventory,
    own: Option<&str>,
) -> serde_json::Value {
    let t = &view.topology;
    let reach = t.reach(&view.down);
    let customer = |d: &str| inventory.devices.get(d).and_then(|x| x.customer.clone());
    let visible = |d: &str| own.is_none_or(|c| customer(d).as_deref() == Some(c));
    let state = |d: &str| {
        // Cut off is what matters of a device that does not answer behind a dead one.
        if t.is_shadowed(d, &reach) {
            "isolated"
        } else if view.down.contains(d) {
            "down"
        } else if t.parents(d).iter().any(|p| view.down.contains(*p)) {
            "degraded"
        } else {
            "up"
        }
    };
    let role = |d: &str| {
        t.role(d).map(|r| match r {
            crate::config::DeviceRole::Core => "core",
            crate::config::DeviceRole::Distribution => "distribution",
            crate::config::DeviceRole::Access => "access",
        })
    };
    let devices: Vec<serde_json::Value> = t
        .devices()
        .iter()
        .filter(|d| visible(d))
        .map(|d| {
            json!({
                "name": d,
                "role": role(d),
                "customer": customer(d),
                "state": state(d),
                "top": t.is_top(d),
                "level": t.level(d),
                "pair": t.partner(d),
                "parents": t.parents(d),
                "neighbours": t.neighbours(d),
                "shadowed_by": t.shadowed_by(d, &reach),
            })
        })
        .collect();
    let links: Vec<serde_json::Value> = t
        .links()
        .iter()
        .filter(|l| visible(&l.a) || visible(&l.b))
        .map(|l| {
            let down = view.down.contains(&l.a) || view.down.contains(&l.b);
            json!({
                "a": l.a,
                "a_port": l.a_port,
                "b": l.b,
                "b_port": l.b_port,
                "sources": l.sources,
                "state": if down { "down" } else { "up" },
            })
        })
        .collect();
    let changes: Vec<&crate::correlate::NeighbourChange> =
        view.changes.iter().filter(|c| visible(&c.device)).collect();
    json!({ "devices": devices, "links": links, "changes": changes })
}

/// Releases a device pinned to an agent at first sight (the switch moved to another agent):
/// the next agent to report it is pinned. SSC and 2nd line only.
async fn release_device(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let principal = operator(&st, &headers, "release a device's agent")?;
    allow_write(&st, &principal)?;
    if st
        .inventory
        .get()
        .devices
        .get(&name)
        .is_some_and(|d| !d.agents.is_empty())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device `{name}` has its agents in the inventory; change them there"),
        ));
    }
    let store = st.store.clone();
    let device = name.clone();
    if !blocking(move || store.unpin_owner(&device)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("device `{name}` is not pinned to an agent"),
        ));
    }
    tracing::info!(device = %name, actor = %principal.name, "Device released from its agent.");
    Ok(Json(json!({ "device": name, "released": true })))
}

async fn list_notifications(
    State(st): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let Query(q) = q?;
    if let Some(s) = &q.state
        && !NOTIFICATION_STATES.contains(&s.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown state `{s}`; use one of {}",
                NOTIFICATION_STATES.join(", ")
            ),
        ));
    }
    let own = own_customer(&who).map(str::to_owned);
    let about = match (q.incident, q.change, q.order) {
        (Some(i), None, None) => Some((About::Incident, i)),
        (None, Some(c), None) => Some((About::Change, c)),
        (None, None, Some(o)) => Some((About::ChangeOrder, o)),
        (None, None, None) => None,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give at most one of incident, change and order",
            ));
        }
    };
    let filter = NotificationFilter {
        about,
        state: q.state,
        channel: q.channel,
        customer: own.clone(),
        limit: q.limit.unwrap_or(100).min(MAX_LIMIT),
    };
    let store = st.store.clone();
    let mut notifications = blocking(move || store.list_notifications(&filter)).await?;
    if own.is_some() {
        // Its own people's notices, without the channels' errors (SSC's business).
        notifications.retain(|n| is_customer_audience(&n.audience));
        for n in &mut notifications {
            n.last_error = None;
        }
    }
    Ok(Json(json!({ "notifications": notifications })))
}
