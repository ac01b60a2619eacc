//! The peer harness for end-to-end tests: starts real peers (Mosquitto, snmpsim) and the
//! product's own binaries on free loopback ports in 16000-18999, waits until they answer, and
//! stops them by PID when the guard is dropped, also when a test panics.
//!
//! Every peer gets its own temporary folder (config, data, log). When a readiness check fails,
//! the error carries the peer's log so the failure explains itself.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod browser;
pub mod cnaas_nms;
pub mod exporter;
pub mod load;
pub mod netconf;
pub mod netns;
pub mod rig;
pub mod sinks;

/// Lowest port tests may use.
pub const PORT_MIN: u16 = 16000;
/// Highest port tests may use.
pub const PORT_MAX: u16 = 18999;

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port in 16000-18999 that is free for both TCP and UDP on 127.0.0.1 right now.
/// Each test process starts at a different offset so parallel test binaries rarely collide.
pub fn free_port() -> u16 {
    let span = PORT_MAX - PORT_MIN + 1;
    let _ = NEXT_PORT.compare_exchange(
        0,
        u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0) + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_MIN + (n % span);
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_MIN}-{PORT_MAX}");
}

/// A running process that is stopped when dropped: SIGTERM, then SIGKILL after a grace period.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    grace: Duration,
}

impl Process {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Process> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            grace: Duration::from_secs(10),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Fails with the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!(
                "{} exited early with {status}; its log:\n{}",
                self.name,
                self.log()
            );
        }
        Ok(())
    }

    /// Sends SIGKILL and reaps the process (a crash, as far as it can tell).
    pub fn kill_hard(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code (None if killed).
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + self.grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not stop within {:?} of SIGTERM; killed. Log:\n{}",
                    self.name,
                    self.grace,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `limit`.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary folder that peers running as `nobody` can read (and, where asked, write).
pub fn open_tempdir() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("cnaas-test-").tempdir()?;
    set_mode(dir.path(), 0o755)?;
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// A Mosquitto broker on a free loopback port.
pub struct Mosquitto {
    /// Its port.
    pub port: u16,
    /// The process (None while stopped).
    pub process: Option<Process>,
    conf: PathBuf,
    dir: tempfile::TempDir,
    starts: u32,
    netns: Option<String>,
    pki: Option<tempfile::TempDir>,
}

impl Mosquitto {
    /// Starts Mosquitto with anonymous access on 127.0.0.1 and waits until it accepts.
    pub fn start() -> Result<Mosquitto> {
        Self::start_with("persistence false\n")
    }

    /// Like [`Mosquitto::start`], but sessions and queued messages survive a restart.
    pub fn start_persistent() -> Result<Mosquitto> {
        Self::start_with("persistence true\npersistence_location PERSIST/\nautosave_interval 1\n")
    }

    /// Starts Mosquitto with a TLS listener only (certificates from a CA the test makes with
    /// `openssl`) and password authentication for `user`/`password`. The CA certificate is
    /// at [`Mosquitto::ca_file`].
    pub fn start_tls(user: &str, password: &str) -> Result<Mosquitto> {
        let pki = open_tempdir()?;
        make_pki(pki.path())?;
        let passwd = pki.path().join("passwd");
        let st = Command::new(find_program("mosquitto_passwd")?)
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([user, password])
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("mosquitto_passwd failed");
        }
        for f in ["ca.crt", "server.crt", "server.key", "passwd"] {
            set_mode(&pki.path().join(f), 0o644)?;
        }
        let p = pki.path().display().to_string();
        let extra = format!(
            "persistence false\ncafile {p}/ca.crt\ncertfile {p}/server.crt\nkeyfile {p}/server.key\npassword_file {p}/passwd\n"
        );
        let mut m = Self::start_full(&extra, None)?;
        m.pki = Some(pki);
        Ok(m)
    }

    /// Starts Mosquitto with the shipped `deploy/mosquitto/cnaas.conf` (its limits, password
    /// authentication and the shipped ACL file `cnaas.acl`) on a plain loopback listener
    /// (TLS is tested with [`Mosquitto::start_tls`]) with these users and passwords.
    pub fn start_shipped(users: &[(&str, &str)]) -> Result<Mosquitto> {
        let pki = open_tempdir()?;
        let passwd = pki.path().join("passwd");
        for (n, (user, password)) in users.iter().enumerate() {
            let mut cmd = Command::new(find_program("mosquitto_passwd")?);
            cmd.arg("-b");
            if n == 0 {
                cmd.arg("-c");
            }
            let st = cmd
                .arg(&passwd)
                .args([user, password])
                .stderr(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("mosquitto_passwd failed");
            }
        }
        let deploy = repo_root().join("deploy/mosquitto");
        let acl = pki.path().join("cnaas.acl");
        std::fs::copy(deploy.join("cnaas.acl"), &acl)?;
        set_mode(&passwd, 0o644)?;
        set_mode(&acl, 0o644)?;
        // The shipped settings before its listener, without persistence to /var/lib.
        let shipped = std::fs::read_to_string(deploy.join("cnaas.conf"))?;
        let globals: String = shipped
            .lines()
            .take_while(|l| !l.starts_with("listener"))
            .filter(|l| !l.starts_with("persistence") && !l.starts_with("per_listener"))
            .map(|l| format!("{l}\n"))
            .collect();
        let p = pki.path().display().to_string();
        let extra = format!(
            "{globals}persistence false\npassword_file {p}/passwd\nacl_file {p}/cnaas.acl\n"
        );
        let mut m = Self::start_full(&extra, None)?;
        m.pki = Some(pki);
        Ok(m)
    }

    /// The CA certificate of a TLS broker.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.pki
            .as_ref()
            .map(|d| d.path().join("ca.crt"))
            .filter(|p| p.exists())
    }

    /// Starts Mosquitto inside a network namespace (on that namespace's loopback).
    pub fn start_in(ns: &netns::Netns) -> Result<Mosquitto> {
        Self::start_full("persistence false\n", Some(ns.name.clone()))
    }

    fn start_with(extra: &str) -> Result<Mosquitto> {
        Self::start_full(extra, None)
    }

    fn start_full(extra: &str, netns: Option<String>) -> Result<Mosquitto> {
        let dir = open_tempdir()?;
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let extra = extra.replace("PERSIST", &dir.path().display().to_string());
        let anon = !extra.contains("password_file");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous {anon}\n{extra}log_type error\nlog_type warning\nlog_type notice\n"
            ),
        )?;
        set_mode(dir.path(), 0o777)?;
        let mut m = Mosquitto {
            port,
            process: None,
            conf,
            dir,
            starts: 0,
            netns,
            pki: None,
        };
        m.resume()?;
        Ok(m)
    }

    /// Stops the broker (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.terminate()?;
        }
        Ok(())
    }

    /// Starts the broker again on the same port and waits until it accepts.
    pub fn resume(&mut self) -> Result<()> {
        self.starts += 1;
        let program = find_program("mosquitto")?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.arg("-c").arg(&self.conf);
        let log = self
            .dir
            .path()
            .join(format!("mosquitto-{}.log", self.starts));
        let mut process = Process::spawn("mosquitto", cmd, &log)?;
        let port = self.port;
        let ns = self.netns.clone();
        wait_until(
            "mosquitto to accept connections",
            Duration::from_secs(10),
            || {
                if process.check_alive().is_err() {
                    return Some(());
                }
                match &ns {
                    Some(ns) => Command::new("ip")
                        .args(["netns", "exec", ns, "bash", "-c"])
                        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                        .then_some(()),
                    None => TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()),
                }
            },
        )?;
        process.check_alive()?;
        self.process = Some(process);
        Ok(())
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://` for a TLS broker.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 (`server.crt`, `server.key`) in
/// `dir`, made with the openssl command.
pub fn make_pki(dir: &Path) -> Result<()> {
    let openssl = find_program("openssl")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cnaas test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])?;
    Ok(())
}

