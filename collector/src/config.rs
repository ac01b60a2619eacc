//! The collector's configuration file (TOML): broker, store, API, and the device inventory
//! (customer, site, uplink parent, port roles). Every problem is reported with file, line and
//! column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cnaas_shared::config::{ConfigSource, Diagnostics, HumanDuration, Loaded, PathSeg};
use cnaas_shared::mqtt::MqttConfig;
use cnaas_shared::role::{PortRole, RolePatterns, RolePatternsConfig};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorFile {
    /// `[collector]`.
    pub collector: CollectorSection,
    /// `[mqtt]`: the broker the agents publish to.
    pub mqtt: MqttConfig,
    /// `[ingest]`.
    #[serde(default)]
    pub ingest: IngestSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[api]`.
    pub api: ApiSection,
    /// `[roles]`: ifAlias patterns for ports the inventory does not name.
    #[serde(default)]
    pub roles: RolePatternsConfig,
    /// `[rules]`: timing of the correlation rules.
    #[serde(default)]
    pub rules: RulesSection,
    /// `[[device]]`: the inventory.
    #[serde(default)]
    pub device: Vec<DeviceEntry>,
    /// `[notify]`: the internal queues and delivery policy.
    #[serde(default)]
    pub notify: NotifySection,
    /// `[[channel]]`: how notifications are delivered.
    #[serde(default)]
    pub channel: Vec<ChannelEntry>,
    /// `[[customer]]`: the customers and their contact points.
    #[serde(default)]
    pub customer: Vec<crate::customers::CustomerEntry>,
    /// `[inventory]`: where devices come from besides `[[device]]`.
    #[serde(default)]
    pub inventory: InventorySection,
}

/// `[inventory]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// `[inventory.cnaas_nms]`: read devices, port roles, links and pairs from CNaaS-NMS.
    pub cnaas_nms: Option<CnaasNmsSection>,
}

/// `[inventory.cnaas_nms]`: the CNaaS-NMS REST API as the inventory source; `[[device]]`
/// entries override what it says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnaasNmsSection {
    /// Base URL, e.g. `https://cnaas-nms.example.org`.
    pub url: String,
    /// File holding the JWT (never logged).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the JWT instead.
    pub token_env: Option<String>,
    /// How often to read it again.
    #[serde(default = "default_nms_refresh")]
    pub refresh: HumanDuration,
    /// Time limit of each request.
    #[serde(default = "default_nms_timeout")]
    pub timeout: HumanDuration,
    /// Customer of the devices it lists (a CNaaS-NMS instance runs one customer's campus).
    pub customer: Option<String>,
    /// Site of the devices it lists.
    pub site: Option<String>,
}

fn default_nms_refresh() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_nms_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// `[inventory.cnaas_nms]`, resolved.
#[derive(Debug, Clone)]
pub struct CnaasNmsConfig {
    /// Base URL without a trailing slash.
    pub url: String,
    /// Where the JWT is.
    pub token: cnaas_shared::config::SecretSource,
    /// Refresh interval.
    pub refresh: std::time::Duration,
    /// Request time limit.
    pub timeout: std::time::Duration,
    /// Customer of its devices.
    pub customer: Option<String>,
    /// Site of its devices.
    pub site: Option<String>,
}

/// `[[channel]]`: one way of delivering notifications, referred to by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelEntry {
    /// Name the contact points and queues refer to.
    pub name: String,
    /// `smtp`, `webhook`, `mqtt` or `file`.
    pub kind: ChannelKind,
    /// smtp: `host:port` of the mail server.
    pub server: Option<String>,
    /// smtp: sender address.
    pub from: Option<String>,
    /// smtp: upgrade the connection with STARTTLS (required when set).
    #[serde(default)]
    pub starttls: bool,
    /// smtp: a CA certificate (PEM) to trust for STARTTLS besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// smtp: user name for authentication.
    pub username: Option<String>,
    /// smtp: file holding the password.
    pub password_file: Option<PathBuf>,
    /// smtp: environment variable holding the password.
    pub password_env: Option<String>,
    /// webhook: URL to POST to.
    pub url: Option<String>,
    /// webhook: file holding a bearer token.
    pub token_file: Option<PathBuf>,
    /// webhook: environment variable holding a bearer token.
    pub token_env: Option<String>,
    /// mqtt: topic to publish on; `{customer}`, `{audience}` and `{to}` are filled in.
    pub topic: Option<String>,
    /// file: JSON-lines file.
    pub path: Option<PathBuf>,
    /// How long one delivery may take (default 10s).
    pub timeout: Option<HumanDuration>,
}

