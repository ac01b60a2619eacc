//! Network namespaces the test creates, and Net-SNMP's `snmpd` running inside one with real
//! (veth) interfaces: `ip link set DEV down` really changes ifOperStatus there.
//!
//! Everything inside a namespace talks over that namespace's own loopback; nothing leaves it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Process, find_program, open_tempdir, wait_until};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted when dropped.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with its loopback up. `Ok(None)` when the machine refuses
    /// namespaces (no privilege); the caller skips with a message.
    pub fn create() -> Result<Option<Netns>> {
        let name = format!(
            "cnaas-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ip = find_program("ip")?;
        let out = Command::new(&ip).args(["netns", "add", &name]).output()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: cannot create a network namespace here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(Some(ns))
    }

    /// Runs `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(find_program("ip")?)
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} {args:?}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A command that runs `program` inside the namespace (same PID: `ip netns exec` execs).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port` inside the namespace.
    pub fn tcp_open(&self, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A plain HTTP GET of 127.0.0.1:`port``path` inside the namespace; returns the body.
    pub fn http_get(&self, port: u16, path: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
            ))
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Net-SNMP's snmpd inside a namespace, with a veth pair `v0`/`v1` to play with.
pub struct Snmpd {
    /// The UDP port it answers on (127.0.0.1 inside the namespace).
    pub port: u16,
    /// The process.
    pub process: Process,
    /// Its config file.
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

/// IF-MIB and notification OIDs for snmpd's `monitor` lines (no MIB files are loaded).
const MONITOR: &str = "\
notificationEvent linkUpTrap .1.3.6.1.6.3.1.1.5.4 .1.3.6.1.2.1.2.2.1.1 .1.3.6.1.2.1.2.2.1.7 .1.3.6.1.2.1.2.2.1.8
notificationEvent linkDownTrap .1.3.6.1.6.3.1.1.5.3 .1.3.6.1.2.1.2.2.1.1 .1.3.6.1.2.1.2.2.1.7 .1.3.6.1.2.1.2.2.1.8
monitor -r 1 -S -e linkUpTrap linkUp .1.3.6.1.2.1.2.2.1.8 == 1
monitor -r 1 -S -e linkDownTrap linkDown .1.3.6.1.2.1.2.2.1.8 != 1
";

impl Snmpd {
    /// Creates veth `v0`/`v1` (both up) in `ns` and starts snmpd there on `port`, community
    /// `public`, sending linkUp/linkDown traps (checked every second) to 127.0.0.1:`trap_port`.
    pub fn start(ns: &Netns, port: u16, trap_port: u16) -> Result<Snmpd> {
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
        ns.ip(&["link", "set", "v0", "up"])?;
        ns.ip(&["link", "set", "v1", "up"])?;
        Self::start_plain(ns, port, trap_port, "")
    }

    /// Starts snmpd in `ns` as an AgentX master on `socket` (for lldpd's subagent), with the
    /// namespace's interfaces as they are.
    pub fn start_master(ns: &Netns, port: u16, socket: &Path) -> Result<Snmpd> {
        let extra = format!("master agentx\nagentXSocket {}\n", socket.display());
        Self::start_plain(ns, port, free_trap_sink(), &extra)
    }

    fn start_plain(ns: &Netns, port: u16, trap_port: u16, extra: &str) -> Result<Snmpd> {
        let dir = open_tempdir()?;
        let config = dir.path().join("snmpd.conf");
        std::fs::write(
            &config,
            format!(
                "agentAddress udp:127.0.0.1:{port}\n\
                 rocommunity public 127.0.0.1\n\
                 trap2sink 127.0.0.1:{trap_port} public\n\
                 createUser cnaasInternal SHA cnaasInternalPass\n\
                 iquerySecName cnaasInternal\n\
                 rouser cnaasInternal\n\
                 {extra}{MONITOR}"
            ),
        )?;
        let mut cmd = ns.command(&find_program("snmpd")?);
        cmd.env("MIBS", "")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&config)
            .args(["-p"])
            .arg(dir.path().join("snmpd.pid"));
        let mut process = Process::spawn("snmpd", cmd, &dir.path().join("snmpd.log"))?;
        let snmpget = find_program("snmpget")?;
        wait_until("snmpd to answer", Duration::from_secs(15), || {
            if process.check_alive().is_err() {
                return Some(());
            }
            let ok = ns
                .command(&snmpget)
                .env("MIBS", "")
                .args(["-v2c", "-c", "public", "-t", "0.5", "-r", "0"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("1.3.6.1.2.1.1.3.0")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(())
        })?;
        process
            .check_alive()
            .with_context(|| "snmpd failed to start")?;
        Ok(Snmpd {
            port,
            process,
            config,
            _dir: dir,
        })
    }
}

/// A port nothing listens on, for snmpd's trap sink when no test wants its traps.
fn free_trap_sink() -> u16 {
    crate::free_port()
}

/// `lldpd` (Debian's, 1.0.x) inside a network namespace on one interface, as a real LLDP
/// neighbour; with an AgentX socket it serves LLDP-MIB through the namespace's snmpd. Sends
/// every second so a test sees changes at once. It runs in a PID namespace of its own (it forks
/// a privilege-separated child), so stopping it ends all of it.
pub struct Lldpd {
    process: Process,
    ctl: PathBuf,
    ns: String,
    _dir: tempfile::TempDir,
}

impl Lldpd {
    /// Starts lldpd in `ns` on `iface`, naming the system `hostname`.
    pub fn start(ns: &Netns, iface: &str, hostname: &str, agentx: Option<&Path>) -> Result<Lldpd> {
        let dir = open_tempdir()?;
        let ctl = dir.path().join("lldpd.ctl");
        // Read by the lldpcli that lldpd runs at start, before it sends its first LLDPDU: the
        // first frame already carries the name (set later, it waits for the next frame).
        let conf = dir.path().join("lldpd.conf");
        std::fs::write(
            &conf,
            format!("configure system hostname {hostname}\nconfigure lldp tx-interval 1\n"),
        )?;
        // In a PID namespace of its own: when it stops, the kernel ends every process in it, so
        // no child of lldpd outlives it (one that did was re-parented to the real PID 1 and
        // signalled it: in a container or VM that is the supervisor).
        let mut cmd = ns.command(&find_program("unshare")?);
        cmd.args(["--pid", "--fork", "--kill-child=SIGKILL"])
            .arg(find_program("lldpd")?)
            .args(["-d", "-u"])
            .arg(&ctl)
            .args(["-I", iface])
            .arg("-O")
            .arg(&conf);
        if let Some(sock) = agentx {
            cmd.arg("-x").arg("-X").arg(sock);
        }

        let process = Process::spawn("lldpd", cmd, &dir.path().join("lldpd.log"))?;
        let l = Lldpd {
            process,
            ctl,
            ns: ns.name.clone(),
            _dir: dir,
        };
        wait_until("lldpd's control socket", Duration::from_secs(10), || {
            l.ctl.exists().then_some(())
        })?;
        l.cli(&["configure", "system", "hostname", hostname])?;
        l.cli(&["configure", "lldp", "tx-interval", "1"])?;
        Ok(l)
    }

    /// Runs `lldpcli -u CTL ARGS...` in its namespace.
    pub fn cli(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(find_program("lldpcli")?)
            .arg("-u")
            .arg(&self.ctl)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "lldpcli {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// What it logged.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Lldpd {
    fn drop(&mut self) {
        // `unshare` dies, its child (lldpd, PID 1 of the namespace) gets SIGKILL, and with it
        // every process of the namespace.
        if let Some(pid) = self.process.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// An agent config polling the namespace's snmpd as `sw-ns` (traps on `traps` when given).
pub fn agent_config(
    id: &str,
    mqtt: u16,
    metrics: u16,
    snmpd: u16,
    interval: &str,
    traps: Option<u16>,
) -> String {
    let traps = traps.map_or_else(String::new, |p| {
        format!("[traps]\nlisten = \"127.0.0.1:{p}\"\nquiet_after_reboot = \"0s\"\n")
    });
    format!(
        "[agent]\nid = \"{id}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\n\
         [spool]\ndir = \"spool-{id}\"\n{traps}\
         [[device]]\nname = \"sw-ns\"\naddress = \"127.0.0.1:{snmpd}\"\nsnmp = {{ version = \"2c\", community = \"public\" }}\n\
         link_interval = \"{interval}\"\ntimeout = \"500ms\"\n"
    )
}
