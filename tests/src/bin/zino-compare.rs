//! Side by side with Zino 2 (PyPI `zino` 2.5.2, Sikt's network state monitor, the anchor this
//! product is measured against) on the same simulated faults, in one run: a CNaaS campus from
//! `cnaas-sim` (two cores, one distribution pair, access switches with a bundle to both; each
//! switch on its own loopback address, since Zino tells switches apart by address) watched at
//! once by Zino (1-minute polls, traps) and by cnaas-agent + Mosquitto + cnaas-collector (the
//! shipped defaults: 2 s link polls, traps, 60 s hold, 10 s grouping window). One switch of the
//! pair dies, then its partner, then everything recovers. Printed per fault: cases (Zino) and
//! incidents (here) opened for it, and the time from the fault to the first of them.
//!
//! Everything runs inside a network namespace the bench creates (Zino's API listens on the
//! fixed ports 8001/8002): run as root. A benchmark, not a test (about 10 minutes).
//!
//!     cargo build --release --workspace && ./target/release/zino-compare [ACCESS_SWITCHES]
//!
//! `CNAAS_ZINO` names the zino program (default `/opt/cnaas-peers/zino-venv/bin/zino`;
//! install: `python3 -m venv /opt/cnaas-peers/zino-venv && /opt/cnaas-peers/zino-venv/bin/pip
//! install zino==2.5.2`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use cnaas_sim::{Campus, Role};
use cnaas_tests::netns::Netns;
use cnaas_tests::{Mosquitto, Process, binary, open_tempdir};
use serde_json::Value;

const SNMP_PORT: u16 = 16161;
const AGENT_TRAPS: u16 = 16162;
const ZINO_TRAPS: u16 = 16163;
const API: u16 = 16980;
/// When the faults happen, seconds after the simulator starts.
const FIRST: u64 = 150;
const SECOND: u64 = 330;
const RECOVER: u64 = 510;
const END: u64 = 560;

