//! Ingestion that nothing can stop, through real Mosquitto run with the shipped config
//! (`deploy/mosquitto/cnaas.conf`: its limits, password authentication and the shipped ACL):
//! oversize messages are refused or dead-lettered and ingestion goes on; 100,000 events in
//! bursts of 20,000 from five publishers and a 10,200-event storm are all stored, once, without
//! a broker restart.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnaas_shared::{Event, EventKind, Source};
use cnaas_tests::{
    Mosquitto, Process, binary, find_program, free_port, http_get, http_json, open_tempdir,
    start_binary, wait_until,
};

const PASSWORD: &str = "ingest-secret-4711";

struct Collector {
    process: Process,
    api: String,
}

fn users(publishers: &[&str]) -> Vec<(String, String)> {
    let mut v = vec![("collector".to_owned(), PASSWORD.to_owned())];
    v.extend(
        publishers
            .iter()
            .map(|p| ((*p).to_owned(), PASSWORD.to_owned())),
    );
    v
}

fn broker(publishers: &[&str]) -> Result<Mosquitto> {
    let users = users(publishers);
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    Mosquitto::start_shipped(&refs)
}

fn collector(dir: &Path, mqtt: &Mosquitto, inventory: &str) -> Result<Collector> {
    collector_limited(dir, mqtt, inventory, None)
}

/// The collector, under a file-size limit of `fsize` bytes when given (`prlimit`).
fn collector_limited(
    dir: &Path,
    mqtt: &Mosquitto,
    inventory: &str,
    fsize: Option<u64>,
) -> Result<Collector> {
    std::fs::write(dir.join("collector.pass"), format!("{PASSWORD}\n"))?;
    let api_port = free_port();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[collector]
id = "ingest"
[mqtt]
url = "mqtt://127.0.0.1:{}"
username = "collector"
password_file = "collector.pass"
[store]
url = "sqlite://collector.db"
[api]
listen = "127.0.0.1:{api_port}"
[rules]
link_hold = "0s"
group_window = "10s"
{inventory}
"#,
            mqtt.port
        ),
    )?;
    let log = dir.join("collector.log");
    let process = match fsize {
        None => start_binary("cnaas-collector", &config, &log)?,
        Some(bytes) => {
            let mut cmd = Command::new(find_program("prlimit")?);
            cmd.arg(format!("--fsize={bytes}:unlimited"))
                .arg("--")
                .arg(binary("cnaas-collector")?)
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info");
            Process::spawn("cnaas-collector", cmd, &log)?
        }
    };
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until("the collector to connect", Duration::from_secs(20), || {
        let v = http_json(&format!("{api}/healthz")).ok()?;
        (v["mqtt_connected"] == true).then_some(())
    })
    .with_context(|| process.log())?;
    Ok(Collector { process, api })
}

