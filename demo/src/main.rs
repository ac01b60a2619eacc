//! `cnaas-demo`: the whole product in one process, with nothing to install. A simulated campus
//! as CNaaS builds it, of two customers (22 switches answering SNMP on loopback, sending traps:
//! two cores, a distribution pair per customer, access switches with a two-member LACP bundle
//! to both switches of their pair, LLDP), the embedded MQTT broker (rumqttd), an agent polling
//! the campus, and the collector with SQLite under a local data folder, notifications to a
//! JSON-lines file, and the API. A scripted scenario shows one uplink of a bundle going down
//! (redundancy lost), a flapping port being damped into one incident, a change window keeping
//! a fault from the customer, a distribution switch dying (one "redundancy lost" incident, the
//! customer told at low severity) and then its partner (the same incident, now an outage), and
//! recovery. A line is printed per incident and per notification as they happen.
//!
//!     cargo run --release --bin cnaas-demo
//!
//! Ctrl-C stops it cleanly.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use cnaas_shared::config::ConfigSource;
use cnaas_sim::{Campus, Control, Shared};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "cnaas-demo",
    about = "The CNaaS monitor on a simulated campus, in one process"
)]
struct Cli {
    /// Where the database, configs and notifications go.
    #[arg(long, default_value = "cnaas-demo-data")]
    data: PathBuf,
    /// First of five loopback ports (SNMP, traps, MQTT, API, agent metrics).
    #[arg(long, default_value_t = 16160)]
    base_port: u16,
    /// Run the scenario once and stop when it is over (for scripts).
    #[arg(long)]
    once: bool,
}

struct Ports {
    snmp: u16,
    traps: u16,
    mqtt: u16,
    api: u16,
    metrics: u16,
}

/// Access switches per distribution pair; pair 1 (dist-1a, dist-1b) and its access switches
/// are customer A, pair 2 customer B; the cores are Sikt's.
const PER_PAIR: usize = 8;
const SWITCHES: usize = 2 + 2 * (2 + PER_PAIR);

fn customer_of(name: &str) -> Option<&'static str> {
    if name.starts_with("dist-1") || name.starts_with("access-1-") {
        Some("uni-a")
    } else if name.starts_with("dist-2") || name.starts_with("access-2-") {
        Some("uni-b")
    } else {
        None
    }
}

fn broker(port: u16) -> Result<()> {
    let text = format!(
        r#"
id = 0
[router]
max_connections = 64
max_outgoing_packet_count = 1000
max_segment_size = 10485760
max_segment_count = 10
[v4.1]
name = "demo"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml_edit::de::from_str(&text).context("the embedded broker's settings")?;
    // The broker has no stop function and its start() blocks: it lives on its own thread
    // until the process ends.
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut b = rumqttd::Broker::new(config);
            if let Err(e) = b.start() {
                eprintln!("cnaas-demo: the embedded MQTT broker stopped: {e}");
            }
        })?;
    Ok(())
}

