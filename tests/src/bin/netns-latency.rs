//! Time from `ip link set v1 down` (a real veth in a network namespace the benchmark creates)
//! to the `link_down` event on MQTT, by polling (1 s link plan) and by trap (snmpd's linkDown,
//! checked every second by its `monitor`, confirmed by the agent's re-poll). Prints a Markdown
//! table. Needs root for `ip netns`. A benchmark, not a test.
//!
//!     cargo build --release --workspace && ./target/release/netns-latency [FLIPS]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnaas_tests::netns::{Netns, Snmpd, agent_config};
use cnaas_tests::{
    Mosquitto, Process, binary, event_arrivals, find_program, free_port, now_ns, open_tempdir,
    wait_until,
};
use serde_json::Value;

/// (arrival ns, agent, kind) of every event the subscriber wrote.
fn arrivals(file: &Path) -> Vec<(u128, String, String)> {
    event_arrivals(file)
        .into_iter()
        .filter_map(|(ns, v)| {
            Some((
                ns,
                v["agent"].as_str()?.to_owned(),
                v["kind"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Receive times (ns) of the traps the trap agent logged.
fn trap_receipts(log: &str) -> Vec<u128> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "Trap received; confirming.")
        .filter_map(|v| chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok())
        .filter_map(|t| u128::try_from(t.timestamp_nanos_opt()?).ok())
        .collect()
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("{:.1} ms | {:.1} ms | {:.1} ms", p(0.5), p(1.0), p(0.0))
}

fn main() -> Result<()> {
    let flips = cnaas_tests::count_arg(20)?;
    let Some(ns) = Netns::create()? else {
        bail!("cannot create a network namespace (needs root)");
    };
    let (snmp_port, trap_port) = (free_port(), free_port());
    let _snmpd = Snmpd::start(&ns, snmp_port, trap_port)?;
    let mqtt = Mosquitto::start_in(&ns)?;
    let dir = open_tempdir()?;
    let sub_file = dir.path().join("events.log");
    let mut sub = ns.command(&find_program("mosquitto_sub")?);
    sub.args([
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.port.to_string(),
        "-q",
        "1",
        "-F",
        "%U %t %p",
        "-t",
        "cnaas/v1/events/#",
    ]);
    let _sub = Process::spawn("mosquitto_sub", sub, &sub_file)?;
    let agent_bin = binary("cnaas-agent")?;
    let mut agents = Vec::new();
    for (id, interval, traps) in [
        ("poll-agent", "1s", None),
        ("trap-agent", "60s", Some(trap_port)),
    ] {
        let cfg = dir.path().join(format!("{id}.toml"));
        std::fs::write(
            &cfg,
            agent_config(id, mqtt.port, free_port(), snmp_port, interval, traps),
        )?;
        let mut cmd = ns.command(&agent_bin);
        cmd.arg("--config").arg(&cfg).arg("--log-json");
        agents.push(Process::spawn(
            id,
            cmd,
            &dir.path().join(format!("{id}.log")),
        )?);
    }
    std::thread::sleep(Duration::from_secs(4));
    let (mut by_poll, mut by_trap, mut trap_to_mqtt) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..flips {
        // Spread the flips over the poll cycle.
        std::thread::sleep(Duration::from_millis(1500 + (n as u64 * 379) % 1000));
        let seen = arrivals(&sub_file).len();
        let t0 = now_ns();
        ns.ip(&["link", "set", "v1", "down"])?;
        let got = wait_until(
            "link_down from both agents",
            Duration::from_secs(10),
            || {
                let new: Vec<_> = arrivals(&sub_file)
                    .into_iter()
                    .skip(seen)
                    .filter(|e| e.2 == "link_down")
                    .collect();
                let p = new.iter().find(|e| e.1 == "poll-agent")?.0;
                let t = new.iter().find(|e| e.1 == "trap-agent")?.0;
                Some((p, t))
            },
        )
        .with_context(|| {
            agents
                .iter()
                .map(Process::log)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        by_poll.push((got.0.saturating_sub(t0)) as f64 / 1e6);
        by_trap.push((got.1.saturating_sub(t0)) as f64 / 1e6);
        // The agent's own part: trap received -> event on MQTT.
        if let Some(rx) = trap_receipts(&agents[1].log())
            .into_iter()
            .rfind(|t| *t >= t0 && *t <= got.1)
        {
            trap_to_mqtt.push((got.1 - rx) as f64 / 1e6);
        }
        let seen = arrivals(&sub_file).len();
        ns.ip(&["link", "set", "v1", "up"])?;
        wait_until("link_up from both agents", Duration::from_secs(10), || {
            let ups = arrivals(&sub_file)
                .into_iter()
                .skip(seen)
                .filter(|e| e.2 == "link_up")
                .count();
            (ups >= 2).then_some(())
        })?;
        eprintln!(
            "flip {}: poll {:.0} ms, trap {:.0} ms",
            n + 1,
            by_poll[n],
            by_trap[n]
        );
    }
    println!(
        "| {flips} flips: `ip link set v1 down` -> link_down on MQTT | median | worst | best |"
    );
    println!("|---|---|---|---|");
    println!("| by poll (link plan 1 s) | {} |", stats(by_poll));
    println!(
        "| by trap (snmpd monitor every 1 s, confirmed by a re-poll) | {} |",
        stats(by_trap)
    );
    if trap_to_mqtt.is_empty() {
        eprintln!("no trap receipt found in the trap agent's log");
    } else {
        println!(
            "| the agent's own part: trap received -> event on MQTT ({} traps) | {} |",
            trap_to_mqtt.len(),
            stats(trap_to_mqtt)
        );
    }
    Ok(())
}