/// Finds a program on PATH or in /usr/sbin (Debian puts daemons there).
pub fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is not installed; ./tests/run installs the test peers"))
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An SNMPv3 USM user for snmpsim (SHA authentication, AES privacy).
#[derive(Debug, Clone)]
pub struct V3User {
    /// User name.
    pub user: String,
    /// Authentication password (at least 8 characters).
    pub auth_password: String,
    /// Privacy password (at least 8 characters).
    pub priv_password: String,
    /// Authentication protocol as snmpsim names it (`SHA`, `SHA256`, ...).
    pub auth_proto: &'static str,
    /// Privacy protocol as snmpsim names it (`AES`, `AES256`, ...).
    pub priv_proto: &'static str,
}

impl V3User {
    /// SHA + AES-128, the minimum the agent must speak.
    pub fn sha_aes(user: &str, auth_password: &str, priv_password: &str) -> V3User {
        V3User {
            user: user.into(),
            auth_password: auth_password.into(),
            priv_password: priv_password.into(),
            auth_proto: "SHA",
            priv_proto: "AES",
        }
    }
}

/// snmpsim serving recordings on a free loopback UDP port.
pub struct Snmpsim {
    /// Its port.
    pub port: u16,
    process: Option<Process>,
    command: Vec<std::ffi::OsString>,
    community: String,
    starts: u32,
    dir: tempfile::TempDir,
}

impl Snmpsim {
    /// Starts snmpsim with the given recordings (`community` -> `.snmprec` file) and waits
    /// until the first one answers a GET of sysUpTime.
    pub fn start(recordings: &[(&str, &Path)]) -> Result<Snmpsim> {
        Self::start_with_v3(recordings, None)
    }

