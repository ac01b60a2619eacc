//! The collector's HTTP server under connection exhaustion, with the real peers (snmpsim,
//! agent, Mosquitto, SMTP sink): 1,100 half-written requests from 20 loopback addresses (more
//! than the server's 1,024 connections) and still the API answers a valid request and the
//! notifications of a new incident go out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::load::HalfOpen;
use cnaas_tests::rig::{Rig, RigOptions, SMS_TOKEN, notify_config};
use cnaas_tests::sinks::{SmtpSink, WebhookReceiver};
use cnaas_tests::{http_get, wait_until};

#[test]
fn half_open_connections_do_not_silence_the_api_or_the_notifications() -> Result<()> {
    cnaas_shared::runtime::raise_open_files_limit();
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        collector_extra: notify_config(smtp.port, &sms.url(), 8),
        files: vec![("sms.token".into(), format!("{SMS_TOKEN}\n"))],
        ..RigOptions::default()
    })?;
    let port: u16 = rig
        .api
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the API's port")?;
    let load = HalfOpen::start(port, 1_100, 2, 20, Duration::from_secs(90))?;
    wait_until("1,100 connections opened", Duration::from_secs(30), || {
        (load.opened.load(Ordering::SeqCst) + load.closed_by_server.load(Ordering::SeqCst) >= 1_100)
            .then_some(())
    })?;
    // A valid request is answered (the oldest half-open connection makes room).
    let (status, body) = http_get(&format!("{}/api/v1/incidents", rig.api))?;
    assert_eq!(status, 200, "{body}");
    // A new incident is told as always.
    rig.set_oper(49, 2)?;
    wait_until(
        "the e-mail to the incident point",
        Duration::from_secs(30),
        || {
            smtp.mails()
                .into_iter()
                .find(|m| m.to.contains("servicedesk@uni-b.no"))
        },
    )
    .with_context(|| rig.logs())?;
    wait_until("the SMS", Duration::from_secs(30), || {
        sms.requests().into_iter().find(|r| r.status == 200)
    })
    .with_context(|| rig.logs())?;
    let (status, _) = http_get(&format!("{}/healthz", rig.api))?;
    assert_eq!(status, 200);
    // The server never held more than its limit, and lived.
    let (opened, closed) = (
        load.opened.load(Ordering::SeqCst),
        load.closed_by_server.load(Ordering::SeqCst),
    );
    assert!(opened > 1_024, "only {opened} connections opened");
    assert!(
        opened - closed.min(opened) <= 1_024,
        "closed {closed} of {opened}"
    );
    drop(load);
    let logs = rig.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    Ok(())
}
