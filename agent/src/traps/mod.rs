//! The trap receiver: a UDP listener for SNMPv1/v2c `linkDown`, `linkUp`, `coldStart` and
//! `warmStart`. A trap is never turned into an event by itself: it asks the device's task to
//! re-poll that port at once, and the confirmed change becomes the event (source `trap`), so a
//! stale or forged trap cannot invent a state.
//!
//! Owns: the socket, decoding, and the verdict per datagram (deliver, log only, drop). Must
//! not: poll, or keep port state.

use std::collections::HashMap;
use std::net::IpAddr;

use cnaas_shared::config::Secret;
use prometheus_client::encoding::EncodeLabelSet;
use snmp2::{MessageType, Pdu};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::snmp::SnmpValue;
use crate::snmp::oid::{self, OidBuf};

/// snmpTrapOID.0 (the second varbind of a v2 trap).
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
/// sysUpTime.0 (the first varbind of a v2 trap).
const SYS_UPTIME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
/// IF-MIB::ifIndex.
const IF_INDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 1];
const TRAP_COLD_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 1];
const TRAP_WARM_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 2];
const TRAP_LINK_DOWN: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3];
const TRAP_LINK_UP: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 4];

/// By default, traps sent within 5 minutes after the device (re)started are only logged:
/// a booting switch reports every port coming up, which says nothing new.
pub const DEFAULT_QUIET: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// What a trap says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// linkDown.
    LinkDown,
    /// linkUp.
    LinkUp,
    /// coldStart.
    ColdStart,
    /// warmStart.
    WarmStart,
    /// Anything else (its OID, dotted).
    Other(String),
}

/// A decoded trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// Community string.
    pub community: Vec<u8>,
    /// What happened.
    pub kind: TrapKind,
    /// The sender's sysUpTime when it sent the trap.
    pub uptime: Option<u32>,
    /// The port, for link traps.
    pub if_index: Option<u32>,
}

/// Why a datagram is not a usable trap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrapError {
    /// Not a valid SNMP message.
    #[error("malformed SNMP message: {0}")]
    Malformed(String),
    /// A valid message, but not a trap (a request, a response, an inform).
    #[error("not a trap: {0}")]
    NotATrap(String),
    /// A v2 trap without snmpTrapOID.0.
    #[error("v2 trap without snmpTrapOID.0")]
    NoTrapOid,
    /// An SNMPv3 message: it can only be read with the sender's USM credentials.
    #[error("SNMPv3 message; needs the sender's credentials")]
    NeedsUsm,
}

fn arcs(o: &snmp2::Oid<'_>) -> Option<OidBuf> {
    o.iter()?.map(|a| u32::try_from(a).ok()).collect()
}

/// Decodes an SNMPv1 or v2c trap. Never panics, whatever the bytes. An SNMPv3 message gives
/// [`TrapError::NeedsUsm`]; [`Router::decode_v3`] reads it with the sender's credentials.
pub fn decode(bytes: &[u8]) -> Result<Trap, TrapError> {
    let pdu = Pdu::from_bytes(bytes).map_err(|e| match e {
        snmp2::Error::AuthFailure(snmp2::v3::AuthErrorKind::SecurityNotProvided) => {
            TrapError::NeedsUsm
        }
        other => TrapError::Malformed(other.to_string()),
    })?;
    trap_from_pdu(&pdu)
}

