//! The agent's configuration file (TOML): what it is, which devices to poll and how, where to
//! publish. Loading checks everything it can without touching the network and reports every
//! problem with file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cnaas_shared::config::{
    ConfigSource, Diagnostics, HumanDuration, Loaded, PathSeg, Secret, SecretSource,
};
use cnaas_shared::mqtt::MqttConfig;
use cnaas_shared::role::{PortRole, RolePatterns, RolePatternsConfig};
use cnaas_shared::topics;
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// `[agent]`.
    pub agent: AgentSection,
    /// `[metrics]`.
    pub metrics: MetricsSection,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[spool]`.
    pub spool: SpoolSection,
    /// `[traps]`: the trap listener; without it no traps are received.
    pub traps: Option<TrapsSection>,
    /// `[defaults]`: plan settings for every device.
    #[serde(default)]
    pub defaults: Defaults,
    /// `[poller]`: limits across devices.
    #[serde(default)]
    pub poller: PollerSection,
    /// `[roles]`: ifAlias patterns giving port roles.
    #[serde(default)]
    pub roles: RolePatternsConfig,
    /// `[[device]]`: the switches to poll.
    #[serde(default)]
    pub device: Vec<DeviceEntry>,
}

/// `[agent]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// This probe's id, unique among agents (e.g. the site name); part of every topic.
    pub id: String,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address for `/metrics` and `/healthz`.
    pub listen: SocketAddr,
}

/// `[traps]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapsSection {
    /// UDP address to receive SNMP traps on (e.g. `0.0.0.0:162`).
    pub listen: SocketAddr,
    /// Traps a device sends within this long after it started are only logged.
    #[serde(default = "default_quiet")]
    pub quiet_after_reboot: HumanDuration,
}

fn default_quiet() -> HumanDuration {
    HumanDuration(crate::traps::DEFAULT_QUIET)
}

/// `[spool]`: where events wait for the broker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Folder of the spool file (relative to the config file's folder).
    pub dir: PathBuf,
    /// Bound on the spooled payload, in MiB; when full the oldest events are dropped.
    #[serde(default = "default_spool_mb")]
    pub max_size_mb: u64,
}

fn default_spool_mb() -> u64 {
    64
}

/// `[poller]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollerSection {
    /// Devices polled at the same moment, at most (a global bound on the agent's load).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
}

impl Default for PollerSection {
    fn default() -> Self {
        PollerSection {
            max_concurrent: default_max_concurrent(),
        }
    }
}

fn default_max_concurrent() -> usize {
    256
}

/// `[defaults]`, each overridable per device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Link plan interval (ifOperStatus, ifAdminStatus, ifLastChange, sysUpTime).
    #[serde(default = "default_link_interval")]
    pub link_interval: HumanDuration,
    /// Label refresh interval (ifName, ifAlias, ifDescr).
    #[serde(default = "default_labels_interval")]
    pub labels_interval: HumanDuration,
    /// Time to wait for one SNMP response.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Resends after a timeout.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failed link polls in a row before the device is declared unreachable.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: u32,
    /// GETBULK max-repetitions.
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            link_interval: default_link_interval(),
            labels_interval: default_labels_interval(),
            timeout: default_timeout(),
            retries: default_retries(),
            unreachable_after: default_unreachable_after(),
            max_repetitions: default_max_repetitions(),
        }
    }
}

fn default_link_interval() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_labels_interval() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::millis(800)
}
fn default_retries() -> u32 {
    1
}
fn default_unreachable_after() -> u32 {
    3
}
fn default_max_repetitions() -> u32 {
    25
}

/// `[[device]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Name, unique within the agent; part of the event topic.
    pub name: String,
    /// `host:port` of the SNMP agent (port 161 when left out).
    pub address: String,
    /// How to talk SNMP to it.
    pub snmp: SnmpEntry,
    /// Overrides `[defaults] link_interval`.
    pub link_interval: Option<HumanDuration>,
    /// Overrides `[defaults] labels_interval`.
    pub labels_interval: Option<HumanDuration>,
    /// Overrides `[defaults] timeout`.
    pub timeout: Option<HumanDuration>,
    /// Overrides `[defaults] retries`.
    pub retries: Option<u32>,
    /// Overrides `[defaults] unreachable_after`.
    pub unreachable_after: Option<u32>,
    /// Overrides `[defaults] max_repetitions`.
    pub max_repetitions: Option<u32>,
    /// Port roles from inventory, by ifName (or ifIndex written as a string).
    #[serde(default)]
    pub ports: BTreeMap<String, PortRole>,
}

/// The `snmp` table of a device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpEntry {
    /// Protocol version; this build speaks `"2c"`.
    pub version: String,
    /// Community, written in the file (keep the file private), ...
    pub community: Option<String>,
    /// ... or read from this file, ...
    pub community_file: Option<PathBuf>,
    /// ... or from this environment variable.
    pub community_env: Option<String>,
}

