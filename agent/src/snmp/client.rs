//! A per-device SNMP client: timeout and retry around each request, a fresh socket after any
//! timeout (so a late reply can never be taken for the answer to the next request), and a
//! table walk that fetches several columns in one GETBULK stream.
//!
//! SNMPv2c goes over the client's own connected UDP socket: requests are encoded with
//! rasn-snmp, responses decoded in place by snmp2's parser from one receive buffer per worker
//! thread, and only a response with the request's id is taken. (snmp2's session keeps two
//! 64 KiB buffers per device, zeroed on creation: 250 MiB for 2,000 devices kept open, a fifth
//! of the agent's CPU when opened per poll.) SNMPv3 uses snmp2's session, which does the USM.

use std::cell::RefCell;
use std::time::Duration;

use snmp2::{AsyncSession, Oid};
use tokio::net::UdpSocket;

use super::credentials::Credentials;
use super::oid::{self, OidBuf};
use super::value::SnmpValue;

/// Where and how to reach one device.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// Community or USM user.
    pub credentials: Credentials,
    /// How long to wait for one response.
    pub timeout: Duration,
    /// How many times to resend after a timeout.
    pub retries: u32,
    /// GETBULK max-repetitions (rows per response and column).
    pub max_repetitions: u32,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    /// No response within the timeout, after every retry.
    #[error("no response from {addr} after {attempts} attempts")]
    Timeout {
        /// The device address.
        addr: String,
        /// How many requests were sent.
        attempts: u32,
    },
    /// The socket could not be opened or the address resolved.
    #[error("cannot open an SNMP session to {addr}: {source}")]
    Io {
        /// The device address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The device answered with something that is not a valid response to our request.
    #[error("bad response from {addr}: {reason}")]
    Protocol {
        /// The device address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The device answered with a non-zero error-status.
    #[error("{addr} answered error-status {status} at varbind {index}")]
    ErrorStatus {
        /// The device address.
        addr: String,
        /// RFC 3416 error-status.
        status: u32,
        /// 1-based varbind index.
        index: u32,
    },
    /// A column walk did not advance (a broken agent); the walk stops rather than loop.
    #[error("{addr} returned a non-increasing OID {oid} while walking")]
    NonIncreasing {
        /// The device address.
        addr: String,
        /// The offending OID.
        oid: String,
    },
}

impl SnmpError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SnmpError::Timeout { .. } => "timeout",
            SnmpError::Io { .. } => "io",
            SnmpError::Protocol { .. } => "protocol",
            SnmpError::ErrorStatus { .. } => "error_status",
            SnmpError::NonIncreasing { .. } => "non_increasing",
        }
    }
}

/// Running counts of what the client did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent (each retry counts).
    pub requests: u64,
    /// Requests that got no answer in time.
    pub timeouts: u64,
    /// Responses or sockets that failed otherwise.
    pub errors: u64,
}

/// The result of a walk: the scalars (non-repeaters) and, per column, its instances in order.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Values of the non-repeater OIDs (the next OID after each given one).
    pub scalars: Vec<(OidBuf, SnmpValue)>,
    /// Per requested column, its `(oid, value)` rows.
    pub columns: Vec<Vec<(OidBuf, SnmpValue)>>,
}

/// A sane upper bound on rows per column; a switch has at most a few thousand interfaces.
const MAX_ROWS_PER_COLUMN: usize = 50_000;

/// The most varbinds one GETBULK asks for (rows times columns). A switch's SNMP engine is
/// CPU-bound (a Catalyst answers about 250-420 varbinds/s), so a response much larger than
/// this would not come back within the default 800 ms timeout; smaller ones cost a round trip
/// each. The link plan's three columns of a 48-port switch (50-55 rows) fit in one.
pub const MAX_VARBINDS_PER_REQUEST: u32 = 256;