fn collector_config(p: &Ports, token_hash: &str, campus: &Campus) -> String {
    let mut inv = String::new();
    for s in &campus.switches {
        inv.push_str(&format!(
            "[[device]]\nname = \"{}\"\n{}",
            s.name,
            cnaas_sim::inventory_lines(s)
        ));
        if let Some(c) = customer_of(&s.name) {
            let site = if c == "uni-a" { "a-main" } else { "b-north" };
            inv.push_str(&format!("customer = \"{c}\"\nsite = \"{site}\"\n"));
        }
    }
    format!(
        r#"
[collector]
id = "demo"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
[store]
url = "sqlite://collector.db"
[api]
listen = "127.0.0.1:{api}"
tokens_file = "tokens.toml"
[roles]
uplink = ['(?i)^uplink']
downlink = ['(?i)^downlink']
[rules]
link_hold = "3s"
group_window = "4s"
reopen_window = "1m"
[notify]
language = "en"
base_url = "http://127.0.0.1:{api}"
ssc = [{{ channel = "log", to = "ssc" }}]
secondline = [{{ channel = "log", to = "campus" }}]
contact = "Sikt service centre (demo)"
[[channel]]
name = "log"
kind = "file"
path = "notifications.jsonl"
[[customer]]
id = "uni-a"
name = "Universitetet i A"
language = "nb"
opening_hours = ["mon-fri 08:00-16:00"]
incident = {{ channel = "log", to = "servicedesk@uni-a.example" }}
change = {{ channel = "log", to = "servicedesk@uni-a.example" }}
local_support = {{ channel = "log", to = "it-support@uni-a.example" }}
technical = [{{ channel = "log", to = "nettverk@uni-a.example" }}]
administrative = [{{ channel = "log", to = "kontrakt@uni-a.example" }}]
[[customer]]
id = "uni-b"
name = "University College B"
language = "en"
opening_hours = ["mon-fri 08:00-16:00"]
incident = {{ channel = "log", to = "helpdesk@uni-b.example" }}
change = {{ channel = "log", to = "helpdesk@uni-b.example" }}
local_support = {{ channel = "log", to = "helpdesk@uni-b.example" }}
technical = [{{ channel = "log", to = "network@uni-b.example" }}]
administrative = [{{ channel = "log", to = "contracts@uni-b.example" }}]
{inv}
# token: {token_hash}
"#,
        mqtt = p.mqtt,
        api = p.api,
        token_hash = token_hash,
    )
}

fn agent_config(p: &Ports, campus: &Campus) -> String {
    let devices = cnaas_sim::agent_devices(campus.switches.iter().map(|s| s.name.as_str()), p.snmp);
    format!(
        r#"
[agent]
id = "demo-site"
[metrics]
listen = "127.0.0.1:{metrics}"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
[spool]
dir = "spool"
[traps]
listen = "127.0.0.1:{traps}"
quiet_after_reboot = "0s"
[defaults]
link_interval = "1s"
reachability_interval = "1s"
topology_interval = "5s"
timeout = "300ms"
retries = 1
unreachable_after = 2
{devices}"#,
        metrics = p.metrics,
        mqtt = p.mqtt,
        traps = p.traps,
    )
}

fn load<T>(
    data: &Path,
    name: &str,
    text: &str,
    f: impl Fn(
        ConfigSource,
    ) -> Result<(T, cnaas_shared::config::Diagnostics), cnaas_shared::config::Diagnostics>,
) -> Result<T> {
    let path = data.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let mut source = ConfigSource::from_text(&path.display().to_string(), text);
    source.base_dir = data.to_owned();
    match f(source) {
        Ok((cfg, _warnings)) => Ok(cfg),
        Err(d) => bail!("the demo's {name} is wrong:\n{d}"),
    }
}

fn stamp(start: Instant) -> String {
    format!("[{:>5.1}s]", start.elapsed().as_secs_f64())
}

