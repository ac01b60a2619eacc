//! The benchmark command: measures the product on this machine against the design's targets
//! and the tool operators would otherwise use, prints Markdown, and writes it into
//! `docs/benchmarks.md` (between the `bench:begin`/`bench:end` markers; the rest of the file
//! is kept). A benchmark, not a test: it takes several minutes.
//!
//!     cargo build --release --workspace && ./target/release/bench [--quick] [--no-write]
//!
//! Sections:
//! 1. the agent against Debian's `prometheus-snmp-exporter` (a hand-written `if_mib` module),
//!    both polling the same simulated 52-port switches (cnaas-sim, one UDP port per switch):
//!    CPU per 1,000 device polls and the wall time of one pass over N = 1, 50, 500 switches;
//! 2. the agent's link plan at 1 s over 2,000 simulated switches, with detection latency
//!    (`agent-scale`);
//! 3. the collector: events/s into incidents with SQLite, and the 10,000-event storm
//!    (`collector-bench`);
//! 4. end to end over the simulator: a port goes down in the simulator -> the notification is
//!    handed to its channel (`sim-notify-latency`).
//!
//! Needs Mosquitto and prometheus-snmp-exporter (`apt-get install mosquitto
//! prometheus-snmp-exporter`); `--quick` runs smaller sizes for a smoke check.

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnaas_agent::plans::counters;
use cnaas_agent::plans::{labels_from, link_snapshot};
use cnaas_agent::snmp::{Credentials, SnmpClient, Target, oid};
use cnaas_shared::config::Secret;
use cnaas_tests::exporter::SnmpExporter;
use cnaas_tests::{
    Mosquitto, Process, binary, free_port, open_tempdir, proc_usage, repo_root, start_binary,
    wait_until,
};

