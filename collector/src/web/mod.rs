//! The operator dashboard under `/ui/`: server-rendered HTML over the same store, engine and
//! role rules as the API (no JavaScript build chain; one small script for the live update).
//!
//! - [`render`]: the HTML, as pure functions.
//! - [`session`]: sign-in with a bearer token, then a session cookie.
//! - here: the routes. Reads go to the store on the blocking pool; actions go through
//!   [`crate::api::perform`], so the dashboard can do exactly what the token's role allows in
//!   the API. `GET /ui/stream` is a server-sent event stream that says "changed" (at most a few
//!   times a second) whenever the engine commits a change to an incident or a change; the page
//!   then fetches its live part again.
//!
//! Without a tokens file the dashboard is anonymous and read-only, like the API.

pub mod render;
pub mod session;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use chrono::Utc;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiError, ApiState, Principal, Role};
use crate::store::IncidentFilter;
use render::{ListFilter, Viewer};
use session::{COOKIE, Sessions};

/// How long a dashboard session lives without use.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once.
const MAX_SESSIONS: usize = 10_000;
/// The overview shows at most this many incidents.
const LIST_LIMIT: u32 = 500;
/// Updates closer together than this are sent as one.
const THROTTLE: Duration = Duration::from_millis(250);

#[derive(Clone)]
struct Web {
    api: ApiState,
    sessions: Arc<Sessions>,
    /// Ends the live streams when the server shuts down (they would hold it open).
    shutdown: CancellationToken,
}

/// The `/ui/` routes (and `/` redirecting there).
pub fn router(api: ApiState, shutdown: CancellationToken) -> Router {
    let web = Web {
        api,
        sessions: Arc::new(Sessions::new(IDLE, MAX_SESSIONS)),
        shutdown,
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/incidents/{id}", get(incident))
        .route("/ui/incidents/{id}/{action}", post(act))
        .route("/ui/changes", get(changes))
        .route("/ui/topology", get(topology))
        .route("/ui/stream", get(stream))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/app.js", get(app_js))
        .route("/ui/assets/style.css", get(style_css))
        .layer(middleware::map_response(security_headers))
        .with_state(web)
}

/// No framing, no foreign scripts or styles, no sniffing, no caching of pages with data.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("app.js"),
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("style.css"),
    )
}

/// The viewer of a request; `None` sends the browser to [`sign_in`].
fn viewer(web: &Web, headers: &HeaderMap) -> Option<Viewer> {
    if web.api.tokens.is_none() {
        return Some(Viewer {
            principal: None,
            csrf: String::new(),
        });
    }
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, COOKIE))
        .and_then(|id| web.sessions.get(id, Instant::now()))
        .map(|s| Viewer {
            principal: Some(s.principal),
            csrf: s.csrf,
        })
}

fn sign_in() -> Response {
    Redirect::to("/ui/login").into_response()
}

fn own(viewer: &Viewer) -> Option<&str> {
    match viewer.principal.as_ref().map(|p| &p.role) {
        Some(Role::Customer(c)) => Some(c.as_str()),
        _ => None,
    }
}

fn failure(viewer: &Viewer, e: &ApiError, back: &str) -> Response {
    (
        e.status(),
        render::error(viewer, e.status().as_u16(), e.message(), back),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    state: Option<String>,
    customer: Option<String>,
    severity: Option<String>,
    partial: Option<String>,
}

async fn overview(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        return sign_in();
    };
    let state = q
        .state
        .filter(|s| render::LIST_STATES.contains(&s.as_str()))
        .unwrap_or_else(|| "active".into());
    let filter = ListFilter {
        state,
        // A customer sees its own incidents only, whatever the query says.
        customer: own(&viewer)
            .map(str::to_owned)
            .or(q.customer.filter(|c| !c.is_empty())),
        severity: q
            .severity
            .and_then(|s| s.parse().ok())
            .filter(|s| (1..=5).contains(s)),
    };
    let states: Vec<&str> = match filter.state.as_str() {
        "active" => vec!["open", "acknowledged"],
        s => vec![s],
    };
    let mut incidents = Vec::new();
    for s in states {
        let f = IncidentFilter {
            state: Some(s.to_owned()),
            customer: filter.customer.clone(),
            max_severity: filter.severity,
            limit: LIST_LIMIT,
            ..IncidentFilter::default()
        };
        let store = web.api.store.clone();
        match api::blocking(move || store.list_incidents(&f)).await {
            Ok(mut list) => incidents.append(&mut list),
            Err(e) => return failure(&viewer, &e, "/ui/"),
        }
    }
    incidents.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(b.opened_at.cmp(&a.opened_at))
    });
    let customers = web.api.customers.clone();
    let name = move |id: &str| api::customer_name(&customers, id);
    let list = render::incident_list(&viewer, &incidents, &name, Utc::now());
    if q.partial.is_some() {
        return list.into_response();
    }
    let choices: Vec<(String, String)> = web
        .api
        .customers
        .iter()
        .filter(|c| own(&viewer).is_none_or(|o| o == c.id))
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    let body = render::overview(&viewer, &filter, &choices, list);
    render::page("Incidents", &viewer, "/ui/", body).into_response()
}

