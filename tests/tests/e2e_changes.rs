//! Changes end to end with real peers (snmpsim, Mosquitto, aiosmtpd, the collector's API):
//! notices for announced, rescheduled and cancelled changes; a maintenance window that keeps
//! an uplink fault from the customer until it ends; VLAN changes on access and uplink ports;
//! change orders that only a customer's technical contact may place.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{TimeDelta, Utc};
use cnaas_tests::rig::{CONTACT_TOKENS, Rig, RigOptions, SMS_TOKEN, TOKENS, notify_config};
use cnaas_tests::sinks::{Mail, SmtpSink, WebhookReceiver};
use cnaas_tests::{http_call, wait_until};
use serde_json::{Value, json};

const SSC: &str = TOKENS[0].0;

fn rig(smtp: &SmtpSink, sms: &WebhookReceiver, agent_defaults: &str) -> Result<Rig> {
    Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        agent_defaults: agent_defaults.into(),
        collector_extra: notify_config(smtp.port, &sms.url(), 8),
        files: vec![("sms.token".into(), format!("{SMS_TOKEN}\n"))],
        ..RigOptions::default()
    })
}

fn call(rig: &Rig, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    http_call(
        method,
        &format!("{}{path}", rig.api),
        Some(token),
        body.as_deref(),
    )
    .unwrap_or((0, Value::Null))
}

fn mails_to(smtp: &SmtpSink, to: &str) -> Vec<Mail> {
    smtp.mails()
        .into_iter()
        .filter(|m| m.to.contains(to))
        .collect()
}