fn trap_from_pdu(pdu: &Pdu<'_>) -> Result<Trap, TrapError> {
    let varbinds: Vec<(OidBuf, SnmpValue)> = pdu
        .varbinds
        .clone()
        .filter_map(|(name, value)| Some((arcs(&name)?, SnmpValue::from_snmp2(&value))))
        .collect();
    let port_index = |vbs: &[(OidBuf, SnmpValue)]| {
        vbs.iter().find_map(|(o, v)| {
            if let Some(i) = oid::single_index(o, IF_INDEX) {
                return v.as_i64().and_then(|x| u32::try_from(x).ok()).or(Some(i));
            }
            [oid::IF_OPER_STATUS, oid::IF_ADMIN_STATUS]
                .iter()
                .find_map(|col| oid::single_index(o, col))
        })
    };
    match pdu.message_type {
        MessageType::Trap => {
            let uptime = varbinds
                .iter()
                .find(|(o, _)| o.as_slice() == SYS_UPTIME_0)
                .and_then(|(_, v)| v.as_ticks());
            let trap_oid = varbinds
                .iter()
                .find(|(o, _)| o.as_slice() == SNMP_TRAP_OID)
                .and_then(|(_, v)| match v {
                    SnmpValue::ObjectId(o) => Some(o.clone()),
                    _ => None,
                })
                .ok_or(TrapError::NoTrapOid)?;
            let kind = match trap_oid.as_slice() {
                TRAP_LINK_DOWN => TrapKind::LinkDown,
                TRAP_LINK_UP => TrapKind::LinkUp,
                TRAP_COLD_START => TrapKind::ColdStart,
                TRAP_WARM_START => TrapKind::WarmStart,
                other => TrapKind::Other(oid::to_string(other)),
            };
            Ok(Trap {
                community: pdu.community.to_vec(),
                kind,
                uptime,
                if_index: port_index(&varbinds),
            })
        }
        MessageType::TrapV1 => {
            let info = pdu
                .v1_trap_info
                .as_ref()
                .ok_or_else(|| TrapError::Malformed("v1 trap without its header".into()))?;
            let kind = match info.generic_trap {
                0 => TrapKind::ColdStart,
                1 => TrapKind::WarmStart,
                2 => TrapKind::LinkDown,
                3 => TrapKind::LinkUp,
                g => TrapKind::Other(format!(
                    "{}.{g}.{}",
                    arcs(&info.enterprise).map_or_else(String::new, |a| oid::to_string(&a)),
                    info.specific_trap
                )),
            };
            Ok(Trap {
                community: pdu.community.to_vec(),
                kind,
                uptime: Some(info.timestamp),
                if_index: port_index(&varbinds),
            })
        }
        other => Err(TrapError::NotATrap(format!("{other:?}"))),
    }
}

/// What the device task should do about a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Re-read this port now.
    Port(u32),
    /// Re-poll the whole link table now.
    Repoll,
}

