//! Root cause on a CNaaS campus, in process (the collector's engine: correlation, topology,
//! SQLite store, routing and outbox; no MQTT): the simulator's CNaaS campus of N switches
//! (default 2,000: two cores, 40 distribution pairs of 48 access switches each) is learned
//! from LLDP snapshots as the agent sends them, then a distribution pair dies: first one
//! switch (every access switch below loses one bundle member), then its partner (the access
//! switches are cut off and stop answering). Prints a Markdown table: the incidents and
//! notifications that came of it, the engine's wall and CPU time per event and per topology
//! rebuild, and the time from the storm's last event to a stable incident. A benchmark, not
//! a test.
//!
//!     cargo build --release --workspace && ./target/release/campus-bench [SWITCHES]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use cnaas_collector::config::{DeviceRole, Inventory, InventoryDevice};
use cnaas_collector::correlate::{NoMaintenance, Rules};
use cnaas_collector::customers::{ContactPoint, CustomerEntry, check};
use cnaas_collector::engine::{Core, Notices};
use cnaas_collector::notify::route::Routing;
use cnaas_collector::store::{IncidentFilter, SqliteStore, Store};
use cnaas_shared::{Event, EventKind, Neighbour, Neighbours, Source};
use cnaas_sim::{Campus, Role};

/// CPU time of this process (user + system).
fn cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn lldp(campus: &Campus, name: &str, at: DateTime<Utc>) -> Option<Event> {
    let s = campus.get(name)?;
    let mut e = Event::new("bench", name, EventKind::Neighbours, Source::Poll);
    e.observed_at = at;
    Neighbours {
        neighbours: s
            .ports
            .iter()
            .filter_map(|p| {
                let peer = p.peer.as_ref()?;
                Some(Neighbour {
                    if_index: Some(p.if_index),
                    local_port: p.name.clone(),
                    chassis_id: cnaas_sim::model::chassis_mac(&peer.switch)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    chassis_subtype: "mac".into(),
                    port_id: peer.port.clone(),
                    port_subtype: "interface_name".into(),
                    port_descr: Some(peer.alias.clone()),
                    sys_name: Some(peer.switch.clone()),
                })
            })
            .collect(),
        bundles: Vec::new(),
    }
    .write(&mut e.attrs);
    Some(e)
}

fn port_down(device: &str, if_index: u32, name: &str, role: &str, at: DateTime<Utc>) -> Event {
    let mut e = Event::new("bench", device, EventKind::LinkDown, Source::Trap);
    e.if_index = Some(if_index);
    e.if_name = Some(name.to_owned());
    e.attrs.insert("role".into(), role.into());
    e.observed_at = at;
    e
}

fn device_down(device: &str, at: DateTime<Utc>) -> Event {
    let mut e = Event::new("bench", device, EventKind::DeviceUnreachable, Source::Poll);
    e.observed_at = at;
    e
}

