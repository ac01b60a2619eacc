//! The SNMP side: a UDP socket answering v2c (and, with a v3 user, SNMPv3 through [`crate::usm`])
//! GET, GETNEXT, GETBULK and SET for the
//! simulated switches, either several per socket (chosen by community = switch name) or one
//! switch per socket with a fixed community. A switch that is not `alive` does not answer, nor
//! does a wrong community; a malformed datagram is counted and dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::v1::{Counter, Gauge, TimeTicks};
use rasn_smi::v2::{ApplicationSyntax, Counter64, ObjectSyntax, SimpleSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Response, VarBind, VarBindList, VarBindValue};
use rasn_snmp::v2c::Message;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::mib::{Layout, Oid, SetVal, Val};
use crate::model::Campus;

/// Varbinds in one response, at most (keeps it well inside a UDP datagram).
const MAX_VARBINDS: usize = 400;

/// Which switch a datagram is for.
#[derive(Debug, Clone)]
pub enum Route {
    /// The community names the switch.
    ByCommunity,
    /// One switch, one community.
    Fixed {
        /// The switch.
        switch: String,
        /// Its community.
        community: String,
    },
}

/// Counters of one socket.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered.
    pub answered: AtomicU64,
    /// Datagrams that were not SNMP we understand.
    pub malformed: AtomicU64,
    /// Requests for an unknown community or a dead switch.
    pub unanswered: AtomicU64,
}

/// The campus shared by every socket, with the OID layouts by port count.
pub struct Shared {
    /// The state.
    pub campus: Mutex<Campus>,
    layouts: Mutex<HashMap<crate::mib::Shape, Arc<Layout>>>,
    /// The SNMPv3 user every switch knows, if any.
    pub(crate) usm: Option<crate::usm::Usm>,
}

impl Shared {
    /// Wraps a campus (SNMP v2c only).
    pub fn new(campus: Campus) -> Arc<Shared> {
        Shared::with_v3(campus, None)
    }

    /// Wraps a campus whose switches also answer SNMPv3 for `user` (authPriv, SHA-1 and
    /// AES-128, RFC 3414/3826).
    pub fn with_v3(campus: Campus, user: Option<crate::usm::V3User>) -> Arc<Shared> {
        Arc::new(Shared {
            campus: Mutex::new(campus),
            layouts: Mutex::new(HashMap::new()),
            usm: user.map(crate::usm::Usm::new),
        })
    }

    fn layout(&self, switch: &crate::model::Switch) -> Arc<Layout> {
        let shape = crate::mib::shape(switch);
        let mut l = self
            .layouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(x) = l.get(&shape) {
            return x.clone();
        }
        let x = Layout::for_shape(&shape);
        l.insert(shape, x.clone());
        x
    }

    /// Runs `f` on the campus.
    pub fn with<T>(&self, f: impl FnOnce(&mut Campus) -> T) -> T {
        let mut c = self
            .campus
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut c)
    }
}

fn arcs(oid: &ObjectIdentifier) -> Oid {
    oid.iter().copied().collect()
}

fn to_value(v: &Val) -> VarBindValue {
    let app = |a| VarBindValue::Value(ObjectSyntax::ApplicationWide(a));
    let simple = |s| VarBindValue::Value(ObjectSyntax::Simple(s));
    match v {
        Val::Int(i) => simple(SimpleSyntax::Integer(Integer::from(*i))),
        Val::Str(b) => simple(SimpleSyntax::String(OctetString::from(b.clone()))),
        Val::Oid(o) => simple(SimpleSyntax::ObjectId(ObjectIdentifier::new_unchecked(
            o.clone().into(),
        ))),
        Val::Gauge(g) => app(ApplicationSyntax::Unsigned(Gauge(*g))),
        Val::Counter32(c) => app(ApplicationSyntax::Counter(Counter(*c))),
        Val::Counter64(c) => app(ApplicationSyntax::BigCounter(Counter64(*c))),
        Val::Ticks(t) => app(ApplicationSyntax::Ticks(TimeTicks(*t))),
    }
}

fn set_val(v: &VarBindValue) -> SetVal {
    match v {
        VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(i))) => {
            i64::try_from(i).map_or(SetVal::Other, SetVal::Int)
        }
        VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::String(s))) => {
            SetVal::Str(s.to_vec())
        }
        VarBindValue::Value(ObjectSyntax::ApplicationWide(ApplicationSyntax::Unsigned(g))) => {
            SetVal::Unsigned(g.0)
        }
        _ => SetVal::Other,
    }
}

fn bind(oid: Oid, value: VarBindValue) -> VarBind {
    VarBind {
        name: ObjectIdentifier::new_unchecked(oid.into()),
        value,
    }
}

