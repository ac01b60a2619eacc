//! Store and forward: events survive a broker outage and an agent crash, in order, once.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::{Process, find_program, http_json, open_tempdir, wait_until};
use serde_json::Value;

fn options() -> RigOptions {
    RigOptions {
        link_interval: "1s".into(),
        dead_device: false,
        persistent_broker: true,
        snmpv3: None,
        agent_defaults: String::new(),
        tls: false,
        extra_devices: String::new(),
        traps: false,
        ..RigOptions::default()
    }
}

/// Every event the collector stored for `a-b12-01`, oldest first.
fn stored_events(rig: &Rig) -> Vec<Value> {
    let mut v = http_json(&format!(
        "{}/api/v1/events?device=a-b12-01&limit=1000",
        rig.api
    ))
    .ok()
    .and_then(|v| v["events"].as_array().cloned())
    .unwrap_or_default();
    v.reverse();
    v
}

/// A raw MQTT subscriber (mosquitto_sub, persistent session) writing `topic payload` lines.
fn raw_subscriber(rig: &Rig, dir: &std::path::Path) -> Result<(Process, std::path::PathBuf)> {
    let out = dir.join("sub.log");
    let mut cmd = Command::new(find_program("mosquitto_sub")?);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &rig.mqtt.port.to_string(),
        "-q",
        "1",
        "-c",
        "-i",
        "e2e-raw-sub",
    ])
    .args(["-t", "cnaas/v1/events/#", "-v"]);
    let p = Process::spawn("mosquitto_sub", cmd, &out)?;
    Ok((p, out))
}

fn received_ids(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(_, json)| serde_json::from_str::<Value>(json).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_broker_outage_loses_nothing_reorders_nothing_and_duplicates_nothing() -> Result<()> {
    let mut rig = Rig::start(&options())?;
    let tmp = open_tempdir()?;
    let (_sub, sub_file) = raw_subscriber(&rig, tmp.path())?;
    // Know that the subscriber is subscribed: it must see a probe (the collector dead-letters it).
    let port = rig.mqtt.port.to_string();
    wait_until(
        "the raw subscriber to subscribe",
        Duration::from_secs(10),
        || {
            Command::new(find_program("mosquitto_pub").ok()?)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "cnaas/v1/events/e2e-probe/probe",
                    "-m",
                    "probe",
                ])
                .status()
                .ok()?;
            std::thread::sleep(Duration::from_millis(100));
            std::fs::read_to_string(&sub_file)
                .ok()?
                .contains("probe")
                .then_some(())
        },
    )?;
    // The start-up events (three access ports down at first sight) are in.
    wait_until("the initial events", Duration::from_secs(15), || {
        (stored_events(&rig).len() >= 3).then_some(())
    })?;
    let before = stored_events(&rig).len();
    let initial_received = received_ids(&sub_file).len();

    rig.mqtt.stop()?;
    // 50 changes: 25 ports that are up go down, then up again, each seen by a poll. (The
    // recording starts with ports 7, 19 and 33 down and 47 and 48 shut.)
    let ports: Vec<u32> = (1..=46)
        .filter(|p| ![7, 19, 33].contains(p))
        .take(25)
        .collect();
    for &port in &ports {
        rig.set_oper(port, 2)?;
    }
    wait_until("25 spooled events", Duration::from_secs(10), || {
        (rig.agent_metric("cnaas_agent_spool_depth")? >= 25.0).then_some(())
    })
    .with_context(|| {
        format!(
            "spool depth {:?}\n{}",
            rig.agent_metric("cnaas_agent_spool_depth"),
            rig.logs()
        )
    })?;
    for &port in &ports {
        rig.set_oper(port, 1)?;
    }
    wait_until("50 spooled events", Duration::from_secs(10), || {
        (rig.agent_metric("cnaas_agent_spool_depth")? >= 50.0).then_some(())
    })
    .with_context(|| rig.logs())?;
    rig.mqtt.resume()?;

    wait_until(
        "all 50 events at the collector",
        Duration::from_secs(30),
        || (stored_events(&rig).len() >= before + 50).then_some(()),
    )
    .with_context(|| rig.logs())?;
    wait_until("the spool to empty", Duration::from_secs(10), || {
        (rig.agent_metric("cnaas_agent_spool_depth")? == 0.0).then_some(())
    })?;
    let events = stored_events(&rig);
    assert_eq!(events.len(), before + 50, "exactly the 50 new events");
    let new = &events[before..];
    let downs = new.iter().filter(|e| e["kind"] == "link_down").count();
    let ups = new.iter().filter(|e| e["kind"] == "link_up").count();
    assert_eq!((downs, ups), (25, 25));

    // The raw subscriber saw each event once, in the order the agent made them (UUIDv7 ids
    // sort by creation time).
    wait_until(
        "the raw subscriber to catch up",
        Duration::from_secs(10),
        || (received_ids(&sub_file).len() >= initial_received + 50).then_some(()),
    )?;
    let ids = received_ids(&sub_file);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event arrived twice: {ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "events arrived out of order");
    Ok(())
}