/// Outcome of one datagram, also the `result` label of `cnaas_agent_traps_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand a hint to this device.
    Deliver {
        /// Index into the router's device list.
        device: usize,
        /// What to do.
        hint: Hint,
    },
    /// Valid, from a known device, but only worth a log line.
    LogOnly(&'static str),
    /// Refused.
    Drop(&'static str),
}

/// How a device's traps prove where they come from.
pub enum TrapAuth {
    /// SNMPv1/v2c: the community.
    Community(Secret),
    /// SNMPv3: the device's USM user (authenticated, and decrypted with authPriv).
    Usm(crate::snmp::V3),
}

/// One device a trap may come from.
pub struct Source {
    /// Device name.
    pub name: String,
    /// What its traps must carry.
    pub auth: TrapAuth,
    /// Where hints for its task go.
    pub hints: mpsc::Sender<Hint>,
}

/// Maps a trap's source address to the devices there.
pub struct Router {
    /// Devices, in config order.
    pub devices: Vec<Source>,
    by_ip: HashMap<IpAddr, Vec<usize>>,
    quiet_ticks: u32,
    /// USM state per device once its engine is known (keys are localised once, not per trap).
    usm: HashMap<usize, snmp2::v3::Security>,
    /// The sender's clock per device, from its authenticated traps (replay protection).
    clocks: HashMap<usize, EngineClock>,
}

/// How far an SNMPv3 message's engine time may lag behind the sender's clock as estimated
/// (RFC 3414 section 3.2.7: 150 seconds).
pub const TIME_WINDOW: i64 = 150;

/// Recent messages remembered per sender, to refuse an exact replay inside the window.
const RECENT: usize = 256;

/// What the receiver knows of a sender's SNMP engine clock (RFC 3414 timeliness).
#[derive(Debug, Clone)]
pub(crate) struct EngineClock {
    boots: i64,
    time: i64,
    at: std::time::Instant,
    /// (msgID, boots, time) of recent messages.
    recent: std::collections::VecDeque<(i64, i64, i64)>,
}

impl EngineClock {
    /// A clock first seen at `now` (nothing admitted yet).
    pub(crate) fn new(now: std::time::Instant) -> EngineClock {
        EngineClock {
            boots: 0,
            time: 0,
            at: now,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Judges a message stamped (`id`, `boots`, `time`) at `now`: Err(reason) for a replay or
    /// a message outside the time window; Ok records it.
    pub(crate) fn admit(
        &mut self,
        id: i64,
        boots: i64,
        time: i64,
        now: std::time::Instant,
    ) -> Result<(), &'static str> {
        if boots < self.boots {
            return Err("replayed");
        }
        if boots == self.boots {
            let elapsed =
                i64::try_from(now.saturating_duration_since(self.at).as_secs()).unwrap_or(i64::MAX);
            if time
                < self
                    .time
                    .saturating_add(elapsed)
                    .saturating_sub(TIME_WINDOW)
            {
                return Err("outside_time_window");
            }
            if self.recent.contains(&(id, boots, time)) {
                return Err("replayed");
            }
        }
        if boots > self.boots {
            self.recent.clear();
        }
        if boots > self.boots || time > self.time {
            (self.boots, self.time, self.at) = (boots, time, now);
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((id, boots, time));
        Ok(())
    }
}

/// msgID, msgAuthoritativeEngineBoots and msgAuthoritativeEngineTime of an SNMPv3 message.
fn v3_stamp(bytes: &[u8]) -> Option<(i64, i64, i64)> {
    let mut rdr = snmp2::AsnReader::from_bytes(bytes);
    let msg = rdr.read_raw(snmp2::asn1::TYPE_SEQUENCE).ok()?;
    let mut rdr = snmp2::AsnReader::from_bytes(msg);
    let _version = rdr.read_asn_integer().ok()?;
    let global = rdr.read_raw(snmp2::asn1::TYPE_SEQUENCE).ok()?;
    let id = snmp2::AsnReader::from_bytes(global)
        .read_asn_integer()
        .ok()?;
    let params = rdr.read_asn_octetstring().ok()?;
    let usm = snmp2::AsnReader::from_bytes(params)
        .read_raw(snmp2::asn1::TYPE_SEQUENCE)
        .ok()?;
    let mut usm = snmp2::AsnReader::from_bytes(usm);
    let _engine = usm.read_asn_octetstring().ok()?;
    let boots = usm.read_asn_integer().ok()?;
    let time = usm.read_asn_integer().ok()?;
    Some((id, boots, time))
}

impl Router {
    /// A router that only logs traps sent within `quiet` of the sender's start.
    pub fn new(quiet: std::time::Duration) -> Router {
        Router {
            devices: Vec::new(),
            by_ip: HashMap::new(),
            quiet_ticks: u32::try_from(quiet.as_millis() / 10).unwrap_or(u32::MAX),
            usm: HashMap::new(),
            clocks: HashMap::new(),
        }
    }

    /// Reads an SNMPv3 trap with the credentials of the devices at `ip`; the first whose user
    /// authenticates (and decrypts) it is the sender.
    pub fn decode_v3(&mut self, ip: IpAddr, bytes: &[u8]) -> Result<(usize, Trap), &'static str> {
        let Some(candidates) = self.by_ip.get(&ip) else {
            return Err("unknown_source");
        };
        for &i in candidates {
            let TrapAuth::Usm(v3) = &self.devices[i].auth else {
                continue;
            };
            let mut security = self.usm.get(&i).cloned().unwrap_or_else(|| v3.security());
            // snmp2 zeroes the authentication field in place while checking it: give it a copy.
            let copy = bytes.to_vec();
            let trap = match Pdu::from_bytes_with_security(&copy, Some(&mut security)) {
                Ok(pdu) => trap_from_pdu(&pdu),
                Err(_) => continue,
            };
            if let Ok(trap) = trap {
                self.usm.insert(i, security);
                // Authenticated, so its stamp is the sender's: a replay or a stale message
                // is refused (RFC 3414 timeliness, and exact repeats inside the window).
                let (id, boots, time) = v3_stamp(bytes).ok_or("malformed")?;
                let now = std::time::Instant::now();
                self.clocks
                    .entry(i)
                    .or_insert_with(|| EngineClock::new(now))
                    .admit(id, boots, time, now)?;
                return Ok((i, trap));
            }
        }
        Err("bad_credentials")
    }

    /// Adds a device that sends traps from `ip`.
    pub fn add(&mut self, ip: IpAddr, source: Source) {
        self.by_ip.entry(ip).or_default().push(self.devices.len());
        self.devices.push(source);
    }

    /// Decides what a decoded v1/v2c trap from `ip` leads to.
    pub fn judge(&self, ip: IpAddr, trap: &Trap) -> Verdict {
        let Some(candidates) = self.by_ip.get(&ip) else {
            return Verdict::Drop("unknown_source");
        };
        let Some(&device) = candidates.iter().find(|&&i| match &self.devices[i].auth {
            TrapAuth::Community(c) => c.expose().as_bytes() == trap.community.as_slice(),
            TrapAuth::Usm(_) => false,
        }) else {
            return Verdict::Drop("bad_community");
        };
        self.verdict(device, trap)
    }

    /// What a trap from a known, authenticated device leads to.
    pub fn verdict(&self, device: usize, trap: &Trap) -> Verdict {
        if trap.uptime.is_some_and(|t| t < self.quiet_ticks) {
            return Verdict::LogOnly("after_reboot");
        }
        let hint = match (&trap.kind, trap.if_index) {
            (TrapKind::LinkDown | TrapKind::LinkUp, Some(i)) => Hint::Port(i),
            (
                TrapKind::LinkDown | TrapKind::LinkUp | TrapKind::ColdStart | TrapKind::WarmStart,
                _,
            ) => Hint::Repoll,
            (TrapKind::Other(_), _) => return Verdict::LogOnly("not_handled"),
        };
        Verdict::Deliver { device, hint }
    }
}

/// `result` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `delivered`, `after_reboot`, `not_handled`, `unknown_source`, `bad_community`,
    /// `bad_credentials`, `malformed`, `not_a_trap`, `busy`.
    pub result: &'static str,
}

/// Refused datagrams' log lines, at most one a second.
static REFUSED: cnaas_shared::runtime::LogLimiter = cnaas_shared::runtime::LogLimiter::new();

/// Receives traps until `token` is cancelled.
pub async fn run(
    socket: UdpSocket,
    mut router: Router,
    counter: prometheus_client::metrics::family::Family<
        ResultLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    token: CancellationToken,
) {
    // A flood of refused datagrams (a scanner, a misconfigured sender) is counted per
    // reason; the log gets one line a second with how many it held back.
    static SOCKET: cnaas_shared::runtime::LogLimiter = cnaas_shared::runtime::LogLimiter::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    if let Some(suppressed) = SOCKET.allow() {
                        tracing::warn!(error = %e, suppressed, "Trap socket error.");
                    }
                    continue;
                }
            },
            () = token.cancelled() => break,
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        // A datagram that trips a bug in decoding must not end trap reception: it is
        // counted (`panic`) and logged, and the next one is read as usual.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(&mut router, from, datagram)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(peer = %from, bytes = datagram.len(), "Decoding a trap panicked; the datagram is dropped and reception goes on.");
            "panic"
        });
        counter.get_or_create(&ResultLabel { result }).inc();
    }
}