#[derive(Debug, Deserialize)]
struct PartialQuery {
    partial: Option<String>,
}

async fn incident(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PartialQuery>,
) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        return sign_in();
    };
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("incident {id} not found"));
    let Ok(n) = id.parse::<i64>() else {
        return failure(&viewer, &not_found(), "/ui/");
    };
    let store = web.api.store.clone();
    let mut detail = match api::blocking(move || store.get_incident(n)).await {
        Ok(Some(d)) if own(&viewer).is_none_or(|o| d.incident.customer.as_deref() == Some(o)) => d,
        Ok(_) => return failure(&viewer, &not_found(), "/ui/"),
        Err(e) => return failure(&viewer, &e, "/ui/"),
    };
    let mut notifications =
        match api::incident_notifications(&web.api, n, own(&viewer).is_some()).await {
            Ok(list) => list,
            Err(e) => return failure(&viewer, &e, "/ui/"),
        };
    if let Some(o) = own(&viewer) {
        api::customer_view(&web.api, o, &mut detail, &mut notifications);
    }
    let customer = detail
        .incident
        .customer
        .as_deref()
        .map(|c| api::customer_name(&web.api.customers, c))
        .unwrap_or_default();
    let live = render::incident_detail(&detail, &notifications, &customer, Utc::now());
    if q.partial.is_some() {
        return live.into_response();
    }
    let body = maud::html! {
        main #live data-src=(format!("/ui/incidents/{n}?partial=1")) { (live) }
        (render::incident_actions(&viewer, &detail.incident))
    };
    render::page(&format!("Incident {n}"), &viewer, "", body).into_response()
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    comment: String,
    /// `1` when a comment is to be visible to the customer.
    #[serde(default)]
    public: String,
    /// `list` to go back to the overview rather than the incident.
    #[serde(default)]
    back: String,
}

