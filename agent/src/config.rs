//! The agent's configuration file (TOML): what it is, which devices to poll and how, where to
//! publish. Loading checks everything it can without touching the network and reports every
//! problem with file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::config::{
    ConfigSource, Diagnostics, HumanDuration, Loaded, PathSeg, Secret, SecretSource,
};
use cnaas_shared::mqtt::MqttConfig;
use cnaas_shared::role::{PortRole, RolePatterns, RolePatternsConfig};
use cnaas_shared::topics;
use serde::Deserialize;

use crate::netconf::{Auth as NcAuth, HostKeys, Target as NetconfTarget};
use crate::snmp::{AuthProto, Credentials, PrivProto, V3};

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
    /// `[inventory]`: where more devices come from.
    #[serde(default)]
    pub inventory: InventorySection,
}

/// `[inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// `[inventory.cnaas_nms]`: poll the devices CNaaS-NMS manages too.
    pub cnaas_nms: Option<NmsSection>,
}

/// `[inventory.cnaas_nms]`: the managed devices of CNaaS-NMS are polled too (at their
/// `management_ip`, with `snmp` and `[defaults]`); `[[device]]` entries of the same name win.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmsSection {
    /// Base URL.
    pub url: String,
    /// File holding the JWT (never logged).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the JWT instead.
    pub token_env: Option<String>,
    /// How often the list is read again.
    #[serde(default = "default_nms_refresh")]
    pub refresh: HumanDuration,
    /// Time limit of each request.
    #[serde(default = "default_timeout_nms")]
    pub timeout: HumanDuration,
    /// The SNMP port of the devices.
    #[serde(default = "default_snmp_port")]
    pub port: u16,
    /// How to talk SNMP to them.
    pub snmp: SnmpEntry,
    /// Which `device_type`s to poll (all of ACCESS, DIST, CORE by default).
    #[serde(default = "default_nms_types")]
    pub device_types: Vec<String>,
}

fn default_nms_refresh() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_timeout_nms() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_snmp_port() -> u16 {
    161
}
fn default_nms_types() -> Vec<String> {
    vec!["ACCESS".into(), "DIST".into(), "CORE".into()]
}

/// `[inventory.cnaas_nms]`, resolved.
#[derive(Debug, Clone)]
pub struct DeviceSource {
    /// Where CNaaS-NMS is.
    pub target: cnaas_shared::cnaas_nms::NmsTarget,
    /// Refresh interval.
    pub refresh: Duration,
    /// SNMP port.
    pub port: u16,
    /// `device_type`s polled (upper case).
    pub types: Vec<String>,
    /// A device with the credentials and `[defaults]`: name and address are filled in.
    pub template: Device,
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
    /// GETBULK max-repetitions, at most: a walk asks for the rows it found last time plus one,
    /// within this and a budget of 256 varbinds a request.
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
    /// Counters plan interval (traffic, errors, discards, ifHighSpeed).
    #[serde(default = "default_counters_interval")]
    pub counters_interval: HumanDuration,
    /// VLAN plan interval (dot1qPvid).
    #[serde(default = "default_vlan_interval")]
    pub vlan_interval: HumanDuration,
    /// Topology plan interval (LLDP neighbours, link aggregation); it also runs soon after a
    /// watched port changes.
    #[serde(default = "default_topology_interval")]
    pub topology_interval: HumanDuration,
    /// Reachability probe interval.
    #[serde(default = "default_reachability_interval")]
    pub reachability_interval: HumanDuration,
    /// How reachability is probed.
    #[serde(default)]
    pub reachability: Reachability,
}

/// How a device's reachability is probed, besides the link polls themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// ICMP echo where the process may open an ICMP socket, else SNMP.
    #[default]
    Auto,
    /// ICMP echo (a device that answers ping is not down, even if SNMP fails).
    Icmp,
    /// An SNMP GET of sysUpTime.
    Snmp,
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
            counters_interval: default_counters_interval(),
            vlan_interval: default_vlan_interval(),
            topology_interval: default_topology_interval(),
            reachability_interval: default_reachability_interval(),
            reachability: Reachability::Auto,
        }
    }
}