/// A link change a SET caused: (switch, ifIndex, new oper status).
pub type LinkChange = (String, u32, i64);

/// Answers one datagram; None when it gets no answer. Link changes caused by a SET are pushed
/// onto `changes`.
pub fn answer(
    shared: &Shared,
    route: &Route,
    bytes: &[u8],
    stats: &Stats,
    changes: &mut Vec<LinkChange>,
) -> Option<Vec<u8>> {
    let msg = match rasn::ber::decode::<Message<Pdus>>(bytes) {
        Ok(msg) if msg.version == Integer::from(1) => msg,
        // SNMPv3 (USM), when the campus has a v3 user.
        _ if shared.usm.is_some() => {
            return crate::usm::answer(shared, route, bytes, stats, changes);
        }
        // v1 is not answered.
        _ => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let name = match route {
        Route::ByCommunity => String::from_utf8_lossy(&msg.community).into_owned(),
        Route::Fixed { switch, community } if community.as_bytes() == &msg.community[..] => {
            switch.clone()
        }
        Route::Fixed { .. } => {
            stats.unanswered.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let data = respond(shared, &name, &msg.data, stats, changes)?;
    let reply = Message {
        version: msg.version.clone(),
        community: msg.community.clone(),
        data,
    };
    rasn::ber::encode(&reply).ok()
}

/// The response PDU of switch `name` to a request PDU, or None when it does not answer (dead,
/// behind a dead switch, unknown, or not a request).
pub(crate) fn respond(
    shared: &Shared,
    name: &str,
    request: &Pdus,
    stats: &Stats,
    changes: &mut Vec<LinkChange>,
) -> Option<Pdus> {
    let now = Instant::now();
    let mut campus = shared
        .campus
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A switch answers when it and every switch on its path to the core are alive.
    if !campus.reachable(name) {
        stats.unanswered.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let Some(switch) = campus.get_mut(name) else {
        stats.unanswered.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let layout = shared.layout(switch);
    let (request_id, binds, bulk) = match request {
        Pdus::GetRequest(r) => (r.0.request_id, &r.0.variable_bindings, None),
        Pdus::GetNextRequest(r) => (r.0.request_id, &r.0.variable_bindings, None),
        Pdus::SetRequest(r) => (r.0.request_id, &r.0.variable_bindings, None),
        Pdus::GetBulkRequest(r) => (
            r.0.request_id,
            &r.0.variable_bindings,
            Some((r.0.non_repeaters, r.0.max_repetitions)),
        ),
        _ => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let asked: Vec<(Oid, SetVal)> = binds
        .iter()
        .map(|b| (arcs(&b.name), set_val(&b.value)))
        .collect();
    let (mut status, mut index) = (0u32, 0u32);
    let mut out: VarBindList = Vec::new();
    let next = |o: &Oid, out: &mut VarBindList, sw: &crate::model::Switch| -> Option<Oid> {
        match layout.next(sw, o, now) {
            Some((n, v)) => {
                out.push(bind(n.clone(), to_value(&v)));
                Some(n)
            }
            None => {
                out.push(bind(o.clone(), VarBindValue::EndOfMibView));
                None
            }
        }
    };
    match (request, bulk) {
        (Pdus::GetRequest(_), _) => {
            for (o, _) in &asked {
                let v = layout
                    .get(switch, o, now)
                    .map_or(VarBindValue::NoSuchInstance, |v| to_value(&v));
                out.push(bind(o.clone(), v));
            }
        }
        (Pdus::GetNextRequest(_), _) => {
            for (o, _) in &asked {
                next(o, &mut out, switch);
            }
        }
        (Pdus::GetBulkRequest(_), Some((non_rep, reps))) => {
            let non_rep = usize::try_from(non_rep).unwrap_or(0).min(asked.len());
            for (o, _) in &asked[..non_rep] {
                next(o, &mut out, switch);
            }
            // Per repeater: the last OID returned, and whether the MIB ended after it.
            let mut cursors: Vec<(Oid, bool)> = asked[non_rep..]
                .iter()
                .map(|(o, _)| (o.clone(), false))
                .collect();
            'rows: for _ in 0..reps {
                if cursors.iter().all(|c| c.1) {
                    break;
                }
                for (last, ended) in &mut cursors {
                    if out.len() >= MAX_VARBINDS {
                        break 'rows;
                    }
                    if *ended {
                        // Past the end: endOfMibView again, with the last name (RFC 3416
                        // 4.2.3); an empty name cannot even be encoded.
                        out.push(bind(last.clone(), VarBindValue::EndOfMibView));
                        continue;
                    }
                    match next(last, &mut out, switch) {
                        Some(o) => *last = o,
                        None => *ended = true,
                    }
                }
            }
        }
        _ => {
            // SET: all or nothing, every varbind checked before anything changes.
            for (i, (o, v)) in asked.iter().enumerate() {
                if let Err(e) = layout.check_set(o, v) {
                    status = e as u32;
                    index = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    break;
                }
            }
            if status == 0 {
                for (o, v) in &asked {
                    if let Some((if_index, oper)) = layout.apply_set(switch, o, v, now) {
                        changes.push((switch.name.clone(), if_index, oper));
                    }
                }
            }
            for (o, _) in &asked {
                let v = layout
                    .get(switch, o, now)
                    .map_or(VarBindValue::NoSuchInstance, |v| to_value(&v));
                out.push(bind(o.clone(), v));
            }
        }
    }
    stats.answered.fetch_add(1, Ordering::Relaxed);
    Some(Pdus::Response(Response(Pdu {
        request_id,
        error_status: status,
        error_index: index,
        variable_bindings: out,
    })))
}

/// Serves `route` on `socket` until `token` is cancelled. Link changes made by SETs go to
/// `on_change` (the trap sender).
pub async fn serve(
    shared: Arc<Shared>,
    socket: UdpSocket,
    route: Route,
    stats: Arc<Stats>,
    on_change: Option<tokio::sync::mpsc::UnboundedSender<LinkChange>>,
    token: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            () = token.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    continue;
                }
            },
        };
        let mut changes = Vec::new();
        let reply = buf
            .get(..n)
            .and_then(|b| answer(&shared, &route, b, &stats, &mut changes));
        if let Some(reply) = reply
            && let Err(e) = socket.send_to(&reply, peer).await
        {
            tracing::warn!(error = %e, %peer, "send failed");
        }
        if let Some(tx) = &on_change {
            for c in changes {
                let _ = tx.send(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rasn_snmp::v2::{BulkPdu, GetBulkRequest};

    fn bulk(community: &str, oids: &[&[u32]], reps: u32) -> Vec<u8> {
        let msg = Message {
            version: Integer::from(1),
            community: OctetString::from(community.as_bytes().to_vec()),
            data: Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
                request_id: 7,
                non_repeaters: 0,
                max_repetitions: reps,
                variable_bindings: oids
                    .iter()
                    .map(|o| bind(o.to_vec(), VarBindValue::Unspecified))
                    .collect(),
            })),
        };
        rasn::ber::encode(&msg).unwrap()
    }

    fn varbinds(reply: &[u8]) -> Vec<(Oid, VarBindValue)> {
        let msg = rasn::ber::decode::<Message<Pdus>>(reply).unwrap();
        let Pdus::Response(Response(pdu)) = msg.data else {
            panic!("not a response")
        };
        assert_eq!(pdu.request_id, 7);
        pdu.variable_bindings
            .into_iter()
            .map(|v| (arcs(&v.name), v.value))
            .collect()
    }

    #[test]
    fn a_bulk_walk_past_the_end_of_the_mib_repeats_end_of_mib_view() {
        let campus = Campus::tree(2, 2, 4, Instant::now());
        let shared = Shared::new(campus);
        let stats = Stats::default();
        // ifName (walks on) and ifCounterDiscontinuityTime, the last column of the MIB.
        let last = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19, 4];
        let req = bulk("core", &[&[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1], &last], 6);
        let reply = answer(&shared, &Route::ByCommunity, &req, &stats, &mut Vec::new())
            .expect("an answer, even past the end of the MIB");
        let vbs = varbinds(&reply);
        assert_eq!(vbs.len(), 12, "six rows of two");
        for row in vbs.chunks(2) {
            assert_eq!(row[1].0, last.to_vec());
            assert_eq!(row[1].1, VarBindValue::EndOfMibView);
        }
        assert_eq!(vbs[0].0, vec![1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, 1]);
        assert_eq!(stats.answered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn wrong_community_and_garbage_get_no_answer() {
        let shared = Shared::new(Campus::tree(2, 2, 4, Instant::now()));
        let stats = Stats::default();
        let fixed = Route::Fixed {
            switch: "core".into(),
            community: "public".into(),
        };
        let req = bulk("private", &[&[1, 3, 6, 1, 2, 1, 1]], 1);
        assert!(answer(&shared, &fixed, &req, &stats, &mut Vec::new()).is_none());
        assert!(answer(&shared, &fixed, b"\x30\x03junk", &stats, &mut Vec::new()).is_none());
        assert_eq!(stats.malformed.load(Ordering::Relaxed), 1);
        let req = bulk("public", &[&[1, 3, 6, 1, 2, 1, 1]], 1);
        assert!(answer(&shared, &fixed, &req, &stats, &mut Vec::new()).is_some());
    }
}