fn main() -> Result<()> {
    let switches: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let campus = Campus::cnaas(switches, 48, 52, Instant::now());
    let mut inv = Inventory::default();
    for s in &campus.switches {
        inv.devices.insert(
            s.name.clone(),
            InventoryDevice {
                role: Some(match s.role {
                    Role::Core => DeviceRole::Core,
                    Role::Distribution => DeviceRole::Distribution,
                    Role::Access => DeviceRole::Access,
                }),
                pair: s.pair.clone(),
                customer: Some("uni-a".into()),
                site: Some(s.name.split('-').take(2).collect::<Vec<_>>().join("-")),
                ..Default::default()
            },
        );
    }
    let rules = Rules::default();
    let dir = tempfile::Builder::new().prefix("campus-bench").tempdir_in(
        if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        },
    )?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("c.db"))?);
    let point = |to: &str| ContactPoint {
        channel: "log".into(),
        to: to.into(),
        name: None,
    };
    let customer = check(
        &CustomerEntry {
            id: "uni-a".into(),
            name: "A".into(),
            timezone: "Europe/Oslo".into(),
            language: "nb".into(),
            opening_hours: vec![],
            incident: Some(point("servicedesk@a.no")),
            change: Some(point("change@a.no")),
            local_support: Some(point("helpdesk@a.no")),
            technical: vec![point("vakt@a.no")],
            administrative: vec![point("kontrakt@a.no")],
        },
        &["log".into()],
    )
    .0
    .context("the bench customer")?;
    let notices = Notices {
        routing: Arc::new(Routing::new(
            &[customer],
            vec![point("ssc")],
            vec![],
            "nb".into(),
            rules,
        )),
        wake: Arc::new(tokio::sync::Notify::new()),
        revision: Arc::new(tokio::sync::watch::channel(0).0),
        topology: Default::default(),
    };
    let t0 = Utc::now() - TimeDelta::minutes(30);
    let mut core = Core::new(
        store.clone(),
        Arc::new(inv),
        rules,
        notices,
        Box::new(NoMaintenance),
        t0,
    )?;

    // 1. The campus learned from LLDP: one snapshot per switch.
    let (wall, cpu0) = (Instant::now(), cpu());
    for s in &campus.switches {
        if let Some(e) = lldp(&campus, &s.name, t0) {
            core.event(e, t0);
        }
    }
    core.tick(t0);
    let learn = (wall.elapsed().as_secs_f64(), cpu() - cpu0);

    // 2. dist-1a dies at t1: 48 access uplinks (Te1/1/1) and its two core ports go down.
    let t1 = t0 + TimeDelta::minutes(1);
    let mut storm: Vec<(Event, DateTime<Utc>)> = Vec::new();
    let access: Vec<String> = campus
        .switches
        .iter()
        .filter(|s| s.uplinks.iter().any(|u| u == "dist-1a"))
        .map(|s| s.name.clone())
        .collect();
    for a in &access {
        storm.push((port_down(a, 51, "Te1/1/1", "uplink", t1), t1));
    }
    storm.push((port_down("core-1", 1, "Te1/0/1", "downlink", t1), t1));
    storm.push((port_down("core-2", 1, "Te1/0/1", "downlink", t1), t1));
    storm.push((
        device_down("dist-1a", t1 + TimeDelta::seconds(3)),
        t1 + TimeDelta::seconds(3),
    ));
    // 3. dist-1b too, 5 minutes later: the other uplinks, its core ports, then every access
    //    switch stops answering.
    let t2 = t1 + TimeDelta::minutes(5);
    for a in &access {
        storm.push((port_down(a, 52, "Te1/1/2", "uplink", t2), t2));
    }
    storm.push((port_down("core-1", 2, "Te1/0/2", "downlink", t2), t2));
    storm.push((port_down("core-2", 2, "Te1/0/2", "downlink", t2), t2));
    storm.push((
        device_down("dist-1b", t2 + TimeDelta::seconds(3)),
        t2 + TimeDelta::seconds(3),
    ));
    for a in &access {
        let at = t2 + TimeDelta::seconds(4);
        storm.push((device_down(a, at), at));
    }
    let events = storm.len();
    let (wall, cpu0) = (Instant::now(), cpu());
    let mut last = t1;
    let mut seconds = 0;
    let mut last_event = 0.0;
    for (e, at) in storm {
        // The engine's one-second ticker runs between events as time passes.
        while last + TimeDelta::seconds(1) <= at {
            last += TimeDelta::seconds(1);
            core.tick(last);
            seconds += 1;
        }
        let one = Instant::now();
        core.event(e, at);
        last_event = one.elapsed().as_secs_f64();
    }
    let storm_wall = wall.elapsed().as_secs_f64();
    let storm_cpu = cpu() - cpu0;
    // After the storm's last event: ticks through the hold time and the grouping window, and
    // the wall time until the last incident change.
    let end = t2 + TimeDelta::seconds(4);
    let settle = Instant::now();
    let mut at = end;
    let mut stable_after = 0.0;
    let mut last_seen = store.count_open()?;
    for _ in 0..(rules.link_hold.num_seconds() + rules.group_window.num_seconds() + 5) {
        at += TimeDelta::seconds(1);
        core.tick(at);
        let open = store.count_open()?;
        if open != last_seen {
            stable_after = settle.elapsed().as_secs_f64();
            last_seen = open;
        }
    }
    let open = store.list_incidents(&IncidentFilter {
        state: Some("open".into()),
        limit: 100,
        ..Default::default()
    })?;
    let notifications = match open.first() {
        Some(i) => store.list_notifications(&cnaas_collector::store::NotificationFilter {
            about: Some((cnaas_collector::store::About::Incident, i.id)),
            limit: 1000,
            ..Default::default()
        })?,
        None => Vec::new(),
    };
    println!(
        "`campus-bench {switches}`: a CNaaS campus of {switches} switches ({} access switches per pair), a distribution pair dying one switch after the other\n",
        access.len()
    );
    println!("| what | figure |\n|---|---|");
    println!(
        "| topology learned from {} LLDP snapshots | {:.0} ms wall, {:.0} ms CPU |",
        campus.switches.len(),
        learn.0 * 1000.0,
        learn.1 * 1000.0
    );
    println!(
        "| storm events (link down, device unreachable) | {events} over {seconds} simulated s |"
    );
    println!(
        "| engine time for the storm | {:.0} ms wall, {:.0} ms CPU, {:.0} µs CPU per event |",
        storm_wall * 1000.0,
        storm_cpu * 1000.0,
        storm_cpu * 1e6 / events as f64
    );
    println!("| open incidents after the storm | {} |", open.len());
    for i in &open {
        println!("| - #{} severity {} | {} |", i.id, i.severity, i.summary);
    }
    println!(
        "| notifications of that incident | {} ({}) |",
        notifications.len(),
        notifications
            .iter()
            .map(|n| format!("{} {}", n.transition, n.audience))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| the storm's last event, stored and correlated | {:.2} ms wall |",
        last_event * 1000.0
    );
    println!(
        "| then to a stable incident: {} simulated s of hold and window ticked through | {:.1} ms wall until the last change, {:.1} ms for all ticks |",
        rules.link_hold.num_seconds() + rules.group_window.num_seconds() + 5,
        stable_after * 1000.0,
        settle.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
