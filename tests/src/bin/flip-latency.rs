//! Measures how long an uplink flip takes to show in the collector API, end to end through
//! real snmpsim, cnaas-agent (1 s link plan), real Mosquitto and cnaas-collector:
//! `snmpset ifOperStatus down` -> open incident visible in `GET /api/v1/incidents`, and
//! `snmpset up` -> the incident resolved. Prints a Markdown table.
//!
//!     cargo build --release --workspace && ./target/release/flip-latency [FLIPS]
//!
//! A benchmark, not a test: it asserts nothing about time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::{http_json, wait_until};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round();
    sorted[rank.clamp(0.0, (sorted.len() - 1) as f64) as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let flips = cnaas_tests::count_arg(20)?;
    let rig = Rig::start(&RigOptions {
        link_interval: "1s".into(),
        dead_device: false,
        persistent_broker: false,
        snmpv3: None,
        agent_defaults: String::new(),
        tls: false,
        extra_devices: String::new(),
        traps: false,
        ..RigOptions::default()
    })?;
    let limit = Duration::from_secs(10);
    let (mut open, mut resolve) = (Vec::new(), Vec::new());
    for n in 0..flips {
        // Spread the flips over the poll cycle; otherwise each flip lands just after the poll
        // that showed the previous one and always waits a whole interval.
        std::thread::sleep(Duration::from_millis((n as u64 * 379) % 1000));
        let t0 = Instant::now();
        rig.set_oper(49, 2)?;
        let inc = wait_until("the incident", limit, || rig.open_port_incident(49))
            .with_context(|| rig.logs())?;
        open.push(t0.elapsed());
        let id = inc["id"].as_i64().context("incident id")?;
        std::thread::sleep(Duration::from_millis((n as u64 * 613) % 1000));
        let t1 = Instant::now();
        rig.set_oper(49, 1)?;
        wait_until("the resolution", limit, || {
            let d = http_json(&format!("{}/api/v1/incidents/{id}", rig.api)).ok()?;
            (d["state"] == "resolved").then_some(())
        })?;
        resolve.push(t1.elapsed());
        eprintln!(
            "flip {}: open {} resolve {}",
            n + 1,
            ms(open[n]),
            ms(resolve[n])
        );
    }
    open.sort();
    resolve.sort();
    println!("| {flips} flips, link interval 1 s | median | p90 | worst | best |");
    println!("|---|---|---|---|---|");
    for (name, v) in [
        ("snmpset down -> open incident in API", &open),
        ("snmpset up -> incident resolved in API", &resolve),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.9)),
            ms(percentile(v, 1.0)),
            ms(percentile(v, 0.0))
        );
    }
    Ok(())
}