/// Decodes and judges one datagram from `from`; returns its result label.
fn handle(router: &mut Router, from: std::net::SocketAddr, datagram: &[u8]) -> &'static str {
    let decoded = match decode(datagram) {
        Err(TrapError::NeedsUsm) => match router.decode_v3(from.ip(), datagram) {
            Ok((device, trap)) => Ok((Some(device), trap)),
            Err(why) => {
                if let Some(suppressed) = REFUSED.allow() {
                    tracing::warn!(peer = %from, why, suppressed, "SNMPv3 trap refused.");
                }
                return why;
            }
        },
        other => other.map(|t| (None, t)),
    };
    match decoded {
        Err(e) => {
            let label = match e {
                TrapError::NotATrap(_) => "not_a_trap",
                _ => "malformed",
            };
            if let Some(suppressed) = REFUSED.allow() {
                tracing::warn!(peer = %from, error = %e, suppressed, "Trap refused.");
            }
            label
        }
        Ok((known, trap)) => match known.map_or_else(
            || router.judge(from.ip(), &trap),
            |d| router.verdict(d, &trap),
        ) {
            Verdict::Deliver { device, hint } => {
                let d = &router.devices[device];
                tracing::info!(device = %d.name, kind = ?trap.kind, if_index = ?trap.if_index, "Trap received; confirming.");
                match d.hints.try_send(hint) {
                    Ok(()) => "delivered",
                    // A full queue means a re-poll is already pending for this device.
                    Err(_) => "busy",
                }
            }
            Verdict::LogOnly(why) => {
                tracing::info!(peer = %from, kind = ?trap.kind, if_index = ?trap.if_index, why, "Trap logged only.");
                why
            }
            Verdict::Drop(why) => {
                if let Some(suppressed) = REFUSED.allow() {
                    tracing::warn!(peer = %from, kind = ?trap.kind, why, suppressed, "Trap dropped.");
                }
                why
            }
        },
    }
}

#[cfg(test)]
mod tests;
