//! `/api/v1/changes` and `/api/v1/change-orders`: planned and emergency changes with their
//! notices (announce, reschedule, cancel: each stored together with its notices in one
//! transaction), and change orders from customers' technical contacts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, ApiState, Principal, Role, blocking, own_customer, who};
use crate::changes::{
    self, CancelRequest, Change, ChangeError, ChangeOrder, ChangeRequest, ChangeState,
    OrderRequest, RescheduleRequest,
};
use crate::notify::outbox;
use crate::store::{OutboxTx, StoreError};

fn no_outbox() -> StoreError {
    StoreError::Corrupt {
        table: "notifications",
        reason: "this store has no outbox".into(),
    }
}

/// SSC and 2nd line only; a customer is pointed at change orders.
fn operator(st: &ApiState, headers: &HeaderMap, what: &str) -> Result<Principal, ApiError> {
    super::operator(
        st,
        headers,
        &format!("{what}; customers order changes (POST /api/v1/change-orders)"),
    )
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

fn refused(e: ChangeError) -> Response {
    match e {
        ChangeError::TooEarly { earliest } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "earliest_start": earliest.to_string() })),
        )
            .into_response(),
        ChangeError::Invalid(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m).into_response()
        }
    }
}

/// Stores through `f` in one transaction with the outbox, then wakes the dispatcher.
async fn write<T: Send + 'static>(
    st: &ApiState,
    mut f: impl FnMut(&mut dyn OutboxTx) -> Result<(T, usize), StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.store.clone();
    let (value, queued) = blocking(move || {
        let mut out = None;
        store.transaction(&mut |tx| {
            let o = tx.outbox().ok_or_else(no_outbox)?;
            out = Some(f(o)?);
            Ok(())
        })?;
        out.ok_or_else(no_outbox)
    })
    .await?;
    if queued > 0 {
        st.notices.wake.notify_one();
    }
    st.notices.changed();
    Ok(value)
}

/// Changes, newest window first (a customer token sees the ones that affect it).
pub(super) async fn list_changes(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let store = st.store.clone();
    let all = blocking(move || store.changes()).await?;
    let own = own_customer(&who);
    let now = chrono::Utc::now();
    let list: Vec<_> = all
        .into_iter()
        .filter(|c| own.is_none_or(|o| c.customers.iter().any(|x| x == o)))
        .map(|c| match own {
            Some(o) => c.for_customer(o, &st.inventory.get()).to_api_json(now),
            None => c.to_api_json(now),
        })
        .collect();
    Ok(Json(json!({ "changes": list })))
}

/// Announces a change (roles ssc and secondline). A planned change that starts too early is
/// refused with 422 and the earliest allowed start date. The notices go out with it.
pub(super) async fn create_change(
    State(st): State<ApiState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let principal = operator(&st, &headers, "announce changes")?;
    super::allow_write(&st, &principal)?;
    let req: ChangeRequest = body(&bytes)?;
    let now = chrono::Utc::now();
    let (devices, customers) = match changes::check(&req, now, &st.inventory.get()) {
        Ok(x) => x,
        Err(e) => return Ok(refused(e)),
    };
    let change = Change {
        id: 0,
        title: req.title,
        description: req.description,
        impact: req.impact,
        kind: req.kind,
        state: ChangeState::Scheduled,
        revision: 1,
        reason: None,
        starts_at: req.starts_at,
        ends_at: req.ends_at,
        devices,
        customers,
        notice_at: now,
        created_by: principal.name,
    };
    let routing = st.notices.routing.clone();
    let change = write(&st, move |o| {
        let mut c = change.clone();
        c.id = o.insert_change(&c)?;
        let queued = outbox::enqueue_change(o, &routing, &c, "announced-1", now)?;
        Ok((c, queued))
    })
    .await?;
    tracing::info!(change = change.id, kind = ?change.kind, devices = change.devices.len(), "Change announced.");
    Ok((
        StatusCode::CREATED,
        Json(change.to_api_json(chrono::Utc::now())),
    )
        .into_response())
}

