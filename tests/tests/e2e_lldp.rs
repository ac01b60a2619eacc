//! A real LLDP neighbour: two network namespaces the test creates, joined by a veth pair, with
//! Debian's `lldpd` in both. In the first, Net-SNMP's `snmpd` is an AgentX master and lldpd
//! serves LLDP-MIB through it; the agent's topology plan polls that snmpd and must report the
//! neighbour learned over the wire, its loss when the link goes down and its return.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::netns::{Lldpd, Netns, Snmpd};
use cnaas_tests::{Mosquitto, Process, binary, find_program, free_port, open_tempdir, wait_until};
use serde_json::Value;

/// The `neighbours` snapshots of `sw-a` in the subscriber's file, oldest first.
fn snapshots(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(_, json)| serde_json::from_str::<Value>(json).ok())
        .filter(|v| v["kind"] == "neighbours" && v["device"] == "sw-a")
        .map(|v| v["attrs"].clone())
        .collect()
}

/// The last snapshot's neighbours.
fn last_neighbours(file: &Path) -> Option<Vec<Value>> {
    snapshots(file)
        .last()
        .and_then(|a| a["neighbours"].as_array().cloned())
}

#[test]
fn the_topology_plan_reads_a_neighbour_learned_over_the_wire() -> Result<()> {
    if find_program("lldpd").is_err() {
        eprintln!("SKIP: lldpd is not installed (./tests/run installs it)");
        return Ok(());
    }
    let Some(a) = Netns::create()? else {
        return Ok(());
    };
    let Some(b) = Netns::create()? else {
        return Ok(());
    };
    a.ip(&[
        "link", "add", "la", "type", "veth", "peer", "name", "lb", "netns", &b.name,
    ])?;
    a.ip(&["link", "set", "la", "up"])?;
    b.ip(&["link", "set", "lb", "up"])?;
    let dir = open_tempdir()?;
    let socket = dir.path().join("agentx.sock");
    let snmp_port = free_port();
    let snmpd = Snmpd::start_master(&a, snmp_port, &socket)?;
    let lldp_a = Lldpd::start(&a, "la", "sw-a", Some(&socket))?;
    let lldp_b = Lldpd::start(&b, "lb", "peer-b", None)?;
    let mqtt = Mosquitto::start_in(&a)?;

    let sub_file = dir.path().join("events.log");
    let mut sub_cmd = a.command(&find_program("mosquitto_sub")?);
    sub_cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.port.to_string(),
        "-q",
        "1",
        "-v",
    ]);
    sub_cmd.args(["-t", "cnaas/v1/events/#"]);
    let _sub = Process::spawn("mosquitto_sub", sub_cmd, &sub_file)?;

    let metrics = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nid = \"lldp-agent\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = \"spool\"\n\
             [[device]]\nname = \"sw-a\"\naddress = \"127.0.0.1:{snmp_port}\"\n\
             snmp = {{ version = \"2c\", community = \"public\" }}\n\
             link_interval = \"1s\"\ntopology_interval = \"1s\"\ntimeout = \"500ms\"\n",
            mqtt.port
        ),
    )?;
    let mut cmd = a.command(&binary("cnaas-agent")?);
    cmd.arg("--config").arg(&cfg).env("RUST_LOG", "info");
    let agent = Process::spawn("cnaas-agent", cmd, &dir.path().join("agent.log"))?;
    let logs = || {
        format!(
            "agent:\n{}\nsnmpd:\n{}\nlldpd a:\n{}\nlldpd b:\n{}\nevents:\n{}",
            agent.log(),
            snmpd.process.log(),
            lldp_a.log(),
            lldp_b.log(),
            std::fs::read_to_string(&sub_file).unwrap_or_default()
        )
    };

    // The neighbour, as lldpd on the other side announces itself.
    let found = wait_until("the LLDP neighbour", Duration::from_secs(60), || {
        let n = last_neighbours(&sub_file)?;
        n.iter().find(|x| x["sys_name"] == "peer-b").cloned()
    })
    .with_context(logs)?;
    assert_eq!(found["local_port"], "la", "{found}");
    assert!(found["if_index"].as_u64().is_some(), "{found}");
    assert_eq!(found["port_descr"], "lb", "{found}");
    assert_eq!(found["chassis_subtype"], "mac", "{found}");
    assert_eq!(
        found["chassis_id"].as_str().map(|s| s.split(':').count()),
        Some(6),
        "{found}"
    );
    let metric = |want: &str| {
        a.http_get(metrics, "/metrics").is_some_and(|m| {
            m.lines()
                .any(|l| l == format!("cnaas_agent_lldp_neighbours{{device=\"sw-a\"}} {want}"))
        })
    };
    wait_until("the neighbour metric", Duration::from_secs(10), || {
        metric("1").then_some(())
    })
    .with_context(logs)?;
    // An unchanged snapshot is not sent again.
    let sent = snapshots(&sub_file).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshots(&sub_file).len(), sent, "{}", logs());

    // The cable goes: the neighbour ages out with the link.
    b.ip(&["link", "set", "lb", "down"])?;
    wait_until("the neighbour gone", Duration::from_secs(30), || {
        last_neighbours(&sub_file)?.is_empty().then_some(())
    })
    .with_context(logs)?;
    wait_until("the metric at 0", Duration::from_secs(10), || {
        metric("0").then_some(())
    })?;
    // And comes back.
    b.ip(&["link", "set", "lb", "up"])?;
    wait_until("the neighbour back", Duration::from_secs(60), || {
        last_neighbours(&sub_file)?
            .iter()
            .any(|x| x["sys_name"] == "peer-b")
            .then_some(())
    })
    .with_context(logs)?;
    Ok(())
}
