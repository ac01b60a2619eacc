//! `cnaas-sim`: a simulated campus network for tests, the demo and benchmarks. Switches in a
//! core -> distribution -> access tree answer real SNMP (v2c, and v3 authPriv with SHA-1/AES-128
//! for one user; GET, GETNEXT, GETBULK, SET) with
//! IF-MIB `ifTable`/`ifXTable`, `sysUpTime`, BRIDGE-MIB `dot1dBasePortIfIndex` and Q-BRIDGE-MIB
//! `dot1qPvid`; counters move with time; several switches share a UDP port (chosen by
//! community) or each has its own.
//!
//! - [`model`]: the campus, its switches and ports, and the state changes.
//! - [`mib`]: the OID layout and values of a switch; SET rules.
//! - [`agent`]: the UDP server; [`usm`]: SNMPv3 (USM) on it.
//! - [`traps`]: linkDown/linkUp notifications.
//! - [`control`]: changing the campus from a test or over HTTP; [`scenario`]: from a file.
#![forbid(unsafe_code)]

pub mod agent;
pub mod control;
pub mod mib;
pub mod model;
pub mod scenario;
pub mod traps;
pub mod usm;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub use agent::{Route, Shared, Stats};
pub use control::Control;
pub use model::{Campus, Role, Switch};
pub use usm::V3User;

/// The `[[device]]` entries of a cnaas-agent config that polls these switches on
/// `127.0.0.1:port` (community = switch name; reachability by SNMP, since loopback always
/// answers ping).
pub fn agent_devices<'a>(names: impl IntoIterator<Item = &'a str>, port: u16) -> String {
    names
        .into_iter()
        .map(|n| {
            format!(
                "[[device]]\nname = \"{n}\"\naddress = \"127.0.0.1:{port}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"{n}\" }}\n"
            )
        })
        .collect()
}

/// A collector `[[device]]` entry's topology lines for a simulated switch: its role, its
/// uplinks and its pair.
pub fn inventory_lines(s: &Switch) -> String {
    let role = match s.role {
        Role::Core => "core",
        Role::Distribution => "distribution",
        Role::Access => "access",
    };
    let mut out = format!("role = \"{role}\"\n");
    if !s.uplinks.is_empty() {
        let list: Vec<String> = s.uplinks.iter().map(|u| format!("\"{u}\"")).collect();
        out.push_str(&format!("uplink = [{}]\n", list.join(", ")));
    }
    if let Some(p) = &s.pair {
        out.push_str(&format!("pair = \"{p}\"\n"));
    }
    out
}

/// A running simulator: the SNMP socket (the first one, with one socket per switch), the trap
/// sender and the control handle.
pub struct Running {
    /// The SNMP address (community = switch name).
    pub snmp: SocketAddr,
    /// The socket's counters.
    pub stats: Arc<Stats>,
    /// Changes the campus (and sends traps).
    pub control: Control,
}

/// Serves every switch of `shared` on one UDP socket bound to `addr` (community = switch
/// name) and sends linkDown/linkUp traps to `trap_receivers`, until `token` is cancelled.
pub async fn start(
    shared: Arc<Shared>,
    addr: SocketAddr,
    trap_receivers: Vec<SocketAddr>,
    token: CancellationToken,
) -> std::io::Result<Running> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(traps::run(shared.clone(), trap_receivers, rx));
    tokio::spawn(agent::serve(
        shared.clone(),
        socket,
        Route::ByCommunity,
        stats.clone(),
        Some(tx.clone()),
        token,
    ));
    Ok(Running {
        snmp: local,
        stats,
        control: Control::new(shared, Some(tx)),
    })
}

/// Serves each switch of `shared` on a socket of its own, bound to `addrs[i]` for the i-th
/// switch in campus order (port 0 picks a free one), answering only `community` (the way
/// snmp_exporter's one-module-per-community set-up expects it). Sends linkDown/linkUp traps to
/// `trap_receivers`. Returns the bound addresses in the same order; fewer addresses than
/// switches serve only the first ones.
pub async fn start_per_switch(
    shared: Arc<Shared>,
    addrs: &[SocketAddr],
    community: &str,
    trap_receivers: Vec<SocketAddr>,
    token: CancellationToken,
) -> std::io::Result<(Vec<SocketAddr>, Running)> {
    let names: Vec<String> = shared.with(|c| c.switches.iter().map(|s| s.name.clone()).collect());
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(traps::run(shared.clone(), trap_receivers, rx));
    let mut bound = Vec::with_capacity(addrs.len().min(names.len()));
    for (name, addr) in names.iter().zip(addrs) {
        let socket = UdpSocket::bind(addr).await?;
        bound.push(socket.local_addr()?);
        tokio::spawn(agent::serve(
            shared.clone(),
            socket,
            Route::Fixed {
                switch: name.clone(),
                community: community.to_owned(),
            },
            stats.clone(),
            Some(tx.clone()),
            token.clone(),
        ));
    }
    let first = bound
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    Ok((
        bound,
        Running {
            snmp: first,
            stats,
            control: Control::new(shared, Some(tx)),
        },
    ))
}

/// [`start`] without traps; returns the bound address and the counters.
pub async fn serve_shared(
    shared: Arc<Shared>,
    addr: SocketAddr,
    token: CancellationToken,
) -> std::io::Result<(SocketAddr, Arc<Stats>)> {
    let r = start(shared, addr, Vec::new(), token).await?;
    Ok((r.snmp, r.stats))
}
