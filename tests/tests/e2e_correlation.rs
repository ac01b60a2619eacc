//! Correlation end to end with real snmpsim and Mosquitto: a distribution switch with five
//! access switches behind it (inventory uplinks). The simulator stops -> every switch stops
//! answering -> exactly one incident, rooted at the distribution switch, with the five access
//! switches as shadowed members; the collector restarts in the middle of it; the switches come
//! back -> that same incident resolves. Then a port flapped ten times ->
//! one `port_flapping` incident per port, not ten.

use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::{
    Mosquitto, Snmpsim, access_switch_recording, free_port, http_json, open_tempdir, snmp_set_int,
    start_binary, wait_until,
};
use serde_json::Value;

const SWITCHES: [&str; 6] = [
    "d-b12", "a-b12-1", "a-b12-2", "a-b12-3", "a-b12-4", "a-b12-5",
];

fn incidents(api: &str) -> Vec<Value> {
    http_json(&format!("{api}/api/v1/incidents?limit=1000"))
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

fn count_events(api: &str, kind: &str) -> usize {
    http_json(&format!("{api}/api/v1/events?kind={kind}&limit=1000"))
        .ok()
        .and_then(|v| v["events"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn a_dead_distribution_switch_and_a_flapping_port() -> Result<()> {
    let recording = access_switch_recording();
    let recordings: Vec<(&str, &std::path::Path)> =
        SWITCHES.iter().map(|s| (*s, recording.as_path())).collect();
    let mut sim = Snmpsim::start(&recordings)?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let (api_port, metrics_port) = (free_port(), free_port());
    let mut inventory =
        String::from("[[device]]\nname = \"d-b12\"\nsite = \"b12\"\ncustomer = \"uni-b\"\n");
    let mut devices = String::new();
    for s in SWITCHES {
        if s != "d-b12" {
            inventory.push_str(&format!("[[device]]\nname = \"{s}\"\nsite = \"b12\"\ncustomer = \"uni-b\"\nuplink = \"d-b12\"\n"));
        }
        // Reachability by SNMP: the simulator's address answers ping even when it is stopped.
        devices.push_str(&format!(
            "[[device]]\nname = \"{s}\"\naddress = \"{}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"{s}\" }}\n",
            sim.address()
        ));
    }
    let collector_cfg = dir.path().join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "[collector]\nid = \"corr\"\n[mqtt]\nurl = \"{}\"\n[store]\nurl = \"sqlite://c.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [roles]\nuplink = ['(?i)^uplink']\n[rules]\nlink_hold = \"60s\"\ngroup_window = \"10s\"\n{inventory}",
            mqtt.url()
        ),
    )?;
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "[agent]\nid = \"site-corr\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [defaults]\nlink_interval = \"1s\"\ntimeout = \"300ms\"\nretries = 0\nunreachable_after = 2\n{devices}",
            mqtt.url()
        ),
    )?;
    let mut collector = start_binary(
        "cnaas-collector",
        &collector_cfg,
        &dir.path().join("collector.log"),
    )?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until("the collector", Duration::from_secs(20), || {
        collector.check_alive().ok()?;
        (http_json(&format!("{api}/healthz")).ok()?["mqtt_connected"] == Value::Bool(true))
            .then_some(())
    })?;
    let mut agent = start_binary("cnaas-agent", &agent_cfg, &dir.path().join("agent.log"))?;
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let logs = |a: &cnaas_tests::Process, c: &cnaas_tests::Process| {
        format!("agent:\n{}\ncollector:\n{}", a.log(), c.log())
    };
    wait_until("all six switches polled", Duration::from_secs(20), || {
        agent.check_alive().ok()?;
        (http_json(&format!("{metrics}/healthz")).ok()?["devices_up"] == 6).then_some(())
    })
    .with_context(|| logs(&agent, &collector))?;
    assert!(
        incidents(&api).is_empty(),
        "access ports down at start are no incidents"
    );

    // The distribution switch dies, and with it everything behind it.
    sim.stop()?;
    wait_until(
        "six device_unreachable events",
        Duration::from_secs(20),
        || (count_events(&api, "device_unreachable") == 6).then_some(()),
    )
    .with_context(|| logs(&agent, &collector))?;
    let all = incidents(&api);
    let open: Vec<&Value> = all.iter().filter(|i| i["state"] == "open").collect();
    assert_eq!(open.len(), 1, "exactly one open incident: {all:#?}");
    let id = open[0]["id"].as_i64().context("id")?;
    let detail = http_json(&format!("{api}/api/v1/incidents/{id}"))?;
    assert_eq!(detail["device"], "d-b12", "{detail:#}");
    assert_eq!(detail["kind"], "device_down");
    let shadowed: Vec<&str> = detail["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["relation"] == "shadowed" && a["active"] == true)
        .filter_map(|a| a["alarm"].as_str())
        .collect();
    assert_eq!(shadowed.len(), 5, "{detail:#}");
    assert!(
        shadowed
            .iter()
            .all(|a| a.starts_with("a-b12-") && a.ends_with("||device_down"))
    );

    // The collector restarts in the middle of it and carries on with the same incident.
    assert_eq!(collector.terminate()?, Some(0));
    collector = start_binary(
        "cnaas-collector",
        &collector_cfg,
        &dir.path().join("collector-2.log"),
    )?;
    wait_until("the restarted collector", Duration::from_secs(20), || {
        collector.check_alive().ok()?;
        (http_json(&format!("{api}/healthz")).ok()?["mqtt_connected"] == Value::Bool(true))
            .then_some(())
    })?;

    // It comes back: resolved.
    sim.resume()?;
    wait_until("the incident to resolve", Duration::from_secs(20), || {
        let d = http_json(&format!("{api}/api/v1/incidents/{id}")).ok()?;
        (d["state"] == "resolved").then_some(())
    })
    .with_context(|| logs(&agent, &collector))?;

    // An uplink flapped ten times: one port_flapping incident, no link_down incident.
    let port = sim.port;
    for n in 0..10 {
        for (status, kind) in [(2, "link_down"), (1, "link_up")] {
            snmp_set_int(port, "a-b12-1", "1.3.6.1.2.1.2.2.1.8.49", status)?;
            // Wait until the agent has reported it, so every change is a real transition.
            let want = n + 1;
            wait_until("the transition", Duration::from_secs(10), || {
                let v = http_json(&format!(
                    "{api}/api/v1/events?device=a-b12-1&kind={kind}&limit=1000"
                ))
                .ok()?;
                let seen = v["events"]
                    .as_array()?
                    .iter()
                    .filter(|e| e["if_index"] == 49)
                    .count();
                (seen >= want).then_some(())
            })
            .with_context(|| logs(&agent, &collector))?;
        }
    }
    // snmpsim shares `writecache` values between recordings made from one file, so port 49
    // flapped on every switch at once: one incident per flapping port, not one per flap.
    let open: Vec<Value> = incidents(&api)
        .into_iter()
        .filter(|i| i["state"] == "open")
        .collect();
    assert!(
        open.iter()
            .all(|i| i["kind"] == "port_flapping" && i["if_index"] == 49),
        "{open:#?}"
    );
    let mut devices: Vec<&str> = open.iter().filter_map(|i| i["device"].as_str()).collect();
    devices.sort_unstable();
    let before = devices.len();
    devices.dedup();
    assert_eq!(devices.len(), before, "one incident per port: {open:#?}");
    let mine = open
        .iter()
        .find(|i| i["device"] == "a-b12-1")
        .context("a-b12-1 flapping")?;
    assert!(mine["transitions"].as_u64().unwrap_or(0) >= 10, "{mine:#}");
    assert!(
        incidents(&api).iter().all(|i| i["kind"] != "link_down"),
        "no single link_down incident while the port flaps"
    );
    assert_eq!(agent.terminate()?, Some(0));
    assert_eq!(collector.terminate()?, Some(0));
    Ok(())
}

/// Flap the uplink of the rig's switch `n` times, waiting for each change to be stored.
fn flap(rig: &cnaas_tests::rig::Rig, n: usize) -> Result<()> {
    for _ in 0..n {
        for (status, kind) in [(2, "link_down"), (1, "link_up")] {
            let before = rig.port_events(kind, 49);
            rig.set_oper(49, status)?;
            wait_until("the transition", Duration::from_secs(10), || {
                (rig.port_events(kind, 49) > before).then_some(())
            })
            .with_context(|| rig.logs())?;
        }
    }
    Ok(())
}

#[test]
fn a_restart_mid_flap_continues_the_same_incident() -> Result<()> {
    use cnaas_tests::rig::{Rig, RigOptions};
    let mut rig = Rig::start(&RigOptions {
        dead_device: false,
        collector_rules: "link_hold = \"60s\"\ngroup_window = \"10s\"\n".into(),
        ..RigOptions::default()
    })?;
    flap(&rig, 8)?;
    let open = rig.open_incidents();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["kind"], "port_flapping");
    let id = open[0]["id"].clone();
    let before = open[0]["transitions"].as_u64().unwrap_or(0);
    assert!(before >= 16, "{:#}", open[0]);

    rig.restart_collector()?;
    flap(&rig, 3)?;
    let open = rig.open_incidents();
    assert_eq!(
        open.len(),
        1,
        "still one incident after the restart: {open:#?}"
    );
    assert_eq!(open[0]["id"], id);
    assert!(
        open[0]["transitions"].as_u64().unwrap_or(0) >= before + 6,
        "{:#}",
        open[0]
    );
    Ok(())
}