/// A sample of the collector's metrics (0 when absent).
fn metric(api: &str, line_start: &str) -> f64 {
    http_get(&format!("{api}/metrics"))
        .ok()
        .and_then(|(_, text)| {
            text.lines()
                .find(|l| l.starts_with(line_start))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// `mosquitto_pub` as `user`, QoS 1, one message per line of `lines` (or the file's content
/// with `file`).
fn publish(
    mqtt: &Mosquitto,
    user: &str,
    topic: &str,
    retain: bool,
    input: &Path,
    lines: bool,
) -> Result<std::process::Child> {
    let mut cmd = Command::new(find_program("mosquitto_pub")?);
    cmd.args(["-h", "127.0.0.1", "-p", &mqtt.port.to_string()])
        .args(["-u", user, "-P", PASSWORD, "-q", "1", "-t", topic]);
    if retain {
        cmd.arg("-r");
    }
    if lines {
        cmd.arg("-l").stdin(std::fs::File::open(input)?);
    } else {
        cmd.arg("-f").arg(input).stdin(Stdio::null());
    }
    Ok(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?)
}

fn event(agent: &str, device: &str, kind: EventKind, if_index: Option<u32>) -> Vec<u8> {
    let mut e = Event::new(agent, device, kind, Source::Poll);
    e.if_index = if_index;
    e.if_name = if_index.map(|i| format!("Gi1/0/{i}"));
    e.to_json()
}

#[test]
fn oversize_messages_are_refused_or_dead_lettered_and_ingestion_goes_on() -> Result<()> {
    let dir = open_tempdir()?;
    let mqtt = broker(&["site-a"])?;
    let c = collector(dir.path(), &mqtt, "")?;
    // 2 MiB on an event topic and as a retained status: the broker refuses both (its
    // max_packet_size), so the collector never sees them.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 2 << 20])?;
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/events/site-a/sw1",
        false,
        &big,
        false,
    )?
    .wait()?;
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/agents/site-a/status",
        true,
        &big,
        false,
    )?
    .wait()?;
    // 100 KB: the broker passes it, the collector keeps it as a dead letter (acknowledged).
    let mid = dir.path().join("mid");
    let mut padded = event("site-a", "sw1", EventKind::DeviceUnreachable, None);
    padded.truncate(padded.len() - 1);
    padded.extend_from_slice(format!(",\"pad\":\"{}\"}}", "y".repeat(100_000)).as_bytes());
    std::fs::write(&mid, &padded)?;
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/events/site-a/sw1",
        false,
        &mid,
        false,
    )?
    .wait()?;
    // Then a valid event: stored.
    let ok = dir.path().join("ok");
    std::fs::write(
        &ok,
        event("site-a", "sw2", EventKind::DeviceUnreachable, None),
    )?;
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/events/site-a/sw2",
        false,
        &ok,
        false,
    )?
    .wait()?;
    wait_until(
        "the valid event to be stored",
        Duration::from_secs(10),
        || (metric(&c.api, "cnaas_collector_events_stored_total") >= 1.0).then_some(()),
    )
    .with_context(|| c.process.log())?;
    wait_until("the dead letter", Duration::from_secs(10), || {
        (metric(
            &c.api,
            "cnaas_collector_dead_letters_total{reason=\"too_large\"}",
        ) >= 1.0)
            .then_some(())
    })
    .with_context(|| c.process.log())?;
    // Still connected, healthy, nothing re-read: a restart finds nothing left to take.
    let health = http_json(&format!("{}/healthz", c.api))?;
    assert_eq!(health["mqtt_connected"], true, "{health}");
    assert_eq!(health["ingest_stalled"], false, "{health}");
    assert_eq!(
        metric(
            &c.api,
            "cnaas_collector_dead_letters_total{reason=\"too_large\"}"
        ),
        1.0
    );
    Ok(())
}

