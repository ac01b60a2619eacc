//! Real interfaces: Net-SNMP's snmpd inside a network namespace the test creates, with a veth
//! pair. `ip link set v1 down` makes v0 lose its link; the agent must report it by polling, and
//! (from snmpd's own linkDown trap, confirmed by a re-poll) by trap. Everything runs inside the
//! namespace on its loopback.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::netns::{Netns, Snmpd, agent_config};
use cnaas_tests::{Mosquitto, Process, binary, find_program, free_port, open_tempdir, wait_until};
use serde_json::Value;

/// Events in the subscriber's file: (agent, kind, source, if_name).
fn events(file: &Path) -> Vec<(String, String, String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(_, json)| serde_json::from_str::<Value>(json).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("agent"), s("kind"), s("source"), s("if_name"))
        })
        .collect()
}

fn has(file: &Path, agent: &str, kind: &str, source: &str) -> bool {
    events(file)
        .iter()
        .any(|(a, k, s, n)| a == agent && k == kind && s == source && n == "v0")
}

fn polled(ns: &Netns, metrics: u16) -> bool {
    ns.http_get(metrics, "/metrics").is_some_and(|m| {
        m.lines()
            .filter(|l| l.starts_with("cnaas_agent_snmp_requests_total{device=\"sw-ns\"}"))
            .any(|l| !l.ends_with(" 0"))
    })
}

#[test]
fn a_real_link_going_down_is_seen_by_poll_and_by_trap() -> Result<()> {
    let Some(ns) = Netns::create()? else {
        return Ok(());
    };
    let (snmp_port, trap_port) = (free_port(), free_port());
    let snmpd = Snmpd::start(&ns, snmp_port, trap_port)?;
    let mqtt = Mosquitto::start_in(&ns)?;
    let dir = open_tempdir()?;
    let sub_file = dir.path().join("events.log");
    let mut sub_cmd = ns.command(&find_program("mosquitto_sub")?);
    sub_cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.port.to_string(),
        "-q",
        "1",
        "-v",
        "-t",
        "cnaas/v1/events/#",
    ]);
    let _sub = Process::spawn("mosquitto_sub", sub_cmd, &sub_file)?;

    // One agent polls every second and gets no traps; the other polls once a minute and
    // learns of the change from snmpd's trap.
    let (m_poll, m_trap) = (free_port(), free_port());
    let agent_bin = binary("cnaas-agent")?;
    let mut agents = Vec::new();
    for (id, metrics, interval, traps) in [
        ("poll-agent", m_poll, "1s", None),
        ("trap-agent", m_trap, "60s", Some(trap_port)),
    ] {
        let cfg = dir.path().join(format!("{id}.toml"));
        std::fs::write(
            &cfg,
            agent_config(id, mqtt.port, metrics, snmp_port, interval, traps),
        )?;
        let mut cmd = ns.command(&agent_bin);
        cmd.arg("--config").arg(&cfg).env("RUST_LOG", "info");
        agents.push(Process::spawn(
            id,
            cmd,
            &dir.path().join(format!("{id}.log")),
        )?);
    }
    let logs = |agents: &[Process]| {
        format!(
            "{}\n{}\nsnmpd:\n{}\nevents:\n{}",
            agents[0].log(),
            agents[1].log(),
            snmpd.process.log(),
            std::fs::read_to_string(&sub_file).unwrap_or_default()
        )
    };
    wait_until("both agents to poll snmpd", Duration::from_secs(20), || {
        (polled(&ns, m_poll) && polled(&ns, m_trap)).then_some(())
    })
    .with_context(|| logs(&agents))?;
    // The subscriber is subscribed once it sees a probe.
    let publisher = find_program("mosquitto_pub")?;
    wait_until("the subscriber", Duration::from_secs(10), || {
        let _ = ns
            .command(&publisher)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt.port.to_string(),
                "-t",
                "cnaas/v1/events/probe/probe",
                "-m",
                "probe",
            ])
            .status();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(&sub_file)
            .ok()?
            .contains("probe")
            .then_some(())
    })?;

    ns.ip(&["link", "set", "v1", "down"])?;
    wait_until(
        "link_down by poll and by trap",
        Duration::from_secs(15),
        || {
            (has(&sub_file, "poll-agent", "link_down", "poll")
                && has(&sub_file, "trap-agent", "link_down", "trap"))
            .then_some(())
        },
    )
    .with_context(|| logs(&agents))?;
    ns.ip(&["link", "set", "v1", "up"])?;
    wait_until(
        "link_up by poll and by trap",
        Duration::from_secs(15),
        || {
            (has(&sub_file, "poll-agent", "link_up", "poll")
                && has(&sub_file, "trap-agent", "link_up", "trap"))
            .then_some(())
        },
    )
    .with_context(|| logs(&agents))?;
    // Exactly one event per change and agent.
    let downs = events(&sub_file)
        .iter()
        .filter(|e| e.1 == "link_down" && e.3 == "v0")
        .count();
    assert_eq!(downs, 2, "{}", logs(&agents));
    for mut a in agents {
        assert_eq!(a.terminate()?, Some(0));
    }
    Ok(())
}
