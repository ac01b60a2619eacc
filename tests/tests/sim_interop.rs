//! The campus simulator against Net-SNMP's own tools: `snmpget`, `snmpwalk` (GETNEXT),
//! `snmpbulkwalk` (GETBULK) and `snmpset` read and change it correctly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnaas_sim::{Campus, Shared, serve_shared};
use cnaas_tests::{free_port, net_snmp};
use tokio_util::sync::CancellationToken;

struct Sim {
    port: u16,
    token: CancellationToken,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn start() -> Result<Sim> {
    let runtime = runtime()?;
    let port = free_port();
    let token = CancellationToken::new();
    let shared = Shared::new(Campus::tree(10, 4, 52, Instant::now()));
    runtime.block_on(serve_shared(
        shared,
        format!("127.0.0.1:{port}").parse()?,
        token.clone(),
    ))?;
    Ok(Sim {
        port,
        token,
        _runtime: runtime,
    })
}

/// The simulator's runtime: one worker thread beside the test's own.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

fn tool(sim: &Sim, tool: &str, community: &str, args: &[&str]) -> Result<String> {
    v2c(
        tool,
        &format!("127.0.0.1:{}", sim.port),
        community,
        "1",
        args,
    )
}

/// A Net-SNMP tool over v2c with numeric OIDs, `timeout` seconds and one retry.
fn v2c(tool: &str, target: &str, community: &str, timeout: &str, args: &[&str]) -> Result<String> {
    let mut all = vec![
        "-v2c", "-c", community, "-t", timeout, "-r", "1", "-On", target,
    ];
    all.extend_from_slice(args);
    net_snmp(tool, &all)
}

fn value(line: &str) -> &str {
    line.split_once(" = ").map_or("", |(_, v)| v.trim())
}

#[test]
fn net_snmp_tools_read_and_change_the_simulated_switches() -> Result<()> {
    let sim = start()?;
    let get = |community: &str, oid: &str| -> Result<String> {
        Ok(value(&tool(&sim, "snmpget", community, &[oid])?).to_owned())
    };
    assert_eq!(
        get("access-1-1", "1.3.6.1.2.1.1.5.0")?,
        "STRING: \"access-1-1\""
    );
    assert!(get("core", "1.3.6.1.2.1.1.3.0")?.starts_with("Timeticks:"));
    assert_eq!(get("dist-1", "1.3.6.1.2.1.2.1.0")?, "INTEGER: 52");
    // GETBULK walks of whole tables.
    let walk = |community: &str, oid: &str| -> Result<Vec<String>> {
        Ok(tool(&sim, "snmpbulkwalk", community, &["-Cr25", oid])?
            .lines()
            .map(str::to_owned)
            .collect())
    };
    let descr = walk("access-1-2", "1.3.6.1.2.1.2.2.1.2")?;
    assert_eq!(descr.len(), 52, "{descr:?}");
    assert_eq!(value(&descr[51]), "STRING: \"Te1/1/2\"");
    let names = walk("access-1-2", "1.3.6.1.2.1.31.1.1.1.1")?;
    assert_eq!(names.len(), 52);
    let mut everything = walk("access-1-2", "1.3.6.1.2.1")?;
    // The walk runs off the end of what the switch serves: endOfMibView, which the tool shows.
    let last = everything.pop().unwrap_or_default();
    assert!(
        last.contains("No more variables left in this MIB View"),
        "{last}"
    );
    assert_eq!(
        everything.len(),
        5 + 52 * (22 + 19 + 2),
        "{}",
        everything.len()
    );
    // GETNEXT walk of the system group.
    let system = tool(&sim, "snmpwalk", "access-1-2", &["1.3.6.1.2.1.1"])?;
    assert_eq!(system.lines().count(), 4, "{system}");
    // Counters move while a port is up.
    let hc = "1.3.6.1.2.1.31.1.1.1.6.51";
    let a: u64 = get("access-1-1", hc)?
        .trim_start_matches("Counter64: ")
        .parse()?;
    std::thread::sleep(Duration::from_millis(1100));
    let b: u64 = get("access-1-1", hc)?
        .trim_start_matches("Counter64: ")
        .parse()?;
    assert!(b > a, "{a} -> {b}");
    // SET: the port goes admin down and with it oper down; the VLAN changes.
    tool(
        &sim,
        "snmpset",
        "access-1-1",
        &["1.3.6.1.2.1.2.2.1.7.5", "i", "2"],
    )?;
    assert_eq!(get("access-1-1", "1.3.6.1.2.1.2.2.1.8.5")?, "INTEGER: 2");
    assert_ne!(
        get("access-1-1", "1.3.6.1.2.1.2.2.1.9.5")?,
        "Timeticks: (0) 0:00:00.00"
    );
    tool(
        &sim,
        "snmpset",
        "access-1-1",
        &["1.3.6.1.2.1.17.7.1.4.5.1.1.105", "u", "20"],
    )?;
    assert_eq!(
        get("access-1-1", "1.3.6.1.2.1.17.7.1.4.5.1.1.105")?,
        "Gauge32: 20"
    );
    // Only that switch changed.
    assert_eq!(get("access-1-2", "1.3.6.1.2.1.2.2.1.8.5")?, "INTEGER: 1");
    // Read-only and unknown objects are refused with the right error.
    let e = tool(
        &sim,
        "snmpset",
        "access-1-1",
        &["1.3.6.1.2.1.1.5.0", "s", "x"],
    )
    .err()
    .context("sysName is read-only")?;
    assert!(format!("{e:#}").contains("notWritable"), "{e:#}");
    let e = tool(
        &sim,
        "snmpset",
        "access-1-1",
        &["1.3.6.1.2.1.2.2.1.7.5", "i", "7"],
    )
    .err()
    .context("7 is no admin status")?;
    assert!(format!("{e:#}").contains("wrongValue"), "{e:#}");
    assert!(get("access-1-1", "1.3.6.1.2.1.2.2.1.8.99")?.contains("No Such Instance"));
    // An unknown community gets no answer, like a real switch.
    assert!(tool(&sim, "snmpget", "nobody", &["1.3.6.1.2.1.1.3.0"]).is_err());
    Ok(())
}

/// One switch per UDP port with one community (the set-up snmp_exporter needs): each port
/// answers as its own switch, a wrong community gets no answer.
#[test]
fn one_switch_per_port_with_a_fixed_community() -> Result<()> {
    let runtime = runtime()?;
    let token = CancellationToken::new();
    let shared = Shared::new(Campus::tree(5, 4, 52, Instant::now()));
    let names: Vec<String> = shared.with(|c| c.switches.iter().map(|s| s.name.clone()).collect());
    let addrs: Vec<std::net::SocketAddr> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse())
        .collect::<Result<_, _>>()?;
    let (bound, _running) = runtime.block_on(cnaas_sim::start_per_switch(
        shared,
        &addrs,
        "public",
        Vec::new(),
        token.clone(),
    ))?;
    assert_eq!(bound, addrs);
    for (addr, name) in bound.iter().zip(&names) {
        let target = addr.to_string();
        let out = v2c("snmpget", &target, "public", "1", &["1.3.6.1.2.1.1.5.0"])?;
        assert!(out.contains(&format!("\"{name}\"")), "{target}: {out}");
        let walk = v2c(
            "snmpbulkwalk",
            &target,
            "public",
            "1",
            &["1.3.6.1.2.1.2.2.1.8"],
        )?;
        assert_eq!(walk.lines().count(), 52, "{walk}");
        let wrong = v2c("snmpget", &target, name, "0.3", &["1.3.6.1.2.1.1.5.0"]);
        assert!(
            wrong.is_err(),
            "a wrong community is not answered: {wrong:?}"
        );
    }
    token.cancel();
    Ok(())
}

