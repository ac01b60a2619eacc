//! A dead device must not slow the others down: twenty black-holed devices (UDP sockets that
//! swallow every request) beside the simulated switch, whose 1 s link plan must keep its rate.

use std::net::UdpSocket;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::rig::{Rig, RigOptions};
use cnaas_tests::{free_port, http_get, wait_until};

fn link_polls(rig: &Rig, device: &str) -> Option<f64> {
    let (_, text) = http_get(&format!("{}/metrics", rig.metrics)).ok()?;
    let prefix = format!("cnaas_agent_link_polls_total{{device=\"{device}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[test]
fn black_holed_devices_do_not_stretch_the_others_poll_period() -> Result<()> {
    // Bound but never read: requests vanish without an ICMP error, like a dead switch.
    let holes: Vec<UdpSocket> = (0..20)
        .map(|_| UdpSocket::bind(("127.0.0.1", free_port())))
        .collect::<std::io::Result<_>>()?;
    let mut devices = String::new();
    for (n, s) in holes.iter().enumerate() {
        devices.push_str(&format!(
            "[[device]]\nname = \"hole-{n}\"\naddress = \"{}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"x\" }}\n",
            s.local_addr()?
        ));
    }
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        agent_defaults: "max_repetitions = 25\n".into(),
        extra_devices: devices,
        ..RigOptions::default()
    })?;
    // Each hole costs 2 x 300 ms per poll; polled one after another they would stretch the
    // switch's 1 s period to several seconds.
    let start = wait_until("the first polls", Duration::from_secs(10), || {
        link_polls(&rig, "a-b12-01")
    })?;
    std::thread::sleep(Duration::from_secs(10));
    let end = link_polls(&rig, "a-b12-01").context("link polls")?;
    let hole = link_polls(&rig, "hole-0").unwrap_or(0.0);
    assert!(
        end - start >= 8.0,
        "only {} link polls of the live switch in 10 s",
        end - start
    );
    assert!(
        hole >= 5.0,
        "the black-holed device is still polled on its own schedule ({hole})"
    );
    drop(holes);
    Ok(())
}