fn default_counters_interval() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_vlan_interval() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_topology_interval() -> HumanDuration {
    HumanDuration::secs(300)
}
fn default_reachability_interval() -> HumanDuration {
    HumanDuration::secs(15)
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
    64
}

/// `[[device]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Name, unique within the agent; part of the event topic.
    pub name: String,
    /// `host:port` of the SNMP agent (port 161 when left out).
    pub address: String,
    /// How to talk SNMP to it (leave out for a device polled over NETCONF only).
    pub snmp: Option<SnmpEntry>,
    /// NETCONF over SSH: when given, the link and counters plans use it instead of SNMP.
    pub netconf: Option<NetconfEntry>,
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
    /// Overrides `[defaults] counters_interval`.
    pub counters_interval: Option<HumanDuration>,
    /// Overrides `[defaults] vlan_interval`.
    pub vlan_interval: Option<HumanDuration>,
    /// Overrides `[defaults] topology_interval`.
    pub topology_interval: Option<HumanDuration>,
    /// Overrides `[defaults] reachability_interval`.
    pub reachability_interval: Option<HumanDuration>,
    /// Overrides `[defaults] reachability`.
    pub reachability: Option<Reachability>,
    /// Port roles from inventory, by ifName (or ifIndex written as a string).
    #[serde(default)]
    pub ports: BTreeMap<String, PortRole>,
}

/// The `snmp` table of a device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpEntry {
    /// Protocol version: `"2c"` or `"3"`.
    pub version: String,
    /// v2c: the community, written in the file (keep the file private), ...
    pub community: Option<String>,
    /// ... or read from this file, ...
    pub community_file: Option<PathBuf>,
    /// ... or from this environment variable.
    pub community_env: Option<String>,
    /// v3: USM user name.
    pub user: Option<String>,
    /// v3: authentication protocol (`sha`, `sha224`, `sha256`, `sha384`, `sha512`, `md5`).
    pub auth_protocol: Option<AuthProto>,
    /// v3: file holding the authentication password ...
    pub auth_password_file: Option<PathBuf>,
    /// ... or the environment variable holding it.
    pub auth_password_env: Option<String>,
    /// v3: privacy protocol (`aes`, `aes192`, `aes256`, `des`); leave out for authNoPriv.
    pub priv_protocol: Option<PrivProto>,
    /// v3: file holding the privacy password ...
    pub priv_password_file: Option<PathBuf>,
    /// ... or the environment variable holding it.
    pub priv_password_env: Option<String>,
    /// v3: context name (empty by default).
    pub context: Option<String>,
}

/// The `netconf` table of a device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetconfEntry {
    /// `host:port` of the SSH server; the device's host and port 830 when left out.
    pub address: Option<String>,
    /// SSH user.
    pub user: String,
    /// File holding the password ...
    pub password_file: Option<PathBuf>,
    /// ... or the environment variable holding it, ...
    pub password_env: Option<String>,
    /// ... or an OpenSSH private key file ...
    pub key_file: Option<PathBuf>,
    /// ... with its passphrase in this file, if it has one.
    pub key_passphrase_file: Option<PathBuf>,
    /// OpenSSH known_hosts file the server's host key must be in (`[host]:port` for ports
    /// other than 22; `ssh-keyscan -p 830 host` writes it).
    pub known_hosts: Option<PathBuf>,
    /// Skip the host key check: labs only. Exactly one of this and `known_hosts`.
    #[serde(default)]
    pub accept_any_host_key: bool,
    /// Bound on one RPC and on connecting (default 5 s).
    pub timeout: Option<HumanDuration>,
    /// Bound on one message in MiB (default 16): a server sending more is cut off.
    pub max_message_mb: Option<u32>,
    /// Subscribe to notifications where the server offers them (default true).
    pub notifications: Option<bool>,
}

