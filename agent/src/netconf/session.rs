//! NETCONF sessions over SSH with `rustnetconf` (hello with base:1.0 and base:1.1, both
//! framings, message-id matching, a bound on what one message may hold, host keys checked
//! against a known_hosts file).
//!
//! - [`Session`]: the polling session a device task owns. It connects when needed, with backoff
//!   after a failed attempt, asks for interface state, and drops the connection after any
//!   transport or protocol error so the next poll starts afresh.
//! - [`listen`]: a second session per device for RFC 5277 notifications (a subscription may
//!   forbid other RPCs on its session unless the server offers `:interleave`). A notification
//!   about interfaces wakes the device task, which confirms it with a `<get>`, as after a trap.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::config::Secret;
use rustnetconf::error::RpcError;
use rustnetconf::transport::ssh::HostKeyVerification;
use rustnetconf::{Client, NetconfError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::interfaces::{self, IETF_NS, IfState, OPENCONFIG_NS, ParseError};

/// How to log in.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A password (read from a file or the environment).
    Password(Secret),
    /// A private key file, with its passphrase if it has one.
    Key {
        /// The OpenSSH private key file.
        file: PathBuf,
        /// Its passphrase.
        passphrase: Option<Secret>,
    },
}

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeys {
    /// Against an OpenSSH known_hosts file (`[host]:port` entries for other ports than 22).
    KnownHosts(PathBuf),
    /// Not at all: labs only, and said so in the log at every connect.
    AcceptAny,
}

/// A device's NETCONF settings, resolved from the config.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` of the SSH server (port 830 when left out).
    pub address: String,
    /// SSH user.
    pub user: String,
    /// Password or key.
    pub auth: Auth,
    /// Host key check.
    pub host_keys: HostKeys,
    /// Bound on one RPC (and on the SSH connect and hello).
    pub timeout: Duration,
    /// Bound on one message, in bytes: a server sending more is cut off.
    pub max_message: usize,
    /// Whether to subscribe to notifications where the server offers them.
    pub notifications: bool,
}

/// Why a NETCONF exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum NcError {
    /// The SSH connection, authentication or hello failed.
    #[error("cannot open a NETCONF session to {address}: {reason}")]
    Connect {
        /// Where to.
        address: String,
        /// Why.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error, broke the framing, or closed the session.
    #[error("NETCONF: {0}")]
    Protocol(String),
    /// The reply could not be read.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The last connect failed; the next attempt waits.
    #[error("not connected (next attempt in {retry_in:?}; last error: {last})")]
    Backoff {
        /// Until the next attempt.
        retry_in: Duration,
        /// What failed.
        last: String,
    },
}

/// Reconnect delays: 1 s after the first failure, doubling to at most a minute.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: String,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Backoff {
    /// The delay after `failures` failed attempts in a row.
    pub fn delay(failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        BACKOFF_FIRST
            .saturating_mul(1 << doublings)
            .min(BACKOFF_MAX)
    }

    fn failed(&mut self, why: String, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let d = Self::delay(self.failures);
        self.until = Some(now + d);
        self.last = why;
        d
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    fn waiting(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|t| *t > now)
            .map(|t| t.duration_since(now))
    }
}

fn protocol(e: &NetconfError) -> NcError {
    NcError::Protocol(e.to_string())
}

/// Opens one session: SSH, authentication, host key check and hello, all within the timeout.
async fn connect(t: &Target) -> Result<Client, NcError> {
    let fail = |reason: String| NcError::Connect {
        address: t.address.clone(),
        reason,
    };
    let mut b = Client::connect(&t.address)
        .username(&t.user)
        .gather_facts(false)
        .rpc_timeout(t.timeout)
        .max_read_buffer(t.max_message)
        .keepalive_interval(Duration::from_secs(60));
    b = match &t.auth {
        Auth::Password(p) => b.password(p.expose()),
        Auth::Key { file, passphrase } => {
            let file = file
                .to_str()
                .ok_or_else(|| fail(format!("key file name {} is not UTF-8", file.display())))?;
            let b = b.key_file(file);
            match passphrase {
                Some(p) => b.key_passphrase(p.expose()),
                None => b,
            }
        }
    };
    b = match &t.host_keys {
        HostKeys::KnownHosts(path) => {
            b.host_key_verification(HostKeyVerification::KnownHosts(path.clone()))
        }
        HostKeys::AcceptAny => {
            tracing::warn!(address = %t.address, "NETCONF host key not checked (accept_any_host_key = true): labs only.");
            b.host_key_verification(HostKeyVerification::AcceptAll)
        }
    };
    match tokio::time::timeout(t.timeout, b.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no hello within {:?}", t.timeout))),
    }
}