/// `reschedule` (a new window; a planned change needs the full notice again) or `cancel`.
pub(super) async fn change_action(
    State(st): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let principal = operator(&st, &headers, "reschedule or cancel changes")?;
    super::allow_write(&st, &principal)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a change id"),
        )
    })?;
    let store = st.store.clone();
    let Some(mut change) = blocking(move || store.get_change(id)).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("change {id} not found"),
        ));
    };
    let now = chrono::Utc::now();
    let transition = match action.as_str() {
        "reschedule" => {
            let req: RescheduleRequest = body(&bytes)?;
            if let Err(e) = changes::check_reschedule(&change, &req, now) {
                return Ok(match e {
                    ChangeError::Invalid(m) if change.state == ChangeState::Cancelled => {
                        ApiError::new(StatusCode::CONFLICT, m).into_response()
                    }
                    e => refused(e),
                });
            }
            change.starts_at = req.starts_at;
            change.ends_at = req.ends_at;
            change.notice_at = now;
            change.revision += 1;
            change.reason = req.reason;
            format!("rescheduled-{}", change.revision)
        }
        "cancel" => {
            let req: CancelRequest = if bytes.is_empty() {
                CancelRequest::default()
            } else {
                body(&bytes)?
            };
            if change.state == ChangeState::Cancelled {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("change {id} is already cancelled"),
                ));
            }
            change.state = ChangeState::Cancelled;
            change.reason = req.reason;
            "cancelled-1".to_owned()
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`; use reschedule or cancel"),
            ));
        }
    };
    let routing = st.notices.routing.clone();
    let stored = change.clone();
    write(&st, move |o| {
        o.update_change(&stored)?;
        let queued = outbox::enqueue_change(o, &routing, &stored, &transition, now)?;
        Ok(((), queued))
    })
    .await?;
    tracing::info!(change = id, action = %action, by = %principal.name, "Change updated.");
    Ok(Json(change.to_api_json(chrono::Utc::now())).into_response())
}

/// Change orders, newest first (a customer token sees its own).
pub(super) async fn list_orders(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = who(&st, &headers)?;
    let own = own_customer(&who).map(str::to_owned);
    let store = st.store.clone();
    let orders = blocking(move || store.change_orders(own.as_deref())).await?;
    Ok(Json(json!({ "change_orders": orders })))
}

/// A change order from a customer: accepted only from a registered `technical` contact of
/// that customer (the token's `contact`), then queued for SSC.
pub(super) async fn create_order(
    State(st): State<ApiState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Some(principal) = who(&st, &headers)? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this collector has no tokens file; the API is read-only",
        ));
    };
    super::allow_write(&st, &principal)?;
    let Role::Customer(own) = &principal.role else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "change orders come from customers' technical contacts; SSC and 2nd line announce changes (POST /api/v1/changes)",
        ));
    };
    let req: OrderRequest = body(&bytes)?;
    let customer_id = req.customer.clone().unwrap_or_else(|| own.clone());
    if &customer_id != own {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a token of `{own}` cannot order changes for `{customer_id}`"),
        ));
    }
    let Some(customer) = st.customers.iter().find(|c| c.id == customer_id) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("customer `{customer_id}` is not registered"),
        ));
    };
    let contact = changes::check_order_contact(customer, principal.contact.as_deref())
        .map_err(|reason| ApiError::new(StatusCode::FORBIDDEN, reason))?;
    if req.title.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a change order needs a title",
        ));
    }
    if let (Some(from), Some(to)) = (req.wanted_from, req.wanted_to)
        && to <= from
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the wanted window must end after it starts",
        ));
    }
    let now = chrono::Utc::now();
    let order = ChangeOrder {
        id: 0,
        customer: customer_id,
        requested_by: principal.name.clone(),
        contact,
        title: req.title,
        description: req.description,
        wanted_from: req.wanted_from,
        wanted_to: req.wanted_to,
        state: "submitted".into(),
        created_at: now,
    };
    let routing = st.notices.routing.clone();
    let order = write(&st, move |o| {
        let mut x = order.clone();
        x.id = o.insert_change_order(&x)?;
        let queued = outbox::enqueue_order(o, &routing, &x, now)?;
        Ok((x, queued))
    })
    .await?;
    tracing::info!(order = order.id, customer = %order.customer, contact = %order.contact, "Change order queued for SSC.");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&order).unwrap_or_default()),
    )
        .into_response())
}
