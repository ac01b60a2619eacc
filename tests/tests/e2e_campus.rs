//! A campus as CNaaS builds it, end to end: the simulator's CNaaS campus (two cores, the pair
//! dist-1a/dist-1b, four access switches with a two-member LACP bundle to both), the real
//! agent (its topology plan reads LLDP-MIB and the bundles), Mosquitto, and the collector with
//! no uplinks in its inventory: the cabling is learned from LLDP.
//!
//! - one distribution switch of the pair down: exactly one incident, "redundancy lost" for
//!   every access switch, no device_down of theirs, nothing to technical contacts at night;
//! - its partner too: the same incident becomes an outage (told as `worsened`), every access
//!   switch shadowed;
//! - one bundle member down: a redundancy incident on that access switch, the event naming
//!   its bundle;
//! - a core down: one incident, nothing shadowed (the other core carries everything);
//! - a cable moved: the topology follows, no incident;
//! - the dashboard's topology page (in a real Chromium) shows the states and the drawing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_sim::{Campus, Shared, start};
use cnaas_tests::browser::Chromedriver;
use cnaas_tests::{Mosquitto, free_port, http_json, open_tempdir, start_binary, wait_until};
use fantoccini::Locator;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const NOTIFY: &str = r#"
[notify]
language = "en"
ssc = [{ channel = "ssc", to = "ssc" }, { channel = "ssc2", to = "ssc" }]
secondline = [{ channel = "ssc", to = "campus" }]
attempts = 2
backoff = "100ms"
max_backoff = "200ms"

[[channel]]
name = "ssc"
kind = "file"
path = "ssc.jsonl"

[[channel]]
name = "ssc2"
kind = "file"
path = "ssc2.jsonl"

[[channel]]
name = "customer"
kind = "file"
path = "customer.jsonl"

[[channel]]
name = "oncall"
kind = "file"
path = "technical.jsonl"

