//! Debian's `prometheus-snmp-exporter` (0.21) as the benchmark's peer. The package ships no
//! `if_mib` module and its generator needs MIB files, so [`snmp_yml`] writes the module by hand:
//! what upstream's generator makes of IF-MIB (sysUpTime, ifNumber, the whole ifTable and
//! ifXTable, each port labelled with ifIndex and looked-up ifName, ifAlias and ifDescr).
//! `if_mib_lean` walks only the columns the agent reads (link, counters, labels), to compare
//! like with like as well. This exporter version takes only `target` and `module` in the URL:
//! the community sits in the module.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{Process, find_program, free_port, http_get, wait_until};

const IF_ENTRY: &str = "1.3.6.1.2.1.2.2.1";
const IFX_ENTRY: &str = "1.3.6.1.2.1.31.1.1.1";

/// (name, OID, exporter type) of every IF-MIB column the full module turns into a metric.
const COLUMNS: [(&str, &str, u32, &str); 40] = [
    ("ifIndex", IF_ENTRY, 1, "gauge"),
    ("ifDescr", IF_ENTRY, 2, "DisplayString"),
    ("ifType", IF_ENTRY, 3, "gauge"),
    ("ifMtu", IF_ENTRY, 4, "gauge"),
    ("ifSpeed", IF_ENTRY, 5, "gauge"),
    ("ifPhysAddress", IF_ENTRY, 6, "PhysAddress48"),
    ("ifAdminStatus", IF_ENTRY, 7, "gauge"),
    ("ifOperStatus", IF_ENTRY, 8, "gauge"),
    ("ifLastChange", IF_ENTRY, 9, "gauge"),
    ("ifInOctets", IF_ENTRY, 10, "counter"),
    ("ifInUcastPkts", IF_ENTRY, 11, "counter"),
    ("ifInNUcastPkts", IF_ENTRY, 12, "counter"),
    ("ifInDiscards", IF_ENTRY, 13, "counter"),
    ("ifInErrors", IF_ENTRY, 14, "counter"),
    ("ifInUnknownProtos", IF_ENTRY, 15, "counter"),
    ("ifOutOctets", IF_ENTRY, 16, "counter"),
    ("ifOutUcastPkts", IF_ENTRY, 17, "counter"),
    ("ifOutNUcastPkts", IF_ENTRY, 18, "counter"),
    ("ifOutDiscards", IF_ENTRY, 19, "counter"),
    ("ifOutErrors", IF_ENTRY, 20, "counter"),
    ("ifOutQLen", IF_ENTRY, 21, "gauge"),
    ("ifName", IFX_ENTRY, 1, "DisplayString"),
    ("ifInMulticastPkts", IFX_ENTRY, 2, "counter"),
    ("ifInBroadcastPkts", IFX_ENTRY, 3, "counter"),
    ("ifOutMulticastPkts", IFX_ENTRY, 4, "counter"),
    ("ifOutBroadcastPkts", IFX_ENTRY, 5, "counter"),
    ("ifHCInOctets", IFX_ENTRY, 6, "counter"),
    ("ifHCInUcastPkts", IFX_ENTRY, 7, "counter"),
    ("ifHCInMulticastPkts", IFX_ENTRY, 8, "counter"),
    ("ifHCInBroadcastPkts", IFX_ENTRY, 9, "counter"),
    ("ifHCOutOctets", IFX_ENTRY, 10, "counter"),
    ("ifHCOutUcastPkts", IFX_ENTRY, 11, "counter"),
    ("ifHCOutMulticastPkts", IFX_ENTRY, 12, "counter"),
    ("ifHCOutBroadcastPkts", IFX_ENTRY, 13, "counter"),
    ("ifLinkUpDownTrapEnable", IFX_ENTRY, 14, "gauge"),
    ("ifHighSpeed", IFX_ENTRY, 15, "gauge"),
    ("ifPromiscuousMode", IFX_ENTRY, 16, "gauge"),
    ("ifConnectorPresent", IFX_ENTRY, 17, "gauge"),
    ("ifAlias", IFX_ENTRY, 18, "DisplayString"),
    ("ifCounterDiscontinuityTime", IFX_ENTRY, 19, "gauge"),
];

/// The columns the agent reads: its link, counters and labels plans.
const LEAN: [&str; 20] = [
    "ifDescr",
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
    "ifName",
    "ifHCInOctets",
    "ifHCInUcastPkts",
    "ifHCOutOctets",
    "ifHCOutUcastPkts",
    "ifHighSpeed",
    "ifAlias",
    "ifCounterDiscontinuityTime",
];

