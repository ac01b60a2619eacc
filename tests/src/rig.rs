//! The first end-to-end rig: a simulated 48-port access switch with two uplinks (real
//! snmpsim), `cnaas-agent` polling it, a real Mosquitto, and `cnaas-collector` with SQLite,
//! each started on free loopback ports and stopped when the rig is dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{
    Mosquitto, Process, Snmpsim, V3User, access_switch_recording, free_port, http_json,
    open_tempdir, snmp_set_int, start_binary, wait_until,
};

/// Community (recording name) of the simulated switch.
pub const COMMUNITY: &str = "access-switch";
/// The API tokens of a rig with `api_tokens`: (token, name, role).
pub const TOKENS: [(&str, &str, &str); 4] = [
    ("tok-ssc-0123456789", "ssc-desk", "ssc"),
    ("tok-unib-0123456789", "uni-b-helpdesk", "customer:uni-b"),
    ("tok-other-0123456789", "other-helpdesk", "customer:other"),
    ("tok-ro-0123456789", "dashboard", "readonly"),
];

/// Tokens of people of customer uni-b (token, name, contact), all with role
/// `customer:uni-b`: its technical contact, its administrative contact, and a consultant who
/// is neither.
pub const CONTACT_TOKENS: [(&str, &str, &str); 3] = [
    ("tok-ola-0123456789", "ola", "ola.nordmann@uni-b.no"),
    ("tok-kari-0123456789", "kari", "kontrakt@uni-b.no"),
    (
        "tok-konsulent-0123456789",
        "konsulent",
        "konsulent@example.com",
    ),
];

/// The broker user of a TLS rig.
pub const MQTT_USER: &str = "cnaas-e2e";
/// Its password (written to a file the binaries read).
pub const MQTT_PASSWORD: &str = "mqtt-secret-4711";
/// IF-MIB::ifOperStatus.
pub const IF_OPER_STATUS: &str = "1.3.6.1.2.1.2.2.1.8";

/// Everything one end-to-end test needs, running.
pub struct Rig {
    /// The simulated switch.
    pub snmpsim: Snmpsim,
    /// The broker.
    pub mqtt: Mosquitto,
    /// The agent process.
    pub agent: Process,
    /// The agent's config file.
    pub agent_config: PathBuf,
    /// The collector's config file.
    pub collector_config: PathBuf,
    /// The collector process.
    pub collector: Process,
    /// `http://127.0.0.1:PORT` of the collector API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the agent's metrics endpoint.
    pub metrics: String,
    /// The agent's trap port, if it listens for traps.
    pub trap_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The SSC token the helpers read with, when the API needs one.
    token: Option<&'static str>,
}

/// Knobs of the rig.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// The agent's link interval, e.g. `"1s"`.
    pub link_interval: String,
    /// Also configure a device that never answers (`a-dead-01`).
    pub dead_device: bool,
    /// Give the broker persistence, so sessions survive [`Mosquitto::stop`] and resume.
    pub persistent_broker: bool,
    /// Poll the switch over SNMPv3 authPriv (SHA/AES) instead of v2c.
    pub snmpv3: Option<V3User>,
    /// Extra lines for the agent's `[defaults]` (e.g. `vlan_interval = "1s"`).
    pub agent_defaults: String,
    /// More `[[device]]` entries for the agent.
    pub extra_devices: String,
    /// Give the agent a trap listener (its port is [`Rig::trap_port`]).
    pub traps: bool,
    /// The collector's `[rules]` section. By default no quarantine and no grouping, so every
    /// watched port's fault is its own incident at once; the correlation tests set their own.
    pub collector_rules: String,
    /// More `[[device]]` entries for the collector's inventory.
    pub inventory: String,
    /// Give the collector a tokens file with [`TOKENS`] (then every API call needs one).
    pub api_tokens: bool,
    /// More of the collector's config after the inventory (`[notify]`, `[[channel]]`,
    /// `[[customer]]`).
    pub collector_extra: String,
    /// Files (name, text) written into the rig's folder before anything starts (secrets the
    /// configs refer to).
    pub files: Vec<(String, String)>,
    /// More port roles of `a-b12-01` in the collector's inventory, e.g.
    /// `, "Gi1/0/1" = "uplink"`.
    pub port_roles: String,
    /// Run the broker with TLS and a password; both binaries connect with `mqtts://`, the
    /// test CA and a password file.
    pub tls: bool,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            link_interval: "1s".into(),
            dead_device: true,
            persistent_broker: false,
            snmpv3: None,
            agent_defaults: String::new(),
            tls: false,
            extra_devices: String::new(),
            traps: false,
            collector_rules: "link_hold = \"0s\"\ngroup_window = \"0s\"\n".into(),
            inventory: String::new(),
            api_tokens: false,
            collector_extra: String::new(),
            files: Vec::new(),
            port_roles: String::new(),
        }
    }
}