const COMMUNITY: &str = "public";
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent-pass") {
        return agent_pass_child(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only exporter|scale|collector|e2e` runs one section and writes nothing.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let write = only.is_none() && !args.iter().any(|a| a == "--no-write");
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut out = String::new();
    writeln!(out, "{}", machine()?)?;
    if wanted("exporter") {
        let sizes: &[usize] = if quick { &[1, 20] } else { &[1, 50, 500] };
        section(&mut out, "Agent vs snmp_exporter", || {
            exporter_comparison(sizes)
        })?;
    }
    if wanted("scale") {
        let (switches, secs) = if quick { ("200", "20") } else { ("2000", "60") };
        section(&mut out, "Link plan at scale", || {
            run_bin("agent-scale", &[switches, secs])
        })?;
    }
    if wanted("collector") {
        section(&mut out, "Collector", || run_bin("collector-bench", &[]))?;
    }
    if wanted("e2e") {
        let flips = if quick { "5" } else { "20" };
        section(&mut out, "End to end over the simulator", || {
            run_bin("sim-notify-latency", &[flips])
        })?;
    }
    println!("{out}");
    if write {
        let path = repo_root().join("docs/benchmarks.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, splice(&old, &out))?;
        eprintln!("written to {}", path.display());
    }
    Ok(())
}

/// `old` with the text between the markers replaced by `new` (appended with markers if
/// there are none).
fn splice(old: &str, new: &str) -> String {
    let block = format!("{BEGIN}\n{new}\n{END}");
    match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{}\n{block}\n", old.trim_end()),
    }
}

fn section(out: &mut String, name: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
    eprintln!("== {name}");
    let t = Instant::now();
    match f() {
        Ok(text) => out.push_str(&text),
        Err(e) => {
            eprintln!("{name} failed: {e:#}");
            writeln!(out, "\n### {name}\n\nNot measured in this run: {e:#}\n")?;
        }
    }
    eprintln!("   ({:.0} s)", t.elapsed().as_secs_f64());
    Ok(())
}

fn run_bin(name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(binary(name)?)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {name}"))?;
    if !out.status.success() {
        // The first line says what failed; the rest is a backtrace.
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{name} failed: {}", err.lines().next().unwrap_or_default());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_owned()))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The machine the figures come from.
fn machine() -> Result<String> {
    let cpu = first_line("/proc/cpuinfo", "model name\t:").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kib: f64 = first_line("/proc/meminfo", "MemTotal:")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0);
    let debian = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    let exporter = command_line(
        "dpkg-query",
        &["-W", "-f=${Version}", "prometheus-snmp-exporter"],
    );
    let mut s = String::new();
    writeln!(
        s,
        "\n## Benchmark run ({})\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        s,
        "Written by `./target/release/bench` (release build). Machine: {cores} cores ({cpu}), {:.0} GiB, \
         Debian {}, kernel {}, {}; prometheus-snmp-exporter {exporter}.",
        mem_kib / 1024.0 / 1024.0,
        debian.trim(),
        command_line("uname", &["-r"]),
        command_line("rustc", &["--version"]),
    )?;
    Ok(s)
}

/// `n` UDP ports in 16000-18999 that are free now, consecutive.
fn free_udp_block(n: usize) -> Result<u16> {
    let mut start = 17_000u16;
    'outer: while usize::from(start) + n <= 19_000 {
        for i in 0..n {
            let port = start + u16::try_from(i)?;
            if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                start = port + 1;
                continue 'outer;
            }
        }
        return Ok(start);
    }
    bail!("no {n} consecutive free UDP ports in 17000-18999")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One measured pass: wall seconds and CPU seconds of the poller.
struct Pass {
    wall: f64,
    cpu: f64,
}

/// N concurrent scrapes of the exporter; checks every answer has all 52 ports.
fn exporter_pass(
    exporter: &SnmpExporter,
    pid: u32,
    targets: &[String],
    module: &str,
) -> Result<Pass> {
    // 500 scrapes at once take longer than the harness's usual 5 s.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let cpu0 = proc_usage(pid)?.0;
    let t = Instant::now();
    let handles: Vec<_> = targets
        .iter()
        .map(|target| {
            let url = exporter.scrape_url(target, module);
            let http = http.clone();
            std::thread::spawn(move || -> Result<(u16, String)> {
                let r = http.get(&url).send()?;
                Ok((r.status().as_u16(), r.text()?))
            })
        })
        .collect();
    for h in handles {
        let (status, body) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a scrape thread panicked"))??;
        let ports = body
            .lines()
            .filter(|l| l.starts_with("ifOperStatus{"))
            .count();
        if status != 200 || ports != 52 {
            bail!("snmp_exporter answered {status} with {ports} ports");
        }
    }
    let wall = t.elapsed().as_secs_f64();
    Ok(Pass {
        wall,
        cpu: proc_usage(pid)?.0 - cpu0,
    })
}

/// The agent's SNMP engine and decoders doing one full poll of each target, all at once,
/// `passes` times after a warm-up; prints `wall cpu` per pass. Runs in its own process so its
/// CPU time is its own.
fn agent_pass_child(args: &[String]) -> Result<()> {
    let passes: usize = args.first().context("passes")?.parse()?;
    let targets: Vec<String> = args[1..].to_vec();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let clients: Vec<Arc<tokio::sync::Mutex<SnmpClient>>> = targets
            .iter()
            .map(|addr| {
                Arc::new(tokio::sync::Mutex::new(SnmpClient::new(Target {
                    addr: addr.clone(),
                    credentials: Credentials::V2c {
                        community: Secret::new(COMMUNITY),
                    },
                    timeout: Duration::from_secs(5),
                    retries: 1,
                    max_repetitions: 25,
                })))
            })
            .collect();
        for pass in 0..=passes {
            let cpu0 = proc_usage(std::process::id())?.0;
            let t = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for c in &clients {
                let c = c.clone();
                tasks.spawn(async move { full_poll(&mut *c.lock().await).await });
            }
            while let Some(r) = tasks.join_next().await {
                let ports = r??;
                if ports != 52 {
                    bail!("the agent's poll saw {ports} ports");
                }
            }
            let wall = t.elapsed().as_secs_f64();
            let cpu = proc_usage(std::process::id())?.0 - cpu0;
            if pass > 0 {
                println!("{wall} {cpu}");
            }
        }
        Ok(())
    })
}

/// What the agent's link, counters and labels plans read from one switch, decoded as they do.
async fn full_poll(c: &mut SnmpClient) -> Result<usize> {
    let link = c
        .bulk_walk(
            &[oid::SYS_UPTIME, oid::IF_NUMBER],
            &[
                oid::IF_ADMIN_STATUS,
                oid::IF_OPER_STATUS,
                oid::IF_LAST_CHANGE,
            ],
        )
        .await?;
    let snap = link_snapshot(&link.scalars, &link.columns);
    let cols = counters::column_oids();
    let walk = c.bulk_walk(&[], &cols).await?;
    let raw = counters::raw_from(&walk.columns);
    let labels = c
        .bulk_walk(&[], &[oid::IF_DESCR, oid::IF_NAME, oid::IF_ALIAS])
        .await?;
    let labels = labels_from(&labels.columns);
    let ports = snap.ports.len();
    if raw.is_empty() || labels.len() != ports {
        bail!(
            "incomplete poll: {} counter rows, {} labels, {ports} ports",
            raw.len(),
            labels.len()
        );
    }
    Ok(ports)
}

fn agent_passes(targets: &[String], passes: usize) -> Result<Vec<Pass>> {
    let me = std::env::current_exe()?;
    let out = Command::new(me)
        .arg("agent-pass")
        .arg(passes.to_string())
        .args(targets)
        .output()?;
    if !out.status.success() {
        // The first line says what failed; the rest is a backtrace.
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "agent pass failed: {}",
            err.lines().next().unwrap_or_default()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (w, c) = l.split_once(' ').context("pass line")?;
            Ok(Pass {
                wall: w.parse()?,
                cpu: c.parse()?,
            })
        })
        .collect()
}

/// The real agent process polling the targets with link, counters and labels plans all at
/// `interval` for `secs`: CPU seconds per 1,000 full device polls and RSS.
fn agent_process(targets: &[String], interval: u64, secs: u64) -> Result<(f64, f64, u64)> {
    let mqtt = Mosquitto::start()?;
    let dir = open_tempdir()?;
    let metrics_port = free_port();
    let devices: String = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "[[device]]\nname = \"sw{i}\"\naddress = \"{t}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"{COMMUNITY}\" }}\n"
            )
        })
        .collect();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nid = \"bench\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[mqtt]\nurl = \"{}\"\n[spool]\ndir = \"spool\"\n\
             [defaults]\nlink_interval = \"{interval}s\"\ncounters_interval = \"{interval}s\"\nlabels_interval = \"{interval}s\"\nvlan_interval = \"1h\"\nreachability_interval = \"1h\"\ntimeout = \"5s\"\nretries = 1\n{devices}",
            mqtt.url()
        ),
    )?;
    let mut agent: Process = start_binary("cnaas-agent", &cfg, &dir.path().join("agent.log"))?;
    let pid = agent.pid().context("agent pid")?;
    // Every plan runs at the same interval, so link polls count full device polls; read
    // from /healthz, which does not render the interface table.
    let health = format!("http://127.0.0.1:{metrics_port}/healthz");
    let counter_polls = || -> f64 {
        cnaas_tests::http_json(&health)
            .ok()
            .and_then(|v| v["link_polls"].as_f64())
            .unwrap_or(0.0)
    };
    let n = targets.len() as f64;
    wait_until(
        "every switch polled twice",
        Duration::from_secs(120),
        || {
            agent.check_alive().ok()?;
            (counter_polls() >= 2.0 * n).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    let (cpu0, _) = proc_usage(pid)?;
    let p0 = counter_polls();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, rss) = proc_usage(pid)?;
    let polls = counter_polls() - p0;
    Ok((cpu1 - cpu0, polls, rss))
}

fn exporter_comparison(sizes: &[usize]) -> Result<String> {
    let max = sizes.iter().copied().max().unwrap_or(1);
    let base = free_udp_block(max)?;
    let sim = {
        let mut cmd = Command::new(binary("cnaas-sim")?);
        cmd.args([
            "--listen",
            "127.0.0.1:16999",
            "--switches",
            &max.to_string(),
            "--per-distribution",
            "49",
            "--ports",
            "52",
            "--per-switch-ports",
            &base.to_string(),
            "--community",
            COMMUNITY,
        ]);
        let dir = open_tempdir()?;
        let p = Process::spawn("cnaas-sim", cmd, &dir.path().join("sim.log"))?;
        (p, dir)
    };
    let all: Vec<String> = (0..max)
        .map(|i| format!("127.0.0.1:{}", usize::from(base) + i))
        .collect();
    let dir = open_tempdir()?;
    let exporter = SnmpExporter::start(dir.path(), COMMUNITY)?;
    let epid = exporter.process.pid().context("exporter pid")?;
    wait_until("the simulator", Duration::from_secs(20), || {
        cnaas_tests::snmp_get(
            base + u16::try_from(max - 1).ok()?,
            COMMUNITY,
            "1.3.6.1.2.1.1.3.0",
        )
        .ok()
    })?;
    let mut t = String::new();
    writeln!(
        t,
        "\n### Agent vs snmp_exporter, same simulated switches\n\n\
         cnaas-sim serves {max} 52-port switches, one UDP port each (community `{COMMUNITY}`). A *device poll* \
         reads sysUpTime, ifNumber and the interface table: for snmp_exporter one scrape of the hand-written \
         `if_mib` module (all of ifTable and ifXTable, each port labelled with ifName/ifAlias/ifDescr, as \
         upstream's generator makes it) or of `if_mib_lean` (only the 20 columns the agent reads); for the \
         agent its link, counters and labels walks (GETBULK, 25 repetitions), decoded by the agent's own code. \
         *One pass* = every switch polled once, all at the same time (N concurrent scrapes; the agent's engine \
         with N concurrent device tasks on 2 worker threads, in a process of its own). CPU is the poller's own \
         (utime+stime from /proc); the simulator runs in another process. Medians of the measured passes after \
         one warm-up pass.\n"
    )?;
    writeln!(
        t,
        "| N switches | exporter `if_mib`: pass wall / CPU per 1,000 polls | exporter `if_mib_lean`: wall / CPU per 1,000 | agent engine: wall / CPU per 1,000 | agent / exporter `if_mib` CPU |"
    )?;
    writeln!(t, "|---|---|---|---|---|")?;
    let mut agent_rows = Vec::new();
    for &n in sizes {
        let targets = &all[..n];
        // Enough polls that CPU time (10 ms ticks in /proc) is well above its resolution.
        let passes = (2000 / n).clamp(3, 200);
        let measure = |module: &str| -> Result<(f64, f64)> {
            exporter_pass(&exporter, epid, targets, module)?;
            let mut walls = Vec::new();
            let mut cpu = 0.0;
            for _ in 0..passes {
                let p = exporter_pass(&exporter, epid, targets, module)?;
                walls.push(p.wall);
                cpu += p.cpu;
            }
            Ok((median(&mut walls), cpu * 1000.0 / (passes * n) as f64))
        };
        let (ew, ec) = measure("if_mib")?;
        let (lw, lc) = measure("if_mib_lean")?;
        let agent = agent_passes(targets, passes)?;
        let mut aw: Vec<f64> = agent.iter().map(|p| p.wall).collect();
        let ac =
            agent.iter().map(|p| p.cpu).sum::<f64>() * 1000.0 / (agent.len().max(1) * n) as f64;
        let aw = median(&mut aw);
        writeln!(
            t,
            "| {n} | {:.1} ms / {ec:.2} s | {:.1} ms / {lc:.2} s | {:.1} ms / {ac:.2} s | {:.3} |",
            ew * 1000.0,
            lw * 1000.0,
            aw * 1000.0,
            ac / ec.max(1e-9)
        )?;
        eprintln!("   N={n}: exporter {ec:.2} s/1000, lean {lc:.2}, agent engine {ac:.2}");
        // The real agent process, polling continuously (interval grows with N to stay sane).
        let interval = (n as u64 / 50).max(1);
        let secs = if n >= 200 { 40 } else { 20 };
        match agent_process(targets, interval, secs) {
            Ok((cpu, polls, rss)) => agent_rows.push(format!(
                "| {n} | {interval} s | {polls:.0} | {:.2} s | {:.1} MiB |",
                cpu * 1000.0 / polls.max(1.0),
                rss as f64 / 1024.0
            )),
            Err(e) => agent_rows.push(format!("| {n} | {interval} s | failed: {e} | | |")),
        }
    }
    writeln!(
        t,
        "\nThe agent process itself (cnaas-agent, polling continuously with its link, counters and labels \
         plans all at the interval below, metrics and MQTT included), over {} s (20 s for small N):\n",
        40
    )?;
    writeln!(
        t,
        "| N switches | plan interval | full device polls | CPU per 1,000 full polls | RSS |"
    )?;
    writeln!(t, "|---|---|---|---|---|")?;
    for r in agent_rows {
        writeln!(t, "{r}")?;
    }
    drop(exporter);
    drop(sim);
    Ok(t)
}