fn module(
    name: &str,
    community: &str,
    walk: &[String],
    columns: &[(&str, String, &str)],
) -> String {
    let mut y = format!("{name}:\n  walk:\n");
    for w in walk {
        y.push_str(&format!("  - {w}\n"));
    }
    y.push_str("  get:\n  - 1.3.6.1.2.1.1.3.0\n  metrics:\n");
    y.push_str(
        "  - name: sysUpTime\n    oid: 1.3.6.1.2.1.1.3\n    type: gauge\n    help: The time since the network management portion of the system was last re-initialized.\n",
    );
    for (metric, oid, kind) in columns {
        y.push_str(&format!(
            "  - name: {metric}\n    oid: {oid}\n    type: {kind}\n    help: IF-MIB {metric}\n    indexes:\n    - labelname: ifIndex\n      type: gauge\n    lookups:\n"
        ));
        for (label, col) in [("ifAlias", 18), ("ifDescr", 0), ("ifName", 1)] {
            let oid = if col == 0 {
                format!("{IF_ENTRY}.2")
            } else {
                format!("{IFX_ENTRY}.{col}")
            };
            y.push_str(&format!(
                "    - labels:\n      - ifIndex\n      labelname: {label}\n      oid: {oid}\n      type: DisplayString\n"
            ));
        }
    }
    y.push_str(&format!(
        "  version: 2\n  max_repetitions: 25\n  retries: 1\n  timeout: 5s\n  auth:\n    community: {community}\n"
    ));
    y
}

/// The exporter's config: `if_mib` (everything, as upstream) and `if_mib_lean` (the agent's
/// columns), both v2c with `community`.
pub fn snmp_yml(community: &str) -> String {
    let full: Vec<(&str, String, &str)> = COLUMNS
        .iter()
        .map(|(n, base, col, kind)| (*n, format!("{base}.{col}"), *kind))
        .collect();
    let lean: Vec<(&str, String, &str)> = full
        .iter()
        .filter(|(n, _, _)| LEAN.contains(n))
        .cloned()
        .collect();
    let lean_walk: Vec<String> = std::iter::once("1.3.6.1.2.1.2.1".to_owned())
        .chain(lean.iter().map(|(_, oid, _)| oid.clone()))
        .collect();
    // ifNumber is a scalar: no index, no lookups.
    let if_number = "  metrics:\n  - name: ifNumber\n    oid: 1.3.6.1.2.1.2.1\n    type: gauge\n    help: The number of network interfaces present on this system.\n";
    let walk = ["1.3.6.1.2.1.2".to_owned(), "1.3.6.1.2.1.31.1.1".to_owned()];
    let full_yml = module("if_mib", community, &walk, &full).replacen("  metrics:\n", if_number, 1);
    let lean_yml =
        module("if_mib_lean", community, &lean_walk, &lean).replacen("  metrics:\n", if_number, 1);
    format!("{full_yml}{lean_yml}")
}

/// A running snmp_exporter on a free loopback port.
pub struct SnmpExporter {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The process.
    pub process: Process,
}

impl SnmpExporter {
    /// Writes the config into `dir` and starts the exporter; waits until it answers.
    pub fn start(dir: &Path, community: &str) -> Result<SnmpExporter> {
        let program = find_program("prometheus-snmp-exporter")?;
        let config = dir.join("snmp.yml");
        std::fs::write(&config, snmp_yml(community))?;
        let check = Command::new(&program)
            .arg(format!("--config.file={}", config.display()))
            .arg("--dry-run")
            .output()?;
        anyhow::ensure!(
            check.status.success(),
            "snmp_exporter refuses the generated config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let port = free_port();
        let mut cmd = Command::new(program);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut process = Process::spawn("snmp_exporter", cmd, &dir.join("snmp_exporter.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until("snmp_exporter", Duration::from_secs(20), || {
            process.check_alive().ok()?;
            http_get(&format!("{url}/metrics"))
                .ok()
                .filter(|(s, _)| *s == 200)
        })
        .with_context(|| process.log())?;
        Ok(SnmpExporter { url, process })
    }

    /// The scrape address of one target.
    pub fn scrape_url(&self, target: &str, module: &str) -> String {
        format!("{}/snmp?target={target}&module={module}", self.url)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn modules_name_every_column_once() {
        let y = snmp_yml("public");
        assert_eq!(y.matches("\n  - name: ifOperStatus\n").count(), 2);
        assert_eq!(y.matches("\n  - name: ifNumber\n").count(), 2);
        assert_eq!(
            y.matches("\n  - name: ifType\n").count(),
            1,
            "not in the lean one"
        );
        assert_eq!(y.matches("community: public").count(), 2);
        let full = &y[..y.find("if_mib_lean:").unwrap()];
        assert_eq!(full.matches("\n  - name: ").count(), 42);
        assert!(full.contains("  walk:\n  - 1.3.6.1.2.1.2\n  - 1.3.6.1.2.1.31.1.1\n"));
    }
}
