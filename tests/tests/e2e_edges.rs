//! Incidents at the edges, end to end through the real path (snmpsim -> agent -> Mosquitto ->
//! collector -> aiosmtpd), each test reproducing one of the situations of issue #14 and
//! asserting the behaviour `docs/incidents.md` describes:
//! a re-open inside and after a change window; a told link incident taken into its device's
//! incident (merged, no false "resolved"); a port that recovers while the agent is down; the
//! time of a held fault; an outage replayed after a broker outage.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnaas_tests::rig::{Rig, RigOptions, TOKENS, notify_config};
use cnaas_tests::sinks::{SmtpSink, WebhookReceiver};
use cnaas_tests::{http_call, wait_until};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(25);

fn rig(smtp: &SmtpSink, sms: &WebhookReceiver, rules: &str, persistent: bool) -> Result<Rig> {
    Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        persistent_broker: persistent,
        collector_rules: rules.into(),
        collector_extra: notify_config(smtp.port, &sms.url(), 3),
        files: vec![(
            "sms.token".into(),
            format!("{}\n", cnaas_tests::rig::SMS_TOKEN),
        )],
        // Reachability by SNMP: the switch is on 127.0.0.1, which always answers ping.
        agent_defaults: "reachability = \"snmp\"\n".into(),
        ..RigOptions::default()
    })
}

fn notifications(rig: &Rig, incident: i64) -> Vec<Value> {
    rig.get(&format!(
        "{}/api/v1/notifications?incident={incident}&limit=1000",
        rig.api
    ))
    .and_then(|v| v["notifications"].as_array().cloned())
    .unwrap_or_default()
}

fn incident(rig: &Rig, id: i64) -> Option<Value> {
    rig.get(&format!("{}/api/v1/incidents/{id}", rig.api))
}

