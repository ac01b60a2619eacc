//! The first end-to-end path: a simulated 48-port access switch (real snmpsim) -> cnaas-agent
//! (1 s link plan) -> real Mosquitto -> cnaas-collector (SQLite) -> incident in the API.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::{
    Mosquitto, Process, Snmpsim, access_switch_recording, free_port, http_get, http_json,
    open_tempdir, snmp_set_int, start_binary, wait_until,
};
use serde_json::Value;

const COMMUNITY: &str = "access-switch";
const IF_OPER_STATUS: &str = "1.3.6.1.2.1.2.2.1.8";

struct Rig {
    snmpsim: Snmpsim,
    _mqtt: Mosquitto,
    agent: Process,
    collector: Process,
    api: String,
    metrics: String,
    _dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

fn start_rig() -> Result<Rig> {
    let snmpsim = Snmpsim::start(&[(COMMUNITY, &access_switch_recording())])?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let (api_port, metrics_port, dead_port) = (free_port(), free_port(), free_port());
    let collector_cfg = write(
        dir.path(),
        "collector.toml",
        &format!(
            r#"
[collector]
id = "e2e"
[mqtt]
url = "{mqtt}"
[store]
url = "sqlite://collector.db"
[api]
listen = "127.0.0.1:{api_port}"
[roles]
uplink = ['(?i)^uplink']
[[device]]
name = "a-b12-01"
customer = "uni-b"
site = "b12"
ports = {{ "Te1/1/1" = "uplink" }}
"#,
            mqtt = mqtt.url()
        ),
    )?;
    // Te1/1/1 is an uplink by inventory; Te1/1/2 only through the ifAlias pattern of the
    // collector (the agent is given no patterns, so the collector's own rule is exercised).
    let agent_cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            r#"
[agent]
id = "site-e2e"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[mqtt]
url = "{mqtt}"
[defaults]
link_interval = "1s"
timeout = "300ms"
retries = 1
unreachable_after = 2
[[device]]
name = "a-b12-01"
address = "{switch}"
snmp = {{ version = "2c", community = "{COMMUNITY}" }}
[[device]]
name = "a-dead-01"
address = "127.0.0.1:{dead_port}"
snmp = {{ version = "2c", community = "public" }}
"#,
            mqtt = mqtt.url(),
            switch = snmpsim.address()
        ),
    )?;
    let mut collector = start_binary(
        "cnaas-collector",
        &collector_cfg,
        &dir.path().join("collector.log"),
    )?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until(
        "the collector to connect to MQTT",
        Duration::from_secs(20),
        || {
            collector.check_alive().ok()?;
            let v = http_json(&format!("{api}/healthz")).ok()?;
            (v["mqtt_connected"] == Value::Bool(true)).then_some(())
        },
    )
    .with_context(|| collector.log())?;
    let mut agent = start_binary("cnaas-agent", &agent_cfg, &dir.path().join("agent.log"))?;
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    wait_until(
        "the agent to reach the switch",
        Duration::from_secs(20),
        || {
            agent.check_alive().ok()?;
            let v = http_json(&format!("{metrics}/healthz")).ok()?;
            (v["devices_up"] == 1 && v["mqtt_connected"] == Value::Bool(true)).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    Ok(Rig {
        snmpsim,
        _mqtt: mqtt,
        agent,
        collector,
        api,
        metrics,
        _dir: dir,
    })
}

fn open_incidents(api: &str) -> Vec<Value> {
    http_json(&format!("{api}/api/v1/incidents?state=open"))
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

fn open_port_incident(api: &str, if_index: u64) -> Option<Value> {
    open_incidents(api)
        .into_iter()
        .find(|i| i["if_index"] == if_index)
}

fn set_oper(rig: &Rig, if_index: u32, status: i64) -> Result<()> {
    snmp_set_int(
        rig.snmpsim.port,
        COMMUNITY,
        &format!("{IF_OPER_STATUS}.{if_index}"),
        status,
    )
}

fn port_events(api: &str, kind: &str, if_index: u64) -> usize {
    http_json(&format!(
        "{api}/api/v1/events?device=a-b12-01&kind={kind}&limit=1000"
    ))
    .ok()
    .and_then(|v| v["events"].as_array().cloned())
    .unwrap_or_default()
    .iter()
    .filter(|e| e["if_index"] == if_index)
    .count()
}

#[test]
fn uplink_down_opens_an_incident_and_up_resolves_it() -> Result<()> {
    let mut rig = start_rig()?;
    let api = rig.api.clone();
    let limit = Duration::from_secs(15);

    // The recording starts with access ports 7, 19 and 33 down: stored, no incident.
    wait_until("the initial access-port events", limit, || {
        (port_events(&api, "link_down", 7) == 1).then_some(())
    })?;
    assert!(
        open_incidents(&api)
            .iter()
            .all(|i| i["device"] != "a-b12-01"),
        "{:?}",
        open_incidents(&api)
    );

    // Uplink by inventory.
    set_oper(&rig, 49, 2)?;
    let inc = wait_until("an incident for Te1/1/1", limit, || {
        open_port_incident(&api, 49)
    })
    .with_context(|| {
        format!(
            "agent log:\n{}\ncollector log:\n{}",
            rig.agent.log(),
            rig.collector.log()
        )
    })?;
    assert_eq!(inc["kind"], "link_down");
    assert_eq!(inc["role"], "uplink");
    assert_eq!(inc["severity"], 2);
    assert_eq!(inc["customer"], "uni-b");
    assert_eq!(inc["site"], "b12");
    assert_eq!(inc["if_name"], "Te1/1/1");
    let id = inc["id"].as_i64().context("incident id")?;

    // Uplink by ifAlias pattern.
    set_oper(&rig, 50, 2)?;
    let inc50 = wait_until("an incident for Te1/1/2", limit, || {
        open_port_incident(&api, 50)
    })?;
    assert_eq!(inc50["role"], "uplink");
    assert_ne!(inc50["id"], inc["id"]);

    set_oper(&rig, 49, 1)?;
    set_oper(&rig, 50, 1)?;
    let resolved = wait_until("Te1/1/1's incident to resolve", limit, || {
        let d = http_json(&format!("{api}/api/v1/incidents/{id}")).ok()?;
        (d["state"] == "resolved").then_some(d)
    })?;
    assert!(resolved["resolved_at"].is_string());
    let actions: Vec<&str> = resolved["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert_eq!(actions, ["opened", "resolved"]);
    let kinds: Vec<&str> = resolved["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["link_down", "link_up"]);
    wait_until("Te1/1/2's incident to resolve", limit, || {
        open_port_incident(&api, 50).is_none().then_some(())
    })?;

    // An access port: the event is stored and the metric shows it, but no incident opens.
    set_oper(&rig, 5, 2)?;
    wait_until("the access-port event", limit, || {
        (port_events(&api, "link_down", 5) == 1).then_some(())
    })?;
    let (_, metrics) = http_get(&format!("{}/metrics", rig.metrics))?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ifOperStatus{") && l.contains("ifIndex=\"5\""))
        .context("no ifOperStatus series for ifIndex 5")?;
    assert!(line.ends_with(" 2"), "{line}");
    assert!(
        line.contains("device=\"a-b12-01\"")
            && line.contains("ifName=\"Gi1/0/5\"")
            && line.contains("ifAlias=\"B12-R101-U05\""),
        "{line}"
    );
    assert!(open_port_incident(&api, 5).is_none());
    set_oper(&rig, 5, 1)?;

    // The device that never answers becomes a device_down incident.
    let dead = wait_until("a device_down incident for a-dead-01", limit, || {
        open_incidents(&api)
            .into_iter()
            .find(|i| i["device"] == "a-dead-01")
    })?;
    assert_eq!(dead["kind"], "device_down");

    // Both binaries stop cleanly on SIGTERM.
    assert_eq!(rig.agent.terminate()?, Some(0), "{}", rig.agent.log());
    assert_eq!(
        rig.collector.terminate()?,
        Some(0),
        "{}",
        rig.collector.log()
    );
    assert!(rig.agent.log().contains("Agent stopped."));
    Ok(())
}

#[test]
fn the_collector_survives_bad_messages_and_keeps_them() -> Result<()> {
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let api_port = free_port();
    let cfg = write(
        dir.path(),
        "collector.toml",
        &format!(
            "[collector]\nid = \"dl\"\n[mqtt]\nurl = \"{}\"\n[store]\nurl = \"sqlite://c.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n",
            mqtt.url()
        ),
    )?;
    let mut collector = start_binary("cnaas-collector", &cfg, &dir.path().join("collector.log"))?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until("the collector to connect", Duration::from_secs(20), || {
        collector.check_alive().ok()?;
        (http_json(&format!("{api}/healthz")).ok()?["mqtt_connected"] == Value::Bool(true))
            .then_some(())
    })?;
    let pubs: [(&str, &str); 3] = [
        ("cnaas/v1/events/site-x/sw1", "this is not json"),
        ("cnaas/v1/events/site-x/sw1", r#"{"v":9,"id":"x"}"#),
        (
            "cnaas/v1/events/site-x/sw1",
            r#"{"v":1,"id":"01a20eeb-7ff5-721e-a6f9-61356ce3e5ad","agent":"site-x","device":"sw1","kind":"device_unreachable","source":"poll","observed_at":"2026-11-24T10:00:00.000Z","attrs":{}}"#,
        ),
    ];
    for (topic, payload) in pubs {
        let st = std::process::Command::new(cnaas_tests::find_program("mosquitto_pub")?)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                payload,
            ])
            .status()?;
        assert!(st.success());
    }
    // The valid one after the two bad ones still becomes an incident.
    wait_until(
        "the valid event's incident",
        Duration::from_secs(10),
        || {
            let v = http_json(&format!("{api}/api/v1/incidents?state=open")).ok()?;
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["device"] == "sw1")
                .cloned()
        },
    )?;
    let (_, metrics) = http_get(&format!("{api}/metrics"))?;
    assert!(
        metrics.contains("cnaas_collector_dead_letters_total{reason=\"json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cnaas_collector_dead_letters_total{reason=\"unsupported_version\"} 1"),
        "{metrics}"
    );
    // Errors are JSON with fitting statuses.
    let (status, body) = http_get(&format!("{api}/api/v1/incidents/999"))?;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));
    let (status, _) = http_get(&format!("{api}/api/v1/incidents?limit=many"))?;
    assert_eq!(status, 400);
    assert_eq!(collector.terminate()?, Some(0));
    // The dead letters are in the store with the agent id from the topic.
    let db = rusqlite_count(&dir.path().join("c.db"))?;
    assert_eq!(db, 2);
    Ok(())
}

/// Counts the dead letters kept for agent `site-x`.
fn rusqlite_count(db: &Path) -> Result<i64> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM dead_letters WHERE agent = 'site-x'",
        [],
        |r| r.get(0),
    )?)
}
