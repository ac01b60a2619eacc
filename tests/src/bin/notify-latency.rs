//! Measures notification latency end to end through real peers: snmpsim -> cnaas-agent (1 s
//! link plan) -> Mosquitto -> cnaas-collector -> aiosmtpd, the SMS webhook, the SSC queue on
//! Mosquitto and the SSC file. For each uplink flip (down, then up) it takes from the
//! collector's own records the time from receipt of the event to the notification handed to
//! its channel (per channel), and by the wall clock the time from `snmpset` to the e-mail in
//! the SMTP server's maildir. No hold time and no grouping window, so nothing waits on purpose.
//! Prints a Markdown table.
//!
//!     cargo build --release --workspace && ./target/release/notify-latency [FLIPS]
//!
//! A benchmark, not a test: it asserts nothing about time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use cnaas_tests::rig::{Rig, RigOptions, SMS_TOKEN, notify_config};
use cnaas_tests::sinks::{SmtpSink, WebhookReceiver};
use cnaas_tests::{http_json, json_time, percentile, wait_until};

/// Access ports made uplinks for the run (the recording has 7, 19 and 33 down).
const PORTS: [u32; 20] = [
    1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22,
];

/// Adds, per channel, the time from receipt of the causing event to delivery of each of the
/// incident's notifications.
fn collect(rig: &Rig, id: i64, per_channel: &mut BTreeMap<String, Vec<f64>>) -> Result<()> {
    let detail = http_json(&format!("{}/api/v1/incidents/{id}", rig.api))?;
    let received: Vec<DateTime<Utc>> = detail["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| json_time(&e["received_at"]))
        .collect();
    for n in detail["notifications"].as_array().into_iter().flatten() {
        let (Some(created), Some(delivered)) =
            (json_time(&n["created_at"]), json_time(&n["delivered_at"]))
        else {
            continue;
        };
        // The event that caused it: the last one received at or before the row was queued.
        let Some(cause) = received.iter().filter(|r| **r <= created).max() else {
            continue;
        };
        let ms = (delivered - *cause).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        per_channel
            .entry(n["channel"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(ms);
    }
    Ok(())
}

fn main() -> Result<()> {
    let flips = cnaas_tests::count_arg(20)?;
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        collector_extra: notify_config(smtp.port, &sms.url(), 8),
        files: vec![("sms.token".into(), format!("{SMS_TOKEN}\n"))],
        port_roles: PORTS
            .iter()
            .map(|i| format!(", \"Gi1/0/{i}\" = \"uplink\""))
            .collect(),
        ..RigOptions::default()
    })?;
    let limit = Duration::from_secs(10);
    let mut to_mail: Vec<f64> = Vec::new();
    let mut ids = Vec::new();
    for n in 0..flips {
        // A different port each time: flipping one port again and again is flapping, which
        // is one incident and no more notifications.
        let port = PORTS[n % PORTS.len()];
        for (status, what) in [(2, "down"), (1, "up")] {
            std::thread::sleep(Duration::from_millis(500 + (n as u64 * 379) % 1000));
            let seen = smtp.mails().len();
            let t0 = Instant::now();
            rig.set_oper(port, status)?;
            // Two e-mails per transition (A's incident point and its technical contact).
            wait_until("the e-mails", limit, || {
                (smtp.mails().len() >= seen + 2).then_some(())
            })
            .with_context(|| format!("flip {n} {what}\n{}", rig.logs()))?;
            to_mail.push(t0.elapsed().as_secs_f64() * 1000.0);
            if let Some(id) = rig
                .open_port_incident(u64::from(port))
                .and_then(|i| i["id"].as_i64())
            {
                ids.push(id);
            }
        }
    }
    // Let the last deliveries land, then read the collector's own timestamps.
    std::thread::sleep(Duration::from_secs(2));
    let mut per_channel: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for id in ids {
        collect(&rig, id, &mut per_channel)?;
    }
    println!(
        "| {flips} flips (down and up), link interval 1 s, no hold time | n | p50 | p99 | worst |"
    );
    println!("|---|---|---|---|---|");
    for (channel, mut v) in per_channel {
        v.sort_by(f64::total_cmp);
        println!(
            "| event received -> handed to `{channel}` | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            v.len(),
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            percentile(&v, 1.0)
        );
    }
    to_mail.sort_by(f64::total_cmp);
    println!(
        "| snmpset -> e-mail in the SMTP server's maildir | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        to_mail.len(),
        percentile(&to_mail, 0.5),
        percentile(&to_mail, 0.99),
        percentile(&to_mail, 1.0)
    );
    Ok(())
}
