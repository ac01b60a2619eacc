//! Agent CPU and memory while it polls the simulated 48-port switch (real snmpsim) with the
//! link plan at 1 s (and the other plans at their defaults) for a while. Prints a Markdown
//! table. A benchmark, not a test.
//!
//!     cargo build --release --workspace && ./target/release/agent-soak [SECONDS]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_tests::proc_usage as usage;
use cnaas_tests::rig::{Rig, RigOptions};

fn main() -> Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300);
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        ..RigOptions::default()
    })?;
    let pid = rig.agent.pid().context("agent pid")?;
    // Let start-up (first walks, label fetch) pass before measuring.
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, _) = usage(pid)?;
    let polls0 = rig
        .agent_metric("cnaas_agent_link_polls_total")
        .unwrap_or(0.0);
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(usage(pid)?.1);
    }
    let (cpu1, rss) = usage(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    let polls = rig
        .agent_metric("cnaas_agent_link_polls_total")
        .unwrap_or(0.0)
        - polls0;
    println!("| agent polling 1 snmpsim switch (50 ports), link plan 1 s, {secs} s | value |");
    println!("|---|---|");
    println!(
        "| CPU | {:.2} s in {wall:.0} s = {:.3}% of a core |",
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / wall
    );
    println!(
        "| CPU per link poll (other plans' share included) | {:.3} ms |",
        1000.0 * (cpu1 - cpu0) / polls.max(1.0)
    );
    println!(
        "| RSS at the end / peak | {:.1} MiB / {:.1} MiB |",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "| link polls completed (achieved period) | {polls:.0} ({:.3} s) |",
        wall / polls.max(1.0)
    );
    Ok(())
}