/// A device, resolved and ready to poll.
#[derive(Debug, Clone)]
pub struct Device {
    /// Name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// SNMPv2c community.
    pub community: Secret,
    /// Link plan interval.
    pub link_interval: Duration,
    /// Label refresh interval.
    pub labels_interval: Duration,
    /// Response timeout.
    pub timeout: Duration,
    /// Resends after a timeout.
    pub retries: u32,
    /// Failed polls before unreachable.
    pub unreachable_after: u32,
    /// GETBULK max-repetitions.
    pub max_repetitions: u32,
    /// Port roles from inventory.
    pub ports: BTreeMap<String, PortRole>,
}

/// The whole agent configuration, resolved.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Agent id.
    pub id: String,
    /// `/metrics` address.
    pub metrics_listen: SocketAddr,
    /// MQTT settings.
    pub mqtt: MqttConfig,
    /// Folder of the config file (relative paths are resolved against it).
    pub base_dir: PathBuf,
    /// Spool folder (resolved).
    pub spool_dir: PathBuf,
    /// Spool bound in bytes.
    pub spool_max_bytes: u64,
    /// Trap listener address, if any.
    pub traps_listen: Option<SocketAddr>,
    /// Quiet period after a device's start during which its traps are only logged.
    pub traps_quiet: Duration,
    /// Global bound on devices polled at once.
    pub max_concurrent: usize,
    /// ifAlias role patterns.
    pub roles: RolePatterns,
    /// Devices.
    pub devices: Vec<Device>,
}

const MIN_INTERVAL: Duration = Duration::from_millis(100);

impl AgentConfig {
    /// Reads, parses and checks a file. On success the warnings come along.
    pub fn load(path: &Path) -> Result<(AgentConfig, Diagnostics), Diagnostics> {
        Self::from_source(ConfigSource::read(path)?)
    }

    /// Parses and checks text (as if read from `source.file`).
    pub fn from_source(source: ConfigSource) -> Result<(AgentConfig, Diagnostics), Diagnostics> {
        let mut loaded = source.parse::<AgentFile>()?;
        let resolved = resolve(&mut loaded);
        let (_, warnings) = loaded.finish()?;
        match resolved {
            Some(cfg) => Ok((cfg, warnings)),
            // resolve() only returns None after recording an error, so finish() failed above.
            None => Err(warnings),
        }
    }
}

