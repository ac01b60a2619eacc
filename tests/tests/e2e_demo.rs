//! The README's first command: `cnaas-demo` runs its whole story in one process (simulated
//! campus, embedded broker, agent, collector) and shows incidents opening, grouping, notifying
//! and resolving.

use anyhow::Result;
use cnaas_tests::{binary, free_port, open_tempdir};

#[test]
fn the_demo_tells_its_story_and_stops_cleanly() -> Result<()> {
    let dir = open_tempdir()?;
    let out = std::process::Command::new(binary("cnaas-demo")?)
        .arg("--data")
        .arg(dir.path())
        .arg("--base-port")
        .arg(free_port().min(18990).to_string())
        .arg("--once")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    for want in [
        // An uplink down: the incident, and the customer's and SSC's notifications.
        "INCIDENT #1 opened       S2 uni-a  Uplink Te1/1/2 (uplink) on access-1-1 is down",
        "NOTIFY incident      servicedesk@uni-a.example",
        // A flapping port is one incident.
        "on access-2-4 is flapping",
        // The change window keeps the fault from the customer until it ends.
        "(in a change window: the customer is not told)",
        "Fortsatt feil etter vedlikehold",
        // A dead distribution switch is one incident for its customer.
        "Device dist-2 does not answer",
        // Where to look.
        "Dashboard:  http://127.0.0.1:",
        // Recovery.
        "Incident resolved",
        "Stopped.",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}\n{err}");
    }
    // One notification per recipient for the dead distribution switch, not one per switch.
    let dist = text
        .lines()
        .filter(|l| {
            l.contains("NOTIFY incident")
                && l.contains("does not answer")
                && l.contains("New incident")
        })
        .count();
    assert_eq!(dist, 1, "{text}");
    assert!(dir.path().join("notifications.jsonl").exists());
    Ok(())
}
