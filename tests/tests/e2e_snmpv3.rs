//! SNMPv3 authPriv (SHA + AES-128) against real snmpsim: the uplink flip reaches the collector,
//! a device with the wrong password becomes unreachable, and no password reaches a log.

use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::V3User;
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::wait_until;

#[test]
fn an_uplink_flip_over_snmpv3_auth_priv() -> Result<()> {
    flip_over(V3User::sha_aes(
        "cnaas",
        "authsecret-4711",
        "privsecret-0815",
    ))
}

#[test]
fn an_uplink_flip_over_snmpv3_sha256_aes256() -> Result<()> {
    flip_over(V3User {
        auth_proto: "SHA256",
        priv_proto: "AES256",
        ..V3User::sha_aes("cnaas256", "authsecret-2560", "privsecret-2561")
    })
}

fn flip_over(user: V3User) -> Result<()> {
    let mut rig = Rig::start(&RigOptions {
        link_interval: "1s".into(),
        dead_device: true,
        persistent_broker: false,
        snmpv3: Some(user.clone()),
        agent_defaults: String::new(),
        tls: false,
        extra_devices: String::new(),
        traps: false,
        ..RigOptions::default()
    })?;
    let limit = Duration::from_secs(15);
    rig.set_oper(49, 2)?;
    let inc = wait_until("an incident for Te1/1/1 over SNMPv3", limit, || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(inc["if_name"], "Te1/1/1", "labels came over v3 too");
    rig.set_oper(49, 1)?;
    wait_until("the resolution", limit, || {
        rig.open_port_incident(49).is_none().then_some(())
    })?;
    let dead = wait_until("the wrong-password device to be down", limit, || {
        rig.open_incidents()
            .into_iter()
            .find(|i| i["device"] == "a-dead-01")
    })
    .with_context(|| rig.logs())?;
    assert_eq!(dead["kind"], "device_down");
    assert_eq!(rig.agent.terminate()?, Some(0));
    let log = rig.agent.log();
    for secret in [
        &user.auth_password,
        &user.priv_password,
        &"not-the-password".to_owned(),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "a password reached the agent log"
        );
    }
    Ok(())
}

/// Sends a linkDown/linkUp (`oid`) v3 authPriv trap about ifIndex 50 with real `snmptrap`.
fn snmptrap(user: &V3User, port: u16, uptime: &str, oid: &str) -> Result<()> {
    let out = std::process::Command::new(cnaas_tests::find_program("snmptrap")?)
        .env("MIBS", "")
        .args([
            "-v",
            "3",
            "-e",
            "0x80001f8880c0ffee01",
            "-u",
            &user.user,
            "-l",
            "authPriv",
        ])
        .args([
            "-a",
            "SHA",
            "-A",
            &user.auth_password,
            "-x",
            "AES",
            "-X",
            &user.priv_password,
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args([uptime, oid, "1.3.6.1.2.1.2.2.1.1.50", "i", "50"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "snmptrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn an_snmpv3_trap_is_authenticated_decrypted_and_confirmed() -> Result<()> {
    let user = V3User::sha_aes("cnaas", "authsecret-4711", "privsecret-0815");
    // A minute between link polls: the change can only be learnt from the trap in time.
    let rig = Rig::start(&RigOptions {
        link_interval: "60s".into(),
        dead_device: false,
        snmpv3: Some(user.clone()),
        traps: true,
        ..RigOptions::default()
    })?;
    rig.set_oper(50, 2)?;
    let trap_port = rig.trap_port.context("trap port")?;
    snmptrap(&user, trap_port, "87654321", "1.3.6.1.6.3.1.1.5.3")?;
    let inc = wait_until(
        "an incident from the v3 trap",
        Duration::from_secs(10),
        || rig.open_port_incident(50),
    )
    .with_context(|| rig.logs())?;
    let detail = cnaas_tests::http_json(&format!("{}/api/v1/incidents/{}", rig.api, inc["id"]))?;
    assert_eq!(detail["events"][0]["source"], "trap", "{detail}");
    rig.set_oper(50, 1)?;

    // A trap captured on the wire and played back: refused, counted, not confirmed.
    let catcher = std::net::UdpSocket::bind("127.0.0.1:0")?;
    catcher.set_read_timeout(Some(Duration::from_secs(5)))?;
    let catch_port = catcher.local_addr()?.port();
    snmptrap(&user, catch_port, "87654399", "1.3.6.1.6.3.1.1.5.4")?;
    let mut buf = [0u8; 4096];
    let (len, _) = catcher.recv_from(&mut buf)?;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..3 {
        sender.send_to(&buf[..len], ("127.0.0.1", trap_port))?;
    }
    let replayed = wait_until("the replays refused", Duration::from_secs(10), || {
        let n = rig.agent_metric("cnaas_agent_traps_total{result=\"replayed\"}")?;
        (n >= 2.0).then_some(n)
    })
    .with_context(|| rig.logs())?;
    assert_eq!(
        replayed, 2.0,
        "the first copy is taken, the other two refused"
    );
    Ok(())
}
