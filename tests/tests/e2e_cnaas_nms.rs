//! CNaaS-NMS as the inventory source, against a stand-in that answers in the shapes of
//! CNaaS-NMS's API reference (CNaaS-NMS itself cannot run here): devices, their roles and
//! port roles, links and pairs reach the collector's topology; a device added, changed or
//! removed shows after the next refresh; a 500, a body that is not JSON, a hang, or a list
//! suddenly empty keep the last good inventory and say so (metric, `/healthz`).

use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_shared::{Event, EventKind, Source};
use cnaas_tests::cnaas_nms::{Failure, FakeCnaasNms, JWT, NmsDevice, NmsState};
use cnaas_tests::{
    Mosquitto, find_program, free_port, http_get, http_json, open_tempdir, start_binary, wait_until,
};
use serde_json::Value;

fn device(id: i64, name: &str, kind: &str, state: &str) -> NmsDevice {
    let interfaces = if kind == "ACCESS" {
        vec![
            ("Ethernet1".into(), "ACCESS_UPLINK".into()),
            ("Ethernet2".into(), "ACCESS_UPLINK".into()),
            ("Ethernet3".into(), "ACCESS_AUTO".into()),
            ("Ethernet4".into(), "ACCESS_DOWNLINK".into()),
        ]
    } else {
        Vec::new()
    };
    NmsDevice {
        id,
        hostname: name.into(),
        management_ip: format!("10.100.3.{id}"),
        device_type: kind.into(),
        state: state.into(),
        interfaces,
    }
}

fn campus() -> NmsState {
    NmsState {
        devices: vec![
            device(1, "c1", "CORE", "MANAGED"),
            device(2, "c2", "CORE", "MANAGED"),
            device(3, "d1", "DIST", "MANAGED"),
            device(4, "d2", "DIST", "MANAGED"),
            device(5, "a1", "ACCESS", "MANAGED"),
            device(6, "a2", "ACCESS", "MANAGED"),
            device(7, "a3", "ACCESS", "DISCOVERED"),
        ],
        linknets: vec![
            (5, "Ethernet1".into(), 3, "Ethernet1".into()),
            (5, "Ethernet2".into(), 4, "Ethernet1".into()),
            (6, "Ethernet1".into(), 3, "Ethernet2".into()),
            (6, "Ethernet2".into(), 4, "Ethernet2".into()),
            (3, "Ethernet31".into(), 1, "Ethernet1".into()),
            (3, "Ethernet32".into(), 2, "Ethernet1".into()),
            (4, "Ethernet31".into(), 1, "Ethernet2".into()),
            (4, "Ethernet32".into(), 2, "Ethernet2".into()),
        ],
        mgmtdomains: vec![(3, 4)],
    }
}

