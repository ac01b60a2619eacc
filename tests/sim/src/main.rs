//! `cnaas-sim`: serves a simulated campus on a loopback UDP port until Ctrl-C or SIGTERM.
//!
//!     cnaas-sim --listen 127.0.0.1:16161 --switches 2000 --ports 52 \
//!         --traps 127.0.0.1:16162 --control 127.0.0.1:16170 --scenario scenario.toml
//!
//! Every switch answers on the one port with its name as the community
//! (`snmpget -v2c -c access-1-1 127.0.0.1:16161 1.3.6.1.2.1.1.3.0`); with
//! `--per-switch-ports 17000` each switch has its own port instead (17000 the core, then the
//! campus order) and answers `--community` (default `public`). The control API changes
//! it while it runs (`curl -XPOST 127.0.0.1:16170/switches/access-1-1/ports/52/link -d
//! '{"up":false}' -H 'content-type: application/json'`); a scenario file plays a timeline.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use cnaas_sim::{Campus, Shared, V3User, control, scenario, start, start_per_switch};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "cnaas-sim",
    about = "A simulated campus network answering SNMP"
)]
struct Cli {
    /// UDP address to answer SNMP on.
    #[arg(long, default_value = "127.0.0.1:16161")]
    listen: SocketAddr,
    /// Switches in the campus (cores, distribution switches, access switches).
    #[arg(long, default_value_t = 50)]
    switches: usize,
    /// The campus's shape: `cnaas` (two cores, distribution pairs, access switches with a
    /// two-member LACP bundle to both switches of their pair, LLDP) or `tree` (one core,
    /// distribution switches, access switches below one each).
    #[arg(long, default_value = "cnaas")]
    campus: Shape,
    /// Access switches per distribution switch (per pair with `--campus cnaas`).
    #[arg(long, default_value_t = 24)]
    per_distribution: usize,
    /// Ports per switch (the last two are uplinks).
    #[arg(long, default_value_t = 52)]
    ports: u32,
    /// Where linkDown/linkUp traps go (repeat for more).
    #[arg(long = "traps")]
    traps: Vec<SocketAddr>,
    /// Serve the control API (HTTP) on this address.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Play this scenario file from the start.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Serve each switch on its own UDP port instead, from this one upwards (on the address of
    /// --listen), answering only --community.
    #[arg(long)]
    per_switch_ports: Option<u16>,
    /// With --per-switch-ports: each switch on its own IPv4 address instead (the address of
    /// --listen, then the next ones: 127.0.0.2, 127.0.0.3, ...), all on the port of
    /// --per-switch-ports, as real switches are (monitors that tell switches apart by address,
    /// such as Zino, need it).
    #[arg(long)]
    per_switch_addresses: bool,
    /// The community of every switch with --per-switch-ports.
    #[arg(long, default_value = "public")]
    community: String,
    /// Also answer SNMPv3 (authPriv, SHA-1 and AES-128) for this user; its passwords come from
    /// the environment: CNAAS_SIM_V3_AUTH and CNAAS_SIM_V3_PRIV. On the shared port the
    /// contextName picks the switch.
    #[arg(long)]
    v3_user: Option<String>,
}

/// The campus's shape.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shape {
    /// As CNaaS builds it.
    Cnaas,
    /// A tree.
    Tree,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let timeline = match &cli.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(scenario::parse(&text).with_context(|| format!("scenario {}", p.display()))?)
        }
        None => None,
    };
    let campus = match cli.campus {
        Shape::Cnaas => Campus::cnaas(
            cli.switches,
            cli.per_distribution,
            cli.ports,
            Instant::now(),
        ),
        Shape::Tree => Campus::tree(
            cli.switches,
            cli.per_distribution,
            cli.ports,
            Instant::now(),
        ),
    };
    let v3 = match &cli.v3_user {
        None => None,
        Some(user) => {
            let env = |name: &str| {
                std::env::var(name)
                    .with_context(|| format!("--v3-user needs {name} in the environment"))
            };
            Some(V3User {
                user: user.clone(),
                auth_password: env("CNAAS_SIM_V3_AUTH")?,
                priv_password: env("CNAAS_SIM_V3_PRIV")?,
            })
        }
    };
    let shared = Shared::with_v3(campus, v3);
    let token = CancellationToken::new();
    let running = match cli.per_switch_ports {
        None => {
            let running = start(shared, cli.listen, cli.traps.clone(), token.clone())
                .await
                .with_context(|| format!("cannot listen on {}", cli.listen))?;
            tracing::info!(snmp = %running.snmp, switches = cli.switches, ports = cli.ports, traps = ?cli.traps, "Simulated campus answering SNMP (community = switch name).");
            running
        }
        Some(first) => {
            let addrs: Vec<SocketAddr> = (0..cli.switches)
                .map(|i| {
                    if cli.per_switch_addresses {
                        let std::net::IpAddr::V4(v4) = cli.listen.ip() else {
                            anyhow::bail!("--per-switch-addresses needs an IPv4 --listen");
                        };
                        let n = u32::from(v4)
                            .checked_add(u32::try_from(i)?)
                            .context("--per-switch-addresses: the addresses run out")?;
                        return Ok(SocketAddr::new(std::net::Ipv4Addr::from(n).into(), first));
                    }
                    let port = u16::try_from(usize::from(first) + i)
                        .context("--per-switch-ports: the ports run past 65535")?;
                    Ok(SocketAddr::new(cli.listen.ip(), port))
                })
                .collect::<anyhow::Result<_>>()?;
            let (bound, running) = start_per_switch(
                shared,
                &addrs,
                &cli.community,
                cli.traps.clone(),
                token.clone(),
            )
            .await
            .context("cannot listen on the per-switch ports")?;
            tracing::info!(first = %running.snmp, count = bound.len(), ports = cli.ports, traps = ?cli.traps, "Simulated campus answering SNMP, one switch per UDP port (in campus order).");
            running
        }
    };
    if let Some(addr) = cli.control {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the control API"))?;
        let router = control::router(running.control.clone());
        let t = token.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { t.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "control API failed");
            }
        });
        tracing::info!(%addr, "Control API listening.");
    }
    if let Some(t) = timeline {
        tokio::spawn(scenario::play(
            running.control.clone(),
            t,
            token.clone(),
            |action, result| match result {
                Ok(()) => tracing::info!(?action, "Scenario step."),
                Err(e) => tracing::warn!(?action, error = %e, "Scenario step failed."),
            },
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
    tracing::info!("Stopped.");
    Ok(())
}
