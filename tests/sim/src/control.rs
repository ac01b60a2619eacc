//! Changing the campus while it runs: from a test (the [`Control`] handle), over HTTP (the
//! control API), or from a scenario file. Link changes go to the trap sender.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::agent::{LinkChange, Shared};

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such switch.
    #[error("no switch `{0}`")]
    UnknownSwitch(String),
    /// No such port.
    #[error("switch `{0}` has no ifIndex {1}")]
    UnknownPort(String, u32),
    /// A VLAN outside 1-4094.
    #[error("VLAN {0} is not in 1-4094")]
    BadVlan(u32),
}

/// A handle that changes the campus and reports link changes for traps.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
    changes: Option<mpsc::UnboundedSender<LinkChange>>,
}

impl Control {
    /// A handle; `changes` receives every link change (for traps).
    pub fn new(shared: Arc<Shared>, changes: Option<mpsc::UnboundedSender<LinkChange>>) -> Self {
        Control { shared, changes }
    }

    fn port_op(
        &self,
        switch: &str,
        if_index: u32,
        f: impl FnOnce(&mut crate::model::Switch, Instant) -> Option<Option<i64>>,
    ) -> Result<(), ControlError> {
        let now = Instant::now();
        let changed = self.shared.with(|c| {
            let s = c
                .get_mut(switch)
                .ok_or_else(|| ControlError::UnknownSwitch(switch.to_owned()))?;
            f(s, now).ok_or_else(|| ControlError::UnknownPort(switch.to_owned(), if_index))
        })?;
        if let (Some(oper), Some(tx)) = (changed, &self.changes) {
            let _ = tx.send((switch.to_owned(), if_index, oper));
        }
        Ok(())
    }

    /// The cable: the link comes up or goes down at both of its ends (a trap follows where the
    /// oper status changes). On an aggregate, every member's cable.
    pub fn link(&self, switch: &str, if_index: u32, up: bool) -> Result<(), ControlError> {
        let (members, peer) = self.shared.with(|c| {
            let p = c
                .get(switch)
                .and_then(|s| s.ports.get(usize::try_from(if_index).ok()?.checked_sub(1)?));
            (
                p.map(|p| p.members.clone()).unwrap_or_default(),
                p.and_then(|p| p.peer.clone()),
            )
        });
        if !members.is_empty() {
            for m in members {
                self.link(switch, m, up)?;
            }
            return Ok(());
        }
        self.port_op(switch, if_index, |s, now| {
            s.port_mut(if_index)?;
            Some(s.set_carrier(if_index, up, now))
        })?;
        if let Some(peer) = peer {
            // The far end is in the same campus; a dead far end stays without a link.
            let alive = self
                .shared
                .with(|c| c.get(&peer.switch).is_some_and(|s| s.alive));
            if alive || !up {
                self.port_op(&peer.switch, peer.if_index, |s, now| {
                    s.port_mut(peer.if_index)?;
                    Some(s.set_carrier(peer.if_index, up, now))
                })?;
            }
        }
        Ok(())
    }

    /// Moves the cable of `switch`'s port to `to`'s port `to_port` at once (between two
    /// polls): the port's link stays up, its LLDP neighbour changes, the old far end loses
    /// its link.
    pub fn recable(
        &self,
        switch: &str,
        if_index: u32,
        to: &str,
        to_port: u32,
    ) -> Result<(), ControlError> {
        let old = self.shared.with(|c| {
            let s = c
                .get(switch)
                .ok_or_else(|| ControlError::UnknownSwitch(switch.to_owned()))?;
            let p = s
                .ports
                .get(
                    usize::try_from(if_index)
                        .unwrap_or(usize::MAX)
                        .wrapping_sub(1),
                )
                .ok_or_else(|| ControlError::UnknownPort(switch.to_owned(), if_index))?;
            let t = c
                .get(to)
                .ok_or_else(|| ControlError::UnknownSwitch(to.to_owned()))?;
            if t.ports
                .get(
                    usize::try_from(to_port)
                        .unwrap_or(usize::MAX)
                        .wrapping_sub(1),
                )
                .is_none()
            {
                return Err(ControlError::UnknownPort(to.to_owned(), to_port));
            }
            Ok(p.peer.clone())
        })?;
        if let Some(old) = old {
            self.shared.with(|c| {
                if let Some(p) = c
                    .get_mut(&old.switch)
                    .and_then(|s| s.port_mut(old.if_index))
                {
                    p.peer = None;
                }
            });
            self.port_op(&old.switch, old.if_index, |s, now| {
                s.port_mut(old.if_index)?;
                Some(s.set_carrier(old.if_index, false, now))
            })?;
        }
        self.shared.with(|c| c.cable(switch, if_index, to, to_port));
        self.port_op(to, to_port, |s, now| {
            s.port_mut(to_port)?;
            Some(s.set_carrier(to_port, true, now))
        })
    }

    /// ifAdminStatus, as an operator would set it.
    pub fn admin(&self, switch: &str, if_index: u32, up: bool) -> Result<(), ControlError> {
        self.port_op(switch, if_index, |s, now| {
            s.port_mut(if_index)?;
            Some(s.set_admin(if_index, if up { 1 } else { 2 }, now))
        })
    }