fn resolve(loaded: &mut Loaded<AgentFile>) -> Option<AgentConfig> {
    use PathSeg::{Index, Key};
    let base_dir = loaded.source().base_dir.clone();
    let mut ok = true;
    let f = &loaded.value;
    let mut errors: Vec<(Vec<PathSeg<'static>>, String, Option<String>)> = Vec::new();
    let mut warnings: Vec<(Vec<PathSeg<'static>>, String, Option<String>)> = Vec::new();

    if !topics::is_valid_level(&f.agent.id) {
        errors.push((
            vec![Key("agent"), Key("id")],
            format!("agent id `{}` cannot be used in an MQTT topic", f.agent.id),
            Some("use letters, digits, `-`, `_` or `.`; no `/`, `+` or `#`".into()),
        ));
    }
    if let Err(e) = f.mqtt.validate() {
        errors.push((vec![Key("mqtt"), Key("url")], e.to_string(), None));
    }
    let roles = match RolePatterns::build(&f.roles) {
        Ok(r) => r,
        Err(e) => {
            errors.push((
                vec![Key("roles"), Key(e.role.as_str())],
                e.to_string(),
                Some("patterns use Rust regex syntax; `(?i)` makes them case-insensitive".into()),
            ));
            RolePatterns::default()
        }
    };
    if f.spool.max_size_mb == 0 {
        errors.push((
            vec![Key("spool"), Key("max_size_mb")],
            "must be at least 1".into(),
            None,
        ));
    }
    if f.poller.max_concurrent == 0 {
        errors.push((
            vec![Key("poller"), Key("max_concurrent")],
            "must be at least 1".into(),
            None,
        ));
    }
    check_interval(
        &mut errors,
        vec![Key("defaults"), Key("link_interval")],
        f.defaults.link_interval,
    );
    check_interval(
        &mut errors,
        vec![Key("defaults"), Key("labels_interval")],
        f.defaults.labels_interval,
    );
    check_interval(
        &mut errors,
        vec![Key("defaults"), Key("timeout")],
        f.defaults.timeout,
    );
    if f.device.is_empty() {
        warnings.push((
            vec![Key("agent")],
            "no [[device]] is configured: the agent will poll nothing".into(),
            None,
        ));
    }

    let mut names = HashSet::new();
    let mut devices = Vec::new();
    for (i, d) in f.device.iter().enumerate() {
        let at = |k: &'static str| vec![Key("device"), Index(i), Key(k)];
        if !topics::is_valid_level(&d.name) {
            errors.push((
                at("name"),
                format!("device name `{}` cannot be used in an MQTT topic", d.name),
                None,
            ));
        }
        if !names.insert(d.name.clone()) {
            errors.push((
                at("name"),
                format!("device `{}` is configured twice", d.name),
                None,
            ));
        }
        let address = match normalise_address(&d.address) {
            Ok(a) => a,
            Err(reason) => {
                errors.push((
                    at("address"),
                    reason,
                    Some("write host:port, e.g. \"192.0.2.10:161\"".into()),
                ));
                String::new()
            }
        };
        let snmp_at = |k: &'static str| vec![Key("device"), Index(i), Key("snmp"), Key(k)];
        if d.snmp.version != "2c" {
            errors.push((
                snmp_at("version"),
                format!(
                    "SNMP version `{}` is not supported by this build",
                    d.snmp.version
                ),
                Some("use version = \"2c\"".into()),
            ));
        }
        let snmp = &d.snmp;
        let given = [
            snmp.community.is_some(),
            snmp.community_file.is_some(),
            snmp.community_env.is_some(),
        ]
        .into_iter()
        .filter(|g| *g)
        .count();
        let community = match &snmp.community {
            _ if given != 1 => {
                errors.push((
                    vec![Key("device"), Index(i), Key("snmp")],
                    "give exactly one of community, community_file and community_env".into(),
                    None,
                ));
                None
            }
            Some(c) if c.is_empty() => {
                errors.push((snmp_at("community"), "the community is empty".into(), None));
                None
            }
            Some(c) => Some(Secret::new(c.clone())),
            None => {
                let src = SecretSource {
                    file: snmp.community_file.clone(),
                    env: snmp.community_env.clone(),
                };
                match src.read(&base_dir) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let key = if src.file.is_some() {
                            "community_file"
                        } else {
                            "community_env"
                        };
                        errors.push((snmp_at(key), e.to_string(), None));
                        None
                    }
                }
            }
        };
        let link_interval = d.link_interval.unwrap_or(f.defaults.link_interval);
        let timeout = d.timeout.unwrap_or(f.defaults.timeout);
        let retries = d.retries.unwrap_or(f.defaults.retries);
        for (key, v) in [
            ("link_interval", d.link_interval),
            ("labels_interval", d.labels_interval),
            ("timeout", d.timeout),
        ] {
            if let Some(v) = v {
                check_interval(&mut errors, at(key), v);
            }
        }
        let worst_case = timeout.get() * (retries + 1);
        if worst_case > link_interval.get() {
            warnings.push((
                at("name"),
                format!(
                    "timeout {timeout} x {} attempts is longer than the link interval {link_interval}: an unreachable device is polled less often than configured",
                    retries + 1
                ),
                Some("lower timeout or retries, or raise link_interval".into()),
            ));
        }
        let max_repetitions = d.max_repetitions.unwrap_or(f.defaults.max_repetitions);
        if max_repetitions == 0 || max_repetitions > 200 {
            errors.push((
                at("max_repetitions"),
                "max_repetitions must be 1-200".into(),
                None,
            ));
        }
        if let Some(community) = community {
            devices.push(Device {
                name: d.name.clone(),
                address,
                community,
                link_interval: link_interval.get(),
                labels_interval: d
                    .labels_interval
                    .unwrap_or(f.defaults.labels_interval)
                    .get(),
                timeout: timeout.get(),
                retries,
                unreachable_after: d
                    .unreachable_after
                    .unwrap_or(f.defaults.unreachable_after)
                    .max(1),
                max_repetitions: max_repetitions.clamp(1, 200),
                ports: d.ports.clone(),
            });
        }
    }
    let cfg = AgentConfig {
        id: f.agent.id.clone(),
        metrics_listen: f.metrics.listen,
        mqtt: f.mqtt.clone(),
        spool_dir: base_dir.join(&f.spool.dir),
        spool_max_bytes: f.spool.max_size_mb.saturating_mul(1 << 20),
        traps_listen: f.traps.as_ref().map(|t| t.listen),
        traps_quiet: f
            .traps
            .as_ref()
            .map_or(crate::traps::DEFAULT_QUIET, |t| t.quiet_after_reboot.get()),
        base_dir,
        max_concurrent: f.poller.max_concurrent.max(1),
        roles,
        devices,
    };
    for (path, msg, hint) in warnings {
        loaded.warn_at(&path, msg, hint);
    }
    for (path, msg, hint) in errors {
        ok = false;
        loaded.error_at(&path, msg, hint);
    }
    ok.then_some(cfg)
}