    /// Like [`Snmpsim::start`], also serving SNMPv3 for one USM user (SHA + AES); the
    /// recordings are selected by context name (the file name), v2c keeps working.
    pub fn start_with_v3(recordings: &[(&str, &Path)], v3: Option<&V3User>) -> Result<Snmpsim> {
        let responder = match std::env::var_os("CNAAS_SNMPSIM") {
            Some(p) => PathBuf::from(p),
            None => find_program("snmpsim-command-responder")?,
        };
        let dir = open_tempdir()?;
        let data = dir.path().join("data");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&cache)?;
        set_mode(&data, 0o755)?;
        set_mode(&cache, 0o777)?;
        for (community, file) in recordings {
            let to = data.join(format!("{community}.snmprec"));
            std::fs::copy(file, &to).with_context(|| format!("cannot copy {}", file.display()))?;
            set_mode(&to, 0o644)?;
        }
        let port = free_port();
        let mut cmd = Command::new(&responder);
        if is_root() {
            cmd.args(["--process-user=nobody", "--process-group=nogroup"]);
        }
        cmd.arg(format!("--cache-dir={}", cache.display()));
        // Engine options come first; data and endpoint options then belong to that engine.
        if let Some(u) = v3 {
            cmd.arg("--v3-engine-id=auto")
                .arg(format!("--v3-user={}", u.user))
                .arg(format!("--v3-auth-key={}", u.auth_password))
                .arg(format!("--v3-auth-proto={}", u.auth_proto))
                .arg(format!("--v3-priv-key={}", u.priv_password))
                .arg(format!("--v3-priv-proto={}", u.priv_proto));
        }
        cmd.arg(format!("--data-dir={}", data.display()))
            .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"));
        let mut command = vec![cmd.get_program().to_owned()];
        command.extend(cmd.get_args().map(ToOwned::to_owned));
        let mut sim = Snmpsim {
            port,
            process: None,
            command,
            community: recordings.first().map_or("public", |r| r.0).to_owned(),
            starts: 0,
            dir,
        };
        sim.resume()?;
        Ok(sim)
    }

    /// Stops the simulator: every device it serves stops answering.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.terminate()?;
        }
        Ok(())
    }

    /// Starts the simulator again on the same port, with the same recordings and cache
    /// (values set with `snmpset` survive), and waits until it answers.
    pub fn resume(&mut self) -> Result<()> {
        self.starts += 1;
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]);
        let log = self.dir.path().join(format!("snmpsim-{}.log", self.starts));
        let mut process = Process::spawn("snmpsim", cmd, &log)?;
        let (port, community) = (self.port, self.community.clone());
        let ready = wait_until("snmpsim to answer", Duration::from_secs(60), || {
            if process.check_alive().is_err() {
                return Some(false);
            }
            snmp_get(port, &community, "1.3.6.1.2.1.1.3.0")
                .ok()
                .map(|_| true)
        });
        if !matches!(ready, Ok(true)) {
            process.check_alive()?;
            bail!(
                "snmpsim did not answer on 127.0.0.1:{port}; its log:\n{}",
                process.log()
            );
        }
        self.process = Some(process);
        Ok(())
    }

    /// What the simulator wrote so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The temporary folder (data and cache).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a Net-SNMP tool (`snmpget`, `snmpbulkwalk`, ...) without MIB loading; returns stdout,
/// or an error carrying stderr.
pub fn net_snmp(tool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(find_program(tool)?)
        .env("MIBS", "")
        .args(args)
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `snmpget` (Net-SNMP) of one numeric OID; returns its output line.
pub fn snmp_get(port: u16, community: &str, oid: &str) -> Result<String> {
    let target = format!("127.0.0.1:{port}");
    net_snmp(
        "snmpget",
        &[
            "-v2c", "-c", community, "-t", "0.5", "-r", "0", "-On", &target, oid,
        ],
    )
}

/// `snmpset` (Net-SNMP) of one INTEGER.
pub fn snmp_set_int(port: u16, community: &str, oid: &str, value: i64) -> Result<()> {
    snmp_set(port, community, oid, "i", &value.to_string())
}

/// Sets one value with Net-SNMP's `snmpset` (`kind` is its type letter: `i`, `u`, `s`, ...).
pub fn snmp_set(port: u16, community: &str, oid: &str, kind: &str, value: &str) -> Result<()> {
    let target = format!("127.0.0.1:{port}");
    net_snmp(
        "snmpset",
        &[
            "-v2c", "-c", community, "-t", "1", "-r", "2", "-On", &target, oid, kind, value,
        ],
    )
    .map(|_| ())
}

/// Path of one of the workspace's binaries, built next to the test executable.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // A test runs from target/<profile>/deps/, a helper binary from target/<profile>/.
    let here = exe.parent().context("cannot find the target folder")?;
    [Some(here), here.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{name} is missing next to {}: build the workspace binaries first (`cargo build --workspace`; ./tests/run does)",
                exe.display()
            )
        })
}