type Problems = Vec<(Vec<PathSeg<'static>>, String, Option<String>)>;

/// Reads one secret given as `<key>_file` or `<key>_env` (exactly one).
fn read_secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
    key: &'static str,
    base_dir: &Path,
    at: &dyn Fn(&'static str) -> Vec<PathSeg<'static>>,
    errors: &mut Problems,
) -> Option<Secret> {
    let src = SecretSource {
        file: file.clone(),
        env: env.clone(),
    };
    if src.file.is_some() == src.env.is_some() {
        errors.push((
            at("version"),
            format!("give exactly one of {key}_file and {key}_env"),
            Some(
                "secrets come from a file or the environment, never from the config itself".into(),
            ),
        ));
        return None;
    }
    match src.read(base_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            let k = if src.file.is_some() { "_file" } else { "_env" };
            let field: &'static str = match (key, k) {
                ("auth_password", "_file") => "auth_password_file",
                ("auth_password", _) => "auth_password_env",
                ("priv_password", "_file") => "priv_password_file",
                _ => "priv_password_env",
            };
            errors.push((at(field), e.to_string(), None));
            None
        }
    }
}

fn resolve_credentials(
    snmp: &SnmpEntry,
    base_dir: &Path,
    table: &[PathSeg<'static>],
    errors: &mut Problems,
    warnings: &mut Problems,
) -> Option<Credentials> {
    use PathSeg::Key;
    let at = |k: &'static str| {
        let mut p = table.to_vec();
        p.push(Key(k));
        p
    };
    let v3_fields = [
        ("user", snmp.user.is_some()),
        ("auth_protocol", snmp.auth_protocol.is_some()),
        ("auth_password_file", snmp.auth_password_file.is_some()),
        ("auth_password_env", snmp.auth_password_env.is_some()),
        ("priv_protocol", snmp.priv_protocol.is_some()),
        ("priv_password_file", snmp.priv_password_file.is_some()),
        ("priv_password_env", snmp.priv_password_env.is_some()),
        ("context", snmp.context.is_some()),
    ];
    let v2_fields = [
        ("community", snmp.community.is_some()),
        ("community_file", snmp.community_file.is_some()),
        ("community_env", snmp.community_env.is_some()),
    ];
    match snmp.version.as_str() {
        "2c" => {
            if let Some((k, _)) = v3_fields.iter().find(|(_, set)| *set) {
                errors.push((
                    at(k),
                    format!("`{k}` belongs to SNMPv3"),
                    Some("use version = \"3\" or remove it".into()),
                ));
                return None;
            }
            if v2_fields.iter().filter(|(_, set)| *set).count() != 1 {
                errors.push((
                    at("version"),
                    "give exactly one of community, community_file and community_env".into(),
                    None,
                ));
                return None;
            }
            let community = match &snmp.community {
                Some(c) if c.is_empty() => {
                    errors.push((at("community"), "the community is empty".into(), None));
                    return None;
                }
                Some(c) => Secret::new(c.clone()),
                None => {
                    let src = SecretSource {
                        file: snmp.community_file.clone(),
                        env: snmp.community_env.clone(),
                    };
                    match src.read(base_dir) {
                        Ok(s) => s,
                        Err(e) => {
                            let key = if src.file.is_some() {
                                "community_file"
                            } else {
                                "community_env"
                            };
                            errors.push((at(key), e.to_string(), None));
                            return None;
                        }
                    }
                }
            };
            Some(Credentials::V2c { community })
        }
        "3" => {
            if let Some((k, _)) = v2_fields.iter().find(|(_, set)| *set) {
                errors.push((
                    at(k),
                    format!("`{k}` belongs to SNMPv2c"),
                    Some("SNMPv3 uses user and passwords".into()),
                ));
                return None;
            }
            let Some(user) = snmp.user.clone().filter(|u| !u.is_empty()) else {
                errors.push((at("version"), "SNMPv3 needs `user`".into(), None));
                return None;
            };
            let Some(auth) = snmp.auth_protocol else {
                errors.push((
                    at("version"),
                    "SNMPv3 needs `auth_protocol`".into(),
                    Some("e.g. auth_protocol = \"sha256\"".into()),
                ));
                return None;
            };
            let auth_password = read_secret(
                &snmp.auth_password_file,
                &snmp.auth_password_env,
                "auth_password",
                base_dir,
                &at,
                errors,
            )?;
            let privacy = match snmp.priv_protocol {
                Some(p) => Some((
                    p,
                    read_secret(
                        &snmp.priv_password_file,
                        &snmp.priv_password_env,
                        "priv_password",
                        base_dir,
                        &at,
                        errors,
                    )?,
                )),
                None if snmp.priv_password_file.is_some() || snmp.priv_password_env.is_some() => {
                    errors.push((
                        at("version"),
                        "a privacy password needs `priv_protocol`".into(),
                        None,
                    ));
                    return None;
                }
                None => {
                    warnings.push((
                        at("version"),
                        "SNMPv3 without privacy (authNoPriv): the traffic is not encrypted".into(),
                        Some("add priv_protocol = \"aes\" and a privacy password".into()),
                    ));
                    None
                }
            };
            // RFC 3414 11.2: passwords shorter than 8 characters are refused by agents.
            let short = auth_password.expose().chars().count() < 8
                || privacy
                    .as_ref()
                    .is_some_and(|(_, p)| p.expose().chars().count() < 8);
            if short {
                errors.push((
                    at("version"),
                    "SNMPv3 passwords must be at least 8 characters".into(),
                    None,
                ));
                return None;
            }
            Some(Credentials::V3(V3 {
                user,
                auth,
                auth_password,
                privacy,
                context: snmp.context.clone().unwrap_or_default(),
            }))
        }
        other => {
            errors.push((
                at("version"),
                format!("SNMP version `{other}` is not supported"),
                Some("use version = \"2c\" or \"3\"".into()),
            ));
            None
        }
    }
}

