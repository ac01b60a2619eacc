//! NETCONF test peers on loopback ports:
//!
//! - [`IfServer`], `tests/netconf/ifserver.py` (PyPI `netconf` server library, password login)
//!   serving ietf-interfaces state from a JSON file the test edits, with RFC 5277
//!   notifications when asked.
//! - [`Netconfd`], Debian's `netconfd` (yuma123) behind OpenSSH's `sshd` with the `netconf`
//!   subsystem (key login).
//! - [`Hostile`], `sshd` whose `netconf` subsystem is `tests/netconf/hostile.py`, a server that
//!   misbehaves in the way its mode file says.
//!
//! Every peer has its own host key; [`known_hosts`] writes the line a client checks it with.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnaas_agent::netconf::{Auth, HostKeys, Target};
use serde_json::{Value, json};

use crate::{Process, find_program, free_port, open_tempdir, repo_root, wait_until};

/// The Python with the `netconf` library: `CNAAS_PEERS_PYTHON` (set by `./tests/run`), else the
/// one beside `CNAAS_SNMPSIM` in the peers' venv, else `python3`.
pub fn peers_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CNAAS_PEERS_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(sim) = std::env::var_os("CNAAS_SNMPSIM") {
        let p = Path::new(&sim).with_file_name("python");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("python3")
}

fn keygen(path: &Path, kind: &[&str]) -> Result<()> {
    let out = Command::new(find_program("ssh-keygen")?)
        .args(["-q", "-N", "", "-C", "cnaas-test", "-f"])
        .arg(path)
        .args(kind)
        .output()?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The known_hosts line for a server on 127.0.0.1:`port` with the public key in `pub_file`.
pub fn known_hosts(port: u16, pub_file: &Path) -> Result<String> {
    let key = std::fs::read_to_string(pub_file)?;
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        bail!("{} is not a public key", pub_file.display());
    };
    Ok(format!("[127.0.0.1]:{port} {kind} {blob}\n"))
}

fn wait_for_tcp(port: u16, what: &str, p: &mut Process) -> Result<()> {
    wait_until(what, Duration::from_secs(20), || {
        p.check_alive().ok()?;
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
    .with_context(|| p.log())
}

/// The Python NETCONF server with ietf-interfaces state from a file.
pub struct IfServer {
    /// Its SSH port.
    pub port: u16,
    /// The SSH user.
    pub user: String,
    /// The password file.
    pub password_file: PathBuf,
    /// A known_hosts file with its host key.
    pub known_hosts: PathBuf,
    state_file: PathBuf,
    state: Value,
    process: Option<Process>,
    dir: tempfile::TempDir,
}

impl IfServer {
    /// Starts it with these interfaces (see the script for the fields) and waits for its port.
    pub fn start(interfaces: Value, notifications: bool) -> Result<IfServer> {
        Self::start_model(interfaces, notifications, false)
    }

    /// Like [`IfServer::start`], serving openconfig-interfaces when `openconfig`.
    pub fn start_model(
        interfaces: Value,
        notifications: bool,
        openconfig: bool,
    ) -> Result<IfServer> {
        let dir = open_tempdir()?;
        let port = free_port();
        let host_key = dir.path().join("host_key");
        // Ed25519: with an RSA key paramiko signs in a way russh refuses ("wrong server
        // signature").
        keygen(&host_key, &["-t", "ed25519"])?;
        let password_file = dir.path().join("netconf.pass");
        std::fs::write(&password_file, "nc-secret-4711\n")?;
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, known_hosts(port, &host_key.with_extension("pub"))?)?;
        let mut s = IfServer {
            port,
            user: "monitor".into(),
            password_file,
            known_hosts: known,
            state_file: dir.path().join("state.json"),
            state: json!({ "interfaces": interfaces }),
            process: None,
            dir,
        };
        s.write_state()?;
        let mut cmd = Command::new(peers_python());
        cmd.arg(repo_root().join("tests/netconf/ifserver.py"))
            .args(["--port", &port.to_string(), "--host-key"])
            .arg(&host_key)
            .args(["--user", &s.user, "--password-file"])
            .arg(&s.password_file)
            .arg("--state")
            .arg(&s.state_file);
        if notifications {
            cmd.arg("--notifications");
        }
        if openconfig {
            cmd.arg("--openconfig");
        }
        let mut p = Process::spawn("ifserver.py", cmd, &s.dir.path().join("ifserver.log"))?;
        // Its own word, not a probe connection: sshutil would spend its accept thread on a
        // connection that never speaks SSH until paramiko's banner timeout.
        wait_until(
            "the NETCONF test server to listen",
            Duration::from_secs(20),
            || {
                p.check_alive().ok()?;
                p.log().contains("listening on port").then_some(())
            },
        )
        .with_context(|| p.log())?;
        s.process = Some(p);
        Ok(s)
    }

    fn write_state(&self) -> Result<()> {
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)?;
        std::fs::rename(&tmp, &self.state_file)?;
        Ok(())
    }

    /// Sets one field of the interface `name` (e.g. `oper` to `"down"`) in the served state.
    pub fn set(&mut self, name: &str, field: &str, value: Value) -> Result<()> {
        let Some(i) = self.state["interfaces"]
            .as_array_mut()
            .and_then(|a| a.iter_mut().find(|i| i["name"] == name))
        else {
            bail!("no interface {name}");
        };
        i[field] = value;
        self.write_state()
    }

    /// Its log.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }
}