/// (transition, audience) of an incident's notifications.
fn told(rig: &Rig, id: i64) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = notifications(rig, id)
        .iter()
        .filter(|n| n["state"] != "superseded")
        .map(|n| {
            (
                n["transition"].as_str().unwrap_or_default().to_owned(),
                n["audience"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn change(
    rig: &Rig,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let body = format!(
        r#"{{"title":"Module swap","kind":"emergency","starts_at":"{}","ends_at":"{}","sites":["b12"]}}"#,
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    let (s, v) = http_call(
        "POST",
        &format!("{}/api/v1/changes", rig.api),
        Some(TOKENS[0].0),
        Some(&body),
    )?;
    if s != 201 {
        bail!("the change was refused: {s} {v}");
    }
    Ok(())
}

#[test]
fn a_reopen_follows_the_change_window_both_ways() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(
        &smtp,
        &sms,
        "link_hold = \"0s\"\ngroup_window = \"0s\"\n",
        false,
    )?;
    // Before any window: opened and resolved, the customer told of both.
    rig.set_oper(49, 2)?;
    let inc = wait_until("the incident", LIMIT, || rig.open_port_incident(49))
        .with_context(|| rig.logs())?;
    let id = inc["id"].as_i64().context("id")?;
    rig.set_oper(49, 1)?;
    wait_until("it to resolve", LIMIT, || {
        (incident(&rig, id)?["state"] == "resolved").then_some(())
    })?;
    // A window starts; the fault comes back inside it: re-opened, flagged, SSC only.
    let now = chrono::Utc::now();
    change(
        &rig,
        now - chrono::TimeDelta::minutes(1),
        now + chrono::TimeDelta::seconds(12),
    )?;
    rig.set_oper(49, 2)?;
    let reopened = wait_until("the re-open inside the window", LIMIT, || {
        let i = incident(&rig, id)?;
        (i["state"] == "open").then_some(i)
    })?;
    assert_eq!(reopened["in_maintenance"], true, "{reopened:#}");
    wait_until("SSC to be told of the re-open", LIMIT, || {
        told(&rig, id)
            .contains(&("reopened-1".into(), "ssc".into()))
            .then_some(())
    })?;
    assert!(
        !told(&rig, id).contains(&("reopened-1".into(), "incident".into())),
        "the customer was paged inside the window: {:?}",
        told(&rig, id)
    );
    // Resolved inside the window, re-opened after it ended: the customer is told.
    rig.set_oper(49, 1)?;
    wait_until("it to resolve in the window", LIMIT, || {
        (incident(&rig, id)?["state"] == "resolved").then_some(())
    })?;
    std::thread::sleep(
        (now + chrono::TimeDelta::seconds(13) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    );
    rig.set_oper(49, 2)?;
    let after = wait_until("the re-open after the window", LIMIT, || {
        let i = incident(&rig, id)?;
        (i["state"] == "open").then_some(i)
    })?;
    assert_eq!(after["in_maintenance"], false, "{after:#}");
    wait_until(
        "the customer to be told of the fault after the window",
        LIMIT,
        || {
            told(&rig, id)
                .contains(&("reopened-2".into(), "incident".into()))
                .then_some(())
        },
    )
    .with_context(|| format!("{:?}", told(&rig, id)))?;
    Ok(())
}

#[test]
fn a_told_link_incident_taken_in_by_its_device_is_merged_and_a_restart_syncs_state() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let mut rig = rig(
        &smtp,
        &sms,
        "link_hold = \"0s\"\ngroup_window = \"0s\"\n",
        false,
    )?;
    rig.set_oper(49, 2)?;
    let link = wait_until("the link incident", LIMIT, || rig.open_port_incident(49))
        .with_context(|| rig.logs())?;
    let link_id = link["id"].as_i64().context("id")?;
    wait_until("the customer's e-mail about the link", LIMIT, || {
        smtp.mails()
            .iter()
            .any(|m| {
                m.to.contains("servicedesk@uni-b.no")
                    && m.key.contains(&format!("inc-{link_id}/opened-1"))
            })
            .then_some(())
    })?;
    // The switch stops answering: its device incident takes the link in. The link incident
    // is merged into it, not resolved, and nobody hears "resolved".
    rig.snmpsim.stop()?;
    let device = wait_until("the device incident", LIMIT, || {
        rig.open_incidents()
            .into_iter()
            .find(|i| i["kind"] == "device_down" && i["device"] == "a-b12-01")
    })
    .with_context(|| rig.logs())?;
    let device_id = device["id"].as_i64().context("id")?;
    let merged = wait_until("the link incident to be merged", LIMIT, || {
        let i = incident(&rig, link_id)?;
        (i["state"] == "merged").then_some(i)
    })?;
    assert_eq!(merged["merged_into"], device_id);
    let history: Vec<&str> = merged["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["detail"].as_str())
        .collect();
    assert!(
        history.contains(&format!("merged into #{device_id}").as_str()),
        "{history:?}"
    );
    assert!(
        !told(&rig, link_id)
            .iter()
            .any(|(t, _)| t.starts_with("resolved")),
        "a false resolution: {:?}",
        told(&rig, link_id)
    );
    // The agent goes away; the switch comes back and the port recovers meanwhile. The
    // restarted agent's state sync clears both alarms: the device incident resolves.
    rig.agent.terminate()?;
    rig.snmpsim.resume()?;
    rig.set_oper(49, 1)?;
    rig.restart_agent()?;
    wait_until(
        "the device incident to resolve after the state sync",
        LIMIT,
        || (incident(&rig, device_id)?["state"] == "resolved").then_some(()),
    )
    .with_context(|| rig.logs())?;
    // Whoever heard of the link incident hears that the fault ended (the device incident's
    // resolution), once.
    let ends: Vec<(String, String)> = told(&rig, device_id)
        .into_iter()
        .filter(|(t, _)| t.starts_with("resolved"))
        .collect();
    assert!(
        ends.contains(&("resolved-1".into(), "incident".into())),
        "{ends:?}"
    );
    assert_eq!(
        ends.iter().filter(|(_, a)| a == "incident").count(),
        1,
        "{ends:?}"
    );
    assert!(
        rig.open_incidents().is_empty(),
        "{:#?}",
        rig.open_incidents()
    );
    Ok(())
}

#[test]
fn a_held_fault_starts_at_its_event_and_an_outage_replayed_late_is_still_an_incident() -> Result<()>
{
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let mut rig = rig(
        &smtp,
        &sms,
        "link_hold = \"3s\"\ngroup_window = \"0s\"\n",
        true,
    )?;
    // A fault held 3 s: the incident's first time is the link_down event's, which is linked.
    rig.set_oper(49, 2)?;
    let inc = wait_until("the held incident", LIMIT, || rig.open_port_incident(49))
        .with_context(|| rig.logs())?;
    let id = inc["id"].as_i64().context("id")?;
    let detail = incident(&rig, id).context("detail")?;
    let down = detail["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "link_down")
        .cloned()
        .with_context(|| format!("the link_down event is not linked: {detail:#}"))?;
    assert_eq!(detail["opened_at"], down["observed_at"], "{detail:#}");
    // Port 50 goes down for 6 s while the broker is away, and comes back before it returns:
    // both events arrive at once, and the outage (longer than the hold) is an incident,
    // opened and resolved at the times it happened.
    rig.mqtt.stop()?;
    rig.set_oper(50, 2)?;
    std::thread::sleep(Duration::from_secs(6));
    rig.set_oper(50, 1)?;
    std::thread::sleep(Duration::from_secs(2));
    rig.mqtt.resume()?;
    let replayed = wait_until("the replayed outage's incident", LIMIT, || {
        rig.get(&format!("{}/api/v1/incidents?limit=100", rig.api))?["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["if_index"] == 50 && i["kind"] == "link_down")
            .cloned()
    })
    .with_context(|| rig.logs())?;
    let rid = replayed["id"].as_i64().context("id")?;
    let r = wait_until("it to resolve", LIMIT, || {
        let i = incident(&rig, rid)?;
        (i["state"] == "resolved").then_some(i)
    })?;
    let at = |kind: &str| -> Option<chrono::DateTime<chrono::Utc>> {
        r["events"].as_array()?.iter().find(|e| e["kind"] == kind)?["observed_at"]
            .as_str()?
            .parse()
            .ok()
    };
    let (opened, resolved): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = (
        r["opened_at"].as_str().context("opened_at")?.parse()?,
        r["resolved_at"].as_str().context("resolved_at")?.parse()?,
    );
    assert_eq!(Some(opened), at("link_down"), "{r:#}");
    assert_eq!(Some(resolved), at("link_up"), "{r:#}");
    assert!(resolved - opened >= chrono::TimeDelta::seconds(5), "{r:#}");
    Ok(())
}

#[test]
fn many_probes_cut_off_at_once_are_one_incident() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(
        &smtp,
        &sms,
        "link_hold = \"0s\"\ngroup_window = \"5s\"\n",
        false,
    )?;
    // Ten site probes, each an MQTT client with the agent's last will; all ten are cut off
    // at once (killed: the broker sends their wills).
    let mut probes = Vec::new();
    for n in 0..10 {
        let id = format!("probe-{n}");
        let mut cmd = std::process::Command::new(cnaas_tests::find_program("mosquitto_sub")?);
        cmd.args(["-h", "127.0.0.1", "-p", &rig.mqtt.port.to_string()])
            .args(["-i", &id, "-t", "cnaas/v1/nothing", "-k", "5"])
            .args(["--will-topic", &format!("cnaas/v1/agents/{id}/status")])
            .args([
                "--will-payload",
                &format!(r#"{{"v":1,"agent":"{id}","status":"offline"}}"#),
            ])
            .args(["--will-qos", "1", "--will-retain"]);
        probes.push(cnaas_tests::Process::spawn(
            &id,
            cmd,
            &rig.dir().join(format!("{id}.log")),
        )?);
    }
    std::thread::sleep(Duration::from_millis(800));
    for p in &mut probes {
        p.kill_hard()?;
    }
    let offline = wait_until("one agent_offline incident listing all ten", LIMIT, || {
        let open: Vec<Value> = rig
            .open_incidents()
            .into_iter()
            .filter(|i| i["kind"] == "agent_offline")
            .collect();
        let detail = incident(&rig, open.first()?["id"].as_i64()?)?;
        (detail["alarms"].as_array()?.len() == 10).then_some((open, detail))
    })
    .with_context(|| rig.logs())?;
    assert_eq!(offline.0.len(), 1, "{:#?}", offline.0);
    Ok(())
}