#[test]
fn bursts_and_a_storm_are_stored_completely_without_a_broker_restart() -> Result<()> {
    let dir = open_tempdir()?;
    let publishers = ["bulk1", "bulk2", "bulk3", "bulk4", "bulk5", "storm"];
    let mqtt = broker(&publishers)?;
    // The storm's campus: one distribution switch with 200 access switches behind it.
    let mut inventory = String::from(
        "[[device]]\nname = \"d1\"\ncustomer = \"c\"\nsite = \"s\"\nrole = \"distribution\"\n",
    );
    for n in 0..200 {
        inventory.push_str(&format!(
            "[[device]]\nname = \"a{n:03}\"\ncustomer = \"c\"\nsite = \"s\"\nrole = \"access\"\nuplink = \"d1\"\n"
        ));
    }
    let c = collector(dir.path(), &mqtt, &inventory)?;
    // Five publishers, 20,000 events each, at once.
    let mut children = Vec::new();
    for (n, user) in publishers[..5].iter().enumerate() {
        let file = dir.path().join(format!("{user}.lines"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..20_000u32 {
            let kind = if i % 2 == 0 {
                EventKind::LinkDown
            } else {
                EventKind::LinkUp
            };
            f.write_all(&event(user, &format!("sw{n}"), kind, Some(i % 48 + 1)))?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        drop(f);
        let topic = format!("cnaas/v1/events/{user}/sw{n}");
        children.push(publish(&mqtt, user, &topic, false, &file, true)?);
    }
    for mut ch in children {
        if !ch.wait()?.success() {
            bail!("mosquitto_pub failed");
        }
    }
    let stored = wait_until(
        "all 100,000 events stored",
        Duration::from_secs(240),
        || {
            let n = metric(&c.api, "cnaas_collector_events_stored_total");
            (n >= 100_000.0).then_some(n)
        },
    )
    .with_context(|| {
        format!(
            "stored {}; {}",
            metric(&c.api, "cnaas_collector_events_stored_total"),
            c.process.log()
        )
    })?;
    assert_eq!(stored, 100_000.0);
    // One publisher's 20,000, paged through with the API's cursor: each exactly once.
    let mut ids = std::collections::HashSet::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            None => format!("{}/api/v1/events?device=sw0&limit=1000", c.api),
            Some(n) => format!("{}/api/v1/events?device=sw0&limit=1000&before={n}", c.api),
        };
        let page = http_json(&url)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            assert!(
                ids.insert(e["id"].as_str().unwrap_or_default().to_owned()),
                "{e}"
            );
        }
        match page["next"].as_str() {
            Some(n) if !events.is_empty() => next = Some(n.to_owned()),
            _ => break,
        }
    }
    assert_eq!(ids.len(), 20_000);
    // The storm: the distribution switch and its 200 access switches unreachable, 50 port
    // events each (10,201 events), from 201 topics.
    let mut storm = Vec::new();
    for (device, ports) in
        std::iter::once(("d1".to_owned(), 0)).chain((0..200).map(|n| (format!("a{n:03}"), 50)))
    {
        let file = dir.path().join(format!("{device}.lines"));
        let mut text = event("storm", &device, EventKind::DeviceUnreachable, None);
        text.push(b'\n');
        for p in 0..ports {
            text.extend(event("storm", &device, EventKind::LinkDown, Some(p + 1)));
            text.push(b'\n');
        }
        std::fs::write(&file, text)?;
        storm.push((device, file));
    }
    for chunk in storm.chunks(25) {
        let mut running = Vec::new();
        for (device, file) in chunk {
            let topic = format!("cnaas/v1/events/storm/{device}");
            running.push(publish(&mqtt, "storm", &topic, false, file, true)?);
        }
        for mut ch in running {
            ch.wait()?;
        }
    }
    wait_until("the storm stored", Duration::from_secs(120), || {
        (metric(&c.api, "cnaas_collector_events_stored_total") >= 110_201.0).then_some(())
    })
    .with_context(|| {
        format!(
            "stored {}; {}",
            metric(&c.api, "cnaas_collector_events_stored_total"),
            c.process.log()
        )
    })?;
    assert_eq!(
        metric(&c.api, "cnaas_collector_events_stored_total"),
        110_201.0
    );
    // One incident: the distribution switch with every access switch shadowed.
    let incidents = http_json(&format!("{}/api/v1/incidents?state=open", c.api))?;
    let open: Vec<&serde_json::Value> = incidents["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "device_down")
        .collect();
    assert_eq!(open.len(), 1, "{incidents:#}");
    let detail = http_json(&format!("{}/api/v1/incidents/{}", c.api, open[0]["id"]))?;
    let devices = detail["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            a["alarm"]
                .as_str()
                .is_some_and(|k| k.ends_with("||device_down"))
        })
        .count();
    assert_eq!(devices, 201, "the incident misses switches");
    let health = http_json(&format!("{}/healthz", c.api))?;
    assert_eq!(health["ingest_stalled"], false, "{health}");
    assert!(
        !c.process.log().contains("Cannot acknowledge"),
        "an acknowledgement was lost"
    );
    Ok(())
}

/// The customer and channels of the ownership test: every notice goes to a JSON-lines file.
const NOTIFY: &str = r#"
[notify]
language = "nb"
ssc = [{ channel = "ssc-log", to = "ssc" }, { channel = "ssc-log2", to = "ssc" }]
secondline = [{ channel = "ssc-log", to = "campus" }]
attempts = 2
backoff = "100ms"
max_backoff = "200ms"

[[channel]]
name = "ssc-log"
kind = "file"
path = "ssc.jsonl"

[[channel]]
name = "ssc-log2"
kind = "file"
path = "ssc2.jsonl"

[[channel]]
name = "customer"
kind = "file"
path = "customer.jsonl"

[[customer]]
id = "uni-a"
name = "Universitetet i A"
language = "nb"
incident = { channel = "customer", to = "servicedesk@uni-a.no" }
change = { channel = "customer", to = "change@uni-a.no" }
local_support = { channel = "customer", to = "helpdesk@uni-a.no" }
technical = [{ channel = "customer", to = "+4790000000" }]
administrative = [{ channel = "customer", to = "kontrakt@uni-a.no" }]
"#;