/// Starts one of the product's binaries with `--config FILE`.
pub fn start_binary(name: &str, config: &Path, log: &Path) -> Result<Process> {
    let mut cmd = Command::new(binary(name)?);
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    Process::spawn(name, cmd, log)
}

/// Opens the dashboard's sign-in form at `base`: the cookie that pairs it with its post
/// (`name=value`) and the form's token.
pub fn sign_in_form(base: &str) -> Result<(String, String)> {
    let page = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(format!("{base}/ui/login"))
        .send()?;
    let cookie = page
        .headers()
        .get("set-cookie")
        .context("the sign-in form sets no cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let html = page.text()?;
    let nonce = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("the sign-in form's token")?
        .to_owned();
    Ok((cookie, nonce))
}

/// A blocking HTTP GET returning the status and body (tests only; loopback, short timeout).
pub fn http_get(url: &str) -> Result<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let resp = client.get(url).send()?;
    let status = resp.status().as_u16();
    Ok((status, resp.text()?))
}

/// A blocking HTTP request with an optional bearer token and JSON body; returns the status and
/// the body parsed as JSON (`null` when it is not JSON).
pub fn http_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// A blocking HTTP GET parsed as JSON.
pub fn http_json(url: &str) -> Result<serde_json::Value> {
    let (status, body) = http_get(url)?;
    if status != 200 {
        bail!("GET {url} answered {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url} did not return JSON: {body}"))
}

/// The recording of a 48-port access switch with two uplinks.
pub fn access_switch_recording() -> PathBuf {
    repo_root().join("tests/data/snmpsim/access-switch.snmprec")
}

/// The `p` quantile (0.0-1.0) of sorted figures, nearest rank; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// An RFC 3339 time in a JSON value (as the collector's API writes them).
pub fn json_time(v: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Wall-clock nanoseconds since the epoch (the clock `mosquitto_sub -F %U` stamps with).
pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The benchmark binaries' one argument (a count), or `default` without one.
pub fn count_arg(default: usize) -> Result<usize> {
    match std::env::args().nth(1) {
        Some(s) => s.parse().with_context(|| format!("`{s}` is not a count")),
        None => Ok(default),
    }
}

/// (arrival ns, event JSON) of every line `%U %t %p` a `mosquitto_sub -F '%U %t %p'` wrote.
pub fn event_arrivals(file: &Path) -> Vec<(u128, serde_json::Value)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let ts = parts.next()?;
            let _topic = parts.next()?;
            let v: serde_json::Value = serde_json::from_str(parts.next()?).ok()?;
            let (secs, frac) = ts.split_once('.')?;
            let ns = secs.parse::<u128>().ok()? * 1_000_000_000 + frac.parse::<u128>().ok()?;
            Some((ns, v))
        })
        .collect()
}

/// Starts `mosquitto_sub` on the broker at `port` writing every agent event, stamped with its
/// arrival time, to `file` (read it with [`event_arrivals`]).
pub fn event_tap(port: u16, file: &Path) -> Result<Process> {
    let mut sub = Command::new(find_program("mosquitto_sub")?);
    sub.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-F",
        "%U %t %p",
        "-t",
        "cnaas/v1/events/#",
    ]);
    Process::spawn("mosquitto_sub", sub, file)
}

/// utime + stime in seconds, and VmRSS in KiB, of a process.
pub fn proc_usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0], utime is [11], stime is [12].
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Ok((ticks / 100.0, rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_in_range_and_distinct() {
        let a = free_port();
        let b = free_port();
        assert!((PORT_MIN..=PORT_MAX).contains(&a));
        assert!((PORT_MIN..=PORT_MAX).contains(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn wait_until_times_out() {
        let r: Result<()> = wait_until("nothing", Duration::from_millis(50), || None);
        assert!(r.is_err());
        let mut n = 0;
        assert_eq!(
            wait_until("third try", Duration::from_secs(1), || {
                n += 1;
                (n == 3).then_some(n)
            })
            .ok(),
            Some(3)
        );
    }

    #[test]
    fn a_dropped_process_is_stopped() {
        let dir = open_tempdir().ok();
        let Some(dir) = dir else { return };
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let Ok(p) = Process::spawn("sleep", cmd, &dir.path().join("log")) else {
            return;
        };
        let pid = p.pid().map(|p| p.to_string()).unwrap_or_default();
        drop(p);
        let alive = Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(!alive, "process {pid} still runs after drop");
    }
}
