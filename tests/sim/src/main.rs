//! `cnaas-sim`: serves a simulated campus on a loopback UDP port until Ctrl-C or SIGTERM.
//!
//!     cnaas-sim --listen 127.0.0.1:16161 --switches 2000 --ports 52
//!
//! Every switch answers on the one port with its name as the community
//! (`snmpget -v2c -c access-1-1 127.0.0.1:16161 1.3.6.1.2.1.1.3.0`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use cnaas_sim::{Campus, Shared, serve_shared};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "cnaas-sim",
    about = "A simulated campus network answering SNMP"
)]
struct Cli {
    /// UDP address to answer on.
    #[arg(long, default_value = "127.0.0.1:16161")]
    listen: SocketAddr,
    /// Switches in the campus (one core, distribution switches, access switches).
    #[arg(long, default_value_t = 50)]
    switches: usize,
    /// Access switches per distribution switch.
    #[arg(long, default_value_t = 24)]
    per_distribution: usize,
    /// Ports per switch (the last two are uplinks).
    #[arg(long, default_value_t = 52)]
    ports: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let campus = Campus::tree(
        cli.switches,
        cli.per_distribution,
        cli.ports,
        Instant::now(),
    );
    let names: Vec<String> = campus
        .switches
        .iter()
        .take(3)
        .map(|s| s.name.clone())
        .collect();
    let shared = Shared::new(campus);
    let token = CancellationToken::new();
    let (addr, _stats) = serve_shared(shared, cli.listen, token.clone())
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    tracing::info!(%addr, switches = cli.switches, ports = cli.ports, first = ?names, "Simulated campus answering SNMP (community = switch name).");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
    tracing::info!("Stopped.");
    Ok(())
}