fn start_agent(config: &Path, log: &Path, metrics: &str) -> Result<Process> {
    let mut agent = start_binary("cnaas-agent", config, log)?;
    wait_until(
        "the agent to reach the switch",
        Duration::from_secs(20),
        || {
            agent.check_alive().ok()?;
            let v = http_json(&format!("{metrics}/healthz")).ok()?;
            let up = v["devices_up"].as_u64().unwrap_or(0);
            (up >= 1 && v["mqtt_connected"] == Value::Bool(true)).then_some(())
        },
    )
    .with_context(|| agent.log())?;
    Ok(agent)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

impl Rig {
    /// Starts snmpsim, Mosquitto, the collector and the agent, and waits until the agent
    /// reaches the switch and both are connected to the broker.
    pub fn start(opts: &RigOptions) -> Result<Rig> {
        let snmpsim = Snmpsim::start_with_v3(
            &[(COMMUNITY, &access_switch_recording())],
            opts.snmpv3.as_ref(),
        )?;
        let mqtt = if opts.tls {
            Mosquitto::start_tls(MQTT_USER, MQTT_PASSWORD)?
        } else if opts.persistent_broker {
            Mosquitto::start_persistent()?
        } else {
            Mosquitto::start()?
        };
        let dir = open_tempdir()?;
        for (name, text) in &opts.files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        let tokens_line = if opts.api_tokens {
            let mut file = String::new();
            let people = CONTACT_TOKENS
                .iter()
                .map(|(t, n, c)| (*t, *n, "customer:uni-b", Some(*c)));
            let all = TOKENS
                .iter()
                .map(|(t, n, r)| (*t, *n, *r, None))
                .chain(people);
            for (token, name, role, contact) in all {
                let out = std::process::Command::new("sha256sum")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write;
                        c.stdin
                            .take()
                            .map(|mut i| i.write_all(token.as_bytes()))
                            .transpose()?;
                        c.wait_with_output()
                    })?;
                let hash = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                file.push_str(&format!(
                    "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{hash}\"\n"
                ));
                if let Some(c) = contact {
                    file.push_str(&format!("contact = \"{c}\"\n"));
                }
            }
            std::fs::write(dir.path().join("tokens.toml"), file)?;
            "tokens_file = \"tokens.toml\"".to_owned()
        } else {
            String::new()
        };
        // The [mqtt] section both binaries use.
        let mqtt_section = match mqtt.ca_file() {
            Some(ca) => {
                std::fs::copy(&ca, dir.path().join("ca.crt"))?;
                std::fs::write(dir.path().join("mqtt.pass"), format!("{MQTT_PASSWORD}\n"))?;
                format!(
                    "[mqtt]\nurl = \"{}\"\nca_file = \"ca.crt\"\nusername = \"{MQTT_USER}\"\npassword_file = \"mqtt.pass\"\n",
                    mqtt.url()
                )
            }
            None => format!("[mqtt]\nurl = \"{}\"\n", mqtt.url()),
        };
        let (api_port, metrics_port, dead_port) = (free_port(), free_port(), free_port());
        let trap_port = opts.traps.then(free_port);
        // Te1/1/1 is an uplink by inventory; Te1/1/2 only through the collector's ifAlias
        // pattern (the agent has no patterns, so the collector's own rule is exercised).
        let collector_cfg = write(
            dir.path(),
            "collector.toml",
            &format!(
                r#"
[collector]
id = "e2e"
{mqtt}
[store]
url = "sqlite://collector.db"
[api]
listen = "127.0.0.1:{api_port}"
{tokens}
[roles]
uplink = ['(?i)^uplink']
[rules]
{rules}
[[device]]
name = "a-b12-01"
customer = "uni-b"
site = "b12"
ports = {{ "Te1/1/1" = "uplink"{port_roles} }}
{inventory}
{extra}
"#,
                extra = opts.collector_extra,
                port_roles = opts.port_roles,
                mqtt = mqtt_section,
                rules = opts.collector_rules,
                tokens = tokens_line,
                inventory = opts.inventory,
            ),
        )?;
        let snmp = match &opts.snmpv3 {
            None => format!("snmp = {{ version = \"2c\", community = \"{COMMUNITY}\" }}"),
            Some(u) => {
                std::fs::write(
                    dir.path().join("auth.pass"),
                    format!("{}\n", u.auth_password),
                )?;
                std::fs::write(
                    dir.path().join("priv.pass"),
                    format!("{}\n", u.priv_password),
                )?;
                std::fs::write(dir.path().join("wrong.pass"), "not-the-password\n")?;
                format!(
                    "snmp = {{ version = \"3\", user = \"{}\", auth_protocol = \"{}\", auth_password_file = \"auth.pass\", priv_protocol = \"{}\", priv_password_file = \"priv.pass\", context = \"{COMMUNITY}\" }}",
                    u.user,
                    u.auth_proto.to_lowercase(),
                    u.priv_proto.to_lowercase()
                )
            }
        };
        // The dead device never answers: nothing listens on its port (v2c), or it has the
        // wrong password (v3, on the live simulator).
        let dead = match (&opts.snmpv3, opts.dead_device) {
            (_, false) => String::new(),
            (None, true) => format!(
                "[[device]]\nname = \"a-dead-01\"\naddress = \"127.0.0.1:{dead_port}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"2c\", community = \"public\" }}\n"
            ),
            (Some(u), true) => format!(
                "[[device]]\nname = \"a-dead-01\"\naddress = \"{}\"\nreachability = \"snmp\"\nsnmp = {{ version = \"3\", user = \"{}\", auth_protocol = \"sha\", auth_password_file = \"wrong.pass\", priv_protocol = \"aes\", priv_password_file = \"wrong.pass\", context = \"{COMMUNITY}\" }}\n",
                snmpsim.address(),
                u.user
            ),
        };
        let agent_cfg = write(
            dir.path(),
            "agent.toml",
            &format!(
                r#"
[agent]
id = "site-e2e"
[metrics]
listen = "127.0.0.1:{metrics_port}"
{mqtt}
[spool]
dir = "spool"
{traps}
[defaults]
link_interval = "{interval}"
timeout = "300ms"
retries = 1
unreachable_after = 2
{extra}
[[device]]
name = "a-b12-01"
address = "{switch}"
{snmp}
{dead}
{more}"#,
                mqtt = mqtt_section,
                switch = snmpsim.address(),
                interval = opts.link_interval,
                extra = opts.agent_defaults,
                traps = trap_port.map_or_else(String::new, |p| format!(
                    "[traps]\nlisten = \"127.0.0.1:{p}\"\nquiet_after_reboot = \"0s\"\n"
                )),
                more = opts.extra_devices,
            ),
        )?;
        let mut collector = start_binary(
            "cnaas-collector",
            &collector_cfg,
            &dir.path().join("collector.log"),
        )?;
        let api = format!("http://127.0.0.1:{api_port}");
        wait_until(
            "the collector to connect to MQTT",
            Duration::from_secs(20),
            || {
                collector.check_alive().ok()?;
                let v = http_json(&format!("{api}/healthz")).ok()?;
                (v["mqtt_connected"] == Value::Bool(true)).then_some(())
            },
        )
        .with_context(|| collector.log())?;
        let metrics = format!("http://127.0.0.1:{metrics_port}");
        let agent = start_agent(&agent_cfg, &dir.path().join("agent.log"), &metrics)?;
        Ok(Rig {
            snmpsim,
            mqtt,
            agent,
            agent_config: agent_cfg,
            collector_config: collector_cfg,
            trap_port,
            collector,
            api,
            metrics,
            dir,
            token: opts.api_tokens.then_some(TOKENS[0].0),
        })
    }

    /// Starts the agent again (after [`Process::kill_hard`] or `terminate`) with the same
    /// config, and waits until it reaches the switch and the broker.
    pub fn restart_agent(&mut self) -> Result<()> {
        let log = self.dir.path().join("agent-restarted.log");
        self.agent = start_agent(&self.agent_config, &log, &self.metrics)?;
        Ok(())
    }

    /// Stops the collector (SIGTERM) and starts it again on the same store, and waits until
    /// it is connected to the broker.
    pub fn restart_collector(&mut self) -> Result<()> {
        self.collector.terminate()?;
        self.start_collector()
    }

    /// Starts the collector again (after it stopped or was killed) on the same store, and
    /// waits until it is connected to the broker.
    pub fn start_collector(&mut self) -> Result<()> {
        let log = self.dir.path().join("collector-restarted.log");
        let mut collector = start_binary("cnaas-collector", &self.collector_config, &log)?;
        let api = self.api.clone();
        wait_until("the restarted collector", Duration::from_secs(20), || {
            collector.check_alive().ok()?;
            let v = http_json(&format!("{api}/healthz")).ok()?;
            (v["mqtt_connected"] == Value::Bool(true)).then_some(())
        })
        .with_context(|| collector.log())?;
        self.collector = collector;
        Ok(())
    }

    /// One sample value from the agent's metrics (the first line starting with `name`).
    pub fn agent_metric(&self, name: &str) -> Option<f64> {
        let (_, text) = crate::http_get(&format!("{}/metrics", self.metrics)).ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The rig's temporary folder (configs, logs, the collector's database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets a port's ifOperStatus on the simulated switch with Net-SNMP's `snmpset`.
    pub fn set_oper(&self, if_index: u32, status: i64) -> Result<()> {
        snmp_set_int(
            self.snmpsim.port,
            COMMUNITY,
            &format!("{IF_OPER_STATUS}.{if_index}"),
            status,
        )
    }

    /// Sets a bridge port's dot1qPvid (the port's VLAN) on the simulated switch.
    pub fn set_pvid(&self, bridge_port: u32, vlan: u32) -> Result<()> {
        crate::snmp_set(
            self.snmpsim.port,
            COMMUNITY,
            &format!("1.3.6.1.2.1.17.7.1.4.5.1.1.{bridge_port}"),
            "u",
            &vlan.to_string(),
        )
    }

    /// Open incidents from the API.
    pub fn open_incidents(&self) -> Vec<Value> {
        self.get(&format!("{}/api/v1/incidents?state=open", self.api))
            .and_then(|v| v["incidents"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The open incident on a port of `a-b12-01`, if any.
    pub fn open_port_incident(&self, if_index: u64) -> Option<Value> {
        self.open_device_port_incident("a-b12-01", if_index)
    }

    /// The open incident on a port of `device`, if any.
    pub fn open_device_port_incident(&self, device: &str, if_index: u64) -> Option<Value> {
        self.open_incidents()
            .into_iter()
            .find(|i| i["device"] == device && i["if_index"] == if_index)
    }

    /// How many stored events of `kind` the port of `a-b12-01` has.
    pub fn port_events(&self, kind: &str, if_index: u64) -> usize {
        self.get(&format!(
            "{}/api/v1/events?device=a-b12-01&kind={kind}&limit=1000",
            self.api
        ))
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["if_index"] == if_index)
        .count()
    }

    /// A GET of the collector API as JSON, with the SSC token when the API needs one.
    pub fn get(&self, url: &str) -> Option<Value> {
        match self.token {
            Some(t) => crate::http_call("GET", url, Some(t), None)
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|(_, v)| v),
            None => http_json(url).ok(),
        }
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "agent log:\n{}\ncollector log:\n{}",
            self.agent.log(),
            self.collector.log()
        )
    }
}