#[test]
fn the_inventory_comes_from_cnaas_nms_and_survives_its_failures() -> Result<()> {
    let nms = FakeCnaasNms::start(campus())?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    std::fs::write(dir.path().join("nms.jwt"), format!("{JWT}\n"))?;
    let api_port = free_port();
    let cfg = dir.path().join("collector.toml");
    // d1 is in the file too: its customer there wins over the source's default.
    std::fs::write(
        &cfg,
        format!(
            "[collector]\nid = \"nms\"\n[mqtt]\nurl = \"{}\"\n[store]\nurl = \"sqlite://c.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [rules]\nlink_hold = \"0s\"\ngroup_window = \"1s\"\n\
             [inventory.cnaas_nms]\nurl = \"{}\"\ntoken_file = \"nms.jwt\"\nrefresh = \"1s\"\ntimeout = \"1s\"\ncustomer = \"uni-a\"\nsite = \"campus\"\n\
             [[device]]\nname = \"d1\"\ncustomer = \"uni-x\"\n",
            mqtt.url(),
            nms.url()
        ),
    )?;
    let mut collector = start_binary("cnaas-collector", &cfg, &dir.path().join("c.log"))?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until("the collector", Duration::from_secs(20), || {
        collector.check_alive().ok()?;
        http_json(&format!("{api}/healthz")).ok().map(|_| ())
    })
    .with_context(|| collector.log())?;
    let logs = || collector.log();
    let topology = || http_json(&format!("{api}/api/v1/topology")).unwrap_or_default();
    let find = |t: &Value, name: &str| {
        t["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == name).cloned())
    };
    let t = wait_until("the imported campus", Duration::from_secs(20), || {
        let t = topology();
        find(&t, "a2").map(|_| t)
    })
    .with_context(logs)?;
    let a1 = find(&t, "a1").unwrap_or_default();
    assert_eq!(a1["role"], "access", "{t}");
    assert_eq!(a1["customer"], "uni-a", "{t}");
    assert_eq!(a1["parents"], serde_json::json!(["d1", "d2"]), "{t}");
    let d1 = find(&t, "d1").unwrap_or_default();
    assert_eq!(d1["customer"], "uni-x", "the file wins: {t}");
    assert_eq!(d1["pair"], "d2", "{t}");
    assert_eq!(d1["role"], "distribution", "{t}");
    assert_eq!(find(&t, "c1").unwrap_or_default()["top"], true, "{t}");
    assert!(
        find(&t, "a3").is_none(),
        "a device not MANAGED is left out: {t}"
    );
    assert!(
        t["links"].as_array().into_iter().flatten().any(|l| {
            l["a"] == "a1"
                && l["a_port"] == "Ethernet1"
                && l["b"] == "d1"
                && l["b_port"] == "Ethernet1"
                && l["sources"] == serde_json::json!(["cnaas_nms"])
        }),
        "{t}"
    );
    // The token went as a bearer token; it never shows in the log.
    assert!(!collector.log().contains(JWT), "the JWT was logged");

    // Port roles from configtype: a link_down on a1's Ethernet1 is an uplink incident.
    let mut e = Event::new("site", "a1", EventKind::LinkDown, Source::Poll);
    e.if_index = Some(1);
    e.if_name = Some("Ethernet1".into());
    let file = dir.path().join("ev.json");
    std::fs::write(&file, e.to_json())?;
    let status = std::process::Command::new(find_program("mosquitto_pub")?)
        .args(["-h", "127.0.0.1", "-p", &mqtt.port.to_string(), "-q", "1"])
        .args(["-t", "cnaas/v1/events/site/a1", "-f"])
        .arg(&file)
        .status()?;
    assert!(status.success());
    let inc = wait_until("the uplink incident", Duration::from_secs(20), || {
        let v = http_json(&format!("{api}/api/v1/incidents?state=open")).ok()?;
        v["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["device"] == "a1")
            .cloned()
    })
    .with_context(logs)?;
    assert_eq!(inc["role"], "uplink", "{inc}");
    assert_eq!(inc["customer"], "uni-a", "{inc}");

    // Added, changed, removed.
    nms.with(|s| {
        s.devices.push(device(8, "a4", "ACCESS", "MANAGED"));
        s.devices.retain(|d| d.hostname != "a2");
        if let Some(c2) = s.devices.iter_mut().find(|d| d.hostname == "c2") {
            c2.device_type = "DIST".into();
        }
    });
    wait_until("the refreshed inventory", Duration::from_secs(20), || {
        let t = topology();
        (find(&t, "a4").is_some()
            && find(&t, "a2").is_none()
            && find(&t, "c2").is_some_and(|c| c["role"] == "distribution"))
        .then_some(())
    })
    .with_context(logs)?;

    // Failures keep the last good inventory, and say so.
    let health = || http_json(&format!("{api}/healthz")).unwrap_or_default();
    let metric = |want: &str| {
        http_get(&format!("{api}/metrics")).is_ok_and(|(_, m)| {
            m.lines()
                .any(|l| l == format!("cnaas_collector_inventory_source_up {want}"))
        })
    };
    assert!(metric("1"), "the source is up");
    for (how, says) in [
        (Failure::ServerError, "HTTP 500"),
        (Failure::BadJson, "not JSON"),
        (Failure::Hang, "/api/v1.0/devices"),
    ] {
        nms.fail(how);
        let h = wait_until(&format!("{how:?} noticed"), Duration::from_secs(20), || {
            let h = health();
            h["inventory_source_error"]
                .as_str()
                .is_some_and(|e| e.contains(says))
                .then_some(h)
        })
        .with_context(logs)?;
        assert_eq!(h["inventory_source_ok"], false, "{h}");
        assert!(metric("0"), "{how:?}");
        let t = topology();
        assert!(
            find(&t, "a4").is_some() && find(&t, "d1").is_some(),
            "{how:?} emptied the inventory: {t}"
        );
        nms.fail(Failure::None);
        wait_until("the source back", Duration::from_secs(20), || {
            (health()["inventory_source_ok"] == true).then_some(())
        })
        .with_context(logs)?;
    }
    // A source that suddenly lists nothing is not believed.
    let saved = nms.state.lock().map(|s| s.clone()).unwrap_or_default();
    nms.with(|s| s.devices.clear());
    wait_until("an empty list refused", Duration::from_secs(20), || {
        health()["inventory_source_error"]
            .as_str()
            .is_some_and(|e| e.contains("no managed device"))
            .then_some(())
    })
    .with_context(logs)?;
    assert!(find(&topology(), "a4").is_some());
    nms.with(|s| *s = saved);
    assert!(nms.request_count() > 10);
    Ok(())
}

/// The agent takes its device list from the same source: CNaaS-NMS's managed switches (here
/// simulated switches, each on its own loopback address) are polled at their management
/// address; one added or removed in CNaaS-NMS is polled or dropped after a refresh; a failing
/// CNaaS-NMS leaves the polled devices as they are.
#[test]
fn the_agent_polls_what_cnaas_nms_manages() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let token = tokio_util::sync::CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let campus = cnaas_sim::Campus::cnaas(6, 2, 8, std::time::Instant::now());
    let names: Vec<String> = campus.switches.iter().map(|s| s.name.clone()).collect();
    let port = free_port();
    let addrs: Vec<std::net::SocketAddr> = (0..names.len())
        .map(|i| format!("127.0.0.{}:{port}", i + 2).parse())
        .collect::<Result<_, _>>()?;
    let (bound, _sim) = runtime.block_on(cnaas_sim::start_per_switch(
        cnaas_sim::Shared::new(campus),
        &addrs,
        "public",
        Vec::new(),
        token.clone(),
    ))?;
    let kind = |n: &str| {
        if n.starts_with("core") {
            "CORE"
        } else if n.starts_with("dist") {
            "DIST"
        } else {
            "ACCESS"
        }
    };
    // All but the last switch are in CNaaS-NMS; one more is DISCOVERED (not polled).
    let mut state = NmsState::default();
    for (i, n) in names.iter().enumerate().take(names.len() - 1) {
        let mut d = device(i as i64 + 1, n, kind(n), "MANAGED");
        d.management_ip = bound[i].ip().to_string();
        state.devices.push(d);
    }
    let mut extra = device(99, "new-switch", "ACCESS", "DISCOVERED");
    extra.management_ip = "127.0.0.250".into();
    state.devices.push(extra);
    let nms = FakeCnaasNms::start(state)?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    std::fs::write(dir.path().join("nms.jwt"), format!("{JWT}\n"))?;
    let metrics = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nid = \"nms-agent\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [defaults]\nlink_interval = \"1s\"\nreachability = \"snmp\"\ntimeout = \"300ms\"\nretries = 1\nunreachable_after = 2\n\
             [inventory.cnaas_nms]\nurl = \"{}\"\ntoken_file = \"nms.jwt\"\nrefresh = \"1s\"\ntimeout = \"1s\"\nport = {port}\n\
             snmp = {{ version = \"2c\", community = \"public\" }}\n",
            mqtt.url(),
            nms.url()
        ),
    )?;
    let mut agent = start_binary("cnaas-agent", &cfg, &dir.path().join("a.log"))?;
    let health = || http_json(&format!("http://127.0.0.1:{metrics}/healthz")).unwrap_or_default();
    let n = names.len() as u64;
    wait_until(
        "the managed switches polled",
        Duration::from_secs(30),
        || {
            agent.check_alive().ok()?;
            let h = health();
            (h["devices"] == n - 1 && h["devices_up"] == n - 1).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    assert!(!agent.log().contains(JWT), "the JWT was logged");
    // The last switch is added, the first removed.
    let last = names.len() - 1;
    nms.with(|s| {
        let mut d = device(50, &names[last], kind(&names[last]), "MANAGED");
        d.management_ip = bound[last].ip().to_string();
        s.devices.push(d);
        s.devices.retain(|d| d.hostname != names[0]);
    });
    wait_until("the list followed", Duration::from_secs(30), || {
        let h = health();
        let m = http_get(&format!("http://127.0.0.1:{metrics}/metrics"))
            .ok()?
            .1;
        let polled = |name: &str| {
            m.lines()
                .any(|l| l == format!("cnaas_agent_device_up{{device=\"{name}\"}} 1"))
        };
        (h["devices"] == n - 1 && h["devices_up"] == n - 1 && polled(&names[last])).then_some(())
    })
    .with_context(|| agent.log())?;
    // A failing CNaaS-NMS changes nothing, and says so.
    nms.fail(Failure::ServerError);
    let h = wait_until("the failure noticed", Duration::from_secs(20), || {
        let h = health();
        h["inventory_source_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500"))
            .then_some(h)
    })
    .with_context(|| agent.log())?;
    assert_eq!(h["devices"], n - 1, "{h}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(health()["devices_up"], n - 1);
    nms.fail(Failure::None);
    Ok(())
}