/// Channel kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// E-mail over SMTP.
    Smtp,
    /// HTTP POST of JSON.
    Webhook,
    /// A topic on the MQTT broker.
    Mqtt,
    /// JSON lines in a file.
    #[default]
    File,
}

/// `[notify]`: where SSC and 2nd line are reached, and how hard delivery tries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Language of SSC's and 2nd line's messages: `nb` or `en`.
    #[serde(default = "default_notify_language")]
    pub language: String,
    /// Base URL of this collector in links (default: `http://` + `[api] listen`).
    pub base_url: Option<String>,
    /// The SSC queue: every opening and resolution. Give two channels, so a failure on one
    /// can be reported on the other.
    #[serde(default)]
    pub ssc: Vec<crate::customers::ContactPoint>,
    /// The 2nd-line queue: escalations.
    #[serde(default)]
    pub secondline: Vec<crate::customers::ContactPoint>,
    /// Whom customers ask about a change (named in every change notice).
    pub contact: Option<String>,
    /// Delivery attempts per recipient before it counts as failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubles after each failure.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// Longest wait between retries.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// How often a notification that failed for good is tried again while what it is about
    /// is still open (it is delivered late, marked `delayed`, when its channel is back).
    #[serde(default = "default_late_retry")]
    pub late_retry: HumanDuration,
}

impl Default for NotifySection {
    fn default() -> Self {
        NotifySection {
            language: default_notify_language(),
            base_url: None,
            ssc: Vec::new(),
            secondline: Vec::new(),
            contact: None,
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            late_retry: default_late_retry(),
        }
    }
}

fn default_notify_language() -> String {
    "nb".into()
}
fn default_attempts() -> u32 {
    8
}
fn default_backoff() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::secs(300)
}
fn default_late_retry() -> HumanDuration {
    HumanDuration::secs(600)
}

/// Delivery policy and the internal queues, resolved.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Language of SSC's and 2nd line's messages.
    pub language: String,
    /// Base URL in links.
    pub base_url: String,
    /// SSC queue points.
    pub ssc: Vec<crate::customers::ContactPoint>,
    /// 2nd-line queue points.
    pub secondline: Vec<crate::customers::ContactPoint>,
    /// Whom customers ask about a change.
    pub contact: Option<String>,
    /// Attempts per recipient.
    pub attempts: u32,
    /// First retry wait.
    pub backoff: std::time::Duration,
    /// Longest retry wait.
    pub max_backoff: std::time::Duration,
    /// Wait between late attempts of a notification that failed for good.
    pub late_retry: std::time::Duration,
    /// The channels.
    pub channels: Vec<ChannelEntry>,
}

/// `[collector]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// This collector's id (MQTT client id and logs).
    pub id: String,
}

/// `[ingest]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// MQTT shared-subscription group: collectors in the same group share the event load.
    /// Without it every collector gets every event.
    pub shared_group: Option<String>,
    /// Messages waiting and nothing stored for this long is a stall: `/healthz` 503 and SSC
    /// told directly on its channels.
    #[serde(default = "default_stall_after")]
    pub stall_after: HumanDuration,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            shared_group: None,
            stall_after: default_stall_after(),
        }
    }
}

fn default_stall_after() -> HumanDuration {
    HumanDuration::secs(30)
}

/// `[rules]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Quarantine of a watched port's link_down: shorter outages are only recorded.
    #[serde(default = "default_link_hold")]
    pub link_hold: HumanDuration,
    /// Quarantine of a device_down (the agent already waited for several missed polls).
    #[serde(default = "default_device_hold")]
    pub device_hold: HumanDuration,
    /// Alarms of one device or site becoming active within this window share an incident.
    #[serde(default = "default_group_window")]
    pub group_window: HumanDuration,
    /// An alarm back within this long after its incident resolved re-opens that incident.
    #[serde(default = "default_reopen_window")]
    pub reopen_window: HumanDuration,
}