fn ssc_log(rig: &Rig) -> Vec<Value> {
    std::fs::read_to_string(rig.dir().join("ssc.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_maintenance_window_keeps_a_fault_from_the_customer_until_it_ends() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(&smtp, &sms, "")?;
    let limit = Duration::from_secs(20);
    let now = Utc::now();
    let (status, change) = call(
        &rig,
        "POST",
        "/api/v1/changes",
        SSC,
        Some(json!({
            "title": "Replace the uplink optics",
            "kind": "emergency",
            "impact": "Building B12 is without network for up to 10 minutes.",
            "starts_at": now - TimeDelta::seconds(1),
            "ends_at": now + TimeDelta::seconds(10),
            "devices": ["a-b12-01"],
        })),
    );
    assert_eq!(status, 201, "{change}");
    // The emergency notice: the change point, and the technical contacts asked about timing.
    let notice = wait_until("the change notice", limit, || {
        mails_to(&smtp, "change@uni-b.no").into_iter().next()
    })
    .with_context(|| rig.logs())?;
    assert!(
        notice
            .subject
            .starts_with("[CNaaS] Nødendring (varsel): Replace the uplink optics"),
        "{}",
        notice.subject
    );
    assert!(
        notice
            .body
            .contains("Forventet påvirkning: Building B12 is without network")
    );
    assert!(
        notice
            .body
            .contains("Spørsmål: Sikt kundesenter, kontakt@sikt.example")
    );
    assert!(notice.body.contains("Berørte enheter: a-b12-01"));
    let tech = wait_until("the technical contact's notice", limit, || {
        mails_to(&smtp, "ola.nordmann@uni-b.no").into_iter().next()
    })?;
    assert!(
        tech.body.contains("innspill til tidspunktet"),
        "{}",
        tech.body
    );

    // The uplink fails inside the window: SSC hears of it, the customer does not.
    rig.set_oper(49, 2)?;
    let inc = wait_until("the incident", limit, || rig.open_port_incident(49))
        .with_context(|| rig.logs())?;
    assert_eq!(inc["in_maintenance"], true);
    let id = inc["id"].as_i64().context("id")?;
    wait_until("SSC to be told", limit, || {
        ssc_log(&rig)
            .into_iter()
            .find(|v| v["incident"]["id"] == id && v["transition"] == "opened-1")
    })?;
    assert!(
        mails_to(&smtp, "servicedesk@uni-b.no").is_empty(),
        "the customer is not told during the window"
    );

    // The window ends with the uplink still down: now the customer hears of it.
    let mail = wait_until("the e-mail after the window", limit, || {
        mails_to(&smtp, "servicedesk@uni-b.no").into_iter().next()
    })
    .with_context(|| rig.logs())?;
    assert!(
        mail.subject.contains("Fortsatt feil etter vedlikehold"),
        "{}",
        mail.subject
    );
    assert_eq!(
        mail.key,
        format!("inc-{id}/maintenance_ended-1/incident/mail/servicedesk@uni-b.no")
    );
    assert!(Utc::now() >= now + TimeDelta::seconds(10));
    let (_, detail) = call(&rig, "GET", &format!("/api/v1/incidents/{id}"), SSC, None);
    assert_eq!(detail["in_maintenance"], false);
    assert!(
        detail["history"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["action"] == "maintenance_ended")
    );
    // SSC hands it to 2nd line with the escalation report (on the queue), and asks the
    // customer's local support for hands-on work.
    let (status, _) = call(
        &rig,
        "POST",
        &format!("/api/v1/incidents/{id}/escalate"),
        SSC,
        Some(json!({ "comment": "Optics replaced, still dark: check the fibre" })),
    );
    assert_eq!(status, 200);
    let second = wait_until("the 2nd-line report", limit, || {
        let (_, rows) = call(
            &rig,
            "GET",
            &format!("/api/v1/notifications?incident={id}"),
            SSC,
            None,
        );
        rows["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["audience"] == "secondline" && n["state"] == "delivered")
            .cloned()
    })?;
    assert_eq!(second["channel"], "ssc-queue");
    assert_eq!(
        second["detail"],
        "Optics replaced, still dark: check the fibre"
    );
    assert_eq!(
        second["payload"]["escalation"]["organisation"],
        "Universitetet i B"
    );
    assert_eq!(second["payload"]["escalation"]["device"], "a-b12-01");
    let (status, e) = call(
        &rig,
        "POST",
        &format!("/api/v1/incidents/{id}/local-work"),
        SSC,
        None,
    );
    assert_eq!(status, 422, "local work needs to say what: {e}");
    let (status, _) = call(
        &rig,
        "POST",
        &format!("/api/v1/incidents/{id}/local-work"),
        SSC,
        Some(json!({ "comment": "Re-seat the fibre in patch panel 2, port 14, room 104" })),
    );
    assert_eq!(status, 200);
    let work = wait_until("the local-work request", limit, || {
        mails_to(&smtp, "helpdesk@uni-b.no").into_iter().next()
    })?;
    assert!(
        work.subject.contains("Forespørsel om lokalt arbeid"),
        "{}",
        work.subject
    );
    assert!(
        work.body
            .contains("Arbeid som trengs: Re-seat the fibre in patch panel 2, port 14, room 104"),
        "{}",
        work.body
    );
    assert!(work.body.contains("Plassering: b12"), "{}", work.body);
    // ... and of its resolution.
    rig.set_oper(49, 1)?;
    wait_until("the resolution e-mail", limit, || {
        mails_to(&smtp, "servicedesk@uni-b.no")
            .into_iter()
            .find(|m| m.key.contains("/resolved-1/"))
    })?;
    Ok(())
}

#[test]
fn planned_changes_get_one_notice_per_announcement_reschedule_and_cancellation() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(&smtp, &sms, "")?;
    let limit = Duration::from_secs(20);
    let earliest = cnaas_collector::changes::earliest_start(Utc::now());
    let noon = |d: chrono::NaiveDate| d.and_hms_opt(12, 0, 0).map(|t| t.and_utc());
    let day_before = earliest.pred_opt().and_then(noon).context("date")?;
    let first = noon(earliest).context("date")?;
    let request = |start: chrono::DateTime<Utc>| {
        json!({
            "title": "Half-yearly software upgrade",
            "description": "JunOS upgrade of the access switches in B12.",
            "kind": "planned",
            "starts_at": start,
            "ends_at": start + TimeDelta::hours(2),
            "sites": ["b12"],
        })
    };
    // The day before the earliest allowed date is refused, and the answer says which date.
    let (status, refused) = call(
        &rig,
        "POST",
        "/api/v1/changes",
        SSC,
        Some(request(day_before)),
    );
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["earliest_start"], earliest.to_string());
    // A customer cannot announce one.
    let (status, _) = call(
        &rig,
        "POST",
        "/api/v1/changes",
        TOKENS[1].0,
        Some(request(first)),
    );
    assert_eq!(status, 403);
    // The boundary day itself is accepted.
    let (status, change) = call(&rig, "POST", "/api/v1/changes", SSC, Some(request(first)));
    assert_eq!(status, 201, "{change}");
    let cid = change["id"].as_i64().context("id")?;
    assert_eq!(change["customers"], json!(["uni-b"]));
    let subjects = |n: usize| {
        wait_until("the change notices", limit, || {
            let m = mails_to(&smtp, "change@uni-b.no");
            (m.len() >= n).then(|| m.iter().map(|m| m.subject.clone()).collect::<Vec<_>>())
        })
    };
    assert!(subjects(1)?[0].starts_with(
        "[CNaaS] Planlagt endring (varsel): Half-yearly software upgrade - Universitetet i B"
    ));

    // Rescheduled to a day later: one more notice. Too early: refused.
    let later = first + TimeDelta::days(1);
    let (status, moved) = call(
        &rig,
        "POST",
        &format!("/api/v1/changes/{cid}/reschedule"),
        SSC,
        Some(
            json!({ "starts_at": later, "ends_at": later + TimeDelta::hours(2), "reason": "Vendor delay" }),
        ),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["revision"], 2);
    let (status, _) = call(
        &rig,
        "POST",
        &format!("/api/v1/changes/{cid}/reschedule"),
        SSC,
        Some(json!({ "starts_at": day_before, "ends_at": day_before + TimeDelta::hours(2) })),
    );
    assert_eq!(status, 422);
    let s = subjects(2)?;
    assert!(s[1].contains("Planlagt endring (nytt tidspunkt)"), "{s:?}");
    let rescheduled = mails_to(&smtp, "change@uni-b.no").remove(1);
    assert!(
        rescheduled.body.contains("Begrunnelse: Vendor delay"),
        "{}",
        rescheduled.body
    );

    // Cancelled: one more notice; twice is a conflict.
    let (status, cancelled) = call(
        &rig,
        "POST",
        &format!("/api/v1/changes/{cid}/cancel"),
        SSC,
        Some(json!({ "reason": "Not needed after all" })),
    );
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (status, _) = call(
        &rig,
        "POST",
        &format!("/api/v1/changes/{cid}/cancel"),
        SSC,
        None,
    );
    assert_eq!(status, 409);
    let s = subjects(3)?;
    assert!(s[2].contains("Planlagt endring (avlyst)"), "{s:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mails_to(&smtp, "change@uni-b.no").len(),
        3,
        "one notice each"
    );
    // A planned change asks nobody about timing; customer B is not affected.
    assert!(mails_to(&smtp, "ola.nordmann@uni-b.no").is_empty());
    assert!(smtp.mails().iter().all(|m| !m.to.contains("uni-c.no")));
    // SSC has its copies.
    let copies: Vec<Value> = ssc_log(&rig)
        .into_iter()
        .filter(|v| v["change"]["id"] == cid)
        .collect();
    let mut transitions: Vec<&str> = copies
        .iter()
        .filter_map(|v| v["transition"].as_str())
        .collect();
    transitions.sort_unstable();
    assert_eq!(transitions, ["announced-1", "cancelled-1", "rescheduled-2"]);
    Ok(())
}

#[test]
fn only_a_technical_contact_may_order_a_change() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(&smtp, &sms, "")?;
    let order = json!({
        "title": "Open VLAN 30 on the access ports of room 104",
        "description": "New lab equipment.",
    });
    let [tech, admin, stranger] = CONTACT_TOKENS;
    let (status, placed) = call(
        &rig,
        "POST",
        "/api/v1/change-orders",
        tech.0,
        Some(order.clone()),
    );
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["contact"], "ola.nordmann@uni-b.no");
    assert_eq!(placed["customer"], "uni-b");
    let (status, e) = call(
        &rig,
        "POST",
        "/api/v1/change-orders",
        admin.0,
        Some(order.clone()),
    );
    assert_eq!(status, 403);
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("administrative contact")),
        "{e}"
    );
    let (status, e) = call(
        &rig,
        "POST",
        "/api/v1/change-orders",
        stranger.0,
        Some(order.clone()),
    );
    assert_eq!(status, 403);
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("not a registered technical contact")
                && m.contains("through one of them")),
        "{e}"
    );
    // The helpdesk token names no person; SSC announces changes rather than ordering them.
    let (status, _) = call(
        &rig,
        "POST",
        "/api/v1/change-orders",
        TOKENS[1].0,
        Some(order.clone()),
    );
    assert_eq!(status, 403);
    let (status, _) = call(&rig, "POST", "/api/v1/change-orders", SSC, Some(order));
    assert_eq!(status, 403);
    // The accepted order is listed and reaches SSC's queue.
    let (_, list) = call(&rig, "GET", "/api/v1/change-orders", tech.0, None);
    assert_eq!(list["change_orders"].as_array().map(Vec::len), Some(1));
    let queued = wait_until("the order in SSC's queue", Duration::from_secs(10), || {
        ssc_log(&rig)
            .into_iter()
            .find(|v| v["change_order"]["id"] == placed["id"])
    })?;
    assert_eq!(queued["audience"], "ssc");
    assert!(
        queued["subject"]
            .as_str()
            .is_some_and(|s| s.contains("Endringsbestilling: Universitetet i B"))
    );
    Ok(())
}

