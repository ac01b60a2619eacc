//! A switch polled over NETCONF (the PyPI `netconf` server in tests/netconf/ifserver.py,
//! serving ietf-interfaces state from a file): a port flipped in the file becomes link_down and
//! link_up events through Mosquitto to a collector incident, with the same roles and metrics as
//! SNMP; with notifications, the change arrives without waiting for the next poll.

use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::netconf::IfServer;
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::{http_get, wait_until};
use serde_json::{Value, json};

const DEVICE: &str = "j-b12-01";

fn interfaces() -> Value {
    json!([
        {"name": "ge-0/0/1", "oper": "up", "if_index": 501, "description": "uplink: dist-1",
         "in_octets": 123_456_789_u64, "out_errors": 3, "speed": 10_000_000_000_u64},
        {"name": "ge-0/0/2", "oper": "up", "if_index": 502, "description": "B12-R101"},
        {"name": "ge-0/0/3", "oper": "down", "admin": "down"}
    ])
}

fn rig_for(server: &IfServer, link_interval: &str) -> Result<Rig> {
    let device = format!(
        r#"
[[device]]
name = "{DEVICE}"
address = "127.0.0.1:{port}"
link_interval = "{link_interval}"
counters_interval = "5s"
[device.netconf]
address = "127.0.0.1:{port}"
user = "{user}"
password_file = "{pw}"
known_hosts = "{kh}"
timeout = "3s"
"#,
        port = server.port,
        user = server.user,
        pw = server.password_file.display(),
        kh = server.known_hosts.display(),
    );
    Rig::start(&RigOptions {
        dead_device: false,
        extra_devices: device,
        inventory: format!(
            "[[device]]\nname = \"{DEVICE}\"\ncustomer = \"uni-b\"\nsite = \"b12\"\n"
        ),
        ..RigOptions::default()
    })
}