/// The bearer token of the SMS gateway webhook in [`notify_config`] (file `sms.token`).
pub const SMS_TOKEN: &str = "sms-gateway-token-0815";

/// The collector's notification settings for the e2e rig: SMTP on `smtp`, the SMS-gateway
/// webhook at `webhook` (token file `sms.token`), the SSC queue on Mosquitto
/// (`cnaas/v1/queue/{audience}/{customer}`) and in `ssc.jsonl`; customer uni-b ("A", always
/// closed) and uni-c ("B").
pub fn notify_config(smtp: u16, webhook: &str, attempts: u32) -> String {
    format!(
        r#"
[notify]
language = "nb"
base_url = "http://collector.example"
ssc = [{{ channel = "ssc-queue", to = "ssc" }}, {{ channel = "ssc-log", to = "ssc" }}]
secondline = [{{ channel = "ssc-queue", to = "campus" }}]
contact = "Sikt kundesenter, kontakt@sikt.example"
attempts = {attempts}
backoff = "200ms"
max_backoff = "1s"
late_retry = "2s"

[[channel]]
name = "mail"
kind = "smtp"
server = "127.0.0.1:{smtp}"
from = "noc@sikt.example"
timeout = "3s"

[[channel]]
name = "sms-gw"
kind = "webhook"
url = "{webhook}"
token_file = "sms.token"
timeout = "3s"

[[channel]]
name = "ssc-queue"
kind = "mqtt"
topic = "cnaas/v1/queue/{{audience}}/{{customer}}"

[[channel]]
name = "ssc-log"
kind = "file"
path = "ssc.jsonl"

# Customer A: no opening hours, so it is always closed and severity 1-2 wakes its
# technical contacts.
[[customer]]
id = "uni-b"
name = "Universitetet i B"
language = "nb"
incident = {{ channel = "mail", to = "servicedesk@uni-b.no" }}
change = {{ channel = "mail", to = "change@uni-b.no" }}
local_support = {{ channel = "mail", to = "helpdesk@uni-b.no" }}
technical = [{{ channel = "sms-gw", to = "+4791234567" }}, {{ channel = "mail", to = "ola.nordmann@uni-b.no" }}]
administrative = [{{ channel = "mail", to = "kontrakt@uni-b.no" }}]

# Customer B: has nothing in this fault.
[[customer]]
id = "uni-c"
name = "University College C"
language = "en"
opening_hours = ["mon-fri 08:00-16:00"]
incident = {{ channel = "mail", to = "servicedesk@uni-c.no" }}
change = {{ channel = "mail", to = "change@uni-c.no" }}
local_support = {{ channel = "mail", to = "helpdesk@uni-c.no" }}
technical = [{{ channel = "sms-gw", to = "+4799999999" }}]
administrative = [{{ channel = "mail", to = "kontrakt@uni-c.no" }}]
"#
    )
}
