//! Notifications end to end with real peers: snmpsim uplink down at customer uni-b ("A") ->
//! agent -> Mosquitto -> collector -> an e-mail at a real SMTP server (aiosmtpd) for A's
//! `incident` point, a JSON message on A's SSC queue topic (Mosquitto), the SMS-gateway webhook
//! of A's technical contact (A is closed: no opening hours), nothing for customer uni-c ("B").
//! Then a crash between commit and delivery, and a recipient that keeps failing.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_collector::notify::channels::message_id;
use cnaas_tests::rig::{Rig, RigOptions, SMS_TOKEN, TOKENS, notify_config};
use cnaas_tests::sinks::{SmtpSink, WebhookReceiver};
use cnaas_tests::{Process, find_program, http_call, http_get, wait_until};
use serde_json::Value;

fn rig(smtp: u16, webhook: &str, attempts: u32) -> Result<Rig> {
    rig_with(smtp, webhook, attempts, false)
}

fn rig_with(smtp: u16, webhook: &str, attempts: u32, api_tokens: bool) -> Result<Rig> {
    Rig::start(&RigOptions {
        dead_device: false,
        api_tokens,
        collector_extra: notify_config(smtp, webhook, attempts),
        files: vec![("sms.token".into(), format!("{SMS_TOKEN}\n"))],
        ..RigOptions::default()
    })
}

fn notifications(rig: &Rig, query: &str) -> Vec<Value> {
    rig.get(&format!(
        "{}/api/v1/notifications?limit=1000{query}",
        rig.api
    ))
    .and_then(|v| v["notifications"].as_array().cloned())
    .unwrap_or_default()
}

fn queue_messages(file: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(t, p)| Some((t.to_owned(), serde_json::from_str(p).ok()?)))
        .collect()
}

fn mails_to(smtp: &SmtpSink, to: &str) -> Vec<cnaas_tests::sinks::Mail> {
    smtp.mails()
        .into_iter()
        .filter(|m| m.to.contains(to))
        .collect()
}

fn subscribe(rig: &Rig, file: &Path) -> Result<Process> {
    let mut sub = std::process::Command::new(find_program("mosquitto_sub")?);
    sub.args(["-h", "127.0.0.1", "-p", &rig.mqtt.port.to_string()])
        .args(["-q", "1", "-v", "-t", "cnaas/v1/queue/#"]);
    let p = Process::spawn("mosquitto_sub", sub, file)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(p)
}