fn main() -> Result<()> {
    let access: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(8);
    let zino = std::env::var("CNAAS_ZINO")
        .unwrap_or_else(|_| "/opt/cnaas-peers/zino-venv/bin/zino".into());
    if !std::path::Path::new(&zino).exists() {
        bail!("no zino at {zino}: install it (see the top of this file) or set CNAAS_ZINO");
    }
    let Some(ns) = Netns::create()? else {
        bail!("a network namespace is needed (run as root)");
    };
    let dir = open_tempdir()?;
    // CNAAS_KEEP=1 keeps the folder (logs, Zino's state, the database) for a look afterwards.
    let kept = std::env::var_os("CNAAS_KEEP").is_some();
    let total = 4 + access;
    let campus = Campus::cnaas(total, access, 12, Instant::now());
    let switches: Vec<(String, Role, Option<String>, String)> = campus
        .switches
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.name.clone(),
                s.role,
                s.pair.clone(),
                format!("127.0.0.{}", i + 2),
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("scenario.toml"),
        format!(
            "[[step]]\nat = \"{FIRST}s\"\nalive = {{ switch = \"dist-1a\", alive = false }}\n\
             [[step]]\nat = \"{SECOND}s\"\nalive = {{ switch = \"dist-1b\", alive = false }}\n\
             [[step]]\nat = \"{RECOVER}s\"\nrecover = true\n"
        ),
    )?;

    // Zino: one polldevs entry per switch, 1-minute interval (its least).
    let mut polldevs =
        format!("default interval: 1\ndefault community: public\ndefault port: {SNMP_PORT}\n\n");
    for (name, _, _, ip) in &switches {
        polldevs.push_str(&format!("name: {name}\naddress: {ip}\n\n"));
    }
    std::fs::write(dir.path().join("polldevs.cf"), polldevs)?;
    std::fs::write(dir.path().join("secrets"), "bench not-a-real-password\n")?;
    std::fs::write(
        dir.path().join("zino.toml"),
        "[polling]\nfile = \"polldevs.cf\"\nperiod = 1\n[persistence]\nfile = \"zino-state.json\"\nperiod = 5\n\
         [authentication]\nfile = \"secrets\"\n[snmp.agent]\nenabled = false\n",
    )?;

    // This product: the same switches, roles and the pair in the inventory (the cabling comes
    // from LLDP), the shipped rules.
    let mut inventory = String::new();
    let mut devices = String::new();
    for (name, role, pair, ip) in &switches {
        let role = match role {
            Role::Core => "core",
            Role::Distribution => "distribution",
            Role::Access => "access",
        };
        inventory.push_str(&format!(
            "[[device]]\nname = \"{name}\"\nrole = \"{role}\"\ncustomer = \"uni-a\"\nsite = \"campus\"\n"
        ));
        if let Some(p) = pair {
            inventory.push_str(&format!("pair = \"{p}\"\n"));
        }
        devices.push_str(&format!(
            "[[device]]\nname = \"{name}\"\naddress = \"{ip}:{SNMP_PORT}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"public\" }}\n"
        ));
    }
    let mqtt = Mosquitto::start_in(&ns)?;
    std::fs::write(
        dir.path().join("collector.toml"),
        format!(
            "[collector]\nid = \"compare\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n[store]\nurl = \"sqlite://c.db\"\n\
             [api]\nlisten = \"127.0.0.1:{API}\"\n[roles]\nuplink = ['(?i)^uplink']\ndownlink = ['(?i)^downlink']\n{inventory}",
            mqtt.port
        ),
    )?;
    std::fs::write(
        dir.path().join("agent.toml"),
        format!(
            "[agent]\nid = \"compare\"\n[metrics]\nlisten = \"127.0.0.1:16981\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = \"spool\"\n\
             [traps]\nlisten = \"127.0.0.1:{AGENT_TRAPS}\"\n[defaults]\ntopology_interval = \"30s\"\n{devices}",
            mqtt.port
        ),
    )?;

    let mut sim = ns.command(&binary("cnaas-sim")?);
    sim.args(["--listen", &format!("127.0.0.2:{SNMP_PORT}")])
        .args([
            "--per-switch-ports",
            &SNMP_PORT.to_string(),
            "--per-switch-addresses",
        ])
        .args(["--community", "public", "--switches", &total.to_string()])
        .args(["--per-distribution", &access.to_string(), "--ports", "12"])
        .args(["--traps", &format!("127.0.0.1:{AGENT_TRAPS}")])
        .args(["--traps", &format!("127.0.0.1:{ZINO_TRAPS}")])
        .arg("--scenario")
        .arg(dir.path().join("scenario.toml"));
    let start = Instant::now();
    let wall_start = Utc::now();
    let _sim = Process::spawn("cnaas-sim", sim, &dir.path().join("sim.log"))?;
    let mut collector = ns.command(&binary("cnaas-collector")?);
    collector
        .arg("--config")
        .arg(dir.path().join("collector.toml"))
        .current_dir(dir.path());
    let _collector = Process::spawn("cnaas-collector", collector, &dir.path().join("c.log"))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut agent = ns.command(&binary("cnaas-agent")?);
    agent
        .arg("--config")
        .arg(dir.path().join("agent.toml"))
        .current_dir(dir.path());
    let _agent = Process::spawn("cnaas-agent", agent, &dir.path().join("a.log"))?;
    let mut z = ns.command(std::path::Path::new(&zino));
    z.arg("--config-file")
        .arg(dir.path().join("zino.toml"))
        .args(["--trap-port", &ZINO_TRAPS.to_string()])
        .args(["--stop-in", &(END - 5).to_string()])
        .current_dir(dir.path());
    let mut zino_process = Process::spawn("zino", z, &dir.path().join("zino.log"))?;
    eprintln!(
        "zino-compare: {total} switches; dist-1a dies at {FIRST} s, dist-1b at {SECOND} s, recovery at {RECOVER} s; {END} s in all"
    );

    // Our incidents, as the API shows them: when each was first seen, and how it looked at
    // every look since.
    let mut ours: BTreeMap<i64, (f64, Vec<(f64, Value)>)> = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(END) {
        if let Some(body) = ns.http_get(API, "/api/v1/incidents?limit=500")
            && let Ok(v) = serde_json::from_str::<Value>(&body)
        {
            for i in v["incidents"].as_array().into_iter().flatten() {
                let id = i["id"].as_i64().unwrap_or_default();
                let now = start.elapsed().as_secs_f64();
                let e = ours.entry(id).or_insert((now, Vec::new()));
                e.1.push((now, i.clone()));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while zino_process.check_alive().is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("zino-state.json"))
            .with_context(|| format!("no Zino state dump; its log:\n{}", zino_process.log()))?,
    )?;
    let zino_cases: Vec<(f64, String, String)> = state["events"]["events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, e)| {
            let opened: DateTime<Utc> = e["opened"].as_str()?.parse().ok()?;
            let at = (opened - wall_start).num_milliseconds() as f64 / 1000.0;
            let what = match e["type"].as_str()? {
                "portstate" => format!(
                    "{} port {}",
                    e["router"].as_str()?,
                    e["port"].as_str().unwrap_or("?")
                ),
                other => format!("{} {other}", e["router"].as_str()?),
            };
            Some((at, e["type"].as_str()?.to_owned(), what))
        })
        .collect();

    for (id, (at, looks)) in &ours {
        let Some((_, i)) = looks.last() else {
            continue;
        };
        eprintln!(
            "incident #{id} first seen at {at:.1} s: {} S{} {} {}",
            i["state"], i["severity"], i["kind"], i["summary"]
        );
    }
    for (at, t, what) in &zino_cases {
        eprintln!("zino case at {at:.1} s: {t} {what}");
    }
    if kept {
        eprintln!("kept: {}", dir.keep().display());
    }
    println!(
        "`zino-compare {access}`: a CNaaS campus of {total} switches (2 cores, one distribution pair, {access} access switches with a bundle to both), watched by Zino 2.5.2 (1-minute polls, traps) and by this product (2 s polls, traps, 60 s hold, 10 s window) at once\n"
    );
    println!(
        "| fault | Zino: cases opened | Zino: first case after | this product: incidents opened | this product: first incident after |"
    );
    println!("|---|---|---|---|---|");
    for (label, from, to) in [
        ("dist-1a dies (redundancy lost)", FIRST, SECOND),
        ("dist-1b dies too (outage)", SECOND, RECOVER),
    ] {
        let (from, to) = (from as f64, to as f64);
        let z: Vec<&(f64, String, String)> = zino_cases
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .collect();
        let z_first = z
            .iter()
            .map(|(at, _, _)| at - from)
            .fold(f64::INFINITY, f64::min);
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, t, _) in &z {
            *kinds.entry(t.as_str()).or_default() += 1;
        }
        // Each incident as it stood at the end of the fault's window.
        let o: Vec<(f64, Value)> = ours
            .values()
            .filter(|(at, _)| *at >= from && *at < to)
            .filter_map(|(at, looks)| {
                looks
                    .iter()
                    .rev()
                    .find(|(seen, _)| *seen < to)
                    .map(|(_, i)| (*at, i.clone()))
            })
            .collect();
        let o_first = o
            .iter()
            .map(|(at, _)| at - from)
            .fold(f64::INFINITY, f64::min);
        // Counted as a person sees them: an incident taken into another is not one more.
        let standing = o.iter().filter(|(_, i)| i["state"] != "merged").count();
        let summaries: Vec<String> = o
            .iter()
            .filter(|(_, i)| i["state"] != "merged")
            .map(|(_, i)| {
                format!(
                    "S{} {}",
                    i["severity"],
                    i["summary"].as_str().unwrap_or_default()
                )
            })
            .collect();
        println!(
            "| {label} | {} ({}) | {} | {standing} (+{} merged into it): {} | {} |",
            z.len(),
            kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            if z_first.is_finite() {
                format!("{z_first:.0} s")
            } else {
                "-".into()
            },
            o.len() - standing,
            summaries.join("; "),
            if o_first.is_finite() {
                format!("{o_first:.0} s")
            } else {
                "-".into()
            },
        );
    }
    Ok(())
}