fn resolve_netconf(
    nc: &NetconfEntry,
    device_address: &str,
    base_dir: &Path,
    i: usize,
    errors: &mut Problems,
    warnings: &mut Problems,
) -> Option<NetconfTarget> {
    use PathSeg::{Index, Key};
    let at = |k: &'static str| vec![Key("device"), Index(i), Key("netconf"), Key(k)];
    let address = match &nc.address {
        Some(a) => normalise_address(a, 830),
        None => match device_address.parse::<SocketAddr>() {
            Ok(sa) => Ok(SocketAddr::new(sa.ip(), 830).to_string()),
            Err(_) => normalise_address(
                device_address
                    .rsplit_once(':')
                    .map_or(device_address, |(h, _)| h),
                830,
            ),
        },
    };
    let address = match address {
        Ok(a) => a,
        Err(reason) => {
            errors.push((at("address"), reason, None));
            return None;
        }
    };
    if nc.user.is_empty() {
        errors.push((at("user"), "the user is empty".into(), None));
        return None;
    }
    let given = [
        nc.password_file.is_some(),
        nc.password_env.is_some(),
        nc.key_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        errors.push((
            at("user"),
            "give exactly one of password_file, password_env and key_file".into(),
            Some(
                "secrets come from a file or the environment, never from the config itself".into(),
            ),
        ));
        return None;
    }
    let auth = if let Some(file) = &nc.key_file {
        let file = base_dir.join(file);
        if let Err(e) = std::fs::metadata(&file) {
            errors.push((at("key_file"), format!("{}: {e}", file.display()), None));
            return None;
        }
        let passphrase = match &nc.key_passphrase_file {
            Some(p) => match (SecretSource {
                file: Some(p.clone()),
                env: None,
            })
            .read(base_dir)
            {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push((at("key_passphrase_file"), e.to_string(), None));
                    return None;
                }
            },
            None => None,
        };
        NcAuth::Key { file, passphrase }
    } else {
        if nc.key_passphrase_file.is_some() {
            errors.push((
                at("key_passphrase_file"),
                "a passphrase belongs to key_file".into(),
                None,
            ));
            return None;
        }
        let src = SecretSource {
            file: nc.password_file.clone(),
            env: nc.password_env.clone(),
        };
        match src.read(base_dir) {
            Ok(s) => NcAuth::Password(s),
            Err(e) => {
                let k = if src.file.is_some() {
                    "password_file"
                } else {
                    "password_env"
                };
                errors.push((at(k), e.to_string(), None));
                return None;
            }
        }
    };
    let host_keys = match (&nc.known_hosts, nc.accept_any_host_key) {
        (Some(path), false) => {
            let path = base_dir.join(path);
            if let Err(e) = std::fs::metadata(&path) {
                errors.push((at("known_hosts"), format!("{}: {e}", path.display()), None));
                return None;
            }
            HostKeys::KnownHosts(path)
        }
        (None, true) => {
            warnings.push((
                at("accept_any_host_key"),
                "the NETCONF server's host key is not checked: anyone on the path can pose as the device".into(),
                Some("for labs only; give known_hosts in production".into()),
            ));
            HostKeys::AcceptAny
        }
        _ => {
            errors.push((
                at("known_hosts"),
                "give exactly one of known_hosts and accept_any_host_key = true".into(),
                Some("`ssh-keyscan -p 830 <host> >> known_hosts` records the device's key".into()),
            ));
            return None;
        }
    };
    let timeout = nc
        .timeout
        .map_or(Duration::from_secs(5), HumanDuration::get);
    if timeout < MIN_INTERVAL {
        errors.push((
            at("timeout"),
            format!("must be at least {MIN_INTERVAL:?}"),
            None,
        ));
    }
    let mb = nc.max_message_mb.unwrap_or(16);
    if mb == 0 || mb > 1024 {
        errors.push((at("max_message_mb"), "must be 1-1024".into(), None));
        return None;
    }
    Some(NetconfTarget {
        address,
        user: nc.user.clone(),
        auth,
        host_keys,
        timeout,
        max_message: usize::try_from(mb).unwrap_or(16) << 20,
        notifications: nc.notifications.unwrap_or(true),
    })
}

