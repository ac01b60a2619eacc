//! Measures ingestion through a real broker, not in process: Mosquitto with the shipped config
//! (limits, password authentication, ACL) and cnaas-collector (SQLite, QoS 1 with manual
//! acknowledgements, each message acknowledged only after its commit).
//!
//! 1. Sustained: one publisher sends EVENTS events (QoS 1, 50 devices, 48 ports each) as fast
//!    as the broker takes them; the rate is from the first publish to the collector's count of
//!    stored events reaching EVENTS.
//! 2. Backlog: the collector is stopped (SIGTERM; its session stays on the broker), EVENTS more
//!    are published, the outage lasts OUTAGE seconds in all (default 0; 600 for the 10-minute
//!    case), then the collector starts and the time until it has stored them all is taken.
//!
//!     cargo build --release --workspace && ./target/release/ingest-bench [EVENTS] [OUTAGE]
//!
//! A benchmark, not a test: it asserts nothing about time. Prints a Markdown table.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnaas_shared::{Event, EventKind, Source};
use cnaas_tests::{Mosquitto, Process, free_port, http_get, open_tempdir, start_binary};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};

const PASSWORD: &str = "bench-secret-4711";

/// The collector's count of stored events (0 when it does not answer).
fn stored(api: &str) -> f64 {
    http_get(&format!("{api}/metrics"))
        .ok()
        .and_then(|(_, text)| {
            text.lines()
                .find(|l| l.starts_with("cnaas_collector_events_stored_total"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn start_collector(dir: &Path, port: u16, api_port: u16, log: &str) -> Result<Process> {
    let config = dir.join("collector.toml");
    if !config.exists() {
        std::fs::write(dir.join("collector.pass"), format!("{PASSWORD}\n"))?;
        std::fs::write(
            &config,
            format!(
                r#"
[collector]
id = "bench"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
username = "collector"
password_file = "collector.pass"
[store]
url = "sqlite://collector.db"
[api]
listen = "127.0.0.1:{api_port}"
[rules]
link_hold = "0s"
"#
            ),
        )?;
    }
    let process = start_binary("cnaas-collector", &config, &dir.join(log))?;
    let api = format!("http://127.0.0.1:{api_port}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, body)) = http_get(&format!("{api}/healthz"))
            && body.contains("\"mqtt_connected\":true")
        {
            return Ok(process);
        }
        if Instant::now() > until {
            bail!("the collector did not connect: {}", process.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Publishes `n` events (QoS 1) and waits for the broker's PUBACK of each; returns the time.
fn publish(port: u16, n: usize, from: usize) -> Result<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut opts = MqttOptions::new(format!("bench-pub-{from}"), "127.0.0.1", port);
        opts.set_credentials("bench", PASSWORD);
        opts.set_inflight(200);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            for i in from..from + n {
                let device = format!("sw{:02}", i % 50);
                let kind = if (i / 50) % 2 == 0 {
                    EventKind::LinkDown
                } else {
                    EventKind::LinkUp
                };
                let mut e = Event::new("bench", &device, kind, Source::Poll);
                e.if_index = Some(u32::try_from(i % 48 + 1).unwrap_or(1));
                e.if_name = e.if_index.map(|p| format!("Gi1/0/{p}"));
                let topic = format!("cnaas/v1/events/bench/{device}");
                if client
                    .publish(topic, QoS::AtLeastOnce, false, e.to_json())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            client
        });
        let mut acked = 0;
        while acked < n {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => bail!("publisher: {e}"),
            }
        }
        let took = started.elapsed();
        let client = sender.await.context("publisher task")?;
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
        Ok(took)
    })
}

/// Waits until the collector at `api` has stored `n` events; returns when it did.
fn wait_stored(api: &str, n: usize, limit: Duration) -> Result<Instant> {
    let until = Instant::now() + limit;
    loop {
        #[allow(clippy::cast_precision_loss)]
        if stored(api) >= n as f64 {
            return Ok(Instant::now());
        }
        if Instant::now() > until {
            bail!("stored only {} of {n}", stored(api));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(clippy::cast_precision_loss)]
fn main() -> Result<()> {
    let events = cnaas_tests::count_arg(100_000)?;
    let outage: u64 = match std::env::args().nth(2) {
        Some(s) => s.parse().with_context(|| format!("`{s}` is not seconds"))?,
        None => 0,
    };
    let mqtt = Mosquitto::start_shipped(&[("collector", PASSWORD), ("bench", PASSWORD)])?;
    let dir = open_tempdir()?;
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let mut collector = start_collector(dir.path(), mqtt.port, api_port, "collector.log")?;

    // 1. Sustained.
    let started = Instant::now();
    let published = publish(mqtt.port, events, 0)?;
    let done =
        wait_stored(&api, events, Duration::from_secs(600)).with_context(|| collector.log())?;
    let sustained = done - started;

    // 2. Backlog after an outage.
    collector.terminate()?;
    let outage_started = Instant::now();
    let backlog_published = publish(mqtt.port, events, events)?;
    let left = Duration::from_secs(outage).saturating_sub(outage_started.elapsed());
    std::thread::sleep(left);
    let outage_took = outage_started.elapsed();
    let restart = Instant::now();
    let collector = start_collector(dir.path(), mqtt.port, api_port, "collector-2.log")?;
    let done =
        wait_stored(&api, events, Duration::from_secs(1200)).with_context(|| collector.log())?;
    let drain = done - restart;

    println!("| Measure | Events | Time | Rate |");
    println!("|---|---:|---:|---:|");
    println!(
        "| broker took them (PUBACKs to one QoS 1 publisher) | {events} | {:.2} s | {:.0} ev/s |",
        published.as_secs_f64(),
        events as f64 / published.as_secs_f64()
    );
    println!(
        "| sustained: first publish to all stored and acknowledged by the collector | {events} | {:.2} s | {:.0} ev/s |",
        sustained.as_secs_f64(),
        events as f64 / sustained.as_secs_f64()
    );
    println!(
        "| backlog published while the collector was down (outage {:.0} s) | {events} | {:.2} s | {:.0} ev/s |",
        outage_took.as_secs_f64(),
        backlog_published.as_secs_f64(),
        events as f64 / backlog_published.as_secs_f64()
    );
    println!(
        "| drain: collector start to the whole backlog stored | {events} | {:.2} s | {:.0} ev/s |",
        drain.as_secs_f64(),
        events as f64 / drain.as_secs_f64()
    );
    Ok(())
}