/// Rows per column to ask for: enough for the whole table as the last walk of these columns
/// found it (plus one, to see its end in the same response), within the configured
/// max-repetitions, the varbind budget, and what the device could answer before (`too_big`).
/// A table found empty says nothing about its size (a device still booting): the cap then.
fn repetitions(cap: u32, too_big: Option<u32>, columns: usize, rows_last: Option<u32>) -> u32 {
    let columns = u32::try_from(columns.max(1)).unwrap_or(u32::MAX);
    let mut reps = cap.min(MAX_VARBINDS_PER_REQUEST / columns);
    if let Some(limit) = too_big {
        reps = reps.min(limit);
    }
    if let Some(rows) = rows_last.filter(|&r| r > 0) {
        reps = reps.min(rows.saturating_add(1));
    }
    reps.max(1)
}

/// One device's SNMP client. Not shared: the owner makes one request at a time.
pub struct SnmpClient {
    target: Target,
    session: Option<Box<AsyncSession>>,
    /// The v2c socket, connected to the device.
    socket: Option<UdpSocket>,
    next_req_id: i32,
    stats: ClientStats,
    /// Rows the last walk found, by its first column (a device has a handful of walks).
    rows_last: Vec<(OidBuf, u32)>,
    /// The max-repetitions the device last answered tooBig to, halved: never asked again.
    too_big: Option<u32>,
}

type Varbinds = Vec<(OidBuf, SnmpValue)>;