impl Default for RulesSection {
    fn default() -> Self {
        RulesSection {
            link_hold: default_link_hold(),
            device_hold: default_device_hold(),
            group_window: default_group_window(),
            reopen_window: default_reopen_window(),
        }
    }
}

fn default_link_hold() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_device_hold() -> HumanDuration {
    HumanDuration::secs(0)
}
fn default_group_window() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_reopen_window() -> HumanDuration {
    HumanDuration::secs(300)
}

impl RulesSection {
    /// The rules' timing.
    pub fn rules(&self) -> crate::correlate::Rules {
        let d = |h: HumanDuration| {
            chrono::TimeDelta::from_std(h.get()).unwrap_or(chrono::TimeDelta::MAX)
        };
        crate::correlate::Rules {
            link_hold: d(self.link_hold),
            device_hold: d(self.device_hold),
            group_window: d(self.group_window),
            reopen_window: d(self.reopen_window),
        }
    }
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (relative to the config file's folder).
    pub url: String,
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address for `/api/v1`, `/metrics` and `/healthz`.
    pub listen: SocketAddr,
    /// Bearer tokens (hashed) with roles; without it the API is read-only and anonymous.
    pub tokens_file: Option<PathBuf>,
}

/// `[[device]]` of the inventory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Device name, as the agent reports it.
    pub name: String,
    /// Customer id the device belongs to.
    pub customer: Option<String>,
    /// Site (building) of the device.
    pub site: Option<String>,
    /// Where it stands, for people sent there (building, floor, room, rack).
    pub location: Option<String>,
    /// The device's parents towards the core (other `[[device]]`s): one name, or a list for
    /// a device with redundant uplinks (an access switch to both switches of its pair).
    #[serde(default)]
    pub uplink: Uplinks,
    /// The other switch of its distribution pair (said on either or both).
    pub pair: Option<String>,
    /// Its place in the network, as cnaas-nms types devices.
    pub role: Option<DeviceRole>,
    /// Port roles by ifName (or ifIndex as a string).
    #[serde(default)]
    pub ports: BTreeMap<String, PortRole>,
    /// The agents allowed to report it (by agent id). Left out, the first agent that reports
    /// it is pinned as its only one (visible and releasable in the API).
    #[serde(default)]
    pub agents: Vec<String>,
}

/// `uplink = "d1"` or `uplink = ["d1", "d2"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Uplinks {
    /// None given.
    #[default]
    None,
    /// One parent.
    One(String),
    /// Several parents.
    Many(Vec<String>),
}

impl Uplinks {
    /// The parents, in the order given.
    pub fn names(&self) -> Vec<String> {
        match self {
            Uplinks::None => Vec::new(),
            Uplinks::One(s) => vec![s.clone()],
            Uplinks::Many(v) => v.clone(),
        }
    }
}

/// A device's place in the campus network (cnaas-nms device types); it sets severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRole {
    /// Core switch or router.
    Core,
    /// Distribution switch.
    #[serde(alias = "dist")]
    Distribution,
    /// Access switch.
    Access,
}

/// Where incidents and events are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
}

/// One inventory device, resolved.
#[derive(Debug, Clone, Default)]
pub struct InventoryDevice {
    /// Customer id.
    pub customer: Option<String>,
    /// Site.
    pub site: Option<String>,
    /// Building, floor, room, rack.
    pub location: Option<String>,
    /// Parent devices (several for redundant uplinks).
    pub uplinks: Vec<String>,
    /// The other switch of its distribution pair.
    pub pair: Option<String>,
    /// Core, distribution or access.
    pub role: Option<DeviceRole>,
    /// Port roles by ifName or ifIndex string.
    pub ports: BTreeMap<String, PortRole>,
    /// Agents allowed to report it; empty: the one pinned at first sight.
    pub agents: Vec<String>,
}