/// Prints incidents as they open, change and resolve, and notifications as they are written.
async fn watch(
    api: String,
    notifications: PathBuf,
    token: String,
    start: Instant,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let mut seen: HashMap<i64, (String, bool, i64)> = HashMap::new();
    let mut offset = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(400)) => {}
        }
        let list = client
            .get(format!("{api}/api/v1/incidents?limit=200"))
            .bearer_auth(&token)
            .send()
            .await;
        if let Ok(resp) = list
            && let Ok(v) = resp.json::<Value>().await
        {
            let mut incidents = v["incidents"].as_array().cloned().unwrap_or_default();
            incidents.reverse();
            for i in incidents {
                let id = i["id"].as_i64().unwrap_or_default();
                let state = i["state"].as_str().unwrap_or_default().to_owned();
                let maint = i["in_maintenance"].as_bool().unwrap_or(false);
                let severity = i["severity"].as_i64().unwrap_or_default();
                if seen.get(&id) == Some(&(state.clone(), maint, severity)) {
                    continue;
                }
                let what = match seen.get(&id) {
                    None => "opened".to_owned(),
                    Some((before, true, _)) if !maint && *before == state => {
                        "window ended".to_owned()
                    }
                    Some((before, _, s)) if *before == state && severity < *s => {
                        "worsened".to_owned()
                    }
                    Some((before, _, _)) if *before == state => "impact".to_owned(),
                    // Taken into another incident: not resolved, nobody is told it ended.
                    Some(_) if state == "merged" => format!("merged in #{}", i["merged_into"]),
                    Some(_) => state.clone(),
                };
                println!(
                    "{} INCIDENT #{id} {what:<12} S{} {:<6} {}{}",
                    stamp(start),
                    i["severity"],
                    i["customer"].as_str().unwrap_or("-"),
                    i["summary"].as_str().unwrap_or_default(),
                    if maint {
                        "  (in a change window: the customer is not told)"
                    } else {
                        ""
                    }
                );
                seen.insert(id, (state, maint, severity));
            }
        }
        if let Ok(mut f) = std::fs::File::open(&notifications)
            && f.seek(SeekFrom::Start(offset)).is_ok()
        {
            let mut text = String::new();
            if let Ok(n) = f.read_to_string(&mut text) {
                let complete = text.rfind('\n').map_or(0, |i| i + 1);
                offset += u64::try_from(complete.min(n)).unwrap_or(0);
                for line in text[..complete].lines() {
                    if let Ok(v) = serde_json::from_str::<Value>(line) {
                        println!(
                            "{}   NOTIFY {:<13} {:<28} {}",
                            stamp(start),
                            v["audience"].as_str().unwrap_or_default(),
                            v["to"].as_str().unwrap_or_default(),
                            v["subject"].as_str().unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
}

/// The scripted story.
async fn scenario(
    control: Control,
    api: String,
    token: String,
    start: Instant,
    stop: CancellationToken,
) -> Result<()> {
    let at = |s: u64| tokio::time::Instant::from_std(start) + Duration::from_secs(s);
    let wait = |s: u64| {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = stop.cancelled() => false,
                () = tokio::time::sleep_until(at(s)) => true,
            }
        }
    };
    let say = |s: &str| println!("{} ---- {s}", stamp(start));
    if !wait(6).await {
        return Ok(());
    }
    say(
        "access-1-1 (Universitetet i A) loses its uplink Te1/1/2 to dist-1b; Po1 carries on over Te1/1/1",
    );
    control.link("access-1-1", 52, false)?;
    if !wait(10).await {
        return Ok(());
    }
    say("access-2-4 (University College B): uplink Te1/1/1 starts flapping");
    for n in 0..8u64 {
        if !wait(10 + 2 * n).await {
            return Ok(());
        }
        control.link("access-2-4", 51, false)?;
        tokio::time::sleep(Duration::from_millis(900)).await;
        control.link("access-2-4", 51, true)?;
    }
    if !wait(28).await {
        return Ok(());
    }
    say(
        "SSC opens a change window on access-1-5 (emergency: a planned one needs 8 working days' notice)",
    );
    let now = chrono::Utc::now();
    let resp = reqwest::Client::new()
        .post(format!("{api}/api/v1/changes"))
        .bearer_auth(&token)
        .json(&json!({
            "title": "Replace the uplink optics of access-1-5",
            "kind": "emergency",
            "impact": "One corridor without network for up to a minute",
            "starts_at": now,
            "ends_at": now + chrono::TimeDelta::seconds(25),
            "devices": ["access-1-5"],
        }))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "the change was refused: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    if !wait(31).await {
        return Ok(());
    }
    say("access-1-5's uplink goes down inside the window");
    control.link("access-1-5", 52, false)?;
    if !wait(38).await {
        return Ok(());
    }
    say(
        "dist-2a (University College B) dies: its access switches lose one uplink each, none is cut off",
    );
    control.alive("dist-2a", false)?;
    if !wait(52).await {
        return Ok(());
    }
    say("dist-2b dies too: now the pair is gone and its access switches are cut off");
    control.alive("dist-2b", false)?;
    if !wait(68).await {
        return Ok(());
    }
    say("everything recovers");
    control.recover();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,rumqttd=off".into()),
        )
        .init();
    std::fs::create_dir_all(&cli.data)
        .with_context(|| format!("cannot create {}", cli.data.display()))?;
    let data = std::fs::canonicalize(&cli.data)?;
    let b = cli.base_port;
    let ports = Ports {
        snmp: b,
        traps: b + 1,
        mqtt: b + 2,
        api: b + 3,
        metrics: b + 4,
    };
    let token = format!("demo-{}", uuid::Uuid::now_v7().simple());
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    std::fs::write(
        data.join("tokens.toml"),
        format!("[[token]]\nname = \"demo-ssc\"\nrole = \"ssc\"\nsha256 = \"{hash}\"\n"),
    )?;
    // A fresh story each run: the old database and notifications go.
    for f in [
        "collector.db",
        "collector.db-wal",
        "collector.db-shm",
        "notifications.jsonl",
    ] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let _ = std::fs::remove_dir_all(data.join("spool"));
    let campus = Campus::cnaas(SWITCHES, PER_PAIR, 52, Instant::now());
    let collector = load(
        &data,
        "collector.toml",
        &collector_config(&ports, &hash, &campus),
        cnaas_collector::config::CollectorConfig::from_source,
    )?;
    let agent = load(
        &data,
        "agent.toml",
        &agent_config(&ports, &campus),
        cnaas_agent::config::AgentConfig::from_source,
    )?;
    broker(ports.mqtt)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let start = Instant::now();
        let token_stop = CancellationToken::new();
        let snmp: SocketAddr = format!("127.0.0.1:{}", ports.snmp).parse()?;
        let traps: SocketAddr = format!("127.0.0.1:{}", ports.traps).parse()?;
        let sim = cnaas_sim::start(Shared::new(campus), snmp, vec![traps], token_stop.clone())
            .await
            .with_context(|| format!("cannot serve the simulated campus on {snmp}"))?;
        let api = format!("http://127.0.0.1:{}", ports.api);
        let collector_task = tokio::spawn(cnaas_collector::app::run(collector, token_stop.clone()));
        // The broker and the collector need a moment before the agent connects.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let agent_task = tokio::spawn(cnaas_agent::app::run(agent, token_stop.clone()));
        println!("CNaaS demo: {SWITCHES} simulated switches of two customers, SNMP on {snmp}, MQTT on 127.0.0.1:{}", ports.mqtt);
        println!("Dashboard:  {api}/ui/   (sign in with the token {token})");
        println!("API:        {api}/api/v1/incidents   (Authorization: Bearer {token})");
        println!("Data:       {}   (notifications.jsonl, collector.db)", data.display());
        println!("Ctrl-C stops it.\n");
        let watcher = tokio::spawn(watch(
            api.clone(),
            data.join("notifications.jsonl"),
            token.clone(),
            start,
            token_stop.clone(),
        ));
        let story = tokio::spawn(scenario(sim.control.clone(), api.clone(), token.clone(), start, token_stop.clone()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let once_done = async {
            if cli.once {
                tokio::time::sleep(Duration::from_secs(75)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = once_done => {}
        }
        println!("\nStopping ...");
        token_stop.cancel();
        if let Ok(Err(e)) = story.await {
            eprintln!("cnaas-demo: the scenario failed: {e:#}");
        }
        let _ = watcher.await;
        for (name, task) in [("agent", agent_task), ("collector", collector_task)] {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("cnaas-demo: the {name} failed: {e:#}"),
                Err(e) => eprintln!("cnaas-demo: the {name} panicked: {e}"),
            }
        }
        println!("Stopped. The incidents stay in {}.", data.join("collector.db").display());
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
