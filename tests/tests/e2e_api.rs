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
        ("public_comment", "uni-b-helpdesk"),
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

/// Reads a server-sent event stream on a thread; its `changed` events arrive on the channel.
fn sse(url: &str, cookie: &str) -> Result<std::sync::mpsc::Receiver<String>> {
    use std::io::BufRead;
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()?
        .get(url)
        .header("cookie", cookie)
        .send()?;
    anyhow::ensure!(
        resp.status().is_success(),
        "stream answered {}",
        resp.status()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data:")
                && tx.send(data.trim().to_owned()).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

/// Signs in to the dashboard with `token`; returns the session cookie.
fn dashboard_session(base: &str, token: &str) -> Result<String> {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (login_cookie, nonce) = cnaas_tests::sign_in_form(base)?;
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &login_cookie)
        .body(format!("token={token}&csrf={nonce}"))
        .send()?;
    anyhow::ensure!(
        r.status().as_u16() == 303,
        "sign-in answered {}",
        r.status()
    );
    Ok(r.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn a_customer_sees_nothing_internal_anywhere() -> Result<()> {
    // The SMS gateway's URL holds a key in its query string, and nothing listens there: its
    // notifications fail with an error text.
    let dead = cnaas_tests::free_port();
    let webhook = format!("http://127.0.0.1:{dead}/sms?apikey=S3CR3T-KEY-77");
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        collector_extra: cnaas_tests::rig::notify_config(cnaas_tests::free_port(), &webhook, 8),
        files: vec![(
            "sms.token".into(),
            format!("{}\n", cnaas_tests::rig::SMS_TOKEN),
        )],
        ..RigOptions::default()
    })?;
    let api = rig.api.clone();
    let (ssc, unib, other) = (
        token("ssc"),
        token("customer:uni-b"),
        token("customer:other"),
    );
    // Both customers watch their live streams from the start.
    let stream = format!("{api}/ui/stream");
    let unib_stream = sse(&stream, &dashboard_session(&api, unib)?)?;
    let other_stream = sse(&stream, &dashboard_session(&api, other)?)?;

    rig.set_oper(49, 2)?;
    let list = format!("{api}/api/v1/incidents?state=open");
    let id = wait_until("the incident", Duration::from_secs(15), || {
        let (_, v) = http_call("GET", &list, Some(ssc), None).ok()?;
        v["incidents"].as_array()?.first()?["id"].as_i64()
    })
    .with_context(|| rig.logs())?;
    let one = format!("{api}/api/v1/incidents/{id}");
    let post = |what: &str, who: &str, body: &str| {
        http_call("POST", &format!("{one}/{what}"), Some(who), Some(body)).map(|r| r.0)
    };
    assert_eq!(
        post(
            "comment",
            ssc,
            r#"{"comment":"INTERNAL-NOTE-123 the core is flaky"}"#
        )?,
        200
    );
    assert_eq!(
        post(
            "escalate",
            ssc,
            r#"{"comment":"ESCALATION-NOTE-9 call Per"}"#
        )?,
        200
    );
    assert_eq!(
        post(
            "comment",
            ssc,
            r#"{"comment":"PUBLIC-NOTE-456 we are on it","public":true}"#
        )?,
        200
    );
    assert_eq!(
        post(
            "comment",
            unib,
            r#"{"comment":"CUSTOMER-NOTE-1 students affected"}"#
        )?,
        200
    );
    // Comments are bounded in size.
    let big = format!(r#"{{"comment":"{}"}}"#, "x".repeat(5000));
    assert_eq!(post("comment", unib, &big)?, 413);
    // The SMS to uni-b's technical contact has failed at least once.
    wait_until("a failed SMS attempt", Duration::from_secs(20), || {
        let (_, v) = http_call(
            "GET",
            &format!("{api}/api/v1/notifications?incident={id}"),
            Some(ssc),
            None,
        )
        .ok()?;
        v["notifications"]
            .as_array()?
            .iter()
            .find(|n| n["channel"] == "sms-gw" && n["last_error"].is_string())
            .cloned()
    })
    .with_context(|| rig.logs())?;

    // SSC sees everything, and no secret of the URL.
    let (_, full) = http_call("GET", &one, Some(ssc), None)?;
    let text = full.to_string();
    for want in [
        "INTERNAL-NOTE-123",
        "ESCALATION-NOTE-9",
        "PUBLIC-NOTE-456",
        "ssc-desk",
        "last_error",
    ] {
        assert!(text.contains(want), "SSC misses {want}: {text}");
    }
    assert!(!full["events"].as_array().is_none_or(Vec::is_empty));
    assert!(!text.contains("S3CR3T"), "{text}");

    // The customer: its public history with organisations as actors, no raw events, no
    // channel errors, no token names, on every endpoint.
    let internal = [
        "INTERNAL-NOTE-123",
        "ESCALATION-NOTE-9",
        "\"action\":\"escalated\"",
        "\"action\":\"comment\"",
        "ssc-desk",
        "uni-b-helpdesk",
        "S3CR3T",
    ];
    let (s, mine) = http_call("GET", &one, Some(unib), None)?;
    assert_eq!(s, 200);
    let text = mine.to_string();
    for bad in internal {
        assert!(!text.contains(bad), "the customer sees {bad}: {text}");
    }
    for want in [
        "PUBLIC-NOTE-456",
        "CUSTOMER-NOTE-1",
        "\"actor\":\"Sikt\"",
        "Universitetet i B",
    ] {
        assert!(text.contains(want), "the customer misses {want}: {text}");
    }
    assert_eq!(mine["events"].as_array().map(Vec::len), Some(0));
    assert!(
        mine["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|n| n["last_error"].is_null()),
        "{mine:#}"
    );
    let (_, notes) = http_call(
        "GET",
        &format!("{api}/api/v1/notifications"),
        Some(unib),
        None,
    )?;
    let text = notes.to_string();
    assert!(
        !text.contains("S3CR3T") && !text.contains("\"last_error\":\""),
        "{text}"
    );
    for path in ["/api/v1/events", "/api/v1/devices"] {
        assert_eq!(
            http_call("GET", &format!("{api}{path}"), Some(unib), None)?.0,
            403,
            "{path}"
        );
    }
    // The dashboard page shows the customer the same.
    let cookie = dashboard_session(&api, unib)?;
    let page = reqwest::blocking::Client::new()
        .get(format!("{api}/ui/incidents/{id}"))
        .header("cookie", &cookie)
        .send()?
        .text()?;
    // (Its own token's name is in the page header, as who is signed in.)
    for bad in internal.iter().filter(|b| **b != "uni-b-helpdesk") {
        assert!(!page.contains(bad), "the customer's page shows {bad}");
    }
    assert!(!page.contains("INTERNAL-NOTE"), "{page}");
    assert!(page.contains("PUBLIC-NOTE-456"));

    // Live streams: uni-b heard of its incident; the other customer heard nothing at all.
    let heard = unib_stream.recv_timeout(Duration::from_secs(10));
    assert!(heard.is_ok(), "uni-b's stream said nothing");
    assert!(
        other_stream.recv_timeout(Duration::from_secs(3)).is_err(),
        "the other customer's stream told it of uni-b's incident"
    );
    Ok(())
}