/// The polling session of one device.
pub struct Session {
    target: Arc<Target>,
    client: Option<Client>,
    openconfig: bool,
    backoff: Backoff,
    connects: watch::Sender<u64>,
}

impl Session {
    /// A session that connects on first use.
    pub fn new(target: Arc<Target>) -> Session {
        Session {
            target,
            client: None,
            openconfig: false,
            backoff: Backoff::default(),
            connects: watch::Sender::new(0),
        }
    }

    /// Sessions opened so far.
    pub fn opened(&self) -> u64 {
        *self.connects.borrow()
    }

    /// Counts this session's successful connects; the notification listener reconnects when it
    /// moves (a polling session that had to reconnect means the server or path went away).
    pub fn connects(&self) -> watch::Receiver<u64> {
        self.connects.subscribe()
    }

    async fn ensure(&mut self) -> Result<&mut Client, NcError> {
        if self.client.is_none() {
            let now = Instant::now();
            if let Some(retry_in) = self.backoff.waiting(now) {
                return Err(NcError::Backoff {
                    retry_in,
                    last: self.backoff.last.clone(),
                });
            }
            match connect(&self.target).await {
                Ok(c) => {
                    self.backoff.succeeded();
                    let caps = c.capabilities();
                    let lists = |ns: &str| {
                        caps.is_some_and(|caps| caps.all_uris().iter().any(|u| u.starts_with(ns)))
                    };
                    self.openconfig = lists(OPENCONFIG_NS);
                    if !self.openconfig && !lists(IETF_NS) {
                        tracing::warn!(
                            address = %self.target.address,
                            "The NETCONF server lists neither ietf-interfaces nor openconfig-interfaces; asking for ietf-interfaces anyway."
                        );
                    }
                    tracing::info!(
                        address = %self.target.address,
                        session_id = ?caps.and_then(|c| c.session_id()),
                        version = ?caps.and_then(|c| c.negotiate_version()),
                        model = if self.openconfig { "openconfig-interfaces" } else { "ietf-interfaces" },
                        "NETCONF session open."
                    );
                    self.connects.send_modify(|n| *n += 1);
                    self.client = Some(c);
                }
                Err(e) => {
                    let d = self.backoff.failed(e.to_string(), Instant::now());
                    tracing::warn!(error = %e, retry_in = ?d, "NETCONF connect failed.");
                    return Err(e);
                }
            }
        }
        self.client
            .as_mut()
            .ok_or_else(|| NcError::Protocol("no session".into()))
    }

    /// The framing the open session uses: `"1.1"` (chunked) or `"1.0"` (end-of-message).
    pub fn version(&self) -> Option<&'static str> {
        let v = self.client.as_ref()?.capabilities()?.negotiate_version()?;
        Some(match v {
            rustnetconf::capability::NetconfVersion::V1_1 => "1.1",
            rustnetconf::capability::NetconfVersion::V1_0 => "1.0",
        })
    }

    /// The content of `<data>` from a `<get>` with this subtree filter. Any failure closes the
    /// session; the next call reconnects.
    pub async fn get(&mut self, filter: &str) -> Result<String, NcError> {
        let timeout = self.target.timeout;
        let client = self.ensure().await?;
        // rustnetconf bounds the RPC with the same timeout; this one also covers a write that
        // never completes.
        let result = tokio::time::timeout(
            timeout + Duration::from_millis(100),
            client.get(Some(filter)),
        )
        .await;
        match result {
            Ok(Ok(data)) => Ok(data),
            // The server understood and refused (an <rpc-error>): the session is sound.
            Ok(Err(e @ NetconfError::Rpc(RpcError::ServerError(_)))) => Err(protocol(&e)),
            Ok(Err(e)) => {
                self.client = None;
                Err(protocol(&e))
            }
            Err(_) => {
                self.client = None;
                Err(NcError::Timeout(timeout))
            }
        }
    }

    /// Interface state, by one `<get>` with a subtree filter for the model the server has.
    pub async fn interfaces(&mut self) -> Result<Vec<IfState>, NcError> {
        if self.client.is_none() {
            // Connect first: the filter depends on the server's capabilities.
            self.ensure().await?;
        }
        let filter = interfaces::get_filter(self.openconfig);
        let data = self.get(&filter).await?;
        Ok(interfaces::parse(&data)?)
    }

    /// Ends the session politely (`<close-session>`, answered with `<ok/>`), within the
    /// timeout. Without an open session there is nothing to do.
    pub async fn close(&mut self) -> Result<(), NcError> {
        let Some(mut c) = self.client.take() else {
            return Ok(());
        };
        match tokio::time::timeout(self.target.timeout, c.close_session()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(protocol(&e)),
            Err(_) => Err(NcError::Timeout(self.target.timeout)),
        }
    }
}

