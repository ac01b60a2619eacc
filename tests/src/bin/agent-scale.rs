//! The agent's link plan at 1 s over many simulated switches (cnaas-sim, 52 ports each, all on
//! one UDP port by community): agent CPU and RSS, the achieved poll period, the simulator's own
//! CPU, and detection latency: a port changes in the simulator -> the event arrives at a
//! subscriber on Mosquitto (by polling alone: the simulator sends no traps here). The other
//! plans run rarely so the link plan dominates. Prints a Markdown table. A benchmark, not a
//! test.
//!
//!     cargo build --release --workspace && ./target/release/agent-scale [SWITCHES] [SECONDS]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_sim::{Campus, Shared};
use cnaas_tests::{
    Mosquitto, event_arrivals, event_tap, free_port, http_json, now_ns, open_tempdir, proc_usage,
    start_binary, wait_until,
};
use tokio_util::sync::CancellationToken;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sim_port = free_port();
    let token = CancellationToken::new();
    let campus = Campus::tree(n, 49, 52, Instant::now());
    let names: Vec<String> = campus.switches.iter().map(|s| s.name.clone()).collect();
    let access: Vec<String> = campus
        .switches
        .iter()
        .filter(|s| s.role == cnaas_sim::Role::Access)
        .map(|s| s.name.clone())
        .collect();
    let running = runtime.block_on(cnaas_sim::start(
        Shared::new(campus),
        format!("127.0.0.1:{sim_port}").parse()?,
        Vec::new(),
        token.clone(),
    ))?;
    let (stats, control) = (running.stats.clone(), running.control.clone());
    // The simulator runs on this thread's runtime; drive it from a helper thread.
    let sim = std::thread::spawn(move || {
        runtime.block_on(token.cancelled());
    });
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let tap_file = dir.path().join("events.log");
    let _tap = event_tap(mqtt.port, &tap_file)?;
    let metrics_port = free_port();
    let devices = cnaas_sim::agent_devices(names.iter().map(String::as_str), sim_port);
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nid = \"scale\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [defaults]\nlink_interval = \"1s\"\ncounters_interval = \"1h\"\nvlan_interval = \"1h\"\nreachability_interval = \"1h\"\nlabels_interval = \"1h\"\ntimeout = \"2s\"\nretries = 1\n{devices}",
            mqtt.url()
        ),
    )?;
    let mut agent = start_binary("cnaas-agent", &cfg, &dir.path().join("agent.log"))?;
    let pid = agent.pid().context("agent pid")?;
    let health = format!("http://127.0.0.1:{metrics_port}/healthz");
    wait_until("every switch polled", Duration::from_secs(120), || {
        agent.check_alive().ok()?;
        let v = http_json(&health).ok()?;
        (v["devices_up"].as_u64() == Some(n as u64)).then_some(())
    })
    .with_context(|| agent.log())?;
    std::thread::sleep(Duration::from_secs(10));
    // From /healthz: /metrics would render the whole interface table (2 million series at
    // 2,000 switches), and that work would be counted as polling.
    let polls = || -> f64 {
        http_json(&health)
            .ok()
            .and_then(|v| v["link_polls"].as_f64())
            .unwrap_or(0.0)
    };
    let me = std::process::id();
    let (cpu0, _) = proc_usage(pid)?;
    let (sim0, _) = proc_usage(me)?;
    let t0 = Instant::now();
    let p0 = polls();
    let a0 = stats.answered.load(std::sync::atomic::Ordering::Relaxed);
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(proc_usage(pid)?.1);
    }
    let p1 = polls();
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = proc_usage(pid)?;
    let (sim1, _) = proc_usage(me)?;
    let answered = stats.answered.load(std::sync::atomic::Ordering::Relaxed) - a0;
    let cpu = cpu1 - cpu0;
    let done = p1 - p0;
    // Detection: ports of different access switches go down, one every 0.3-1.3 s (spread over
    // the poll cycle), and up again at the end.
    let flips = access.len().min(40);
    let mut latencies = Vec::new();
    for (n, switch) in access.iter().take(flips).enumerate() {
        std::thread::sleep(Duration::from_millis(300 + (n as u64 * 379) % 1000));
        let t0 = now_ns();
        control.link(switch, 5, false)?;
        let arrived = wait_until("the link_down event", Duration::from_secs(10), || {
            event_arrivals(&tap_file).into_iter().find_map(|(ns, v)| {
                (ns >= t0
                    && v["device"] == switch.as_str()
                    && v["kind"] == "link_down"
                    && v["if_index"] == 5)
                    .then_some(ns)
            })
        })?;
        latencies.push((arrived - t0) as f64 / 1e6);
    }
    for switch in access.iter().take(flips) {
        control.link(switch, 5, true)?;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!("\n### The link plan at 1 s over {n} simulated switches\n");
    println!(
        "`agent-scale {n} {secs}`: cnaas-agent polls {n} cnaas-sim switches (52 ports each, one UDP port, \
         community = switch name) with the link plan at 1 s (the other plans hourly); the simulator runs in the \
         harness process. Targets (DESIGN.md): under 0.25 of a core, about 0.1 ms of CPU per device poll, \
         100 MB RSS; detection poll interval + 50 ms (p99).\n"
    );
    println!("| agent, link plan 1 s, {n} simulated 52-port switches, {secs} s | value |");
    println!("|---|---|");
    println!("| agent CPU | {cpu:.2} s = {:.3} of a core |", cpu / wall);
    println!(
        "| agent CPU per link poll | {:.3} ms |",
        cpu * 1000.0 / done.max(1.0)
    );
    println!(
        "| agent RSS at the end / peak | {:.1} MiB / {:.1} MiB |",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "| link polls completed (achieved period per switch) | {done:.0} ({:.3} s) |",
        n as f64 * wall / done.max(1.0)
    );
    println!(
        "| SNMP requests answered by the simulator | {answered} ({:.0}/s) |",
        answered as f64 / wall
    );
    println!(
        "| simulator (and this harness) CPU | {:.2} s = {:.3} of a core |",
        sim1 - sim0,
        (sim1 - sim0) / wall
    );
    println!(
        "| detection: simulator port down -> link_down on MQTT ({} flips, by polling) | p50 {:.0} ms, p99 {:.0} ms, worst {:.0} ms |",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    drop(sim);
    Ok(())
}
