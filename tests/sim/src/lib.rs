//! `cnaas-sim`: a simulated campus network for tests, the demo and benchmarks. Switches in a
//! core -> distribution -> access tree answer real SNMP (v1/v2c GET, GETNEXT, GETBULK, SET) with
//! IF-MIB `ifTable`/`ifXTable`, `sysUpTime`, BRIDGE-MIB `dot1dBasePortIfIndex` and Q-BRIDGE-MIB
//! `dot1qPvid`; counters move with time; several switches share a UDP port (chosen by
//! community) or each has its own.
//!
//! - [`model`]: the campus, its switches and ports, and the state changes.
//! - [`mib`]: the OID layout and values of a switch; SET rules.
//! - [`agent`]: the UDP server.
#![forbid(unsafe_code)]

pub mod agent;
pub mod mib;
pub mod model;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub use agent::{Route, Shared, Stats};
pub use model::{Campus, Role, Switch};

/// Serves every switch of `shared` on one UDP socket bound to `addr` (community = switch
/// name), until `token` is cancelled. Returns the bound address and the socket's counters.
pub async fn serve_shared(
    shared: Arc<Shared>,
    addr: SocketAddr,
    token: CancellationToken,
) -> std::io::Result<(SocketAddr, Arc<Stats>)> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let stats = Arc::new(Stats::default());
    tokio::spawn(agent::serve(
        shared,
        socket,
        Route::ByCommunity,
        stats.clone(),
        None,
        token,
    ));
    Ok((local, stats))
}