fn check_interval(
    errors: &mut Vec<(Vec<PathSeg<'static>>, String, Option<String>)>,
    path: Vec<PathSeg<'static>>,
    d: HumanDuration,
) {
    if d.get() < MIN_INTERVAL {
        errors.push((
            path,
            format!("{d} is too short"),
            Some("use at least 100ms".into()),
        ));
    }
}

/// `host:port`, with port 161 added when missing. The host is not resolved here.
fn normalise_address(addr: &str) -> Result<String, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("the address is empty".into());
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(addr.to_owned());
    }
    if addr.parse::<std::net::IpAddr>().is_ok() {
        return Ok(if addr.contains(':') {
            format!("[{addr}]:161")
        } else {
            format!("{addr}:161")
        });
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(addr.to_owned()),
                _ => Err(format!("`{port}` is not a port number")),
            }
        }
        None if !addr.contains(char::is_whitespace) => Ok(format!("{addr}:161")),
        _ => Err(format!("`{addr}` is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
[agent]
id = "site-b12"

[metrics]
listen = "127.0.0.1:16900"

[mqtt]
url = "mqtt://127.0.0.1:16883"

[spool]
dir = "spool"

[defaults]
link_interval = "2s"

[roles]
uplink = ['(?i)^uplink']

[[device]]
name = "a-b12-01"
address = "127.0.0.1:16161"
snmp = { version = "2c", community = "access-switch" }
link_interval = "1s"
timeout = "300ms"
ports = { "Te1/1/1" = "uplink" }
"#;

    #[test]
    fn a_good_file_resolves() {
        let (cfg, warnings) =
            AgentConfig::from_source(ConfigSource::from_text("a.toml", GOOD)).unwrap();
        assert!(warnings.0.is_empty(), "{warnings}");
        assert_eq!(cfg.id, "site-b12");
        let d = &cfg.devices[0];
        assert_eq!(d.link_interval, Duration::from_secs(1));
        assert_eq!(d.labels_interval, Duration::from_secs(600));
        assert_eq!(d.timeout, Duration::from_millis(300));
        assert_eq!(d.community.expose(), "access-switch");
        assert_eq!(d.ports.get("Te1/1/1"), Some(&PortRole::Uplink));
        assert_eq!(cfg.roles.match_alias("uplink: x"), Some(PortRole::Uplink));
    }

    fn errors(text: &str) -> Vec<String> {
        match AgentConfig::from_source(ConfigSource::from_text("a.toml", text)) {
            Ok(_) => vec![],
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn misspelt_key_and_bad_duration_have_line_and_column() {
        let text = GOOD
            .replace("link_interval = \"1s\"", "lnik_interval = \"1s\"")
            .replace("link_interval = \"2s\"", "link_interval = \"2x\"");
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with("a.toml:15:17: error: invalid duration `2x`"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("a.toml:24:1: error: unknown field `lnik_interval`"),
            "{}",
            e[1]
        );
        assert!(
            e[1].contains("hint: did you mean `link_interval`?"),
            "{}",
            e[1]
        );
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = GOOD
            .replace("id = \"site-b12\"", "id = \"site/b12\"")
            .replace(
                "address = \"127.0.0.1:16161\"",
                "address = \"127.0.0.1:99999\"",
            )
            .replace(
                "version = \"2c\", community = \"access-switch\"",
                "version = \"1\"",
            )
            + "\n[[device]]\nname = \"a-b12-01\"\naddress = \"x\"\nsnmp = { version = \"2c\", community = \"c\" }\n";
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("a.toml:3:6") && m.contains("MQTT topic")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("a.toml:22:11") && m.contains("99999")),
            "{e:#?}"
        );
        assert!(e.iter().any(|m| m.contains("not supported")), "{e:#?}");
        assert!(
            e.iter().any(|m| m.contains("exactly one of community")),
            "{e:#?}"
        );
        assert!(e.iter().any(|m| m.contains("configured twice")), "{e:#?}");
    }

    #[test]
    fn slow_timeouts_warn() {
        let text = GOOD.replace("timeout = \"300ms\"", "timeout = \"900ms\"");
        let (_, w) = AgentConfig::from_source(ConfigSource::from_text("a.toml", &text)).unwrap();
        assert_eq!(w.0.len(), 1);
        assert!(w.0[0].message.contains("longer than the link interval"));
    }

    #[test]
    fn addresses() {
        assert_eq!(normalise_address("10.0.0.1").unwrap(), "10.0.0.1:161");
        assert_eq!(
            normalise_address("sw1.example.org").unwrap(),
            "sw1.example.org:161"
        );
        assert_eq!(normalise_address("sw1:1161").unwrap(), "sw1:1161");
        assert_eq!(normalise_address("::1").unwrap(), "[::1]:161");
        assert!(normalise_address("sw1:x").is_err());
        assert!(normalise_address("").is_err());
    }
}