/// SNMPv3 authPriv (SHA-1, AES-128) with Net-SNMP: discovery, an authenticated and encrypted
/// GET and GETBULK walk (contextName picks the switch on the shared socket), a wrong password
/// refused; v2c keeps working on the same socket.
#[test]
fn snmpv3_auth_priv_with_net_snmp() -> Result<()> {
    let runtime = runtime()?;
    let token = CancellationToken::new();
    let user = cnaas_sim::V3User {
        user: "cnaas-v3".into(),
        auth_password: "auth-secret-4711".into(),
        priv_password: "priv-secret-0815".into(),
    };
    let shared = cnaas_sim::Shared::with_v3(Campus::tree(5, 4, 52, Instant::now()), Some(user));
    let port = free_port();
    runtime.block_on(serve_shared(
        shared,
        format!("127.0.0.1:{port}").parse()?,
        token.clone(),
    ))?;
    let target = format!("127.0.0.1:{port}");
    let v3 = |tool: &str, auth: &str, context: &str, oid: &str| {
        net_snmp(
            tool,
            &[
                "-v3",
                "-l",
                "authPriv",
                "-u",
                "cnaas-v3",
                "-a",
                "SHA",
                "-A",
                auth,
                "-x",
                "AES",
                "-X",
                "priv-secret-0815",
                "-n",
                context,
                "-t",
                "1",
                "-r",
                "0",
                "-On",
                &target,
                oid,
            ],
        )
    };
    let name = v3(
        "snmpget",
        "auth-secret-4711",
        "access-1-1",
        "1.3.6.1.2.1.1.5.0",
    )?;
    assert!(name.contains("\"access-1-1\""), "{name}");
    let walk = v3(
        "snmpbulkwalk",
        "auth-secret-4711",
        "core",
        "1.3.6.1.2.1.2.2.1.8",
    )?;
    assert_eq!(walk.lines().count(), 52, "{walk}");
    let wrong = v3("snmpget", "not-the-password", "core", "1.3.6.1.2.1.1.5.0");
    assert!(wrong.is_err(), "a wrong password is refused: {wrong:?}");
    let v2c = v2c("snmpget", &target, "core", "1", &["1.3.6.1.2.1.1.5.0"])?;
    assert!(v2c.contains("\"core\""), "{v2c}");
    token.cancel();
    Ok(())
}