# No opening hours: always outside them, so severity 1-2 wakes the technical contact.
[[customer]]
id = "uni-a"
name = "Universitetet i A"
language = "en"
incident = { channel = "customer", to = "servicedesk@uni-a.no" }
change = { channel = "customer", to = "change@uni-a.no" }
local_support = { channel = "customer", to = "helpdesk@uni-a.no" }
technical = [{ channel = "oncall", to = "+4790000000" }]
administrative = [{ channel = "customer", to = "kontrakt@uni-a.no" }]
"#;

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_cnaas_campus_tells_redundancy_lost_from_an_outage() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (sim_port, trap_port, api_port, metrics_port) =
        (free_port(), free_port(), free_port(), free_port());
    let token = CancellationToken::new();
    let _stop = token.clone().drop_guard();
    // 12 ports: Gi1/0/1-10, Te1/1/1 (11, to dist-1a), Te1/1/2 (12, to dist-1b), Po1 (13).
    let campus = Campus::cnaas(8, 4, 12, Instant::now());
    let names: Vec<String> = campus.switches.iter().map(|s| s.name.clone()).collect();
    let mut inventory = String::new();
    for s in &campus.switches {
        // Roles and the pair, as CNaaS-NMS would tell them; no uplinks: LLDP tells the cabling.
        let role = cnaas_sim::inventory_lines(s)
            .lines()
            .filter(|l| !l.starts_with("uplink"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        inventory.push_str(&format!(
            "[[device]]\nname = \"{}\"\ncustomer = \"uni-a\"\nsite = \"main\"\n{role}",
            s.name
        ));
    }
    let sim = runtime.block_on(start(
        Shared::new(campus),
        format!("127.0.0.1:{sim_port}").parse()?,
        vec![format!("127.0.0.1:{trap_port}").parse()?],
        token.clone(),
    ))?;
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let devices = cnaas_sim::agent_devices(names.iter().map(String::as_str), sim_port);
    let collector_cfg = dir.path().join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "[collector]\nid = \"campus\"\n[mqtt]\nurl = \"{}\"\n[store]\nurl = \"sqlite://c.db\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [roles]\nuplink = ['(?i)^uplink']\ndownlink = ['(?i)^downlink']\n[rules]\nlink_hold = \"5s\"\ngroup_window = \"3s\"\n{inventory}{NOTIFY}",
            mqtt.url()
        ),
    )?;
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "[agent]\nid = \"campus-site\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [traps]\nlisten = \"127.0.0.1:{trap_port}\"\nquiet_after_reboot = \"0s\"\n\
             [defaults]\nlink_interval = \"1s\"\nreachability_interval = \"1s\"\ntopology_interval = \"2s\"\ntimeout = \"300ms\"\nretries = 1\nunreachable_after = 2\n{devices}",
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
        "the agent to reach all eight switches",
        Duration::from_secs(30),
        || {
            agent.check_alive().ok()?;
            let v = http_json(&format!("http://127.0.0.1:{metrics_port}/healthz")).ok()?;
            (v["devices_up"] == 8).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    let logs = || format!("agent:\n{}\ncollector:\n{}", agent.log(), collector.log());
    let topology = || http_json(&format!("{api}/api/v1/topology")).unwrap_or_default();
    let device = |t: &Value, name: &str| {
        t["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or_default()
    };
    // The cabling, learned: 4 access switches x 2 uplinks, 2 distribution switches x 2 cores.
    let t = wait_until("the topology from LLDP", Duration::from_secs(30), || {
        let t = topology();
        let lldp = t["links"]
            .as_array()?
            .iter()
            .filter(|l| {
                l["sources"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "lldp"))
            })
            .count();
        (lldp == 12).then_some(t)
    })
    .with_context(logs)?;
    // And every switch's own view of its neighbours in (the agent's metric).
    wait_until(
        "every switch's LLDP snapshot",
        Duration::from_secs(30),
        || {
            let (_, m) =
                cnaas_tests::http_get(&format!("http://127.0.0.1:{metrics_port}/metrics")).ok()?;
            let full = names.iter().all(|n| {
                let want = if n.starts_with("dist-") { 6 } else { 2 };
                m.lines()
                    .any(|l| l == format!("cnaas_agent_lldp_neighbours{{device=\"{n}\"}} {want}"))
            });
            full.then_some(())
        },
    )
    .with_context(logs)?;
    let a1 = device(&t, "access-1-1");
    assert_eq!(
        a1["parents"],
        serde_json::json!(["dist-1a", "dist-1b"]),
        "{t}"
    );
    assert_eq!(device(&t, "dist-1a")["pair"], "dist-1b", "{t}");
    assert_eq!(device(&t, "core-1")["top"], true, "{t}");

    let open = || -> Vec<Value> {
        http_json(&format!("{api}/api/v1/incidents?state=open"))
            .ok()
            .and_then(|v| v["incidents"].as_array().cloned())
            .unwrap_or_default()
    };
    let detail =
        |id: &Value| http_json(&format!("{api}/api/v1/incidents/{id}")).unwrap_or_default();
    let limit = Duration::from_secs(30);
    let settle = Duration::from_secs(8);
    let access = ["access-1-1", "access-1-2", "access-1-3", "access-1-4"];

    // 1. dist-1a dies: every access switch loses its Te1/1/1 (Po1 stays up on Te1/1/2).
    sim.control.alive("dist-1a", false)?;
    let inc = wait_until("one redundancy-lost incident", limit, || {
        let i = open().into_iter().find(|i| i["device"] == "dist-1a")?;
        let d = detail(&i["id"]);
        let members = d["alarms"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["alarm"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("access-") && k.ends_with("|11|link_down"))
            })
            .count();
        (d["impact"]["kind"] == "redundancy_lost" && members == 4).then_some(d)
    })
    .with_context(logs)?;
    assert_eq!(inc["severity"], 3, "{inc}");
    assert_eq!(inc["kind"], "device_down");
    assert_eq!(
        inc["impact"]["degraded"],
        serde_json::json!(access),
        "{inc}"
    );
    assert!(
        inc["summary"]
            .as_str()
            .is_some_and(|s| s.contains("redundancy lost for 4")),
        "{inc}"
    );
    std::thread::sleep(settle);
    let now_open = open();
    assert_eq!(
        now_open.len(),
        1,
        "one incident only: {now_open:#?}\n{}",
        logs()
    );
    wait_until("the customer told", limit, || {
        lines(&dir.path().join("customer.jsonl"))
            .iter()
            .any(|n| n["transition"] == "opened-1")
            .then_some(())
    })
    .with_context(logs)?;
    assert!(
        lines(&dir.path().join("technical.jsonl")).is_empty(),
        "redundancy lost must not wake anyone"
    );
    let id = inc["id"].clone();
    // The dashboard's topology page, in a real Chromium: dist-1a down, the access switches
    // degraded, every device drawn.
    let driver = Chromedriver::start()?;
    runtime.block_on(async {
        let browser = driver.connect().await?;
        browser.goto(&format!("{api}/ui/topology")).await?;
        let state = |device: &'static str| {
            let browser = browser.clone();
            async move {
                browser
                    .find(Locator::Css(&format!(
                        "table#topology-devices tr[data-device='{device}'] td.state"
                    )))
                    .await?
                    .text()
                    .await
            }
        };
        let dist = state("dist-1a").await?;
        assert!(dist.starts_with("down"), "{dist}");
        assert_eq!(state("access-1-1").await?, "degraded");
        assert_eq!(state("core-2").await?, "up");
        let drawn = browser
            .find_all(Locator::Css("#topology-drawing g.dev"))
            .await?
            .len();
        assert_eq!(drawn, 8);
        browser
            .find(Locator::Css(
                "#topology-drawing g.dev-down[data-device='dist-1a']",
            ))
            .await
            .context("dist-1a drawn as down")?;
        browser.close().await?;
        anyhow::Ok(())
    })?;

    // 2. dist-1b too: the same incident, now an outage with the access switches cut off.
    sim.control.alive("dist-1b", false)?;
    let inc = wait_until("the outage", limit, || {
        let d = detail(&id);
        let shadowed = d["alarms"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["relation"] == "shadowed"
                    && a["alarm"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("access-") && k.ends_with("||device_down"))
            })
            .count();
        (d["impact"]["kind"] == "outage" && shadowed == 4).then_some(d)
    })
    .with_context(|| {
        let all: Vec<Value> = open().iter().map(|i| detail(&i["id"])).collect();
        format!("{all:#?}")
    })?;
    assert_eq!(inc["severity"], 2, "{inc}");
    assert_eq!(
        inc["impact"]["isolated"],
        serde_json::json!(access),
        "{inc}"
    );
    assert_eq!(
        inc["impact"]["down"],
        serde_json::json!(["dist-1a", "dist-1b"]),
        "{inc}"
    );
    let now_open = open();
    assert_eq!(now_open.len(), 1, "still one incident: {now_open:#?}");
    wait_until("the technical contact told of the outage", limit, || {
        lines(&dir.path().join("technical.jsonl"))
            .iter()
            .any(|n| n["transition"] == "worsened-1")
            .then_some(())
    })
    .with_context(logs)?;
    let t = topology();
    assert_eq!(device(&t, "access-1-3")["state"], "isolated", "{t}");

    // Both back: everything resolves.
    sim.control.alive("dist-1a", true)?;
    sim.control.alive("dist-1b", true)?;
    wait_until("all resolved", Duration::from_secs(60), || {
        open().is_empty().then_some(())
    })
    .with_context(logs)?;

    // 3. One bundle member of access-1-2 goes (the cable to dist-1b): redundancy lost there.
    sim.control.link("access-1-2", 12, false)?;
    let inc = wait_until("the member's incident", limit, || {
        open().into_iter().find_map(|i| {
            let d = detail(&i["id"]);
            d["alarms"]
                .as_array()?
                .iter()
                .any(|a| a["alarm"] == "access-1-2|12|link_down")
                .then_some(d)
        })
    })
    .with_context(logs)?;
    assert_eq!(inc["severity"], 3, "{inc}");
    std::thread::sleep(settle);
    let now_open = open();
    assert_eq!(now_open.len(), 1, "{now_open:#?}");
    assert!(
        now_open.iter().all(|i| i["kind"] == "link_down"),
        "{now_open:#?}"
    );
    let events = http_json(&format!(
        "{api}/api/v1/events?device=access-1-2&kind=link_down"
    ))?;
    let bundle = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["if_index"] == 12)
        .map(|e| e["attrs"]["bundle"].clone())
        .unwrap_or_default();
    assert_eq!(bundle["name"], "Po1", "{events}");
    assert_eq!(bundle["members"], 2, "{events}");
    sim.control.link("access-1-2", 12, true)?;
    wait_until("the member back", Duration::from_secs(60), || {
        open().is_empty().then_some(())
    })
    .with_context(logs)?;

    // 4. A core dies: one incident, the other core carries everything, nothing shadowed.
    sim.control.alive("core-1", false)?;
    let inc = wait_until("the core's incident", limit, || {
        let i = open().into_iter().find(|i| i["device"] == "core-1")?;
        let d = detail(&i["id"]);
        (d["impact"]["kind"] == "redundancy_lost").then_some(d)
    })
    .with_context(logs)?;
    assert_eq!(
        inc["impact"]["degraded"],
        serde_json::json!(["dist-1a", "dist-1b"]),
        "{inc}"
    );
    std::thread::sleep(settle);
    let now_open = open();
    assert_eq!(now_open.len(), 1, "{now_open:#?}\n{}", logs());
    let d = detail(&now_open[0]["id"]);
    assert!(
        !d["alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["relation"] == "shadowed"),
        "{d}"
    );
    sim.control.alive("core-1", true)?;
    wait_until("the core back", Duration::from_secs(60), || {
        open().is_empty().then_some(())
    })
    .with_context(logs)?;

    // 5. A cable moved: access-1-3's Te1/1/2 from dist-1b port 3 to dist-1b port 8.
    sim.control.recable("access-1-3", 12, "dist-1b", 8)?;
    wait_until("the topology to follow the cable", limit, || {
        let t = topology();
        t["links"]
            .as_array()?
            .iter()
            .any(|l| {
                l["a"] == "access-1-3"
                    && l["a_port"] == "Te1/1/2"
                    && l["b"] == "dist-1b"
                    && l["b_port"] == "Te1/0/8"
            })
            .then_some(())
    })
    .with_context(logs)?;
    wait_until("the move recorded", limit, || {
        topology()["changes"]
            .as_array()?
            .iter()
            .any(|c| {
                c["device"] == "access-1-3"
                    && c["port"] == "Te1/1/2"
                    && c["before"] == "dist-1b Te1/0/3"
                    && c["after"] == "dist-1b Te1/0/8"
            })
            .then_some(())
    })
    .with_context(logs)?;
    std::thread::sleep(settle);
    let now_open = open();
    assert!(
        now_open.is_empty(),
        "a moved cable is no fault: {now_open:#?}\n{}",
        logs()
    );
    Ok(())
}