/// A device, resolved and ready to poll.
#[derive(Debug, Clone)]
pub struct Device {
    /// Name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Community or USM user; none for a device polled over NETCONF only.
    pub credentials: Option<Credentials>,
    /// NETCONF settings: the link and counters plans use NETCONF when given.
    pub netconf: Option<Arc<NetconfTarget>>,
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
    /// Counters plan interval.
    pub counters_interval: Duration,
    /// VLAN plan interval.
    pub vlan_interval: Duration,
    /// Topology plan interval.
    pub topology_interval: Duration,
    /// Reachability probe interval.
    pub reachability_interval: Duration,
    /// How reachability is probed.
    pub reachability: Reachability,
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
    /// CNaaS-NMS as a source of more devices, if configured.
    pub device_source: Option<DeviceSource>,
}

const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Below this a counter poll only re-reads the switch's counter cache.
const COUNTER_CACHE: Duration = Duration::from_secs(5);

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
    } else if let Err(e) = f.mqtt.check_files(&base_dir) {
        let key = if matches!(e, cnaas_shared::mqtt::MqttConfigError::Ca { .. }) {
            "ca_file"
        } else {
            "password_file"
        };
        errors.push((vec![Key("mqtt"), Key(key)], e.to_string(), None));
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
    for (key, v) in [
        ("counters_interval", f.defaults.counters_interval),
        ("vlan_interval", f.defaults.vlan_interval),
        ("topology_interval", f.defaults.topology_interval),
        ("reachability_interval", f.defaults.reachability_interval),
    ] {
        check_interval(&mut errors, vec![Key("defaults"), Key(key)], v);
    }
    if f.device.is_empty() && f.inventory.cnaas_nms.is_none() {
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
        let address = match normalise_address(&d.address, 161) {
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
        let credentials = d.snmp.as_ref().map(|snmp| {
            let table = [Key("device"), Index(i), Key("snmp")];
            resolve_credentials(snmp, &base_dir, &table, &mut errors, &mut warnings)
        });
        let netconf = d.netconf.as_ref().map(|nc| {
            resolve_netconf(nc, &address, &base_dir, i, &mut errors, &mut warnings).map(Arc::new)
        });
        if d.snmp.is_none() && d.netconf.is_none() {
            errors.push((
                at("name"),
                format!("device `{}` has neither snmp nor netconf", d.name),
                Some("add snmp = { version = \"2c\", ... } or a [device.netconf] table".into()),
            ));
        }
        let link_interval = d.link_interval.unwrap_or(f.defaults.link_interval);
        let timeout = d.timeout.unwrap_or(f.defaults.timeout);
        let retries = d.retries.unwrap_or(f.defaults.retries);
        for (key, v) in [
            ("link_interval", d.link_interval),
            ("labels_interval", d.labels_interval),
            ("timeout", d.timeout),
            ("counters_interval", d.counters_interval),
            ("vlan_interval", d.vlan_interval),
            ("topology_interval", d.topology_interval),
            ("reachability_interval", d.reachability_interval),
        ] {
            if let Some(v) = v {
                check_interval(&mut errors, at(key), v);
            }
        }
        let counters_interval = d.counters_interval.unwrap_or(f.defaults.counters_interval);
        if counters_interval.get() < COUNTER_CACHE {
            warnings.push((
                at("name"),
                format!("counters every {counters_interval} only re-read the switch's cache"),
                Some("switches refresh counters every 5 s (Junos) to 15 s (Net-SNMP); poll at 15 s or slower".into()),
            ));
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
        // None: given but wrong (the error is recorded); Some(None): not given.
        let credentials = match credentials {
            Some(None) => None,
            Some(Some(c)) => Some(Some(c)),
            None => Some(None),
        };
        let netconf = match netconf {
            Some(None) => None,
            Some(Some(n)) => Some(Some(n)),
            None => Some(None),
        };
        if let (Some(credentials), Some(netconf)) = (credentials, netconf) {
            devices.push(Device {
                name: d.name.clone(),
                address,
                credentials,
                netconf,
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
                counters_interval: counters_interval.get(),
                vlan_interval: d.vlan_interval.unwrap_or(f.defaults.vlan_interval).get(),
                topology_interval: d
                    .topology_interval
                    .unwrap_or(f.defaults.topology_interval)
                    .get(),
                reachability_interval: d
                    .reachability_interval
                    .unwrap_or(f.defaults.reachability_interval)
                    .get(),
                reachability: d.reachability.unwrap_or(f.defaults.reachability),
                ports: d.ports.clone(),
            });
        }
    }
    let device_source = f.inventory.cnaas_nms.as_ref().and_then(|n| {
        let table = [Key("inventory"), Key("cnaas_nms"), Key("snmp")];
        let credentials =
            resolve_credentials(&n.snmp, &base_dir, &table, &mut errors, &mut warnings)?;
        if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
            errors.push((
                vec![Key("inventory"), Key("cnaas_nms"), Key("url")],
                format!(
                    "`{}` is not an http(s) URL",
                    cnaas_shared::config::redact_url(&n.url)
                ),
                None,
            ));
        }
        let token = cnaas_shared::config::SecretSource {
            file: n.token_file.clone(),
            env: n.token_env.clone(),
        };
        if (token.file.is_some() || token.env.is_some())
            && let Err(e) = token.read(&base_dir)
        {
            errors.push((
                vec![Key("inventory"), Key("cnaas_nms"), Key("token_file")],
                e.to_string(),
                None,
            ));
        }
        let d = &f.defaults;
        Some(DeviceSource {
            target: cnaas_shared::cnaas_nms::NmsTarget {
                url: n.url.trim_end_matches('/').to_owned(),
                token,
                timeout: n.timeout.get(),
                base_dir: base_dir.clone(),
            },
            refresh: n.refresh.get().max(Duration::from_secs(1)),
            port: n.port,
            types: n
                .device_types
                .iter()
                .map(|t| t.to_ascii_uppercase())
                .collect(),
            template: Device {
                name: String::new(),
                address: String::new(),
                credentials: Some(credentials),
                netconf: None,
                link_interval: d.link_interval.get(),
                labels_interval: d.labels_interval.get(),
                timeout: d.timeout.get(),
                retries: d.retries,
                unreachable_after: d.unreachable_after.max(1),
                max_repetitions: d.max_repetitions.clamp(1, 200),
                counters_interval: d.counters_interval.get(),
                vlan_interval: d.vlan_interval.get(),
                topology_interval: d.topology_interval.get(),
                reachability_interval: d.reachability_interval.get(),
                reachability: d.reachability,
                ports: BTreeMap::new(),
            },
        })
    });
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
        device_source,
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

/// `host:port`, with `default_port` added when missing. The host is not resolved here.
fn normalise_address(addr: &str, default_port: u16) -> Result<String, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("the address is empty".into());
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(addr.to_owned());
    }
    if addr.parse::<std::net::IpAddr>().is_ok() {
        return Ok(if addr.contains(':') {
            format!("[{addr}]:{default_port}")
        } else {
            format!("{addr}:{default_port}")
        });
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(addr.to_owned()),
                _ => Err(format!("`{port}` is not a port number")),
            }
        }
        None if !addr.contains(char::is_whitespace) => Ok(format!("{addr}:{default_port}")),
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
        assert_eq!(
            d.credentials
                .as_ref()
                .and_then(|c| c.community())
                .map(Secret::expose),
            Some("access-switch")
        );
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
    fn a_missing_mqtt_secret_is_an_error_that_shows_no_secret() {
        let text = GOOD.replacen(
            "[mqtt]\n",
            "[mqtt]\nusername = \"site\"\npassword_env = \"CNAAS_TEST_SURELY_UNSET_4711\"\n",
            1,
        );
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].contains("CNAAS_TEST_SURELY_UNSET_4711"), "{}", e[0]);
        let text = GOOD.replacen(
            "[mqtt]\n",
            "[mqtt]\nusername = \"site\"\npassword_file = \"/nonexistent/cnaas.pass\"\n",
            1,
        );
        let e = errors(&text);
        assert!(
            e[0].contains("cannot read secret file /nonexistent/cnaas.pass"),
            "{e:#?}"
        );
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
        assert!(e.iter().any(|m| m.contains("configured twice")), "{e:#?}");
    }

    #[test]
    fn slow_timeouts_warn() {
        let text = GOOD.replace("timeout = \"300ms\"", "timeout = \"900ms\"");
        let (_, w) = AgentConfig::from_source(ConfigSource::from_text("a.toml", &text)).unwrap();
        assert_eq!(w.0.len(), 1);
        assert!(w.0[0].message.contains("longer than the link interval"));
    }

    fn v3_text(snmp: &str) -> String {
        GOOD.replace(
            "snmp = { version = \"2c\", community = \"access-switch\" }",
            snmp,
        )
    }

    #[test]
    fn snmpv3_from_files_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.pass"), "authsecret1\n").unwrap();
        // Cargo sets CARGO_PKG_NAME for the test process: a variable that is surely there.
        let var = "CARGO_PKG_NAME";
        let text = v3_text(&format!(
            "snmp = {{ version = \"3\", user = \"cnaas\", auth_protocol = \"sha256\", auth_password_file = \"auth.pass\", priv_protocol = \"aes\", priv_password_env = \"{var}\", context = \"sw1\" }}"
        ));
        let mut src = ConfigSource::from_text("a.toml", &text);
        src.base_dir = dir.path().to_owned();
        let (cfg, w) = AgentConfig::from_source(src).unwrap();
        assert!(w.0.is_empty(), "{w}");
        let Some(Credentials::V3(v3)) = &cfg.devices[0].credentials else {
            panic!("expected v3")
        };
        assert_eq!(v3.user, "cnaas");
        assert_eq!(v3.auth, AuthProto::Sha256);
        assert_eq!(v3.auth_password.expose(), "authsecret1");
        assert_eq!(
            v3.privacy.as_ref().map(|(p, s)| (*p, s.expose())),
            Some((PrivProto::Aes, "cnaas-agent"))
        );
        assert_eq!(v3.context, "sw1");
        // Nothing secret shows in a debug print of the whole config.
        let dump = format!("{cfg:?}");
        assert!(
            !dump.contains("authsecret1") && !dump.contains("cnaas-agent\""),
            "{dump}"
        );
    }

    #[test]
    fn snmpv3_problems() {
        let e = errors(&v3_text(
            "snmp = { version = \"3\", user = \"u\", auth_protocol = \"sha\", community = \"x\" }",
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("`community` belongs to SNMPv2c")),
            "{e:#?}"
        );
        let e = errors(&v3_text(
            "snmp = { version = \"2c\", community = \"x\", user = \"u\" }",
        ));
        assert!(
            e.iter().any(|m| m.contains("`user` belongs to SNMPv3")),
            "{e:#?}"
        );
        let e = errors(&v3_text("snmp = { version = \"2c\" }"));
        assert!(
            e.iter()
                .any(|m| m.contains("exactly one of community, community_file and community_env")),
            "{e:#?}"
        );
        let e = errors(&v3_text(
            "snmp = { version = \"3\", user = \"u\", auth_protocol = \"sha\" }",
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("exactly one of auth_password_file and auth_password_env")),
            "{e:#?}"
        );
        let e = errors(&v3_text(
            "snmp = { version = \"3\", user = \"u\", auth_protocol = \"sha1024\", auth_password_env = \"X\" }",
        ));
        assert!(
            e.iter().any(|m| m.contains("unknown variant `sha1024`")),
            "{e:#?}"
        );
        let e = errors(&v3_text(
            "snmp = { version = \"3\", user = \"u\", auth_protocol = \"sha\", auth_password_file = \"/nonexistent/pw\" }",
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("cannot read secret file /nonexistent/pw")),
            "{e:#?}"
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(normalise_address("10.0.0.1", 161).unwrap(), "10.0.0.1:161");
        assert_eq!(
            normalise_address("sw1.example.org", 161).unwrap(),
            "sw1.example.org:161"
        );
        assert_eq!(normalise_address("sw1:1161", 161).unwrap(), "sw1:1161");
        assert_eq!(normalise_address("::1", 161).unwrap(), "[::1]:161");
        assert!(normalise_address("sw1:x", 161).is_err());
        assert!(normalise_address("", 161).is_err());
    }

    fn netconf_text(table: &str) -> String {
        format!(
            "{}\n[[device]]\nname = \"j-b12-01\"\naddress = \"192.0.2.7\"\n[device.netconf]\n{table}\n",
            GOOD
        )
    }

    #[test]
    fn netconf_device_without_snmp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        let text = netconf_text(
            "user = \"monitor\"\npassword_file = \"pw\"\nknown_hosts = \"known_hosts\"\ntimeout = \"2s\"",
        );
        let mut src = ConfigSource::from_text("a.toml", &text);
        src.base_dir = dir.path().to_owned();
        let (cfg, warnings) = AgentConfig::from_source(src).unwrap();
        assert!(warnings.0.is_empty(), "{warnings}");
        let d = &cfg.devices[1];
        assert!(d.credentials.is_none());
        let nc = d.netconf.as_ref().unwrap();
        assert_eq!(nc.address, "192.0.2.7:830");
        assert_eq!(nc.timeout, Duration::from_secs(2));
        assert_eq!(nc.max_message, 16 << 20);
        assert!(nc.notifications);
        assert!(matches!(&nc.auth, NcAuth::Password(p) if p.expose() == "s3cret"));
        assert_eq!(
            nc.host_keys,
            HostKeys::KnownHosts(dir.path().join("known_hosts"))
        );
    }

    #[test]
    fn netconf_problems() {
        let e = errors(&netconf_text(
            "user = \"m\"\npassword_env = \"CNAAS_TEST_UNSET_PW\"\naccept_any_host_key = true",
        ));
        assert!(e.iter().any(|e| e.contains("CNAAS_TEST_UNSET_PW")), "{e:?}");
        let e = errors(&netconf_text(
            "user = \"m\"\nkey_file = \"/nonexistent/key\"\naccept_any_host_key = true",
        ));
        assert!(e.iter().any(|e| e.contains("/nonexistent/key")), "{e:?}");
        // Neither host key check nor the lab opt-out.
        let e = errors(&netconf_text("user = \"m\"\nkey_file = \"/dev/null\""));
        assert!(e.iter().any(|e| e.contains("known_hosts")), "{e:?}");
        // No secret at all.
        let e = errors(&netconf_text("user = \"m\"\naccept_any_host_key = true"));
        assert!(
            e.iter().any(|e| e.contains("exactly one of password_file")),
            "{e:?}"
        );
        // A device with neither protocol.
        let e = errors(&GOOD.replace(
            "snmp = { version = \"2c\", community = \"access-switch\" }\n",
            "",
        ));
        assert!(
            e.iter().any(|e| e.contains("neither snmp nor netconf")),
            "{e:?}"
        );
        // The lab opt-out works and warns.
        let text = netconf_text(
            "user = \"m\"\nkey_file = \"/dev/null\"\naccept_any_host_key = true\naddress = \"[::1]:17830\"",
        );
        let (cfg, warnings) =
            AgentConfig::from_source(ConfigSource::from_text("a.toml", &text)).unwrap();
        assert!(warnings.to_string().contains("not checked"), "{warnings}");
        let nc = cfg.devices[1].netconf.as_ref().unwrap();
        assert_eq!(nc.host_keys, HostKeys::AcceptAny);
        assert_eq!(nc.address, "[::1]:17830");
    }
}