fn sshd_config(dir: &Path, port: u16, subsystem: &str) -> Result<PathBuf> {
    let host_key = dir.join("host_key");
    keygen(&host_key, &["-t", "ed25519"])?;
    let client_key = dir.join("client_key");
    keygen(&client_key, &["-t", "ed25519"])?;
    std::fs::copy(
        client_key.with_extension("pub"),
        dir.join("authorized_keys"),
    )?;
    std::fs::write(
        dir.join("known_hosts"),
        known_hosts(port, &host_key.with_extension("pub"))?,
    )?;
    // sshd wants its privilege separation folder even when it runs as one user.
    let _ = std::fs::create_dir_all("/run/sshd");
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem netconf {subsystem}\n",
            hk = host_key.display(),
            dir = dir.display(),
        ),
    )?;
    Ok(config)
}

fn start_sshd(dir: &Path, port: u16, config: &Path) -> Result<Process> {
    let mut cmd = Command::new(find_program("sshd")?);
    // -D: stay in the foreground (stopped by PID with the test); -e: log to stderr.
    cmd.arg("-D").arg("-e").arg("-f").arg(config);
    let mut p = Process::spawn("sshd", cmd, &dir.join("sshd.log"))?;
    wait_for_tcp(port, "sshd to listen", &mut p)?;
    Ok(p)
}

/// How a client gets into an sshd peer: its port, the key it accepts, its host key.
#[derive(Debug, Clone)]
pub struct SshLogin {
    /// sshd's port on 127.0.0.1.
    pub port: u16,
    /// The client's private key.
    pub client_key: PathBuf,
    /// A known_hosts file with sshd's host key.
    pub known_hosts: PathBuf,
}

impl SshLogin {
    fn in_dir(dir: &Path, port: u16) -> SshLogin {
        SshLogin {
            port,
            client_key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
        }
    }

    /// The agent's NETCONF target for this peer: key login as [`local_user`], host key checked
    /// against known_hosts, at most 1 MiB per message, no notifications.
    pub fn target(&self, timeout: Duration) -> Arc<Target> {
        Arc::new(Target {
            address: format!("127.0.0.1:{}", self.port),
            user: local_user(),
            auth: Auth::Key {
                file: self.client_key.clone(),
                passphrase: None,
            },
            host_keys: HostKeys::KnownHosts(self.known_hosts.clone()),
            timeout,
            max_message: 1 << 20,
            notifications: false,
        })
    }
}

/// The user the sshd peers accept: the one running the tests (sshd runs as root in CI).
pub fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// netconfd (yuma123) behind sshd.
pub struct Netconfd {
    /// How to get in.
    pub login: SshLogin,
    sshd: Option<Process>,
    netconfd: Option<Process>,
    dir: tempfile::TempDir,
}

