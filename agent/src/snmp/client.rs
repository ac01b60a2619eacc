//! A per-device SNMP client: timeout and retry around each request, a fresh socket after any
//! timeout (so a late reply can never be taken for the answer to the next request), and a
//! table walk that fetches several columns in one GETBULK stream.

use std::time::Duration;

use snmp2::{AsyncSession, Oid};

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

/// One device's SNMP client. Not shared: the owner makes one request at a time.
pub struct SnmpClient {
    target: Target,
    session: Option<AsyncSession>,
    next_req_id: i32,
    stats: ClientStats,
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
            next_req_id: i32::try_from(seed & 0x3fff_ffff).unwrap_or(1),
            stats: ClientStats::default(),
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Closes the socket between polls, freeing its buffers (snmp2 keeps two 64 KiB buffers
    /// per session), so the agent's memory grows with the polls under way, not with the
    /// devices: 2,000 idle v2c sessions held 250 MiB. An SNMPv3 session stays open: a new one
    /// would repeat the engine discovery round trip on every poll.
    pub fn release(&mut self) {
        if matches!(self.target.credentials, Credentials::V2c { .. }) {
            self.session = None;
        }
    }

    /// Whether a session (socket) is open.
    pub fn is_open(&self) -> bool {
        self.session.is_some()
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
    /// request, as non-repeaters). Each column's rows are in OID order.
    pub async fn bulk_walk(
        &mut self,
        scalars: &[&[u32]],
        columns: &[&[u32]],
    ) -> Result<Walk, SnmpError> {
        let mut walk = Walk {
            scalars: Vec::new(),
            columns: vec![Vec::new(); columns.len()],
        };
        let mut cursors: Vec<OidBuf> = columns.iter().map(|c| c.to_vec()).collect();
        let mut active: Vec<usize> = (0..columns.len()).collect();
        let mut reps = self.target.max_repetitions.max(1);
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
                // tooBig: ask for fewer rows and try the same round again.
                reps = (reps / 2).max(1);
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
                    Ok(s) => self.session = Some(s),
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
            max_repetitions: 25,
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
        // Three GETBULKs per walk (52 rows at 25 a time, and the end), twice.
        assert_eq!(c.stats().requests, 6);
        token.cancel();
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