#[test]
fn a_killed_agent_sends_its_spool_after_restart() -> Result<()> {
    let mut rig = Rig::start(&options())?;
    wait_until("the initial events", Duration::from_secs(15), || {
        (stored_events(&rig).len() >= 3).then_some(())
    })?;
    rig.mqtt.stop()?;
    for port in [10, 11, 12, 13] {
        rig.set_oper(port, 2)?;
    }
    wait_until("4 spooled events", Duration::from_secs(10), || {
        (rig.agent_metric("cnaas_agent_spool_depth")? >= 4.0).then_some(())
    })?;
    rig.agent.kill_hard()?;
    // What the dead agent left on disk.
    let spool = rusqlite::Connection::open(rig.dir().join("spool/spool.db"))?;
    let mut stmt = spool.prepare("SELECT payload FROM spool ORDER BY seq")?;
    let spooled: Vec<String> = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(Result::ok)
        .filter_map(|p| serde_json::from_slice::<Value>(&p).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(spooled.len(), 4, "{spooled:?}");
    drop(stmt);
    drop(spool);

    rig.mqtt.resume()?;
    rig.restart_agent()?;
    wait_until(
        "the spooled events at the collector",
        Duration::from_secs(30),
        || {
            let stored: HashSet<String> = stored_events(&rig)
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            spooled.iter().all(|id| stored.contains(id)).then_some(())
        },
    )
    .with_context(|| rig.logs())?;
    Ok(())
}

#[test]
fn a_dead_agent_is_announced_by_its_last_will() -> Result<()> {
    let mut rig = Rig::start(&RigOptions {
        dead_device: false,
        ..RigOptions::default()
    })?;
    let status = |rig: &Rig| -> Option<String> {
        let out = Command::new(find_program("mosquitto_sub").ok()?)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &rig.mqtt.port.to_string(),
                "-C",
                "1",
                "-W",
                "3",
            ])
            .args(["-t", "cnaas/v1/agents/site-e2e/status"])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The retained status says online while the agent runs ...
    let online = status(&rig).context("status")?;
    assert!(online.contains("\"online\""), "{online}");
    // ... and the broker publishes the last will when the agent dies without a goodbye.
    rig.agent.kill_hard()?;
    let offline = wait_until("the last will", Duration::from_secs(10), || {
        status(&rig).filter(|s| s.contains("\"offline\""))
    })?;
    assert!(offline.contains("connection lost"), "{offline}");
    Ok(())
}

#[test]
fn a_damaged_spool_is_reported_at_start_and_the_agent_goes_on() -> Result<()> {
    // The spool file overwritten by something else (a bad restore, a disk error).
    let rig = Rig::start(&RigOptions {
        files: vec![(
            "spool/spool.db".into(),
            "this is not an SQLite file\n".repeat(200),
        )],
        ..options()
    })?;
    let logs = rig.logs();
    assert!(logs.contains("The spool was damaged"), "{logs}");
    assert_eq!(
        rig.agent_metric("cnaas_agent_spool_lost_at_start"),
        Some(-1.0)
    );
    let kept = std::fs::read_dir(rig.dir().join("spool"))?
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("spool.db.damaged-")
        });
    assert!(kept, "the damaged file is kept for a post-mortem");
    // The agent spools and publishes as before.
    rig.set_oper(49, 2)?;
    wait_until("the link_down stored", Duration::from_secs(20), || {
        (rig.port_events("link_down", 49) >= 1).then_some(())
    })
    .with_context(|| rig.logs())?;
    Ok(())
}