#[test]
fn vlan_changes_on_access_ports_are_records_on_uplinks_incidents() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(&smtp, &sms, "vlan_interval = \"1s\"\n")?;
    let limit = Duration::from_secs(20);
    let events = |kind: &str| -> Vec<Value> {
        let (_, v) = call(
            &rig,
            "GET",
            &format!("/api/v1/events?device=a-b12-01&kind={kind}&limit=1000"),
            SSC,
            None,
        );
        v["events"].as_array().cloned().unwrap_or_default()
    };
    // The agent knows the VLANs before anything changes.
    wait_until("the first VLAN poll", limit, || {
        let (_, text) = cnaas_tests::http_get(&format!("{}/metrics", rig.metrics)).ok()?;
        text.lines()
            .any(|l| l.starts_with("dot1qPvid{"))
            .then_some(())
    })?;
    // The customer moves access port 5 to VLAN 20 through PortAdmin, which bounces the port.
    rig.set_pvid(105, 20)?;
    rig.set_oper(5, 2)?;
    std::thread::sleep(Duration::from_millis(1500));
    rig.set_oper(5, 1)?;
    let ev = wait_until("the vlan_changed record", limit, || {
        events("vlan_changed")
            .into_iter()
            .find(|e| e["if_index"] == 5)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(ev["attrs"]["old"], 10);
    assert_eq!(ev["attrs"]["new"], 20);
    assert_eq!(ev["role"], "access");
    wait_until("the bounce to be recorded", limit, || {
        events("link_up").into_iter().find(|e| e["if_index"] == 5)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        rig.open_incidents().is_empty(),
        "{:?}",
        rig.open_incidents()
    );
    assert_eq!(events("vlan_changed").len(), 1, "one record");
    // The VLAN of the uplink changing is an incident (severity 3), told to the customer.
    rig.set_pvid(149, 99)?;
    let inc = wait_until("the uplink VLAN incident", limit, || {
        rig.open_incidents()
            .into_iter()
            .find(|i| i["kind"] == "vlan_changed")
    })
    .with_context(|| rig.logs())?;
    assert_eq!(inc["severity"], 3);
    assert_eq!(inc["if_name"], "Te1/1/1");
    wait_until("the customer's e-mail", limit, || {
        mails_to(&smtp, "servicedesk@uni-b.no").into_iter().next()
    })?;
    Ok(())
}

#[test]
fn the_change_cli_announces_lists_and_cancels_through_the_api() -> Result<()> {
    let smtp = SmtpSink::start()?;
    let sms = WebhookReceiver::start(0)?;
    let rig = rig(&smtp, &sms, "")?;
    let cli = |args: &[&str], token: &str| -> Result<(i32, String, String)> {
        let out = std::process::Command::new(cnaas_tests::binary("cnaas-change")?)
            .arg("--api")
            .arg(&rig.api)
            .args(args)
            .env("CNAAS_TOKEN", token)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let now = Utc::now();
    let (start, end) = (
        (now + TimeDelta::hours(1)).to_rfc3339(),
        (now + TimeDelta::hours(2)).to_rfc3339(),
    );
    let (code, out, err) = cli(
        &[
            "announce",
            "--kind",
            "emergency",
            "--title",
            "Replace a PSU",
            "--device",
            "a-b12-01",
            "--start",
            &start,
            "--end",
            &end,
        ],
        SSC,
    )?;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out)?;
    let id = created["id"].as_i64().context("id")?;
    // Too early for a planned change: refused, with the earliest date.
    let (code, _, err) = cli(
        &[
            "announce", "--title", "Upgrade", "--site", "b12", "--start", &start, "--end", &end,
        ],
        SSC,
    )?;
    assert_eq!(code, 1);
    assert!(err.contains("the earliest allowed start date is"), "{err}");
    // A customer token may not announce.
    let (code, _, err) = cli(
        &[
            "announce",
            "--kind",
            "emergency",
            "--title",
            "x",
            "--device",
            "a-b12-01",
            "--start",
            &start,
            "--end",
            &end,
        ],
        TOKENS[1].0,
    )?;
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    let (code, out, _) = cli(&["list"], SSC)?;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out)?;
    assert_eq!(list["changes"][0]["id"], id);
    let (code, out, err) = cli(
        &["cancel", &id.to_string(), "--reason", "PSU arrived broken"],
        SSC,
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?["state"], "cancelled");
    // A change order from the technical contact, through the same tool.
    let (code, out, err) = cli(
        &["order", "--title", "Move room 104 to VLAN 30"],
        CONTACT_TOKENS[0].0,
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?["state"], "submitted");
    // No token: a clear error, exit 2.
    let out = std::process::Command::new(cnaas_tests::binary("cnaas-change")?)
        .args(["--api", &rig.api, "list"])
        .env_remove("CNAAS_TOKEN")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CNAAS_TOKEN"));
    Ok(())
}
