//! Collector throughput and storm behaviour, in process (correlation engine + SQLite store,
//! one thread, no MQTT): events per second into incidents, and a storm of 10,000 port-down
//! events from 200 switches behind one dead distribution switch. Prints a Markdown table.
//! A benchmark, not a test.
//!
//!     cargo build --release --workspace && ./target/release/collector-bench [EVENTS]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{TimeDelta, Utc};
use cnaas_collector::config::{Inventory, InventoryDevice};
use cnaas_collector::correlate::{Correlator, Rules};
use cnaas_collector::store::{SqliteStore, Store};
use cnaas_shared::role::PortRole;
use cnaas_shared::{Event, EventKind, Source};

fn port_event(device: &str, kind: EventKind, i: u32) -> Event {
    let mut e = Event::new("bench", device, kind, Source::Poll);
    e.if_index = Some(i);
    e.if_name = Some(format!("Gi1/0/{i}"));
    e
}

fn inventory(switches: usize) -> Arc<Inventory> {
    let mut inv = Inventory::default();
    inv.devices.insert(
        "dist".into(),
        InventoryDevice {
            site: Some("b12".into()),
            ..Default::default()
        },
    );
    for n in 0..switches {
        inv.devices.insert(
            format!("a{n}"),
            InventoryDevice {
                uplinks: vec!["dist".into()],
                site: Some("b12".into()),
                ..Default::default()
            },
        );
    }
    Arc::new(inv)
}

fn main() -> Result<()> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;

    // 1. Throughput: watched ports of 2,000 switches going down and up (hold 60 s, so most
    //    are transient), one transaction per event as in the collector.
    let store = SqliteStore::open(&dir.path().join("throughput.db"))?;
    let mut c = Correlator::new(Rules::default(), inventory(2000));
    let events: Vec<(Event, Option<PortRole>)> = (0..total)
        .map(|n| {
            let kind = if (n / 2000) % 2 == 0 {
                EventKind::LinkDown
            } else {
                EventKind::LinkUp
            };
            let role = if n % 3 == 0 {
                PortRole::Access
            } else {
                PortRole::Downlink
            };
            (
                port_event(
                    &format!("a{}", n % 2000),
                    kind,
                    u32::try_from(n % 48).unwrap_or(0) + 1,
                ),
                Some(role),
            )
        })
        .collect();
    let now = Utc::now();
    let t0 = Instant::now();
    for (e, role) in &events {
        store.process(Some((e, *role, now)), &mut |tx| {
            c.on_event(e, *role, now, tx)
        })?;
    }
    let secs = t0.elapsed().as_secs_f64();
    // The same, batched as the engine does when events queue up (up to 512 per transaction).
    let store = SqliteStore::open(&dir.path().join("batched.db"))?;
    let mut c = Correlator::new(Rules::default(), inventory(2000));
    let t0 = Instant::now();
    for chunk in events.chunks(512) {
        store.transaction(&mut |tx| {
            for (e, role) in chunk {
                if tx.insert_event(e, *role, now)? {
                    c.on_event(e, *role, now, tx)?;
                }
            }
            Ok(())
        })?;
    }
    let batched = t0.elapsed().as_secs_f64();

    // 2. The storm: the distribution switch dies; 200 access switches behind it and 50 of
    //    their downlinks each report down, all within the grouping window.
    let store = SqliteStore::open(&dir.path().join("storm.db"))?;
    let rules = Rules {
        link_hold: TimeDelta::zero(),
        ..Rules::default()
    };
    let mut c = Correlator::new(rules, inventory(200));
    let mut storm = vec![(
        Event::new("bench", "dist", EventKind::DeviceUnreachable, Source::Poll),
        None,
    )];
    for n in 0..200 {
        let name = format!("a{n}");
        for i in 1..=50 {
            storm.push((
                port_event(&name, EventKind::LinkDown, i),
                Some(PortRole::Downlink),
            ));
        }
        storm.push((
            Event::new("bench", &name, EventKind::DeviceUnreachable, Source::Poll),
            None,
        ));
    }
    let t1 = Instant::now();
    for chunk in storm.chunks(512) {
        store.transaction(&mut |tx| {
            for (e, role) in chunk {
                let now = Utc::now();
                if tx.insert_event(e, *role, now)? {
                    c.on_event(e, *role, now, tx)?;
                }
            }
            Ok(())
        })?;
    }
    let storm_secs = t1.elapsed().as_secs_f64();
    let open = store.count_open()?;

    println!("\n### Collector: events into incidents, and the storm\n");
    println!(
        "`collector-bench {total}`: the correlation engine and the SQLite store (WAL) on one thread, in process \
         (no MQTT). Target (DESIGN.md): 50,000 events/s sustained on one core; the storm becomes one incident.\n"
    );
    println!("| collector, one thread, SQLite (WAL), one transaction per event | value |");
    println!("|---|---|");
    println!(
        "| {total} port events from 2,000 switches, a transaction each | {secs:.2} s = {:.0} events/s |",
        total as f64 / secs
    );
    println!(
        "| the same, up to 512 events per transaction (the engine under load) | {batched:.2} s = {:.0} events/s |",
        total as f64 / batched
    );
    println!(
        "| storm: {} events (10,000 port-downs, 201 devices down) | {storm_secs:.2} s = {:.0} events/s |",
        storm.len(),
        storm.len() as f64 / storm_secs
    );
    println!(
        "| incidents open after the storm | {open} (correlator: {}) |",
        c.open_incidents()
    );
    Ok(())
}