/// Keeps a notification subscription open until `token` is cancelled: connects (with backoff),
/// subscribes to the default stream if the server offers `:notification`, and sends one wake-up
/// on `wake` per notification about interfaces (coalesced while the device task is busy).
/// Reconnects when the session ends, on an error, and when `restart` moves.
pub async fn listen(
    target: Arc<Target>,
    mut restart: watch::Receiver<u64>,
    wake: mpsc::Sender<()>,
    token: CancellationToken,
) {
    // Start after the polling session first got in: its connect errors are the ones worth
    // reporting, and two sessions opening at once need not race for a slow server.
    while *restart.borrow_and_update() == 0 {
        tokio::select! {
            r = restart.changed() => if r.is_err() { return },
            () = token.cancelled() => return,
        }
    }
    let mut backoff = Backoff::default();
    loop {
        if let Some(d) = backoff.waiting(Instant::now()) {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = token.cancelled() => return,
            }
        }
        let connected = tokio::select! {
            c = connect(&target) => c,
            () = token.cancelled() => return,
        };
        let mut client = match connected {
            Ok(c) => c,
            Err(e) => {
                let d = backoff.failed(e.to_string(), Instant::now());
                tracing::debug!(error = %e, retry_in = ?d, "NETCONF notification session: connect failed.");
                continue;
            }
        };
        if !client.capabilities().is_some_and(|c| c.has_notification()) {
            tracing::info!("The NETCONF server offers no notifications; polling only.");
            let _ = client.close_session().await;
            return;
        }
        let subscribed = tokio::time::timeout(
            target.timeout,
            client.create_subscription(None, None, None, None),
        )
        .await;
        match subscribed {
            Ok(Ok(())) => {
                backoff.succeeded();
                tracing::info!("Subscribed to NETCONF notifications.");
            }
            Ok(Err(e)) => {
                let d = backoff.failed(e.to_string(), Instant::now());
                tracing::warn!(error = %e, retry_in = ?d, "NETCONF create-subscription refused.");
                continue;
            }
            Err(_) => {
                backoff.failed("create-subscription timed out".into(), Instant::now());
                continue;
            }
        }
        restart.mark_unchanged();
        loop {
            tokio::select! {
                n = client.recv_notification() => match n {
                    Ok(Some(n)) => {
                        let about = interfaces::is_about_interfaces(&n.event_xml);
                        tracing::debug!(event_time = %n.event_time, about_interfaces = about, "NETCONF notification.");
                        if about {
                            // Full means a wake-up is already pending; one is enough.
                            let _ = wake.try_send(());
                        }
                    }
                    Ok(None) => {
                        tracing::info!("NETCONF notification session closed by the server; reconnecting.");
                        backoff.failed("closed by the server".into(), Instant::now());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NETCONF notification session failed; reconnecting.");
                        backoff.failed(e.to_string(), Instant::now());
                        break;
                    }
                },
                r = restart.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tracing::debug!("Polling session reconnected; renewing the subscription.");
                    break;
                },
                () = token.cancelled() => {
                    let _ = tokio::time::timeout(target.timeout, client.close_session()).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        assert_eq!(Backoff::delay(1), Duration::from_secs(1));
        assert_eq!(Backoff::delay(2), Duration::from_secs(2));
        assert_eq!(Backoff::delay(4), Duration::from_secs(8));
        assert_eq!(Backoff::delay(7), Duration::from_secs(60));
        assert_eq!(Backoff::delay(u32::MAX), Duration::from_secs(60));
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.waiting(t0), None);
        b.failed("x".into(), t0);
        b.failed("y".into(), t0);
        assert_eq!(b.waiting(t0), Some(Duration::from_secs(2)));
        assert_eq!(b.waiting(t0 + Duration::from_secs(3)), None);
        b.succeeded();
        assert_eq!(b.waiting(t0), None);
        b.failed("z".into(), t0);
        assert_eq!(b.waiting(t0), Some(Duration::from_secs(1)));
    }
}
