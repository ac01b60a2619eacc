//! SNMPv2c linkDown/linkUp notifications (RFC 2863) for link changes, sent to the configured
//! receivers with the switch's name as the community.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rasn::types::{Integer, ObjectIdentifier};
use rasn_smi::v1::TimeTicks;
use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Trap, VarBind, VarBindValue};
use rasn_snmp::v2c::Message;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::agent::{LinkChange, Shared};

const SYS_UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID: [u32; 11] = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const LINK_DOWN: [u32; 10] = [1, 3, 6, 1, 6, 3, 1, 1, 5, 3];
const LINK_UP: [u32; 10] = [1, 3, 6, 1, 6, 3, 1, 1, 5, 4];

fn oid(arcs: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new_unchecked(arcs.to_vec().into())
}

fn int(i: i64) -> VarBindValue {
    VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(Integer::from(
        i,
    ))))
}

/// The trap datagram for a link change, or None when the switch or port is unknown.
pub fn encode(shared: &Shared, change: &LinkChange, request_id: i32) -> Option<Vec<u8>> {
    let (name, if_index, oper) = change;
    let now = Instant::now();
    let (uptime, admin) = shared.with(|c| {
        let s = c.get(name)?;
        let p = s
            .ports
            .get(usize::try_from(*if_index).ok()?.checked_sub(1)?)?;
        Some((s.uptime(now), p.admin))
    })?;
    let column = |col: u32| {
        let mut o = vec![1, 3, 6, 1, 2, 1, 2, 2, 1, col];
        o.push(*if_index);
        oid(&o)
    };
    let trap = if *oper == 1 { &LINK_UP } else { &LINK_DOWN };
    let binds = vec![
        VarBind {
            name: oid(&SYS_UPTIME),
            value: VarBindValue::Value(ObjectSyntax::ApplicationWide(ApplicationSyntax::Ticks(
                TimeTicks(uptime),
            ))),
        },
        VarBind {
            name: oid(&SNMP_TRAP_OID),
            value: VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::ObjectId(oid(trap)))),
        },
        VarBind {
            name: column(1),
            value: int(i64::from(*if_index)),
        },
        VarBind {
            name: column(7),
            value: int(admin),
        },
        VarBind {
            name: column(8),
            value: int(*oper),
        },
    ];
    let msg = Message {
        version: Integer::from(1),
        community: name.clone().into_bytes().into(),
        data: Pdus::Trap(Trap(Pdu {
            request_id,
            error_status: 0,
            error_index: 0,
            variable_bindings: binds,
        })),
    };
    rasn::ber::encode(&msg).ok()
}

/// Sends a trap to every receiver for each link change that arrives, until the senders are
/// gone.
pub async fn run(
    shared: Arc<Shared>,
    receivers: Vec<SocketAddr>,
    mut changes: mpsc::UnboundedReceiver<LinkChange>,
) {
    let socket = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the trap socket; no traps will be sent");
            return;
        }
    };
    let mut id: i32 = 1;
    while let Some(change) = changes.recv().await {
        id = id.wrapping_add(1);
        let Some(bytes) = encode(&shared, &change, id) else {
            continue;
        };
        for r in &receivers {
            if let Err(e) = socket.send_to(&bytes, r).await {
                tracing::warn!(error = %e, receiver = %r, "trap not sent");
            }
        }
    }
}
