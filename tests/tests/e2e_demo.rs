//! The README's first command: `cnaas-demo` runs its whole story in one process (simulated
//! CNaaS campus, embedded broker, agent, collector) and shows incidents opening, grouping,
//! notifying, worsening and resolving.

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
        // One uplink of a bundle down: redundancy lost, told to the customer and SSC.
        "on access-1-1 is down: bundle Po1 is up on its other member(s), redundancy lost",
        "NOTIFY incident      servicedesk@uni-a.example",
        // A flapping port is one incident.
        "on access-2-4 is flapping",
        // The change window keeps the fault from the customer until it ends.
        "(in a change window: the customer is not told)",
        "Fortsatt feil etter vedlikehold",
        // One switch of a distribution pair dead: one incident, redundancy lost, low severity.
        "S3 uni-b  Device dist-2a does not answer; redundancy lost for 8 device(s)",
        // Its partner too: the same incident, now an outage.
        "worsened     S2 uni-b  Devices dist-2a, dist-2b do not answer; 8 device(s) cut off",
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
