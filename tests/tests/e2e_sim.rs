//! The campus simulator with the real agent, Mosquitto and collector: an uplink going down on
//! a simulated access switch arrives by trap and becomes an incident; a distribution switch
//! dying takes its access switches with it as one incident; recovery resolves everything.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_sim::{Campus, Shared, start};
use cnaas_tests::{Mosquitto, free_port, http_json, open_tempdir, start_binary, wait_until};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SWITCHES: [&str; 6] = [
    "core",
    "dist-1",
    "access-1-1",
    "access-1-2",
    "access-1-3",
    "access-1-4",
];

#[test]
fn simulated_faults_become_incidents() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (sim_port, trap_port, api_port, metrics_port) =
        (free_port(), free_port(), free_port(), free_port());
    let token = CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let sim = runtime.block_on(start(
        Shared::new(Campus::tree(6, 4, 52, Instant::now())),
        format!("127.0.0.1:{sim_port}").parse()?,
        vec![format!("127.0.0.1:{trap_port}").parse()?],
        token.clone(),
    ))?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let mut inventory = String::new();
    for name in SWITCHES {
        let (role, uplink) = match name {
            "core" => ("core", String::new()),
            "dist-1" => ("distribution", "uplink = \"core\"\n".into()),
            _ => ("access", "uplink = \"dist-1\"\n".into()),
        };
        inventory.push_str(&format!(
            "[[device]]\nname = \"{name}\"\nsite = \"b1\"\nrole = \"{role}\"\n{uplink}"
        ));
    }
    let devices = cnaas_sim::agent_devices(SWITCHES, sim_port);
    let collector_cfg = dir.path().join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "[collector]\nid = \"sim\"\n[mqtt]\nurl = \"{}\"\n[store]\nurl = \"sqlite://c.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [roles]\nuplink = ['(?i)^uplink']\ndownlink = ['(?i)^downlink']\n[rules]\nlink_hold = \"0s\"\ngroup_window = \"3s\"\n{inventory}",
            mqtt.url()
        ),
    )?;
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "[agent]\nid = \"sim-site\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [traps]\nlisten = \"127.0.0.1:{trap_port}\"\nquiet_after_reboot = \"0s\"\n\
             [defaults]\nlink_interval = \"30s\"\nreachability_interval = \"1s\"\ntimeout = \"300ms\"\nretries = 1\nunreachable_after = 2\n{devices}",
            mqtt.url()
        ),
    )?;
    let mut collector = start_binary("cnaas-collector", &collector_cfg, &dir.path().join("c.log"))?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until("the collector", Duration::from_secs(20), || {
        collector.check_alive().ok()?;
        let v = http_json(&format!("{api}/healthz")).ok()?;
        (v["mqtt_connected"] == Value::Bool(true)).then_some(())
    })
    .with_context(|| collector.log())?;
    let mut agent = start_binary("cnaas-agent", &agent_cfg, &dir.path().join("a.log"))?;
    wait_until(
        "the agent to reach all six switches",
        Duration::from_secs(30),
        || {
            agent.check_alive().ok()?;
            let v = http_json(&format!("http://127.0.0.1:{metrics_port}/healthz")).ok()?;
            (v["devices_up"] == 6).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    let logs = || format!("agent:\n{}\ncollector:\n{}", agent.log(), collector.log());
    let open = || -> Vec<Value> {
        http_json(&format!("{api}/api/v1/incidents?state=open"))
            .ok()
            .and_then(|v| v["incidents"].as_array().cloned())
            .unwrap_or_default()
    };
    let limit = Duration::from_secs(20);

    // The uplink of access-1-1 goes down: with a 30 s link plan, only the trap can tell in time.
    sim.control.link("access-1-1", 52, false)?;
    let inc = wait_until("the uplink incident", limit, || {
        open()
            .into_iter()
            .find(|i| i["device"] == "access-1-1" && i["if_index"] == 52)
    })
    .with_context(logs)?;
    assert_eq!(inc["kind"], "link_down");
    assert_eq!(inc["role"], "uplink");
    assert_eq!(inc["if_name"], "Te1/1/2");
    let events = http_json(&format!(
        "{api}/api/v1/events?device=access-1-1&kind=link_down"
    ))?;
    assert!(
        events["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["source"] == "trap" && e["if_index"] == 52),
        "{events}"
    );

    // The distribution switch dies: it and the four access switches behind it stop answering;
    // one incident, rooted at dist-1, with the access switches shadowed.
    sim.control.alive("dist-1", false)?;
    let dist = wait_until("the distribution switch's incident", limit, || {
        let i = open()
            .into_iter()
            .find(|i| i["device"] == "dist-1" && i["kind"] == "device_down")?;
        let d = http_json(&format!("{api}/api/v1/incidents/{}", i["id"])).ok()?;
        let shadowed = d["alarms"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["relation"] == "shadowed"
                    && a["alarm"]
                        .as_str()
                        .is_some_and(|k| k.ends_with("device_down"))
            })
            .count();
        (shadowed == 4).then_some(d)
    })
    .with_context(logs)?;
    assert_eq!(dist["severity"], 2);
    let device_incidents: Vec<Value> = open()
        .into_iter()
        .filter(|i| i["kind"] == "device_down")
        .collect();
    assert_eq!(device_incidents.len(), 1, "{device_incidents:?}");

    // Everything comes back: every incident resolves.
    sim.control.recover();
    wait_until("every incident to resolve", Duration::from_secs(30), || {
        open().is_empty().then_some(())
    })
    .with_context(logs)?;
    Ok(())
}