#[test]
fn an_agent_cannot_speak_for_another_sites_device() -> Result<()> {
    let dir = open_tempdir()?;
    let mqtt = broker(&["site-a", "evil"])?;
    // a-sw1 belongs to site-a by the inventory; b-sw9 is in no inventory and is pinned to the
    // first agent that reports it.
    let inventory = format!(
        "[[device]]\nname = \"a-sw1\"\ncustomer = \"uni-a\"\nsite = \"a\"\nrole = \"distribution\"\nagents = [\"site-a\"]\n{NOTIFY}"
    );
    let c = collector(dir.path(), &mqtt, &inventory)?;
    let send = |user: &str, topic_agent: &str, device: &str, payload_agent: &str| -> Result<()> {
        let file = dir.path().join(format!("{user}-{device}.json"));
        std::fs::write(
            &file,
            event(payload_agent, device, EventKind::DeviceUnreachable, None),
        )?;
        let topic = format!("cnaas/v1/events/{topic_agent}/{device}");
        publish(&mqtt, user, &topic, false, &file, false)?.wait()?;
        Ok(())
    };
    // site-a reports b-sw9 first (pinned to it), as reachable.
    let file = dir.path().join("b-sw9-up.json");
    std::fs::write(
        &file,
        event("site-a", "b-sw9", EventKind::DeviceReachable, None),
    )?;
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/events/site-a/b-sw9",
        false,
        &file,
        false,
    )?
    .wait()?;
    wait_until("b-sw9 pinned", Duration::from_secs(10), || {
        (metric(&c.api, "cnaas_collector_events_stored_total") >= 1.0).then_some(())
    })
    .with_context(|| c.process.log())?;
    // The evil credential, under its own topic (the ACL lets it): both devices refused.
    send("evil", "evil", "a-sw1", "evil")?;
    send("evil", "evil", "b-sw9", "evil")?;
    // Under site-a's topic: the broker's ACL drops it before the collector sees it.
    send("evil", "site-a", "a-sw1", "site-a")?;
    wait_until("two dead letters", Duration::from_secs(10), || {
        (metric(
            &c.api,
            "cnaas_collector_dead_letters_total{reason=\"not_owner\"}",
        ) >= 2.0)
            .then_some(())
    })
    .with_context(|| c.process.log())?;
    // Well past the group window: no incident, nothing told to anyone.
    std::thread::sleep(Duration::from_secs(3));
    let open = http_json(&format!("{}/api/v1/incidents?state=open", c.api))?;
    assert_eq!(
        open["incidents"].as_array().map(Vec::len),
        Some(0),
        "{open:#}"
    );
    assert_eq!(
        metric(&c.api, "cnaas_collector_events_stored_total"),
        1.0,
        "only site-a's event is stored"
    );
    assert!(!dir.path().join("customer.jsonl").exists());
    assert!(!dir.path().join("ssc.jsonl").exists());
    let owners = http_json(&format!("{}/api/v1/devices", c.api))?;
    let by_name = |name: &str| {
        owners["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["device"] == name)
            .cloned()
    };
    let a = by_name("a-sw1").context("a-sw1 listed")?;
    assert_eq!(
        (a["source"].as_str(), a["agents"][0].as_str()),
        (Some("inventory"), Some("site-a"))
    );
    let b = by_name("b-sw9").context("b-sw9 listed")?;
    assert_eq!(
        (b["source"].as_str(), b["agents"][0].as_str()),
        (Some("first_sight"), Some("site-a"))
    );
    // The device's own agent is heard and its customer told: the channel works.
    send("site-a", "site-a", "a-sw1", "site-a")?;
    wait_until("the customer told", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(dir.path().join("customer.jsonl")).ok()?;
        text.contains("a-sw1").then_some(())
    })
    .with_context(|| c.process.log())?;
    let text = std::fs::read_to_string(dir.path().join("customer.jsonl"))?;
    assert!(!text.contains("evil"), "{text}");
    Ok(())
}