impl Netconfd {
    /// Starts netconfd (base:1.0 only when `base10_only`, else 1.0 and 1.1) and sshd.
    pub fn start(base10_only: bool) -> Result<Netconfd> {
        let dir = open_tempdir()?;
        let port = free_port();
        let sock = dir.path().join("ncxserver.sock");
        let mut cmd = Command::new(find_program("netconfd")?);
        cmd.arg(format!("--ncxserver-sockname={}", sock.display()))
            .args(["--no-startup", "--superuser=root"])
            // netconfd checks the SSH port a session comes in on against this.
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log={}",
                dir.path().join("netconfd.log").display()
            ))
            .arg("--log-level=info");
        if base10_only {
            cmd.arg("--protocols=netconf1.0");
        }
        let mut netconfd = Process::spawn("netconfd", cmd, &dir.path().join("netconfd.out"))?;
        wait_until("netconfd's socket", Duration::from_secs(20), || {
            netconfd.check_alive().ok()?;
            sock.exists().then_some(())
        })
        .with_context(|| netconfd.log())?;
        let subsystem = format!(
            "{} --ncxserver-sockname={port}@{}",
            find_program("netconf-subsystem")?.display(),
            sock.display()
        );
        let config = sshd_config(dir.path(), port, &subsystem)?;
        let sshd = start_sshd(dir.path(), port, &config)?;
        Ok(Netconfd {
            login: SshLogin::in_dir(dir.path(), port),
            sshd: Some(sshd),
            netconfd: Some(netconfd),
            dir,
        })
    }

    /// A further client key sshd accepts, encrypted with `passphrase`; its private key file.
    pub fn add_client_key(&self, name: &str, passphrase: &str) -> Result<PathBuf> {
        let key = self.dir.path().join(name);
        let out = Command::new(find_program("ssh-keygen")?)
            .args([
                "-q",
                "-t",
                "ed25519",
                "-C",
                "cnaas-test",
                "-N",
                passphrase,
                "-f",
            ])
            .arg(&key)
            .output()?;
        if !out.status.success() {
            bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        let public = std::fs::read_to_string(key.with_extension("pub"))?;
        let authorized = self.dir.path().join("authorized_keys");
        let mut all = std::fs::read_to_string(&authorized)?;
        all.push_str(&public);
        std::fs::write(&authorized, all)?;
        Ok(key)
    }

    /// netconfd's and sshd's logs.
    pub fn logs(&self) -> String {
        let netconfd_log =
            std::fs::read_to_string(self.dir.path().join("netconfd.log")).unwrap_or_default();
        format!(
            "--- netconfd\n{netconfd_log}\n--- sshd\n{}",
            self.sshd.as_ref().map(Process::log).unwrap_or_default()
        )
    }
}

impl Drop for Netconfd {
    fn drop(&mut self) {
        // sshd first, so no new session reaches a stopping netconfd.
        drop(self.sshd.take());
        drop(self.netconfd.take());
    }
}

/// How [`Hostile`] misbehaves after its hello, on the first request.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Text that is no NETCONF framing at all.
    Garbage,
    /// A chunk that announces 1000 bytes, sends 10 and closes.
    TruncatedChunk,
    /// A chunk header claiming 4 GB, then data without end.
    HugeChunk,
    /// Chunks of 64 KiB without end: a message that never ends.
    Endless,
    /// Nothing at all: reads and never answers.
    Silent,
    /// An `<rpc-error>` to every request.
    Refuse,
    /// A reply with another message-id before the right one.
    Stale,
    /// Answers properly (with ietf-interfaces state of one port).
    Good,
}

impl Misbehaviour {
    fn as_str(self) -> &'static str {
        match self {
            Misbehaviour::Garbage => "garbage",
            Misbehaviour::TruncatedChunk => "truncated",
            Misbehaviour::HugeChunk => "huge",
            Misbehaviour::Endless => "endless",
            Misbehaviour::Silent => "silent",
            Misbehaviour::Refuse => "refuse",
            Misbehaviour::Stale => "stale",
            Misbehaviour::Good => "good",
        }
    }
}

/// sshd with a misbehaving `netconf` subsystem.
pub struct Hostile {
    /// How to get in.
    pub login: SshLogin,
    sshd: Option<Process>,
    dir: tempfile::TempDir,
}

impl Hostile {
    /// Starts sshd; sessions behave as `mode` says until [`Hostile::set`].
    pub fn start(mode: Misbehaviour) -> Result<Hostile> {
        let dir = open_tempdir()?;
        let port = free_port();
        let script = repo_root().join("tests/netconf/hostile.py");
        let subsystem = format!(
            "{} {} {}",
            find_program("python3")?.display(),
            script.display(),
            dir.path().display()
        );
        let config = sshd_config(dir.path(), port, &subsystem)?;
        let h = Hostile {
            login: SshLogin::in_dir(dir.path(), port),
            sshd: None,
            dir,
        };
        h.set(mode)?;
        let sshd = start_sshd(h.dir.path(), port, &config)?;
        Ok(Hostile {
            sshd: Some(sshd),
            ..h
        })
    }

    /// How the next sessions behave.
    pub fn set(&self, mode: Misbehaviour) -> Result<()> {
        std::fs::write(self.dir.path().join("mode"), mode.as_str())?;
        Ok(())
    }

    /// How many sessions the server has seen (each logs a line).
    pub fn sessions(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("sessions"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// sshd's log and the sessions' log.
    pub fn logs(&self) -> String {
        format!(
            "--- sessions\n{}\n--- sshd\n{}",
            std::fs::read_to_string(self.dir.path().join("sessions")).unwrap_or_default(),
            self.sshd.as_ref().map(Process::log).unwrap_or_default()
        )
    }
}