impl SnmpClient {
    /// A client for a target; the socket is opened on first use.
    pub fn new(target: Target) -> SnmpClient {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        SnmpClient {
            target,
            session: None,
            socket: None,
            next_req_id: i32::try_from(seed & 0x3fff_ffff).unwrap_or(1),
            stats: ClientStats::default(),
            rows_last: Vec::new(),
            too_big: None,
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Closes a v2c socket between polls, so open sockets follow the polls under way, not the
    /// number of devices. An SNMPv3 session stays open: a new one would repeat the engine
    /// discovery round trip on every poll.
    pub fn release(&mut self) {
        self.socket = None;
    }

    /// Whether a session (socket) is open.
    pub fn is_open(&self) -> bool {
        self.session.is_some() || self.socket.is_some()
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// GET of exact instances.
    pub async fn get(&mut self, oids: &[&[u32]]) -> Result<Varbinds, SnmpError> {
        let (status, index, vbs) = self.request(Request::Get, oids).await?;
        if status != 0 {
            return Err(self.error_status(status, index));
        }
        Ok(vbs)
    }

    /// Walks several columns at once with GETBULK (and fetches `scalars` with the first
    /// request, as non-repeaters). Each column's rows are in OID order. It asks for as many
    /// rows as the last walk of the same columns found (see [`repetitions`]), so a table that
    /// has not grown comes in one request where the varbind budget allows.
    pub async fn bulk_walk(
        &mut self,
        scalars: &[&[u32]],
        columns: &[&[u32]],
    ) -> Result<Walk, SnmpError> {
        let mut walk = Walk {
            scalars: Vec::new(),
            columns: vec![Vec::new(); columns.len()],
        };
        let mut cursors: Vec<OidBuf> = columns.iter().map(|c| OidBuf::from_slice(c)).collect();
        let mut active: Vec<usize> = (0..columns.len()).collect();
        let key = columns.first().copied().unwrap_or_default();
        let rows_last = self
            .rows_last
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, n)| *n);
        let mut reps = repetitions(
            self.target.max_repetitions,
            self.too_big,
            columns.len(),
            rows_last,
        );
        let mut first = true;
        while !active.is_empty() || (first && !scalars.is_empty()) {
            let non_repeaters: &[&[u32]] = if first { scalars } else { &[] };
            let mut oids: Vec<&[u32]> = non_repeaters.to_vec();
            oids.extend(active.iter().map(|&c| cursors[c].as_slice()));
            let (status, index, vbs) = self
                .request(
                    Request::GetBulk {
                        non_repeaters: u32::try_from(non_repeaters.len()).unwrap_or(0),
                        max_repetitions: reps,
                    },
                    &oids,
                )
                .await?;
            if status == 1 && reps > 1 {
                // tooBig: ask for fewer rows, now and from now on, and try the same round again.
                reps = (reps / 2).max(1);
                self.too_big = Some(reps);
                continue;
            }
            if status != 0 {
                return Err(self.error_status(status, index));
            }
            let mut vbs = vbs.into_iter();
            if first {
                walk.scalars.extend(vbs.by_ref().take(non_repeaters.len()));
                first = false;
            }
            let rest: Vec<_> = vbs.collect();
            if rest.is_empty() {
                break;
            }
            let width = active.len();
            let mut done = vec![false; width];
            for (i, (oid, value)) in rest.into_iter().enumerate() {
                let slot = i % width;
                if done[slot] {
                    continue;
                }
                let col = active[slot];
                if matches!(value, SnmpValue::EndOfMibView) || !oid::is_under(&oid, columns[col]) {
                    done[slot] = true;
                    continue;
                }
                if oid <= cursors[col] {
                    return Err(SnmpError::NonIncreasing {
                        addr: self.target.addr.clone(),
                        oid: oid::to_string(&oid),
                    });
                }
                cursors[col].clone_from(&oid);
                walk.columns[col].push((oid, value));
                if walk.columns[col].len() >= MAX_ROWS_PER_COLUMN {
                    done[slot] = true;
                }
            }
            active = active
                .iter()
                .zip(done)
                .filter(|(_, d)| !d)
                .map(|(c, _)| *c)
                .collect();
        }
        let rows = walk.columns.iter().map(Vec::len).max().unwrap_or(0);
        let rows = u32::try_from(rows).unwrap_or(u32::MAX);
        match self.rows_last.iter_mut().find(|(k, _)| k.as_slice() == key) {
            Some((_, n)) => *n = rows,
            None => self.rows_last.push((OidBuf::from_slice(key), rows)),
        }
        Ok(walk)
    }

    fn error_status(&self, status: u32, index: u32) -> SnmpError {
        SnmpError::ErrorStatus {
            addr: self.target.addr.clone(),
            status,
            index,
        }
    }

    /// Sends one request, resending on timeout; returns error-status, error-index and varbinds.
    async fn request(
        &mut self,
        req: Request,
        oids: &[&[u32]],
    ) -> Result<(u32, u32, Varbinds), SnmpError> {
        if let Credentials::V2c { community } = &self.target.credentials {
            let community = community.expose().as_bytes().to_vec();
            return self.request_v2c(req, oids, &community).await;
        }
        // Boxed: snmp2's v3 futures are large, and every device task would carry their size.
        Box::pin(self.request_v3(req, oids)).await
    }

    /// [`request`](Self::request) over snmp2's session (SNMPv3 USM).
    async fn request_v3(
        &mut self,
        req: Request,
        oids: &[&[u32]],
    ) -> Result<(u32, u32, Varbinds), SnmpError> {
        let addr = self.target.addr.clone();
        let oid_values: Vec<Oid<'static>> = oids
            .iter()
            .map(|o| {
                let arcs: Vec<u64> = o.iter().map(|&a| u64::from(a)).collect();
                Oid::from(&arcs).map_err(|e| SnmpError::Protocol {
                    addr: addr.clone(),
                    reason: format!("cannot encode OID {}: {e:?}", oid::to_string(o)),
                })
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Oid<'_>> = oid_values.iter().collect();
        let attempts = self.target.retries + 1;
        let mut last_protocol_error = None;
        let mut timed_out = false;
        let (mut attempt, mut auth_repeats) = (0, 0);
        while attempt < attempts {
            if self.session.is_none() {
                match self.open_session().await {
                    Ok(s) => self.session = Some(Box::new(s)),
                    Err(Open::Io(source)) => return Err(SnmpError::Io { addr, source }),
                    Err(Open::Timeout) => {
                        attempt += 1;
                        timed_out = true;
                        self.stats.timeouts += 1;
                        continue;
                    }
                    Err(Open::Snmp(e)) => {
                        attempt += 1;
                        self.stats.errors += 1;
                        last_protocol_error = Some(e);
                        continue;
                    }
                }
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            self.stats.requests += 1;
            let fut = async {
                let pdu = match req {
                    Request::Get => session.get_many(&refs).await,
                    Request::GetBulk {
                        non_repeaters,
                        max_repetitions,
                    } => session.getbulk(&refs, non_repeaters, max_repetitions).await,
                }?;
                let vbs: Varbinds = pdu
                    .varbinds
                    .clone()
                    .filter_map(|(name, value)| {
                        let arcs: Option<OidBuf> = name.iter().and_then(|it| {
                            it.map(|a| u32::try_from(a).ok()).collect::<Option<_>>()
                        });
                        arcs.map(|a| (a, SnmpValue::from_snmp2(&value)))
                    })
                    .collect();
                Ok::<_, snmp2::Error>((pdu.error_status, pdu.error_index, vbs))
            };
            match tokio::time::timeout(self.target.timeout, fut).await {
                Ok(Ok(result)) => return Ok(result),
                // SNMPv3: the engine's boots/time were re-synchronised; repeat at once.
                Ok(Err(snmp2::Error::AuthUpdated)) if auth_repeats < 2 => auth_repeats += 1,
                Ok(Err(e)) => {
                    // A stale or garbled datagram: start over on a fresh socket.
                    attempt += 1;
                    self.stats.errors += 1;
                    self.session = None;
                    last_protocol_error = Some(e);
                }
                Err(_elapsed) => {
                    attempt += 1;
                    timed_out = true;
                    self.stats.timeouts += 1;
                    self.session = None;
                }
            }
        }
        match last_protocol_error {
            // Every attempt failed the same non-timeout way (e.g. the port is closed).
            Some(e) if !timed_out => Err(SnmpError::Protocol {
                addr,
                reason: e.to_string(),
            }),
            _ => Err(SnmpError::Timeout { addr, attempts }),
        }
    }
}

// One receive buffer per worker thread: the largest UDP payload.
thread_local! {
    static RECV: RefCell<Vec<u8>> = RefCell::new(vec![0; 65_507]);
}

/// A v2c request, BER-encoded.
fn encode_v2c(req: Request, request_id: i32, community: &[u8], oids: &[&[u32]]) -> Option<Vec<u8>> {
    use rasn::types::{Integer, ObjectIdentifier, OctetString};
    use rasn_snmp::v2::{BulkPdu, GetBulkRequest, GetRequest, Pdu, Pdus, VarBind, VarBindValue};
    let binds = oids
        .iter()
        .map(|o| {
            Some(VarBind {
                name: ObjectIdentifier::new(o.to_vec())?,
                value: VarBindValue::Unspecified,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let data = match req {
        Request::Get => Pdus::GetRequest(GetRequest(Pdu {
            request_id,
            error_status: 0,
            error_index: 0,
            variable_bindings: binds,
        })),
        Request::GetBulk {
            non_repeaters,
            max_repetitions,
        } => Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
            request_id,
            non_repeaters,
            max_repetitions,
            variable_bindings: binds,
        })),
    };
    rasn::ber::encode(&rasn_snmp::v2c::Message {
        version: Integer::from(1),
        community: OctetString::from(community.to_vec()),
        data,
    })
    .ok()
}

/// What one received datagram was.
enum Received {
    /// The response to our request: error-status, error-index, varbinds.
    Answer(u32, u32, Varbinds),
    /// Something else (a late answer to an earlier request, not a response): keep waiting.
    Other,
    /// Not SNMP we can read.
    Garbled(snmp2::Error),
}

fn decode_v2c(bytes: &[u8], request_id: i32) -> Received {
    let pdu = match snmp2::Pdu::from_bytes(bytes) {
        Ok(p) => p,
        Err(e) => return Received::Garbled(e),
    };
    if pdu.message_type != snmp2::MessageType::Response || pdu.req_id != request_id {
        return Received::Other;
    }
    let vbs: Varbinds = pdu
        .varbinds
        .filter_map(|(name, value)| {
            let arcs: Option<OidBuf> = name
                .iter()
                .and_then(|it| it.map(|a| u32::try_from(a).ok()).collect::<Option<_>>());
            arcs.map(|a| (a, SnmpValue::from_snmp2(&value)))
        })
        .collect();
    Received::Answer(pdu.error_status, pdu.error_index, vbs)
}

/// Waits for the response with `request_id` on `socket`, decoding each datagram in the
/// thread's buffer.
async fn receive_v2c(
    socket: &UdpSocket,
    request_id: i32,
    garbled: &mut u64,
) -> std::io::Result<(u32, u32, Varbinds)> {
    loop {
        socket.readable().await?;
        let got = RECV.with(|buf| {
            let mut buf = buf.borrow_mut();
            match socket.try_recv(&mut buf) {
                Ok(n) => Ok(Some(decode_v2c(
                    buf.get(..n).unwrap_or_default(),
                    request_id,
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        match got {
            Some(Received::Answer(status, index, vbs)) => return Ok((status, index, vbs)),
            Some(Received::Garbled(e)) => {
                *garbled += 1;
                tracing::debug!(error = %e, "Unreadable datagram ignored.");
            }
            Some(Received::Other) | None => {}
        }
    }
}

impl SnmpClient {
    async fn request_v2c(
        &mut self,
        req: Request,
        oids: &[&[u32]],
        community: &[u8],
    ) -> Result<(u32, u32, Varbinds), SnmpError> {
        let addr = self.target.addr.clone();
        let attempts = self.target.retries + 1;
        let mut refused = None;
        let mut timed_out = false;
        for _ in 0..attempts {
            if self.socket.is_none() {
                self.socket = Some(open_v2c(&addr).await.map_err(|source| SnmpError::Io {
                    addr: addr.clone(),
                    source,
                })?);
            }
            let Some(socket) = self.socket.as_ref() else {
                continue;
            };
            self.next_req_id = self.next_req_id.wrapping_add(1) & 0x3fff_ffff;
            let id = self.next_req_id;
            let bytes =
                encode_v2c(req, id, community, oids).ok_or_else(|| SnmpError::Protocol {
                    addr: addr.clone(),
                    reason: "cannot encode the request (an OID with fewer than two arcs?)".into(),
                })?;
            self.stats.requests += 1;
            let mut garbled = 0;
            let exchange = async {
                socket.send(&bytes).await?;
                receive_v2c(socket, id, &mut garbled).await
            };
            let result = tokio::time::timeout(self.target.timeout, exchange).await;
            self.stats.errors += garbled;
            match result {
                Ok(Ok(answer)) => return Ok(answer),
                // A closed port (ICMP unreachable) or another socket error: a fresh socket.
                Ok(Err(e)) => {
                    self.stats.errors += 1;
                    self.socket = None;
                    refused = Some(e);
                }
                Err(_elapsed) => {
                    timed_out = true;
                    self.stats.timeouts += 1;
                    self.socket = None;
                }
            }
        }
        match refused {
            Some(e) if !timed_out => Err(SnmpError::Protocol {
                addr,
                reason: e.to_string(),
            }),
            _ => Err(SnmpError::Timeout { addr, attempts }),
        }
    }
}

/// A UDP socket connected to `addr` (`host:port`), of the address's family.
async fn open_v2c(addr: &str) -> std::io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let local: std::net::SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// Why a session could not be opened.
enum Open {
    Io(std::io::Error),
    Timeout,
    Snmp(snmp2::Error),
}

impl SnmpClient {
    /// A fresh socket; for SNMPv3 also engine discovery (`init`), bounded by the timeout.
    async fn open_session(&mut self) -> Result<AsyncSession, Open> {
        self.next_req_id = self.next_req_id.wrapping_add(1) & 0x3fff_ffff;
        let addr = self.target.addr.as_str();
        match &self.target.credentials {
            Credentials::V2c { community } => {
                AsyncSession::new_v2c(addr, community.expose().as_bytes(), self.next_req_id)
                    .await
                    .map_err(Open::Io)
            }
            Credentials::V3(v3) => {
                let mut s = AsyncSession::new_v3(addr, self.next_req_id, v3.security())
                    .await
                    .map_err(Open::Io)?;
                self.stats.requests += 1;
                match tokio::time::timeout(self.target.timeout, s.init()).await {
                    Ok(Ok(())) => Ok(s),
                    Ok(Err(e)) => Err(Open::Snmp(e)),
                    Err(_) => Err(Open::Timeout),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Request {
    Get,
    GetBulk {
        non_repeaters: u32,
        max_repetitions: u32,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::snmp::{AuthProto, PrivProto, V3};
    use cnaas_shared::config::Secret;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn walks_the_simulator_and_releases_the_socket_between_polls() {
        let token = CancellationToken::new();
        let campus = cnaas_sim::Campus::tree(3, 2, 52, std::time::Instant::now());
        let (addr, _) = cnaas_sim::serve_shared(
            cnaas_sim::Shared::new(campus),
            "127.0.0.1:0".parse().unwrap(),
            token.clone(),
        )
        .await
        .unwrap();
        let mut c = SnmpClient::new(Target {
            addr: addr.to_string(),
            credentials: Credentials::V2c {
                community: Secret::new("core"),
            },
            timeout: Duration::from_secs(2),
            retries: 1,
            max_repetitions: 64,
        });
        for _ in 0..2 {
            let walk = c
                .bulk_walk(
                    &[oid::SYS_UPTIME, oid::IF_NUMBER],
                    &[oid::IF_ADMIN_STATUS, oid::IF_OPER_STATUS],
                )
                .await
                .unwrap();
            assert_eq!(walk.scalars.len(), 2);
            assert!(walk.columns.iter().all(|c| c.len() == 52));
            assert!(c.is_open());
            c.release();
            assert!(!c.is_open(), "a v2c session is closed between polls");
        }
        // One GETBULK per walk: 64 rows asked for the first time, then the 52 found plus one;
        // the end of each column is seen in the same response.
        assert_eq!(c.stats().requests, 2);
        token.cancel();
    }

    #[test]
    fn repetitions_follow_the_table_within_the_bounds() {
        // Nothing known yet: the configured cap, within the varbind budget.
        assert_eq!(repetitions(64, None, 3, None), 64);
        assert_eq!(repetitions(64, None, 18, None), 14);
        assert_eq!(repetitions(64, None, 1000, None), 1);
        // The last walk found 52 rows: 53, to see the end at once.
        assert_eq!(repetitions(64, None, 3, Some(52)), 53);
        // ... but never more than the cap, the budget, or what the device choked on.
        assert_eq!(repetitions(25, None, 3, Some(52)), 25);
        assert_eq!(repetitions(64, None, 18, Some(52)), 14);
        assert_eq!(repetitions(64, Some(16), 3, Some(52)), 16);
        // A table found empty asks for the cap again, not for one row at a time; a zero cap
        // still asks for one row.
        assert_eq!(repetitions(64, None, 3, Some(0)), 64);
        assert_eq!(repetitions(64, None, 3, Some(1)), 2);
        assert_eq!(repetitions(0, None, 3, None), 1);
    }

    /// A device that first sends garbage, then a late answer to another request, then the
    /// answer: the client takes only the last. A closed port is an error at once.
    #[tokio::test]
    async fn only_the_answer_with_the_request_id_is_taken() {
        use rasn::types::{Integer, ObjectIdentifier, OctetString};
        use rasn_smi::v2::{ObjectSyntax, SimpleSyntax};
        use rasn_snmp::v2::{Pdu, Pdus, Response, VarBind, VarBindValue};
        let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = device.local_addr().unwrap();
        let answer = |id: i32, value: i64| {
            rasn::ber::encode(&rasn_snmp::v2c::Message {
                version: Integer::from(1),
                community: OctetString::from(b"c".to_vec()),
                data: Pdus::Response(Response(Pdu {
                    request_id: id,
                    error_status: 0,
                    error_index: 0,
                    variable_bindings: vec![VarBind {
                        name: ObjectIdentifier::new(vec![1, 3, 6, 1, 2, 1, 2, 1, 0]).unwrap(),
                        value: VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(
                            Integer::from(value),
                        ))),
                    }],
                })),
            })
            .unwrap()
        };
        let responder = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (n, peer) = device.recv_from(&mut buf).await.unwrap();
            let msg = snmp2::Pdu::from_bytes(&buf[..n]).unwrap();
            let id = msg.req_id;
            device.send_to(b"\x30\x02garbage", peer).await.unwrap();
            device
                .send_to(&answer(id.wrapping_sub(1), 1), peer)
                .await
                .unwrap();
            device.send_to(&answer(id, 52), peer).await.unwrap();
        });
        let mut c = SnmpClient::new(Target {
            addr: addr.to_string(),
            credentials: Credentials::V2c {
                community: Secret::new("c"),
            },
            timeout: Duration::from_secs(2),
            retries: 0,
            max_repetitions: 25,
        });
        let vbs = c.get(&[oid::IF_NUMBER]).await.unwrap();
        assert_eq!(vbs.len(), 1);
        assert_eq!(vbs[0].1, SnmpValue::Integer(52));
        assert_eq!(c.stats().errors, 1, "the garbage is counted");
        responder.await.unwrap();
        // Nobody listens any more: the port is closed (ICMP unreachable on loopback).
        drop(c);
        let mut c = SnmpClient::new(Target {
            addr: addr.to_string(),
            credentials: Credentials::V2c {
                community: Secret::new("c"),
            },
            timeout: Duration::from_millis(300),
            retries: 1,
            max_repetitions: 25,
        });
        let e = c.get(&[oid::IF_NUMBER]).await.unwrap_err();
        assert!(
            matches!(e, SnmpError::Protocol { .. } | SnmpError::Timeout { .. }),
            "{e}"
        );
    }

    #[tokio::test]
    async fn walks_the_simulator_over_snmpv3_auth_priv_and_keeps_the_session() {
        let token = CancellationToken::new();
        let campus = cnaas_sim::Campus::tree(3, 2, 52, std::time::Instant::now());
        let user = cnaas_sim::V3User {
            user: "agent".into(),
            auth_password: "auth-pass-123".into(),
            priv_password: "priv-pass-456".into(),
        };
        let (addr, _) = cnaas_sim::serve_shared(
            cnaas_sim::Shared::with_v3(campus, Some(user)),
            "127.0.0.1:0".parse().unwrap(),
            token.clone(),
        )
        .await
        .unwrap();
        let v3 = |auth: &str| V3 {
            user: "agent".into(),
            auth: AuthProto::Sha,
            auth_password: Secret::new(auth),
            privacy: Some((PrivProto::Aes, Secret::new("priv-pass-456"))),
            context: "dist-1".into(),
        };
        let target = |auth: &str| Target {
            addr: addr.to_string(),
            credentials: Credentials::V3(v3(auth)),
            timeout: Duration::from_millis(500),
            retries: 0,
            max_repetitions: 25,
        };
        let mut c = SnmpClient::new(target("auth-pass-123"));
        for _ in 0..2 {
            let walk = c
                .bulk_walk(&[oid::SYS_UPTIME], &[oid::IF_OPER_STATUS, oid::IF_NAME])
                .await
                .unwrap();
            assert_eq!(walk.scalars.len(), 1);
            assert!(walk.columns.iter().all(|c| c.len() == 52));
            c.release();
            assert!(
                c.is_open(),
                "a v3 session stays open (no new discovery per poll)"
            );
        }
        // A wrong password gets reports, never data.
        let mut bad = SnmpClient::new(target("wrong-pass-000"));
        assert!(bad.get(&[oid::SYS_UPTIME]).await.is_err());
        token.cancel();
    }
}