#[test]
fn a_file_size_limit_pauses_storing_loudly_and_loses_nothing() -> Result<()> {
    let dir = open_tempdir()?;
    let mqtt = broker(&["site-a"])?;
    // 1 MiB: room for the schema and a few thousand events, not for 20,000. SSC's channels
    // are files (small: they fit).
    let extra = format!("[ingest]\nstall_after = \"2s\"\n{NOTIFY}");
    let c = collector_limited(dir.path(), &mqtt, &extra, Some(1 << 20))?;
    let file = dir.path().join("events.lines");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
    for i in 0..20_000u32 {
        let kind = if i % 2 == 0 {
            EventKind::LinkDown
        } else {
            EventKind::LinkUp
        };
        f.write_all(&event("site-a", "sw1", kind, Some(i % 48 + 1)))?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    drop(f);
    publish(
        &mqtt,
        "site-a",
        "cnaas/v1/events/site-a/sw1",
        false,
        &file,
        true,
    )?
    .wait()?;
    // The limit is reached: storing fails, loudly, and the process lives.
    wait_until("the store to fail visibly", Duration::from_secs(60), || {
        let (_, body) = http_get(&format!("{}/healthz", c.api)).ok()?;
        let h: serde_json::Value = serde_json::from_str(&body).ok()?;
        (h["store_failing"] == true).then_some(())
    })
    .with_context(|| c.process.log())?;
    let (status, _) = http_get(&format!("{}/healthz", c.api))?;
    assert_eq!(status, 503);
    let log = c.process.log();
    assert!(log.contains("SIGXFSZ"), "{log}");
    let (_, body) = http_get(&format!("{}/healthz", c.api))?;
    let h: serde_json::Value = serde_json::from_str(&body)?;
    assert!(h["ingest_queue"].as_i64() > Some(0), "{h}");
    let stored = metric(&c.api, "cnaas_collector_events_stored_total");
    assert!(stored < 20_000.0, "{stored}");
    // SSC is told directly on both its channels (the store cannot queue a notice).
    let told = |kind: &str| {
        ["ssc.jsonl", "ssc2.jsonl"].iter().all(|f| {
            std::fs::read_to_string(dir.path().join(f))
                .is_ok_and(|t| t.contains(&format!("\"kind\":\"{kind}\"")))
        })
    };
    wait_until("SSC told of the stall", Duration::from_secs(30), || {
        told("ingest_stalled").then_some(())
    })
    .with_context(|| c.process.log())?;
    let (_, body) = http_get(&format!("{}/healthz", c.api))?;
    let h: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(h["ingest_stalled"], true, "{h}");
    assert!(h["ingest_lag_seconds"].as_i64() >= Some(2), "{h}");
    // Room again (the operator raised the limit): everything is stored, once.
    let pid = c.process.pid().context("collector pid")?;
    let ok = Command::new(find_program("prlimit")?)
        .args(["--pid", &pid.to_string(), "--fsize=unlimited"])
        .status()?;
    assert!(ok.success());
    wait_until("all 20,000 stored", Duration::from_secs(120), || {
        (metric(&c.api, "cnaas_collector_events_stored_total") >= 20_000.0).then_some(())
    })
    .with_context(|| {
        format!(
            "stored {}; {}",
            metric(&c.api, "cnaas_collector_events_stored_total"),
            c.process.log()
        )
    })?;
    assert_eq!(
        metric(&c.api, "cnaas_collector_events_stored_total"),
        20_000.0
    );
    let h = http_json(&format!("{}/healthz", c.api))?;
    assert_eq!(h["store_failing"], false, "{h}");
    wait_until("SSC told it moves again", Duration::from_secs(30), || {
        told("ingest_moving").then_some(())
    })
    .with_context(|| c.process.log())?;
    Ok(())
}

#[test]
fn an_empty_database_is_refused_clearly_and_begun_anew_only_when_told() -> Result<()> {
    let dir = open_tempdir()?;
    let mqtt = broker(&[])?;
    // A first start creates the database; stop it.
    let c = collector(dir.path(), &mqtt, "")?;
    drop(c);
    // The file truncated to nothing (a full disk, a bad restore).
    let db = dir.path().join("collector.db");
    std::fs::write(&db, b"")?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("collector.db{suffix}")));
    }
    let out = Command::new(binary("cnaas-collector")?)
        .arg("--config")
        .arg(dir.path().join("collector.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is damaged: the file is empty (0 bytes)"),
        "{stderr}"
    );
    assert!(stderr.contains("--reinitialise"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&db)?.len(),
        0,
        "the file is left as it was"
    );
    // Told to begin anew: it starts, and the old file is kept aside.
    let mut cmd = Command::new(binary("cnaas-collector")?);
    cmd.arg("--config")
        .arg(dir.path().join("collector.toml"))
        .arg("--reinitialise")
        .env("RUST_LOG", "info");
    let p = Process::spawn("cnaas-collector", cmd, &dir.path().join("again.log"))?;
    wait_until(
        "the collector on a new database",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(dir.path().join("again.log")).ok()?;
            text.contains("Collector started.").then_some(())
        },
    )
    .with_context(|| p.log())?;
    assert!(p.log().contains("moved aside"), "{}", p.log());
    let kept = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("collector.db.damaged-")
        });
    assert!(kept);
    Ok(())
}
