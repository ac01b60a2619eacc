//! NETCONF figures: how long one `<get>` of interface state takes (netconfd behind OpenSSH, and
//! the Python test server with 48 ports), what a NETCONF link poll costs the agent, and how
//! soon a port change becomes an event on MQTT, by polling at 1 s and by RFC 5277 notification
//! (with a 60 s poll, so only the notification can be in time). Prints a Markdown table.
//!
//!     cargo build --release --workspace && ./target/release/netconf-latency [FLIPS]
//!
//! A benchmark, not a test: it asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_agent::netconf::{Auth, HostKeys, Session, Target};
use cnaas_shared::config::Secret;
use cnaas_tests::netconf::{IfServer, Netconfd};
use cnaas_tests::{
    Mosquitto, event_arrivals, event_tap, free_port, http_json, now_ns, open_tempdir, percentile,
    proc_usage, start_binary, wait_until,
};
use serde_json::{Value, json};

const PORTS: usize = 48;
/// netconfd's ietf-netconf-monitoring state, whole.
const MONITORING: &str =
    r#"<netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/>"#;

fn ports() -> Value {
    Value::Array(
        (1..=PORTS)
            .map(|i| {
                json!({"name": format!("ge-0/0/{i}"), "oper": "up", "if_index": i,
                       "description": if i == 1 { "uplink: dist-1".to_owned() } else { format!("B12-R{i:03}") },
                       "in_octets": 1000 * i, "out_octets": 2000 * i, "speed": 1_000_000_000_u64})
            })
            .collect(),
    )
}

