//! The counters, VLAN and reachability plans against real snmpsim, end to end: interface
//! metrics like snmp_exporter's `if_mib`, a VLAN change by `snmpset` on dot1qPvid becoming a
//! `vlan_changed` event in the collector, and the metrics output passing `promtool check
//! metrics` (when promtool is installed; ./tests/run installs it).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_tests::rig::{COMMUNITY, Rig, RigOptions};
use cnaas_tests::{find_program, http_get, http_json, wait_until};

/// The families named and labelled like snmp_exporter's `if_mib` module.
const IF_MIB_FAMILIES: [&str; 22] = [
    "ifAdminStatus",
    "ifOperStatus",
    "ifLastChange",
    "ifInOctets",
    "ifInUcastPkts",
    "ifInDiscards",
    "ifInErrors",
    "ifOutOctets",
    "ifOutUcastPkts",
    "ifOutDiscards",
    "ifOutErrors",
    "ifHCInOctets",
    "ifHCInUcastPkts",
    "ifHCInMulticastPkts",
    "ifHCInBroadcastPkts",
    "ifHCOutOctets",
    "ifHCOutUcastPkts",
    "ifHCOutMulticastPkts",
    "ifHCOutBroadcastPkts",
    "ifHighSpeed",
    "dot1qPvid",
    "sysUpTime",
];

fn metric_line(text: &str, name: &str, if_index: u32) -> Option<String> {
    let want = format!("ifIndex=\"{if_index}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&want))
        .map(str::to_owned)
}

#[test]
fn counters_vlans_and_reachability() -> Result<()> {
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        agent_defaults:
            "counters_interval = \"2s\"\nvlan_interval = \"1s\"\nreachability_interval = \"1s\"\n"
                .into(),
        ..RigOptions::default()
    })?;
    let metrics_url = format!("{}/metrics", rig.metrics);
    let limit = Duration::from_secs(15);
    let text = wait_until("counter and VLAN metrics", limit, || {
        let (_, t) = http_get(&metrics_url).ok()?;
        (metric_line(&t, "ifHCInOctets", 49).is_some() && metric_line(&t, "dot1qPvid", 5).is_some())
            .then_some(t)
    })
    .with_context(|| rig.logs())?;
    // Values straight from the recording, labelled like snmp_exporter's if_mib.
    let hc = metric_line(&text, "ifHCInOctets", 49).context("ifHCInOctets")?;
    assert!(
        hc.contains("ifName=\"Te1/1/1\"") && hc.ends_with(" 490000000"),
        "{hc}"
    );
    let c32 = metric_line(&text, "ifInOctets", 7).context("ifInOctets")?;
    assert!(c32.ends_with(" 7000"), "{c32}");
    let speed = metric_line(&text, "ifHighSpeed", 49).context("ifHighSpeed")?;
    assert!(speed.ends_with(" 10000"), "{speed}");
    let pvid = metric_line(&text, "dot1qPvid", 5).context("dot1qPvid")?;
    assert!(pvid.ends_with(" 10"), "{pvid}");
    assert!(
        text.contains("# HELP ifHCInOctets The total number of octets received"),
        "HELP text"
    );

    // The customer moves access port 5 (bridge port 105) to VLAN 20.
    let target = rig.snmpsim.address();
    let out = Command::new(find_program("snmpset")?)
        .env("MIBS", "")
        .args([
            "-v2c",
            "-c",
            COMMUNITY,
            &target,
            "1.3.6.1.2.1.17.7.1.4.5.1.1.105",
            "u",
            "20",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = wait_until("the vlan_changed event in the collector", limit, || {
        let v = http_json(&format!(
            "{}/api/v1/events?device=a-b12-01&kind=vlan_changed",
            rig.api
        ))
        .ok()?;
        v["events"].as_array()?.first().cloned()
    })
    .with_context(|| rig.logs())?;
    assert_eq!(ev["if_index"], 5);
    assert_eq!(ev["if_name"], "Gi1/0/5");
    assert_eq!(ev["attrs"]["old"], 10);
    assert_eq!(ev["attrs"]["new"], 20);
    assert_eq!(ev["role"], "access");
    assert!(
        rig.open_incidents().is_empty(),
        "a VLAN change on an access port is no incident"
    );

    // The reachability plan runs (ICMP as root, else SNMP).
    wait_until("reachability probes", limit, || {
        let (_, t) = http_get(&metrics_url).ok()?;
        t.lines()
            .find(|l| {
                l.starts_with("cnaas_agent_poll_duration_seconds_count{plan=\"reachability\"}")
            })
            .filter(|l| !l.ends_with(" 0"))
            .map(|_| ())
    })?;

    // promtool's linter accepts both binaries' metrics.
    match find_program("promtool") {
        Err(_) => {
            eprintln!("SKIP promtool check: promtool is not installed (./tests/run installs it)")
        }
        Ok(promtool) => {
            for url in [metrics_url.clone(), format!("{}/metrics", rig.api)] {
                let (_, body) = http_get(&url)?;
                let file = rig.dir().join("metrics.txt");
                std::fs::write(&file, &body)?;
                let out = Command::new(&promtool)
                    .args(["check", "metrics"])
                    .stdin(Stdio::from(std::fs::File::open(&file)?))
                    .output()?;
                // The if_mib-compatible families keep snmp_exporter's camelCase metric and
                // label names (ifOperStatus, ifIndex, ...) on purpose, so dashboards keep working; promtool's
                // style lint flags exactly those. Anything else it says is a failure.
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let problems: Vec<&str> = said
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .filter(|l| {
                        let compat = l
                            .split_once(' ')
                            .is_some_and(|(name, rest)| {
                                IF_MIB_FAMILIES.contains(&name)
                                    && (rest == "label names should be written in 'snake_case' not 'camelCase'"
                                        || rest == "metric names should be written in 'snake_case' not 'camelCase'")
                            });
                        !compat
                    })
                    .collect();
                assert!(
                    problems.is_empty(),
                    "promtool check metrics on {url}:\n{}",
                    problems.join("\n")
                );
            }
        }
    }
    Ok(())
}