fn metric(rig: &Rig, name: &str, if_name: &str) -> Option<f64> {
    let (_, text) = http_get(&format!("{}/metrics", rig.metrics)).ok()?;
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("device=\"{DEVICE}\"")))
        .find(|l| l.contains(&format!("ifName=\"{if_name}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_port_flip_over_netconf_becomes_an_incident() -> Result<()> {
    let mut server = IfServer::start(interfaces(), false)?;
    let mut rig = rig_for(&server, "1s")?;
    let limit = Duration::from_secs(15);
    // Metrics as for SNMP: status, labels and counters under the IF-MIB names.
    let octets = wait_until("ifHCInOctets of ge-0/0/1", limit, || {
        metric(&rig, "ifHCInOctets", "ge-0/0/1")
    })
    .with_context(|| format!("{}\n--- ifserver\n{}", rig.logs(), server.log()))?;
    assert_eq!(octets, 123_456_789.0);
    assert_eq!(metric(&rig, "ifOperStatus", "ge-0/0/1"), Some(1.0));
    assert_eq!(metric(&rig, "ifAdminStatus", "ge-0/0/3"), Some(2.0));
    assert_eq!(metric(&rig, "ifHighSpeed", "ge-0/0/1"), Some(10_000.0));
    assert_eq!(metric(&rig, "ifOutErrors", "ge-0/0/1"), Some(3.0));
    let (_, text) = http_get(&format!("{}/metrics", rig.metrics))?;
    let sessions = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "cnaas_agent_netconf_sessions_total{{device=\"{DEVICE}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(sessions.is_some_and(|n| n >= 1.0), "{sessions:?}");

    server.set("ge-0/0/1", "oper", json!("down"))?;
    let inc = wait_until("an incident for ge-0/0/1", limit, || {
        rig.open_device_port_incident(DEVICE, 501)
    })
    .with_context(|| format!("{}\n--- ifserver\n{}", rig.logs(), server.log()))?;
    assert_eq!(inc["if_name"], "ge-0/0/1");
    assert_eq!(inc["kind"], "link_down");
    assert_eq!(
        inc["role"], "uplink",
        "the role came from the description: {inc}"
    );
    assert_eq!(inc["severity"], 2, "{inc}");
    assert_eq!(inc["customer"], "uni-b");
    let detail = cnaas_tests::http_json(&format!("{}/api/v1/incidents/{}", rig.api, inc["id"]))?;
    let first = &detail["events"][0];
    assert_eq!(first["source"], "netconf", "{detail}");
    assert_eq!(first["kind"], "link_down", "{detail}");
    assert_eq!(first["attrs"]["oper_status"], 2, "{detail}");

    server.set("ge-0/0/1", "oper", json!("up"))?;
    wait_until("the incident to resolve", limit, || {
        rig.open_device_port_incident(DEVICE, 501)
            .is_none()
            .then_some(())
    })
    .with_context(|| rig.logs())?;

    // lower-layer-down is down too; an access port's event is stored, with its role.
    server.set("ge-0/0/2", "oper", json!("lower-layer-down"))?;
    let access = wait_until("a link_down event for ge-0/0/2", limit, || {
        let v = rig.get(&format!(
            "{}/api/v1/events?device={DEVICE}&kind=link_down&limit=100",
            rig.api
        ))?;
        v["events"]
            .as_array()?
            .iter()
            .find(|e| e["if_index"] == 502)
            .cloned()
    })
    .with_context(|| rig.logs())?;
    assert_eq!(access["if_name"], "ge-0/0/2");
    assert_eq!(access["attrs"]["role"], "access", "{access}");
    assert_eq!(access["attrs"]["oper_status"], 7, "{access}");

    assert_eq!(
        rig.agent.terminate()?,
        Some(0),
        "SIGTERM closes the sessions"
    );
    let log = rig.agent.log();
    assert!(
        !log.contains("nc-secret-4711"),
        "the password reached the log"
    );
    Ok(())
}

#[test]
fn a_netconf_notification_is_confirmed_without_waiting_for_the_poll() -> Result<()> {
    let mut server = IfServer::start(interfaces(), true)?;
    // A minute between polls: only the notification can bring the change in time.
    let rig = rig_for(&server, "60s")?;
    wait_until("the subscription", Duration::from_secs(15), || {
        server.log().contains("subscribed").then_some(())
    })
    .with_context(|| format!("{}\n--- ifserver\n{}", rig.logs(), server.log()))?;
    // The first poll has happened once the device is up.
    wait_until("the first poll", Duration::from_secs(15), || {
        metric(&rig, "ifOperStatus", "ge-0/0/1")
    })?;
    server.set("ge-0/0/1", "oper", json!("down"))?;
    let inc = wait_until(
        "an incident from the notification",
        Duration::from_secs(10),
        || rig.open_device_port_incident(DEVICE, 501),
    )
    .with_context(|| format!("{}\n--- ifserver\n{}", rig.logs(), server.log()))?;
    let detail = cnaas_tests::http_json(&format!("{}/api/v1/incidents/{}", rig.api, inc["id"]))?;
    assert_eq!(detail["events"][0]["source"], "netconf", "{detail}");
    Ok(())
}

#[test]
fn an_openconfig_switch_is_read_through_openconfig_interfaces() -> Result<()> {
    let mut server = IfServer::start_model(interfaces(), false, true)?;
    let rig = rig_for(&server, "1s")?;
    let limit = Duration::from_secs(15);
    let octets = wait_until("ifHCInOctets of ge-0/0/1", limit, || {
        metric(&rig, "ifHCInOctets", "ge-0/0/1")
    })
    .with_context(|| format!("{}\n--- ifserver\n{}", rig.logs(), server.log()))?;
    assert_eq!(octets, 123_456_789.0);
    assert!(
        rig.agent.log().contains("openconfig-interfaces"),
        "the agent did not pick openconfig"
    );
    server.set("ge-0/0/1", "oper", json!("down"))?;
    let inc = wait_until("an incident for ge-0/0/1", limit, || {
        rig.open_device_port_incident(DEVICE, 501)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(inc["role"], "uplink", "{inc}");
    Ok(())
}