/// p50 and p99 in ms.
fn p50_p99(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

fn main() -> Result<()> {
    let flips = cnaas_tests::count_arg(20)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows: Vec<(String, String)> = Vec::new();

    // One <get>, in process.
    let netconfd = Netconfd::start(false)?;
    let ifs = IfServer::start(ports(), false)?;
    rt.block_on(async {
        let mut s = Session::new(Arc::new(Target {
            max_message: 16 << 20,
            ..(*netconfd.login.target(Duration::from_secs(5))).clone()
        }));
        let t = Instant::now();
        s.get(MONITORING).await.ok();
        let connect = t.elapsed().as_secs_f64() * 1000.0;
        let mut size = 0;
        let mut ms = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            size = s.get(MONITORING).await?.len();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p99) = p50_p99(ms);
        rows.push((
            "netconfd behind sshd: connect + hello + first `<get>`".into(),
            format!("{connect:.0} ms"),
        ));
        rows.push((
            format!(
                "netconfd: `<get>` of netconf-state ({} KB of data), p50 / p99",
                size / 1000
            ),
            format!("{p50:.2} / {p99:.2} ms"),
        ));
        let mut s = Session::new(Arc::new(Target {
            address: format!("127.0.0.1:{}", ifs.port),
            user: ifs.user.clone(),
            auth: Auth::Password(Secret::new(
                std::fs::read_to_string(&ifs.password_file)?.trim(),
            )),
            host_keys: HostKeys::KnownHosts(ifs.known_hosts.clone()),
            timeout: Duration::from_secs(5),
            max_message: 16 << 20,
            notifications: false,
        }));
        let mut ms = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let got = s.interfaces().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(got.len() == PORTS, "{} interfaces", got.len());
        }
        let (p50, p99) = p50_p99(ms);
        rows.push((
            format!("Python test server: interface state of {PORTS} ports, p50 / p99"),
            format!("{p50:.2} / {p99:.2} ms"),
        ));
        anyhow::Ok(())
    })?;
    drop(ifs);
    drop(netconfd);

    // Through the agent: one device polled every second, one on notifications.
    let mqtt = Mosquitto::start()?;
    let mut polled = IfServer::start(ports(), false)?;
    let mut notified = IfServer::start(ports(), true)?;
    let dir = open_tempdir()?;
    let metrics_port = free_port();
    let device = |name: &str, s: &IfServer, interval: &str| {
        format!(
            "[[device]]\nname = \"{name}\"\naddress = \"127.0.0.1:{p}\"\nreachability = \"snmp\"\nlink_interval = \"{interval}\"\ncounters_interval = \"60s\"\n[device.netconf]\naddress = \"127.0.0.1:{p}\"\nuser = \"{u}\"\npassword_file = \"{pw}\"\nknown_hosts = \"{kh}\"\ntimeout = \"3s\"\n",
            p = s.port,
            u = s.user,
            pw = s.password_file.display(),
            kh = s.known_hosts.display(),
        )
    };
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"bench\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n{}{}",
            mqtt.url(),
            device("nc-poll", &polled, "1s"),
            device("nc-notify", &notified, "60s"),
        ),
    )?;
    let tap_file = dir.path().join("events.log");
    let _tap = event_tap(mqtt.port, &tap_file)?;
    let mut agent = start_binary("cnaas-agent", &config, &dir.path().join("agent.log"))?;
    let health = format!("http://127.0.0.1:{metrics_port}/healthz");
    wait_until("both devices up", Duration::from_secs(30), || {
        agent.check_alive().ok()?;
        let v = http_json(&health).ok()?;
        (v["devices_up"] == 2 && v["mqtt_connected"] == Value::Bool(true)).then_some(())
    })
    .with_context(|| agent.log())?;
    wait_until("the subscription", Duration::from_secs(30), || {
        notified.log().contains("subscribed").then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.pid().context("agent pid")?;
    let (cpu0, _) = proc_usage(pid)?;
    let polls0 = http_json(&health)?["link_polls"].as_u64().unwrap_or(0);
    let t0 = Instant::now();

    let mut flipped: Vec<(&str, u64, &str, u128)> = Vec::new();
    for n in 0..flips {
        let port = 2 + (n / 2) % (PORTS - 1);
        let (oper, kind) = if n % 2 == 0 {
            ("down", "link_down")
        } else {
            ("up", "link_up")
        };
        let name = format!("ge-0/0/{port}");
        let at = now_ns();
        polled.set(&name, "oper", json!(oper))?;
        flipped.push(("nc-poll", port as u64, kind, at));
        let at = now_ns();
        notified.set(&name, "oper", json!(oper))?;
        flipped.push(("nc-notify", port as u64, kind, at));
        // Past the next poll, and apart from the previous change.
        std::thread::sleep(Duration::from_millis(1300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (cpu1, rss) = proc_usage(pid)?;
    let polls1 = http_json(&health)?["link_polls"].as_u64().unwrap_or(0);
    let elapsed = t0.elapsed().as_secs_f64();

    let arrivals = event_arrivals(&tap_file);
    let mut by_mode: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut missing = 0;
    for (device, port, kind, at) in &flipped {
        let got = arrivals.iter().find(|(ns, e)| {
            *ns >= *at && e["device"] == *device && e["if_index"] == *port && e["kind"] == *kind
        });
        match got {
            Some((ns, _)) => by_mode
                .entry(device)
                .or_default()
                .push((ns - at) as f64 / 1e6),
            None => missing += 1,
        }
    }
    for (device, ms) in by_mode {
        let n = ms.len();
        let (p50, p99) = p50_p99(ms);
        let what = if device == "nc-poll" {
            "port change in the file -> event on MQTT, polling every 1 s"
        } else {
            "port change in the file -> event on MQTT, by notification (poll 60 s)"
        };
        rows.push((
            format!("{what}, p50 / p99 ({n} changes)"),
            format!("{p50:.0} / {p99:.0} ms"),
        ));
    }
    let polls = polls1.saturating_sub(polls0).max(1);
    rows.push((
        format!(
            "cnaas-agent CPU per NETCONF link poll ({PORTS} ports, {polls} polls in {elapsed:.0} s)"
        ),
        format!(
            "{:.2} ms (RSS {} MiB)",
            (cpu1 - cpu0) * 1000.0 / polls as f64,
            rss / 1024
        ),
    ));
    if missing > 0 {
        rows.push(("changes with no event".into(), missing.to_string()));
    }
    agent.terminate()?;

    println!("| NETCONF | measured |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