#[test]
fn uplink_down_reaches_exactly_the_right_people_once_even_across_a_crash() -> Result<()> {
    let mut smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(3)?;
    let mut rig = rig(smtp.port, &sms.url(), 8)?;
    let queue_file = rig.dir().join("queue.log");
    let _sub = subscribe(&rig, &queue_file)?;
    let limit = Duration::from_secs(20);

    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident for Te1/1/1", limit, || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    let id = inc["id"].as_i64().context("incident id")?;

    // A's incident point and A's technical contacts (e-mail and the SMS webhook).
    let mail = wait_until("the e-mail to A's incident point", limit, || {
        mails_to(&smtp, "servicedesk@uni-b.no").into_iter().next()
    })
    .with_context(|| rig.logs())?;
    assert!(
        mail.subject.starts_with(
            "[CNaaS S2] Ny hendelse: Universitetet i B / b12 / a-b12-01 Te1/1/1 - Opplink Te1/1/1"
        ),
        "{}",
        mail.subject
    );
    for want in [
        "Organisasjon: Universitetet i B\n",
        "Enhet: a-b12-01\n",
        "Port: Te1/1/1",
        "Plassering: b12",
        &format!("Detaljer: http://collector.example/api/v1/incidents/{id}\n"),
    ] {
        assert!(
            mail.body.contains(want),
            "missing {want:?} in\n{}",
            mail.body
        );
    }
    assert_eq!(
        mail.key,
        format!("inc-{id}/opened-1/incident/mail/servicedesk@uni-b.no")
    );
    assert_eq!(mail.message_id, message_id(&mail.key));
    wait_until("the e-mail to A's technical contact", limit, || {
        mails_to(&smtp, "ola.nordmann@uni-b.no").into_iter().next()
    })?;

    // The SMS gateway failed three times and then took it: one success, one key throughout.
    let hits = wait_until("the SMS webhook to accept", limit, || {
        let r = sms.requests();
        r.iter().any(|q| q.status == 200).then_some(r)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(
        hits.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );
    assert!(hits.iter().all(|r| r.key == hits[0].key));
    assert!(
        hits.iter()
            .all(|r| r.authorization == format!("Bearer {SMS_TOKEN}"))
    );
    assert_eq!(hits[0].body["to"], "+4791234567");
    assert_eq!(hits[0].body["schema"], "cnaas.notification.v1");
    assert_eq!(hits[0].body["incident"]["id"], id);

    // SSC's queue on Mosquitto: A's topic, the stable JSON schema.
    let queued = wait_until("the SSC queue message", limit, || {
        queue_messages(&queue_file)
            .into_iter()
            .find(|(t, _)| t == "cnaas/v1/queue/ssc/uni-b")
    })?;
    assert_eq!(queued.1["transition"], "opened-1");
    assert_eq!(queued.1["audience"], "ssc");
    assert_eq!(queued.1["incident"]["kind"], "link_down");
    assert_eq!(queued.1["escalation"]["organisation"], "Universitetet i B");
    assert_eq!(queued.1["escalation"]["device"], "a-b12-01");

    // Every delivery is in the API, delivered; nothing for B, nothing administrative.
    let all = wait_until("all five deliveries", limit, || {
        let n = notifications(&rig, &format!("&incident={id}"));
        (n.len() == 5 && n.iter().all(|x| x["state"] == "delivered")).then_some(n)
    })
    .with_context(|| format!("{:#?}", notifications(&rig, "")))?;
    let mut who: Vec<String> = all
        .iter()
        .map(|n| {
            format!(
                "{}:{}",
                n["audience"].as_str().unwrap_or(""),
                n["channel"].as_str().unwrap_or("")
            )
        })
        .collect();
    who.sort();
    assert_eq!(
        who,
        [
            "incident:mail",
            "ssc:ssc-log",
            "ssc:ssc-queue",
            "technical:mail",
            "technical:sms-gw"
        ]
    );
    let sms_row = all
        .iter()
        .find(|n| n["channel"] == "sms-gw")
        .context("sms row")?;
    assert_eq!(sms_row["attempts"], 4);
    assert!(
        smtp.mails()
            .iter()
            .all(|m| !m.to.contains("uni-c.no") && !m.to.contains("kontrakt"))
    );
    assert!(sms.requests().iter().all(|r| r.body["to"] != "+4799999999"));
    let (_, metrics) = http_get(&format!("{}/metrics", rig.api))?;
    assert!(
        metrics
            .contains("cnaas_collector_notifications_total{channel=\"sms-gw\",result=\"retry\"} 3"),
        "{metrics}"
    );

    // Crash between commit and delivery: the mail server is down when the uplink comes
    // back, the collector is killed with the resolution queued, the server returns, the
    // collector restarts: each recipient gets the resolution exactly once.
    smtp.stop()?;
    rig.set_oper(49, 1)?;
    wait_until("the resolution to be queued and tried", limit, || {
        notifications(&rig, &format!("&incident={id}"))
            .into_iter()
            .find(|n| {
                n["transition"] == "resolved-1"
                    && n["recipient"] == "servicedesk@uni-b.no"
                    && n["state"] == "pending"
                    && n["attempts"].as_u64().unwrap_or(0) >= 1
            })
    })
    .with_context(|| rig.logs())?;
    rig.collector.kill_hard()?;
    smtp.resume()?;
    rig.start_collector()?;
    wait_until(
        "the resolution to be delivered after the restart",
        limit,
        || {
            let n = notifications(&rig, &format!("&incident={id}"));
            (n.len() == 10 && n.iter().all(|x| x["state"] == "delivered")).then_some(())
        },
    )
    .with_context(|| format!("{:#?}\n{}", notifications(&rig, ""), rig.logs()))?;
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for m in smtp.mails() {
        assert_eq!(m.message_id, message_id(&m.key), "{}", m.raw);
        *per_key.entry(m.key).or_default() += 1;
    }
    assert_eq!(per_key.len(), 4, "{per_key:?}");
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    assert!(per_key.contains_key(&format!(
        "inc-{id}/resolved-1/incident/mail/servicedesk@uni-b.no"
    )));
    let resolved = mails_to(&smtp, "servicedesk@uni-b.no")
        .into_iter()
        .find(|m| m.key.contains("resolved-1"))
        .context("the resolution e-mail")?;
    assert!(
        resolved.subject.contains("Hendelse løst"),
        "{}",
        resolved.subject
    );
    Ok(())
}

#[test]
fn a_crash_mid_delivery_repeats_only_the_message_in_flight_with_its_key() -> Result<()> {
    let smtp = SmtpSink::start()?;
    // The SMS gateway takes the first request and never answers it: the collector is killed
    // while that delivery is in flight.
    let sms = WebhookReceiver::start_with(0, 1)?;
    let config = notify_config(smtp.port, &sms.url(), 8).replace(
        "token_file = \"sms.token\"\ntimeout = \"3s\"",
        "token_file = \"sms.token\"\ntimeout = \"60s\"",
    );
    let mut rig = Rig::start(&RigOptions {
        dead_device: false,
        collector_extra: config,
        files: vec![("sms.token".into(), format!("{SMS_TOKEN}\n"))],
        ..RigOptions::default()
    })?;
    let limit = Duration::from_secs(20);
    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident for Te1/1/1", limit, || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    let id = inc["id"].as_i64().context("incident id")?;
    // Everyone else told, the SMS in flight.
    wait_until("four deliveries and the SMS in flight", limit, || {
        let n = notifications(&rig, &format!("&incident={id}"));
        let delivered = n.iter().filter(|x| x["state"] == "delivered").count();
        (delivered == 4 && sms.requests().len() == 1).then_some(())
    })
    .with_context(|| format!("{:#?}\n{}", notifications(&rig, ""), rig.logs()))?;
    rig.collector.kill_hard()?;
    rig.start_collector()?;
    let hits = wait_until("the SMS sent again", limit, || {
        let r = sms.requests();
        (r.len() == 2).then_some(r)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(hits[0].key, hits[1].key, "the same idempotency key");
    assert_eq!(hits[1].status, 200);
    wait_until("all five delivered", limit, || {
        let n = notifications(&rig, &format!("&incident={id}"));
        (n.len() == 5 && n.iter().all(|x| x["state"] == "delivered")).then_some(())
    })
    .with_context(|| rig.logs())?;
    // Nothing else was sent twice, and the repeat is counted.
    std::thread::sleep(Duration::from_secs(1));
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for m in smtp.mails() {
        *per_key.entry(m.key).or_default() += 1;
    }
    assert_eq!(per_key.len(), 2, "{per_key:?}");
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    assert_eq!(sms.requests().len(), 2);
    let (_, metrics) = http_get(&format!("{}/metrics", rig.api))?;
    assert!(
        metrics.contains("cnaas_collector_notifications_repeated_total 1\n"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn a_recipient_that_keeps_failing_becomes_an_incident_for_ssc_on_another_channel() -> Result<()> {
    // Nothing listens on the mail server's port: every e-mail fails.
    let smtp = SmtpSink::not_started()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig_with(smtp.port, &sms.url(), 3, true)?;
    let ssc_token = TOKENS[0].0;
    let limit = Duration::from_secs(20);
    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident for Te1/1/1", limit, || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    let id = inc["id"].as_i64().context("incident id")?;
    let failed = wait_until("the e-mails to fail for good", limit, || {
        let f = notifications(&rig, "&state=failed");
        (f.len() == 2).then_some(f)
    })
    .with_context(|| format!("{:#?}\n{}", notifications(&rig, ""), rig.logs()))?;
    assert!(
        failed
            .iter()
            .all(|n| n["channel"] == "mail" && n["attempts"] == 3)
    );
    assert!(
        failed
            .iter()
            .all(|n| n["last_error"].as_str().is_some_and(|e| e.contains("SMTP")))
    );
    // One notification_failed incident for the failing channel (not one per notification),
    // told to SSC on the queue and the file (not on the mail channel that failed).
    let reports = wait_until("the channel's notification_failed incident", limit, || {
        let r: Vec<Value> = rig
            .open_incidents()
            .into_iter()
            .filter(|i| i["kind"] == "notification_failed")
            .collect();
        let detail = r
            .first()
            .and_then(|i| rig.get(&format!("{}/api/v1/incidents/{}", rig.api, i["id"])))?;
        let failures = detail["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["action"] == "opened" || h["action"] == "notification_failed")
            .count();
        (failures >= 2).then_some(r)
    })?;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let channel_incident = reports[0]["id"].as_i64().context("id")?;
    assert!(
        reports
            .iter()
            .all(|r| r["device"] == "channel:mail" && r["severity"] == 2)
    );
    assert!(reports.iter().all(|r| {
        r["summary"].as_str().is_some_and(|s| {
            s.contains("channel mail") && s.contains(&format!("Incident {id}: notification "))
        })
    }));
    let file = rig.dir().join("ssc.jsonl");
    let told_of_failure = |state: &str| -> Vec<Value> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &Value| {
                v["incident"]["kind"] == "notification_failed" && v["incident"]["state"] == state
            })
            .collect()
    };
    let told = wait_until("SSC's file to tell of the failing channel", limit, || {
        let lines = told_of_failure("open");
        (!lines.is_empty()).then_some(lines)
    })?;
    assert_eq!(told.len(), 1, "{told:#?}");
    assert!(
        told.iter()
            .all(|v| v["audience"] == "ssc" && v["channel"] == "ssc-log")
    );
    // The original incident's history says so too.
    let detail = rig
        .get(&format!("{}/api/v1/incidents/{id}", rig.api))
        .context("the incident")?;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "notification_failed")
            .count(),
        2,
        "{actions:?}"
    );
    let (_, metrics) = http_get(&format!("{}/metrics", rig.api))?;
    assert!(
        metrics
            .contains("cnaas_collector_notifications_total{channel=\"mail\",result=\"failed\"} 2"),
        "{metrics}"
    );
    // The mail server comes back: the failed e-mails are delivered late (marked delayed)
    // while the incident is open, and the channel's incident resolves, which SSC hears.
    let mut smtp = smtp;
    smtp.resume()?;
    let delivered = wait_until("the failed e-mails to be delivered late", limit, || {
        let d: Vec<Value> = notifications(&rig, "&channel=mail&state=delivered");
        (d.len() == 2).then_some(d)
    })
    .with_context(|| format!("{:#?}\n{}", notifications(&rig, ""), rig.logs()))?;
    assert!(
        delivered.iter().all(|n| n["delayed"] == true),
        "{delivered:#?}"
    );
    assert_eq!(smtp.mails().len(), 2);
    let resolved = wait_until("the channel's incident to resolve", limit, || {
        let i = rig.get(&format!("{}/api/v1/incidents/{channel_incident}", rig.api))?;
        (i["state"] == "resolved").then_some(i)
    })?;
    assert_eq!(resolved["device"], "channel:mail");
    wait_until(
        "SSC's file to tell that the channel delivers again",
        limit,
        || (!told_of_failure("resolved").is_empty()).then_some(()),
    )?;
    let (_, metrics) = http_get(&format!("{}/metrics", rig.api))?;
    assert!(
        metrics.contains("cnaas_collector_notifications_delayed_total 2"),
        "{metrics}"
    );
    // SSC sends one again: it goes out a second time.
    let one = delivered[0]["id"].as_i64().context("notification id")?;
    let resend = format!("{}/api/v1/notifications/{one}/resend", rig.api);
    let (status, body) = http_call("POST", &resend, Some(ssc_token), None)?;
    assert_eq!(status, 200, "{body}");
    wait_until("the resent e-mail", limit, || {
        (smtp.mails().len() == 3).then_some(())
    })?;
    let customer = TOKENS[1].0;
    assert_eq!(http_call("POST", &resend, Some(customer), None)?.0, 403);
    let missing = format!("{}/api/v1/notifications/999999/resend", rig.api);
    assert_eq!(http_call("POST", &missing, Some(ssc_token), None)?.0, 404);
    Ok(())
}