async fn act(
    State(web): State<Web>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        return sign_in();
    };
    let back = if form.back == "list" {
        "/ui/".to_owned()
    } else {
        format!("/ui/incidents/{id}")
    };
    let Some(principal) = viewer.principal.clone() else {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "this collector has no tokens file; the dashboard is read-only",
        );
        return failure(&viewer, &e, &back);
    };
    if form.csrf != viewer.csrf {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "the form is stale or came from another site; reload the page and try again",
        );
        return failure(&viewer, &e, &back);
    }
    let result = async {
        let n: i64 = id.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{id}` is not an incident id"),
            )
        })?;
        let action = match api::parse_action(&action)? {
            crate::correlate::Action::Comment if form.public == "1" => {
                crate::correlate::Action::PublicComment
            }
            a => a,
        };
        let comment = Some(form.comment.trim().to_owned()).filter(|c| !c.is_empty());
        api::perform(&web.api, &principal, n, action, comment).await
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => failure(&viewer, &e, &back),
    }
}

async fn changes(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<PartialQuery>,
) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        return sign_in();
    };
    let store = web.api.store.clone();
    let mut all = match api::blocking(move || store.changes()).await {
        Ok(list) => list,
        Err(e) => return failure(&viewer, &e, "/ui/"),
    };
    if let Some(o) = own(&viewer) {
        all = all
            .into_iter()
            .filter(|c| c.customers.iter().any(|x| x == o))
            .map(|c| c.for_customer(o, &web.api.inventory.get()))
            .collect();
    }
    let live = render::change_list(&all, Utc::now());
    if q.partial.is_some() {
        return live.into_response();
    }
    let body = maud::html! {
        main #live data-src="/ui/changes?partial=1" { (live) }
    };
    render::page("Changes", &viewer, "/ui/changes", body).into_response()
}

async fn topology(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<PartialQuery>,
) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        return sign_in();
    };
    let view = web
        .api
        .notices
        .topology
        .read()
        .map(|v| v.clone())
        .unwrap_or_default();
    let json = api::topology_json(&view, &web.api.inventory.get(), own(&viewer));
    let live = render::topology(&json);
    if q.partial.is_some() {
        return live.into_response();
    }
    let body = maud::html! {
        main #live data-src="/ui/topology?partial=1" { (live) }
    };
    render::page("Topology", &viewer, "/ui/topology", body).into_response()
}

/// Server-sent events: `changed` whenever the engine committed something the dashboard shows.
/// A digest of what a customer sees (its incidents and changes): its live stream says
/// "changed" only when this moves, so it learns nothing of other customers' activity.
async fn customer_fingerprint(web: &Web, customer: &str) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let store = web.api.store.clone();
    let c = customer.to_owned();
    let (incidents, changes) = api::blocking(move || {
        let incidents = store.list_incidents(&crate::store::IncidentFilter {
            customer: Some(c.clone()),
            limit: 500,
            ..crate::store::IncidentFilter::default()
        })?;
        let changes = store.changes()?;
        Ok((incidents, changes))
    })
    .await
    .ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for i in &incidents {
        (i.id, &i.state, i.updated_at, i.severity).hash(&mut h);
    }
    for ch in changes
        .iter()
        .filter(|ch| ch.customers.iter().any(|x| x == customer))
    {
        (ch.id, ch.revision, format!("{:?}", ch.state)).hash(&mut h);
    }
    Some(h.finish())
}

async fn stream(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = viewer(&web, &headers) else {
        // An expired session: the script reloads the page, which leads to the sign-in form.
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // A customer's stream is told only of changes to what it sees, numbered on its own.
    let customer = own(&viewer).map(str::to_owned);
    let first = match &customer {
        Some(c) => customer_fingerprint(&web, c).await,
        None => None,
    };
    let rx = web.api.notices.revision.subscribe();
    let stop = web.shutdown.clone();
    let state = (rx, stop, web, customer, first, 0u64);
    let events = futures_util::stream::unfold(
        state,
        |(mut rx, stop, web, customer, mut seen, mut sent)| async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    changed = rx.changed() => changed.ok()?,
                }
                // Let a burst finish, then say it once.
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(THROTTLE) => {}
                }
                let revision = *rx.borrow_and_update();
                let data = match &customer {
                    None => revision,
                    Some(c) => {
                        let now = customer_fingerprint(&web, c).await;
                        if now == seen {
                            continue;
                        }
                        seen = now;
                        sent += 1;
                        sent
                    }
                };
                let event = SseEvent::default().event("changed").data(data.to_string());
                return Some((
                    Ok::<_, Infallible>(event),
                    (rx, stop, web, customer, seen, sent),
                ));
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The cookie that pairs a sign-in form with its post (login CSRF: another site cannot sign
/// a browser in under the attacker's token).
const LOGIN_COOKIE: &str = "cnaas_login";

/// The sign-in form with a fresh form token, set in a cookie too.
fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let nonce = session::random_id();
    let mut res = (status, render::login(error, &nonce)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={nonce}; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn login_form(State(web): State<Web>) -> Response {
    if web.api.tokens.is_none() {
        return Redirect::to("/ui/").into_response();
    }
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

fn session_cookie(id: &str, max_age: u64) -> HeaderValue {
    // The id is hex; nothing to escape. Secure is left to the TLS-terminating proxy's set-up:
    // the collector itself speaks plain HTTP on its API address.
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("cnaas_session=; Path=/ui; Max-Age=0"))
}

async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    peer: Option<axum::Extension<cnaas_shared::runtime::PeerAddr>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(tokens) = &web.api.tokens else {
        return Redirect::to("/ui/").into_response();
    };
    let paired = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, LOGIN_COOKIE))
        .is_some_and(|c| !form.csrf.is_empty() && c == form.csrf);
    if !paired {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The form is stale or came from another site; sign in again."),
        );
    }
    // Wrong tokens are throttled per address: five, then one a minute.
    let addr = peer.map_or_else(|| "unknown".to_owned(), |p| p.0.0.ip().to_string());
    let now = Instant::now();
    if !web.api.limits.logins.has(&addr, now) {
        tracing::warn!(peer = %addr, "Dashboard sign-in refused: too many wrong tokens.");
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong tokens from here; wait a minute."),
        );
    }
    let principal: Option<Principal> = tokens.check(form.token.trim()).cloned();
    let Some(principal) = principal else {
        let _ = web.api.limits.logins.take(&addr, now);
        tracing::warn!(peer = %addr, "Dashboard sign-in with an unknown token.");
        return login_page(StatusCode::UNAUTHORIZED, Some("Unknown token."));
    };
    tracing::info!(actor = %principal.name, "Dashboard sign-in.");
    let id = web.sessions.create(principal, Instant::now());
    let mut res = Redirect::to("/ui/").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, IDLE.as_secs()));
    res
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, COOKIE));
    if let Some(id) = id
        && web
            .sessions
            .get(id, Instant::now())
            .is_some_and(|s| s.csrf == form.csrf)
    {
        web.sessions.remove(id);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    res
}