/// The inventory: devices by name, and the alias patterns.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Devices by name.
    pub devices: HashMap<String, InventoryDevice>,
    /// ifAlias patterns.
    pub roles: RolePatterns,
    /// Links between devices with their ports (from CNaaS-NMS `linknets`).
    pub links: Vec<crate::correlate::topology::ExternalLink>,
    /// Distribution pairs (from CNaaS-NMS `mgmtdomains`).
    pub pairs: Vec<(String, String)>,
}

/// The inventory in force, replaced whole when CNaaS-NMS is read again; everyone who needs it
/// takes the current one.
#[derive(Debug, Default)]
pub struct LiveInventory(std::sync::RwLock<std::sync::Arc<Inventory>>);

impl LiveInventory {
    /// Holds `inventory`.
    pub fn new(inventory: Inventory) -> LiveInventory {
        LiveInventory(std::sync::RwLock::new(std::sync::Arc::new(inventory)))
    }

    /// The inventory now.
    pub fn get(&self) -> std::sync::Arc<Inventory> {
        self.0
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts a new inventory in force.
    pub fn set(&self, inventory: Inventory) {
        let new = std::sync::Arc::new(inventory);
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}

/// The whole collector configuration, resolved.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Collector id.
    pub id: String,
    /// MQTT settings.
    pub mqtt: MqttConfig,
    /// Shared-subscription group, if any.
    pub shared_group: Option<String>,
    /// How long messages may wait with nothing stored before it is a stall.
    pub stall_after: std::time::Duration,
    /// Folder of the config file.
    pub base_dir: PathBuf,
    /// Store.
    pub store: StoreUrl,
    /// API address.
    pub api_listen: SocketAddr,
    /// API tokens file (resolved), if any.
    pub tokens_file: Option<PathBuf>,
    /// Inventory.
    pub inventory: Inventory,
    /// Correlation timing.
    pub rules: crate::correlate::Rules,
    /// Customers with their contact points.
    pub customers: Vec<crate::customers::Customer>,
    /// Notification queues, channels and delivery policy.
    pub notify: NotifyConfig,
    /// CNaaS-NMS as the inventory source, if configured.
    pub cnaas_nms: Option<CnaasNmsConfig>,
}

type Finding = (Vec<PathSeg<'static>>, String, Option<String>);

/// Checks `[notify]`: known channels, a language, a usable retry policy, and SSC reachable on
/// two channels (so a failing one can be reported on the other).
fn check_notify(
    n: &NotifySection,
    channels: &[String],
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) {
    use PathSeg::{Index, Key};
    for (key, points) in [("ssc", &n.ssc), ("secondline", &n.secondline)] {
        for (i, p) in points.iter().enumerate() {
            if !channels.contains(&p.channel) {
                errors.push((
                    vec![Key("notify"), Key(key), Index(i), Key("channel")],
                    format!("`{key}` uses channel `{}`, which is not defined", p.channel),
                    Some("add a [[channel]] with this name".into()),
                ));
            }
        }
    }
    if !["nb", "en"].contains(&n.language.as_str()) {
        errors.push((
            vec![Key("notify"), Key("language")],
            format!("language `{}`: use nb or en", n.language),
            None,
        ));
    }
    if n.attempts == 0 {
        errors.push((
            vec![Key("notify"), Key("attempts")],
            "at least one attempt is needed".into(),
            None,
        ));
    }
    if n.backoff.get().is_zero() || n.max_backoff < n.backoff {
        errors.push((
            vec![Key("notify"), Key("backoff")],
            "backoff must be above zero and at most max_backoff".into(),
            None,
        ));
    }
    if channels.is_empty() {
        return;
    }
    let distinct: HashSet<&str> = n.ssc.iter().map(|p| p.channel.as_str()).collect();
    if n.ssc.is_empty() {
        warnings.push((
            vec![Key("notify")],
            "no `ssc` queue: SSC is told of nothing".into(),
            Some("add ssc = [{ channel = \"...\", to = \"...\" }]".into()),
        ));
    } else if distinct.len() < 2 {
        warnings.push((
            vec![Key("notify"), Key("ssc")],
            "SSC is reached on one channel only: if it fails, the failure cannot be reported elsewhere".into(),
            Some("add a second point on another channel".into()),
        ));
    }
    if n.secondline.is_empty() {
        warnings.push((
            vec![Key("notify")],
            "no `secondline` queue: escalations reach nobody".into(),
            None,
        ));
    }
}

impl CollectorConfig {
    /// Reads, parses and checks a file. On success the warnings come along.
    pub fn load(path: &Path) -> Result<(CollectorConfig, Diagnostics), Diagnostics> {
        Self::from_source(ConfigSource::read(path)?)
    }

    /// Parses and checks text.
    pub fn from_source(
        source: ConfigSource,
    ) -> Result<(CollectorConfig, Diagnostics), Diagnostics> {
        let mut loaded = source.parse::<CollectorFile>()?;
        let cfg = resolve(&mut loaded);
        let (_, warnings) = loaded.finish()?;
        cfg.map(|c| (c, warnings.clone())).ok_or(warnings)
    }
}

/// Parses `sqlite://PATH`.
pub fn parse_store_url(url: &str, base_dir: &Path) -> Result<StoreUrl, String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("the SQLite path is empty".into());
        }
        return Ok(StoreUrl::Sqlite(base_dir.join(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err("PostgreSQL is not supported by this build yet; use sqlite://PATH".into());
    }
    Err(format!(
        "`{}` is not a store url",
        cnaas_shared::config::redact_url(url)
    ))
}

fn resolve(loaded: &mut Loaded<CollectorFile>) -> Option<CollectorConfig> {
    use PathSeg::{Index, Key};
    let base_dir = loaded.source().base_dir.clone();
    let f = &loaded.value;
    let mut errors: Vec<(Vec<PathSeg<'static>>, String, Option<String>)> = Vec::new();
    let mut warnings: Vec<(Vec<PathSeg<'static>>, String, Option<String>)> = Vec::new();

    if let Err(e) = f.mqtt.validate() {
        errors.push((vec![Key("mqtt"), Key("url")], e.to_string(), None));
    }
    // Secrets are read now, so `check-config` (the unit's ExecStartPre) says that a password
    // file is missing rather than the service failing later. Their text is never shown.
    let secret_problem = |file: &Option<PathBuf>, env: &Option<String>| -> Option<String> {
        if file.is_none() && env.is_none() {
            return None;
        }
        cnaas_shared::config::SecretSource {
            file: file.clone(),
            env: env.clone(),
        }
        .read(&base_dir)
        .err()
        .map(|e| e.to_string())
    };
    if let Err(e) = f.mqtt.check_files(&base_dir) {
        let key = if matches!(e, cnaas_shared::mqtt::MqttConfigError::Ca { .. }) {
            "ca_file"
        } else {
            "password_file"
        };
        errors.push((vec![Key("mqtt"), Key(key)], e.to_string(), None));
    }
    for (i, c) in f.channel.iter().enumerate() {
        for (key, file, env) in [
            ("password_file", &c.password_file, &c.password_env),
            ("token_file", &c.token_file, &c.token_env),
        ] {
            if let Some(problem) = secret_problem(file, env) {
                errors.push((vec![Key("channel"), Index(i), Key(key)], problem, None));
            }
        }
    }
    if let Some(g) = &f.ingest.shared_group
        && !cnaas_shared::topics::is_valid_level(g)
    {
        errors.push((
            vec![Key("ingest"), Key("shared_group")],
            format!("`{g}` cannot be a topic level"),
            None,
        ));
    }
    let store = match parse_store_url(&f.store.url, &base_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push((
                vec![Key("store"), Key("url")],
                e,
                Some("e.g. url = \"sqlite://var/collector.db\"".into()),
            ));
            None
        }
    };
    let roles = match RolePatterns::build(&f.roles) {
        Ok(r) => r,
        Err(e) => {
            errors.push((
                vec![Key("roles"), Key(e.role.as_str())],
                e.to_string(),
                None,
            ));
            RolePatterns::default()
        }
    };
    let names: HashSet<&str> = f.device.iter().map(|d| d.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut devices = HashMap::new();
    for (i, d) in f.device.iter().enumerate() {
        if !seen.insert(d.name.as_str()) {
            errors.push((
                vec![Key("device"), Index(i), Key("name")],
                format!("device `{}` is listed twice", d.name),
                None,
            ));
        }
        for up in d.uplink.names() {
            if up == d.name {
                errors.push((
                    vec![Key("device"), Index(i), Key("uplink")],
                    "a device cannot be its own uplink".into(),
                    None,
                ));
            } else if !names.contains(up.as_str()) {
                warnings.push((
                    vec![Key("device"), Index(i), Key("uplink")],
                    format!("uplink `{up}` is not in the inventory: topology stops here"),
                    Some("add a [[device]] entry for it".into()),
                ));
            }
        }
        if let Some(p) = &d.pair {
            if p == &d.name {
                errors.push((
                    vec![Key("device"), Index(i), Key("pair")],
                    "a device cannot be its own pair".into(),
                    None,
                ));
            } else if !names.contains(p.as_str()) {
                warnings.push((
                    vec![Key("device"), Index(i), Key("pair")],
                    format!("pair `{p}` is not in the inventory"),
                    Some("add a [[device]] entry for it".into()),
                ));
            }
        }
        devices.insert(
            d.name.clone(),
            InventoryDevice {
                customer: d.customer.clone(),
                site: d.site.clone(),
                location: d.location.clone(),
                uplinks: d.uplink.names(),
                pair: d.pair.clone(),
                role: d.role,
                ports: d.ports.clone(),
                agents: d.agents.clone(),
            },
        );
    }
    // Uplinks that come back to where they started would make "towards the core" meaningless.
    for (i, d) in f.device.iter().enumerate() {
        let mut stack: Vec<String> = d.uplink.names();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(name) = stack.pop() {
            if name == d.name {
                errors.push((
                    vec![Key("device"), Index(i), Key("uplink")],
                    format!("the uplink chain of `{}` loops back to itself", d.name),
                    None,
                ));
                break;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(x) = devices.get(&name) {
                stack.extend(x.uplinks.iter().cloned());
            }
        }
    }
    let mut channel_names: Vec<String> = Vec::new();
    for (i, c) in f.channel.iter().enumerate() {
        let at = |k: &'static str| vec![Key("channel"), Index(i), Key(k)];
        if channel_names.contains(&c.name) {
            errors.push((
                at("name"),
                format!("channel `{}` is defined twice", c.name),
                None,
            ));
        }
        channel_names.push(c.name.clone());
        let needs: &[(&'static str, bool)] = match c.kind {
            ChannelKind::Smtp => &[("server", c.server.is_some()), ("from", c.from.is_some())],
            ChannelKind::Webhook => &[("url", c.url.is_some())],
            ChannelKind::Mqtt => &[("topic", c.topic.is_some())],
            ChannelKind::File => &[("path", c.path.is_some())],
        };
        for (key, present) in needs {
            if !present {
                errors.push((
                    at("kind"),
                    format!("channel `{}` needs `{key}`", c.name),
                    None,
                ));
            }
        }
    }
    check_notify(&f.notify, &channel_names, &mut errors, &mut warnings);
    let mut customers = Vec::new();
    let mut customer_ids = HashSet::new();
    for (i, entry) in f.customer.iter().enumerate() {
        if !customer_ids.insert(entry.id.as_str()) {
            errors.push((
                vec![Key("customer"), Index(i), Key("id")],
                format!("customer `{}` is defined twice", entry.id),
                None,
            ));
        }
        let (customer, findings) = crate::customers::check(entry, &channel_names);
        for (field, message, is_error) in findings {
            let path = vec![Key("customer"), Index(i), Key(field)];
            if is_error {
                errors.push((path, message, None));
            } else {
                warnings.push((path, message, None));
            }
        }
        customers.extend(customer);
    }
    if !f.customer.is_empty() {
        for (i, d) in f.device.iter().enumerate() {
            if let Some(c) = &d.customer
                && !customer_ids.contains(c.as_str())
            {
                errors.push((
                    vec![Key("device"), Index(i), Key("customer")],
                    format!("customer `{c}` is not defined"),
                    Some("add a [[customer]] with this id".into()),
                ));
            }
        }
    }
    let tokens_file = f.api.tokens_file.as_ref().map(|p| base_dir.join(p));
    match &tokens_file {
        Some(path) => {
            if let Err(e) = crate::api::Tokens::load(path) {
                errors.push((vec![Key("api"), Key("tokens_file")], e.to_string(), None));
            }
        }
        None => warnings.push((
            vec![Key("api"), Key("listen")],
            "no tokens_file: the API is read-only and open to anyone who reaches it".into(),
            Some("add tokens_file = \"tokens.toml\" with hashed bearer tokens and roles".into()),
        )),
    }
    let cnaas_nms = f.inventory.cnaas_nms.as_ref().map(|n| {
        let at = |k: &'static str| vec![Key("inventory"), Key("cnaas_nms"), Key(k)];
        if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
            errors.push((
                at("url"),
                format!(
                    "`{}` is not an http(s) URL",
                    cnaas_shared::config::redact_url(&n.url)
                ),
                None,
            ));
        }
        if let Some(problem) = secret_problem(&n.token_file, &n.token_env) {
            errors.push((at("token_file"), problem, None));
        }
        if n.token_file.is_none() && n.token_env.is_none() {
            warnings.push((
                at("url"),
                "no token_file: CNaaS-NMS is asked without a JWT".into(),
                Some("add token_file = \"cnaas-nms.jwt\"".into()),
            ));
        }
        CnaasNmsConfig {
            url: n.url.trim_end_matches('/').to_owned(),
            token: cnaas_shared::config::SecretSource {
                file: n.token_file.clone(),
                env: n.token_env.clone(),
            },
            refresh: n.refresh.get().max(std::time::Duration::from_secs(1)),
            timeout: n.timeout.get(),
            customer: n.customer.clone(),
            site: n.site.clone(),
        }
    });
    let cfg = store.map(|store| CollectorConfig {
        id: f.collector.id.clone(),
        mqtt: f.mqtt.clone(),
        shared_group: f.ingest.shared_group.clone(),
        stall_after: f.ingest.stall_after.get(),
        base_dir,
        store,
        api_listen: f.api.listen,
        tokens_file,
        inventory: Inventory {
            devices,
            roles,
            ..Inventory::default()
        },
        rules: f.rules.rules(),
        customers,
        notify: NotifyConfig {
            language: f.notify.language.clone(),
            base_url: f
                .notify
                .base_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", f.api.listen)),
            ssc: f.notify.ssc.clone(),
            secondline: f.notify.secondline.clone(),
            contact: f.notify.contact.clone(),
            attempts: f.notify.attempts,
            backoff: f.notify.backoff.get(),
            max_backoff: f.notify.max_backoff.get(),
            late_retry: f.notify.late_retry.get(),
            channels: f.channel.clone(),
        },
        cnaas_nms,
    });
    let ok = errors.is_empty();
    for (p, m, h) in warnings {
        loaded.warn_at(&p, m, h);
    }
    for (p, m, h) in errors {
        loaded.error_at(&p, m, h);
    }
    cfg.filter(|_| ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
[collector]
id = "collector-1"

[mqtt]
url = "mqtt://127.0.0.1:16883"

[store]
url = "sqlite://var/collector.db"

[api]
listen = "127.0.0.1:16980"

[roles]
uplink = ['(?i)^uplink']

[[device]]
name = "d-b12"
customer = "uni-b"
site = "b12"

[[device]]
name = "a-b12-01"
customer = "uni-b"
site = "b12"
uplink = "d-b12"
ports = { "Te1/1/1" = "uplink" }
"#;

    #[test]
    fn good_file() {
        let (cfg, w) =
            CollectorConfig::from_source(ConfigSource::from_text("c.toml", GOOD)).unwrap();
        assert_eq!(w.0.len(), 1, "{w}");
        assert!(w.0[0].message.contains("no tokens_file"), "{w}");
        assert_eq!(
            cfg.store,
            StoreUrl::Sqlite(PathBuf::from("./var/collector.db"))
        );
        let d = &cfg.inventory.devices["a-b12-01"];
        assert_eq!(d.uplinks, vec!["d-b12".to_owned()]);
        assert_eq!(d.ports["Te1/1/1"], PortRole::Uplink);
    }

    fn diags(text: &str) -> Vec<String> {
        match CollectorConfig::from_source(ConfigSource::from_text("c.toml", text)) {
            Ok((_, w)) => w.0.iter().map(ToString::to_string).collect(),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn problems_with_positions() {
        let text = GOOD
            .replace("url = \"sqlite://var/collector.db\"", "url = \"mysql://x\"")
            .replace("uplink = \"d-b12\"", "uplink = \"a-b12-01\"")
            .replace(
                "site = \"b12\"\n\n[[device]]",
                "sight = \"b12\"\n\n[[device]]",
            )
            .replace("\"Te1/1/1\" = \"uplink\"", "\"Te1/1/1\" = \"upstream\"");
        let d = diags(&text);
        assert!(
            d.iter().any(
                |m| m.starts_with("c.toml:20:1: error: unknown field `sight`")
                    && m.contains("did you mean `site`?")
            ),
            "{d:#?}"
        );
        assert!(
            d.iter().any(
                |m| m.starts_with("c.toml:27:23: error: unknown variant `upstream`")
                    && m.contains("use one of")
            ),
            "{d:#?}"
        );
        // The remaining checks need a file that parses.
        let text = GOOD
            .replace("url = \"sqlite://var/collector.db\"", "url = \"mysql://x\"")
            .replace("uplink = \"d-b12\"", "uplink = \"a-b12-01\"");
        let d = diags(&text);
        assert!(
            d.iter()
                .any(|m| m.starts_with("c.toml:9:7: error: `mysql://x` is not a store url")),
            "{d:#?}"
        );
        assert!(
            d.iter().any(|m| m.contains("cannot be its own uplink")),
            "{d:#?}"
        );
    }

    #[test]
    fn customers_and_channels_are_checked_with_positions() {
        let text = format!(
            "{GOOD}\n[[channel]]\nname = \"mail\"\nkind = \"smtp\"\nserver = \"127.0.0.1:16025\"\nfrom = \"noc@sikt.no\"\n\n[[customer]]\nid = \"uni-b\"\nname = \"Uni B\"\nopening_hours = [\"mon-fri 08:00-16:00\"]\nincident = {{ channel = \"mail\", to = \"ola.nordmann@uni-b.no\" }}\nlocal_support = {{ channel = \"mail\", to = \"helpdesk@uni-b.no\" }}\ntechnical = [{{ channel = \"sms\", to = \"+47 91234567\" }}]\nadministrative = [{{ channel = \"mail\", to = \"kontrakt@uni-b.no\" }}]\n"
        );
        let d = diags(&text);
        assert!(
            d.iter()
                .any(|m| m.contains("error: customer `uni-b` has no `change` contact point")),
            "{d:#?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("error: `technical` uses channel `sms`, which is not defined")),
            "{d:#?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("warning: `incident` of `uni-b` looks personal")),
            "{d:#?}"
        );
        // The device refers to customer `uni-b`, which exists, so no error about it.
        assert!(
            !d.iter()
                .any(|m| m.contains("customer `uni-b` is not defined")),
            "{d:#?}"
        );
    }

    #[test]
    fn unknown_uplink_warns_and_loops_are_errors() {
        let d = diags(&GOOD.replace("uplink = \"d-b12\"", "uplink = \"nowhere\""));
        assert!(
            d.iter()
                .any(|m| m.contains("warning: uplink `nowhere` is not in the inventory")),
            "{d:#?}"
        );
        let looped = GOOD.replace(
            "name = \"d-b12\"\n",
            "name = \"d-b12\"\nuplink = \"a-b12-01\"\n",
        );
        let d = diags(&looped);
        assert!(d.iter().any(|m| m.contains("loops back")), "{d:#?}");
    }
}