    /// The port's VLAN (dot1qPvid).
    pub fn vlan(&self, switch: &str, if_index: u32, vlan: u32) -> Result<(), ControlError> {
        if !(1..=4094).contains(&vlan) {
            return Err(ControlError::BadVlan(vlan));
        }
        self.port_op(switch, if_index, |s, _| {
            s.port_mut(if_index)?.pvid = vlan;
            Some(None)
        })
    }

    /// A switch dies (stops answering) or comes back (rebooted: its uptime starts again). The
    /// far ends of its cables lose their link while it is dead.
    pub fn alive(&self, switch: &str, alive: bool) -> Result<(), ControlError> {
        let facing: Vec<(String, u32)> = self.shared.with(|c| {
            let s = c
                .get_mut(switch)
                .ok_or_else(|| ControlError::UnknownSwitch(switch.to_owned()))?;
            if alive && !s.alive {
                s.boot = Instant::now();
            }
            s.alive = alive;
            Ok::<_, ControlError>(
                s.ports
                    .iter()
                    .filter(|p| p.carrier || !alive)
                    .filter_map(|p| p.peer.as_ref())
                    .map(|p| (p.switch.clone(), p.if_index))
                    .collect(),
            )
        })?;
        for (peer, port) in facing {
            self.port_op(&peer, port, |s, now| {
                s.port_mut(port)?;
                Some(s.set_carrier(port, alive, now))
            })?;
        }
        Ok(())
    }

    /// Everything back: every switch alive, every port with its cable and admin up.
    pub fn recover(&self) {
        let now = Instant::now();
        let mut changed = Vec::new();
        self.shared.with(|c| {
            for s in &mut c.switches {
                if !s.alive {
                    s.alive = true;
                    s.boot = now;
                }
                for i in 1..=u32::try_from(s.ports.len()).unwrap_or(0) {
                    let a = s.set_admin(i, 1, now);
                    let b = s.set_carrier(i, true, now);
                    if let Some(oper) = b.or(a) {
                        changed.push((s.name.clone(), i, oper));
                    }
                }
            }
        });
        if let Some(tx) = &self.changes {
            for c in changed {
                let _ = tx.send(c);
            }
        }
    }

    /// A short view of every switch: name, alive, ports down.
    pub fn summary(&self) -> Value {
        self.shared.with(|c| {
            let list: Vec<Value> = c
                .switches
                .iter()
                .map(|s| {
                    let down: Vec<u32> = s
                        .ports
                        .iter()
                        .filter(|p| p.oper() != 1)
                        .map(|p| p.if_index)
                        .collect();
                    json!({ "name": s.name, "alive": s.alive, "uplinks": s.uplinks, "pair": s.pair, "ports_down": down })
                })
                .collect();
            json!({ "switches": list })
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpBody {
    up: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VlanBody {
    vlan: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliveBody {
    alive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CableBody {
    to: String,
    port: u32,
}

type Reply = (StatusCode, Json<Value>);

fn reply(r: Result<(), ControlError>) -> Reply {
    match r {
        Ok(()) => (StatusCode::OK, Json(json!({ "ok": true }))),
        Err(e @ ControlError::BadVlan(_)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string() })),
        ),
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// The control API: `GET /switches`, `POST /switches/{name}/ports/{ifIndex}/link`
/// `{"up": bool}`, `.../admin` `{"up": bool}`, `.../vlan` `{"vlan": n}`, `.../cable`
/// `{"to": switch, "port": ifIndex}` (move the cable),
/// `POST /switches/{name}/alive` `{"alive": bool}`, `POST /recover`.
pub fn router(control: Control) -> Router {
    Router::new()
        .route("/switches", get(|State(c): State<Control>| async move { Json(c.summary()) }))
        .route(
            "/switches/{name}/ports/{port}/link",
            post(
                |State(c): State<Control>,
                 Path((name, port)): Path<(String, u32)>,
                 Json(b): Json<UpBody>| async move { reply(c.link(&name, port, b.up)) },
            ),
        )
        .route(
            "/switches/{name}/ports/{port}/admin",
            post(
                |State(c): State<Control>,
                 Path((name, port)): Path<(String, u32)>,
                 Json(b): Json<UpBody>| async move { reply(c.admin(&name, port, b.up)) },
            ),
        )
        .route(
            "/switches/{name}/ports/{port}/vlan",
            post(
                |State(c): State<Control>,
                 Path((name, port)): Path<(String, u32)>,
                 Json(b): Json<VlanBody>| async move { reply(c.vlan(&name, port, b.vlan)) },
            ),
        )
        .route(
            "/switches/{name}/ports/{port}/cable",
            post(
                |State(c): State<Control>,
                 Path((name, port)): Path<(String, u32)>,
                 Json(b): Json<CableBody>| async move {
                    reply(c.recable(&name, port, &b.to, b.port))
                },
            ),
        )
        .route(
            "/switches/{name}/alive",
            post(
                |State(c): State<Control>, Path(name): Path<String>, Json(b): Json<AliveBody>| async move {
                    reply(c.alive(&name, b.alive))
                },
            ),
        )
        .route(
            "/recover",
            post(|State(c): State<Control>| async move {
                c.recover();
                reply(Ok(()))
            }),
        )
        .with_state(control)
}
