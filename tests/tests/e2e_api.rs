//! The incident API with bearer tokens and roles, against the real path (snmpsim, agent,
//! Mosquitto, collector): who sees what, who may do what, and the life cycle
//! open -> acknowledged -> escalated -> resolved -> closed with its history.

use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::rig::{Rig, RigOptions, TOKENS};
use cnaas_tests::{http_call, wait_until};

fn token(role: &str) -> &'static str {
    TOKENS.iter().find(|t| t.2 == role).map_or("", |t| t.0)
}

#[test]
fn roles_and_the_incident_life_cycle() -> Result<()> {
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        ..RigOptions::default()
    })?;
    let api = rig.api.clone();
    let (ssc, unib, other, ro) = (
        token("ssc"),
        token("customer:uni-b"),
        token("customer:other"),
        token("readonly"),
    );
    let list = format!("{api}/api/v1/incidents?state=open");

    assert_eq!(http_call("GET", &list, None, None)?.0, 401, "no token");
    assert_eq!(
        http_call("GET", &list, Some("guess"), None)?.0,
        401,
        "unknown token"
    );

    // The auth scheme is case-insensitive.
    let lower = reqwest::blocking::Client::new()
        .get(&list)
        .header("authorization", format!("bearer {ssc}"))
        .send()?;
    assert_eq!(lower.status().as_u16(), 200);

    rig.set_oper(49, 2)?;
    let incident = wait_until("the incident", Duration::from_secs(15), || {
        let (status, v) = http_call("GET", &list, Some(ssc), None).ok()?;
        (status == 200).then_some(())?;
        v["incidents"].as_array()?.first().cloned()
    })
    .with_context(|| rig.logs())?;
    let id = incident["id"].as_i64().context("id")?;
    let one = format!("{api}/api/v1/incidents/{id}");
    let act = |what: &str| format!("{one}/{what}");

    // Customers see their own incidents only; raw events are for the provider.
    let (s, v) = http_call("GET", &list, Some(unib), None)?;
    assert_eq!((s, v["incidents"].as_array().map(Vec::len)), (200, Some(1)));
    let (s, v) = http_call("GET", &list, Some(other), None)?;
    assert_eq!((s, v["incidents"].as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(http_call("GET", &one, Some(other), None)?.0, 404);
    assert_eq!(
        http_call(
            "GET",
            &format!("{api}/api/v1/incidents?customer=uni-b"),
            Some(other),
            None
        )?
        .0,
        403
    );
    assert_eq!(
        http_call("GET", &format!("{api}/api/v1/events"), Some(unib), None)?.0,
        403
    );
    assert_eq!(http_call("GET", &one, Some(ro), None)?.0, 200);

    // Who may do what.
    assert_eq!(http_call("POST", &act("ack"), Some(ro), None)?.0, 403);
    assert_eq!(http_call("POST", &act("ack"), Some(unib), None)?.0, 403);
    assert_eq!(
        http_call(
            "POST",
            &act("comment"),
            Some(other),
            Some(r#"{"comment":"hi"}"#)
        )?
        .0,
        404
    );
    assert_eq!(
        http_call(
            "POST",
            &act("comment"),
            Some(unib),
            Some(r#"{"comment":"Room 101 is locked"}"#)
        )?
        .0,
        200
    );
    assert_eq!(
        http_call(
            "POST",
            &act("comment"),
            Some(ssc),
            Some(r#"{"comment":""}"#)
        )?
        .0,
        422
    );
    assert_eq!(
        http_call("POST", &act("comment"), Some(ssc), Some("not json"))?.0,
        400
    );
    assert_eq!(http_call("POST", &act("dance"), Some(ssc), None)?.0, 404);
    // Errors axum makes itself are JSON too; a body over 64 KiB is refused.
    let huge = format!(r#"{{"comment":"{}"}}"#, "x".repeat(100_000));
    let (s, v) = http_call("POST", &act("comment"), Some(unib), Some(&huge))?;
    assert_eq!(s, 413, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("65536")),
        "{v}"
    );
    let (s, v) = http_call("DELETE", &list, Some(ssc), None)?;
    assert_eq!(s, 405, "{v}");
    assert!(v["error"].is_string(), "{v}");

    // The life cycle.
    let (s, v) = http_call("POST", &act("ack"), Some(ssc), None)?;
    assert_eq!((s, v["state"].as_str()), (200, Some("acknowledged")), "{v}");
    assert_eq!(http_call("POST", &act("ack"), Some(ssc), None)?.0, 409);
    assert_eq!(
        http_call("POST", &act("close"), Some(ssc), None)?.0,
        422,
        "only a resolved incident closes"
    );
    let (s, v) = http_call(
        "POST",
        &act("escalate"),
        Some(ssc),
        Some(r#"{"comment":"needs 2nd line"}"#),
    )?;
    assert_eq!((s, v["escalated"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(http_call("POST", &act("escalate"), Some(ssc), None)?.0, 409);
    // The uplink is still down: resolving it needs saying so.
    let (s, v) = http_call("POST", &act("resolve"), Some(ssc), None)?;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("active alarms")),
        "{v}"
    );
    let (s, v) = http_call(
        "POST",
        &act("resolve"),
        Some(ssc),
        Some(r#"{"force":true,"comment":"known, cable ordered"}"#),
    )?;
    assert_eq!((s, v["state"].as_str()), (200, Some("resolved")), "{v}");
    let (s, v) = http_call("POST", &act("close"), Some(ssc), None)?;
    assert_eq!((s, v["state"].as_str()), (200, Some("closed")), "{v}");
    assert_eq!(
        http_call(
            "POST",
            &format!("{api}/api/v1/incidents/999999/ack"),
            Some(ssc),
            None
        )?
        .0,
        404
    );

    let who_did: Vec<(String, String)> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["actor"] != "system")
        .map(|h| {
            (
                h["action"].as_str().unwrap_or_default().to_owned(),
                h["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("comment", "uni-b-helpdesk"),
        ("acknowledged", "ssc-desk"),
        ("escalated", "ssc-desk"),
        ("resolved", "ssc-desk"),
        ("closed", "ssc-desk"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(who_did, expect, "{v:#}");
    // The uplink is still down: after its hold time the fault is a new incident, not hidden.
    let again = wait_until(
        "a new incident for the port",
        Duration::from_secs(15),
        || {
            let (_, v) = http_call("GET", &list, Some(ssc), None).ok()?;
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["id"].as_i64() != Some(id) && i["if_index"] == 49)
                .cloned()
        },
    )
    .with_context(|| rig.logs())?;
    assert_eq!(again["kind"], "link_down", "{again}");
    Ok(())
}

#[test]
fn changes_the_eight_day_rule_and_maintenance() -> Result<()> {
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        ..RigOptions::default()
    })?;
    let api = rig.api.clone();
    let url = format!("{api}/api/v1/changes");
    let now = chrono::Utc::now();
    let window = |start: chrono::DateTime<chrono::Utc>, kind: &str| {
        format!(
            r#"{{"title":"Software upgrade","kind":"{kind}","starts_at":"{}","ends_at":"{}","sites":["b12"]}}"#,
            start.to_rfc3339(),
            (start + chrono::TimeDelta::hours(2)).to_rfc3339()
        )
    };
    // Tomorrow is too early for a planned change: 422 with the earliest allowed date.
    let (s, v) = http_call(
        "POST",
        &url,
        Some(token("ssc")),
        Some(&window(now + chrono::TimeDelta::days(1), "planned")),
    )?;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["earliest_start"].as_str().is_some_and(|d| d.len() == 10),
        "{v}"
    );
    assert_eq!(
        http_call(
            "POST",
            &url,
            Some(token("readonly")),
            Some(&window(now, "emergency"))
        )?
        .0,
        403
    );
    // An emergency change is accepted at once; its window covers the switch from now on.
    let (s, v) = http_call(
        "POST",
        &url,
        Some(token("ssc")),
        Some(&window(now - chrono::TimeDelta::minutes(1), "emergency")),
    )?;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "active", "inside its window: {v}");
    assert_eq!(v["devices"], serde_json::json!(["a-b12-01"]));
    assert_eq!(v["customers"], serde_json::json!(["uni-b"]));
    let (_, v) = http_call("GET", &url, Some(token("customer:uni-b")), None)?;
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(1));
    let (_, v) = http_call("GET", &url, Some(token("customer:other")), None)?;
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(0));
    // An uplink down inside the window: the incident is flagged.
    rig.set_oper(49, 2)?;
    let list = format!("{api}/api/v1/incidents?state=open");
    let incident = wait_until("the incident", Duration::from_secs(15), || {
        let (_, v) = http_call("GET", &list, Some(token("ssc")), None).ok()?;
        v["incidents"].as_array()?.first().cloned()
    })
    .with_context(|| rig.logs())?;
    assert_eq!(incident["in_maintenance"], true, "{incident:#}");
    Ok(())
}
