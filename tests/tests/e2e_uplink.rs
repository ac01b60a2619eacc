//! The first end-to-end path: a simulated 48-port access switch (real snmpsim) -> cnaas-agent
//! (1 s link plan) -> real Mosquitto -> cnaas-collector (SQLite) -> incident in the API.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::{
    Mosquitto, free_port, http_get, http_json, open_tempdir, start_binary, wait_until,
};
use serde_json::Value;

#[test]
fn uplink_down_opens_an_incident_and_up_resolves_it() -> Result<()> {
    let mut rig = Rig::start(&RigOptions::default())?;
    let api = rig.api.clone();
    let limit = Duration::from_secs(15);

    // The recording starts with access ports 7, 19 and 33 down: stored, no incident.
    wait_until("the initial access-port events", limit, || {
        (rig.port_events("link_down", 7) == 1).then_some(())
    })?;
    assert!(
        rig.open_incidents()
            .iter()
            .all(|i| i["device"] != "a-b12-01"),
        "{:?}",
        rig.open_incidents()
    );

    // Uplink by inventory.
    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident for Te1/1/1", limit, || {
        rig.open_port_incident(49)
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
    rig.set_oper(50, 2)?;
    let inc50 = wait_until("an incident for Te1/1/2", limit, || {
        rig.open_port_incident(50)
    })?;
    assert_eq!(inc50["role"], "uplink");
    assert_ne!(inc50["id"], inc["id"]);

    rig.set_oper(49, 1)?;
    rig.set_oper(50, 1)?;
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
        rig.open_port_incident(50).is_none().then_some(())
    })?;

    // An access port: the event is stored and the metric shows it, but no incident opens.
    rig.set_oper(5, 2)?;
    wait_until("the access-port event", limit, || {
        (rig.port_events("link_down", 5) == 1).then_some(())
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
    assert!(rig.open_port_incident(5).is_none());
    rig.set_oper(5, 1)?;

    // The device that never answers becomes a device_down incident.
    let dead = wait_until("a device_down incident for a-dead-01", limit, || {
        rig.open_incidents()
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
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
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

#[test]
fn mqtt_over_tls_with_a_password() -> Result<()> {
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        tls: true,
        ..RigOptions::default()
    })?;
    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident over mqtts://", Duration::from_secs(15), || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(inc["if_name"], "Te1/1/1");
    assert!(
        !rig.logs().contains(cnaas_tests::rig::MQTT_PASSWORD),
        "the MQTT password reached a log"
    );

    // A collector with the wrong password is refused by the broker, and says so.
    let api_port = free_port();
    std::fs::write(rig.dir().join("wrong.pass"), "not-the-password\n")?;
    let cfg = rig.dir().join("wrong.toml");
    std::fs::write(
        &cfg,
        format!(
            "[collector]\nid = \"wrong\"\n[mqtt]\nurl = \"{}\"\nca_file = \"ca.crt\"\nusername = \"{}\"\npassword_file = \"wrong.pass\"\n[store]\nurl = \"sqlite://wrong.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n",
            rig.mqtt.url(),
            cnaas_tests::rig::MQTT_USER
        ),
    )?;
    let mut wrong = start_binary("cnaas-collector", &cfg, &rig.dir().join("wrong.log"))?;
    wait_until("the refusal in the log", Duration::from_secs(10), || {
        wrong.check_alive().ok()?;
        wrong.log().contains("MQTT connection failed").then_some(())
    })?;
    let health = http_json(&format!("http://127.0.0.1:{api_port}/healthz"));
    assert!(
        health.is_err(),
        "a collector without its broker must not report healthy: {health:?}"
    );
    assert!(!wrong.log().contains("not-the-password"));
    Ok(())
}
