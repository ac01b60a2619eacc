//! The correlation engine: events and clock ticks in, incident changes out (through an
//! [`IncidentTx`], inside the event's transaction). It combines the rules of DESIGN.md
//! section 3:
//!
//! - quarantine and flapping per watched port ([`PortAlarm`]);
//! - a device that is down takes in the alarms of its own ports;
//! - topology shadow: a device behind a down device joins that device's incident, and a
//!   device going down later takes in the already-open incidents of the devices behind it;
//! - storm grouping: alarms of one device, then of one site, that become active within the
//!   grouping window join the incident opened first;
//! - an alarm that comes back within the re-open window re-opens its resolved incident.
//!
//! An incident resolves when all its member alarms have cleared. Time is a parameter; a port's
//! hold time and flapping are judged by when the agent observed each event (a spool replayed
//! after a broker outage tells the outage as it happened), clamped to the collector's clock.
//! The semantics at the edges (merges, re-opens in and out of maintenance, people resolving
//! active alarms, agent state sync) are written down in `docs/incidents.md`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use cnaas_shared::role::PortRole;
use cnaas_shared::{BundleRef, Event, EventKind, Neighbours};

use super::port::{Outcome, PortAlarm};
use super::topology::{Impact, Learned, Reach, Topology};
use crate::config::{DeviceRole, Inventory};
use crate::store::{
    AlarmKind, IncidentTx, NewIncident, OpenMember, Relation, StoreError, alarm_key,
};

/// Timing of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Quarantine of a watched port's `link_down`.
    pub link_hold: TimeDelta,
    /// Quarantine of a `device_down` (the agent already waited for several missed polls).
    pub device_hold: TimeDelta,
    /// Alarms of one device or site becoming active within this window share an incident.
    pub group_window: TimeDelta,
    /// An alarm back within this long after its incident resolved re-opens that incident.
    pub reopen_window: TimeDelta,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            link_hold: TimeDelta::seconds(60),
            device_hold: TimeDelta::zero(),
            group_window: TimeDelta::seconds(10),
            reopen_window: TimeDelta::seconds(300),
        }
    }
}

/// How far ahead of the collector's clock an event's observation time may be before it is
/// taken as wrong: such an event is judged at the collector's time (and counted).
pub const MAX_SKEW: TimeDelta = TimeDelta::seconds(5);

/// When an event happened for the rules: its observation time, never later than `now` (a
/// small skew is folded in silently); the flag says it was more than [`MAX_SKEW`] ahead.
pub fn event_time(observed: DateTime<Utc>, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    (observed.min(now), observed > now + MAX_SKEW)
}

/// An observation applied to a port: when, and the agent's number for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    at: DateTime<Utc>,
    /// The agent and its sequence number, where the event carried one.
    by: Option<(String, u64)>,
}

impl Seen {
    fn of(e: &Event, at: DateTime<Utc>) -> Seen {
        Seen {
            at,
            by: e.seq.map(|n| (e.agent.clone(), n)),
        }
    }

    /// Whether `newer` was observed before this one: by the agent's sequence number when one
    /// agent numbered both (its clock may have been set back; its numbers never are), else by
    /// observation time.
    fn is_after(&self, newer: &Seen) -> bool {
        match (&self.by, &newer.by) {
            (Some((a, n)), Some((b, m))) if a == b => m < n,
            _ => newer.at < self.at,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PortEntry {
    alarm: PortAlarm,
    /// The `link_down` event that started the current episode (linked to the incident when
    /// the hold time runs out, so the report's first time is when the fault began).
    down_event: Option<(String, DateTime<Utc>)>,
    /// The newest observation applied: an older one arriving later is stale and must not
    /// override it.
    last_seen: Option<Seen>,
    if_name: Option<String>,
    if_alias: Option<String>,
    role: Option<PortRole>,
    /// The link aggregation bundle the port is a member of, as the agent said.
    bundle: Option<BundleRef>,
    /// The incident holding this port's `link_down` alarm.
    incident: Option<i64>,
    /// The port's `port_flapping` incident.
    flap_incident: Option<i64>,
}

#[derive(Debug, Clone, Default)]
struct DeviceEntry {
    down_since: Option<DateTime<Utc>>,
    /// A person resolved its incident while it was still down: the hold starts over from
    /// here (the fault's first time stays `down_since`).
    rearmed_at: Option<DateTime<Utc>>,
    active: bool,
    incident: Option<i64>,
}

#[derive(Debug, Clone)]
struct OpenIncident {
    device: String,
    site: Option<String>,
    opened_at: DateTime<Utc>,
    active: HashSet<String>,
    root: String,
    /// Opened inside a maintenance window and not told to the customer yet.
    in_maintenance: bool,
    /// The severity its impact last gave it (None: not judged since a restart).
    severity: Option<u8>,
    /// Its impact as last stored.
    impact: Option<Impact>,
    /// The down devices that are its cause (its own, the other switch of a pair, a device
    /// grouped into it), not those shadowed behind them: only these are judged and named.
    causes: HashSet<String>,
}

/// A neighbour that appeared, went or changed on a device's port, as LLDP told it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NeighbourChange {
    /// When the agent observed it.
    pub at: DateTime<Utc>,
    /// The device that reported it.
    pub device: String,
    /// Its port.
    pub port: String,
    /// The neighbour before (`sysName port`), if any.
    pub before: Option<String>,
    /// The neighbour now, if any.
    pub after: Option<String>,
}

/// How many neighbour changes are kept for the API.
const NEIGHBOUR_CHANGES: usize = 500;

/// How long a cable whose link is down stays known (its neighbour unannounced) before it is
/// forgotten.
pub const LLDP_FORGET: TimeDelta = TimeDelta::days(7);

/// What a person asks of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// open -> acknowledged.
    Ack,
    /// Hand it to 2nd line (a flag; the state does not change).
    Escalate,
    /// open/acknowledged -> resolved when none of its alarms is active any more (else 409).
    Resolve,
    /// open/acknowledged -> resolved although alarms are still active, said explicitly; each
    /// still-active alarm opens a new incident after its hold time.
    ForceResolve,
    /// resolved -> closed.
    Close,
    /// A line of history, for SSC and 2nd line only.
    Comment,
    /// A line of history the customer sees too (a customer's own comments are always this).
    PublicComment,
    /// Ask the customer's local support for hands-on work (the text says what and where).
    LocalWork,
}

impl Action {
    /// The name in the API path and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ack => "acknowledged",
            Action::Escalate => "escalated",
            Action::Resolve | Action::ForceResolve => "resolved",
            Action::Close => "closed",
            Action::Comment => "comment",
            Action::PublicComment => "public_comment",
            Action::LocalWork => "local_work",
        }
    }
}

/// Why a person's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such incident.
    #[error("incident {0} not found")]
    NotFound(i64),
    /// The incident's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// The request breaks a rule (e.g. an empty comment).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engine's memory: alarms and the open incidents they belong to.
pub struct Correlator {
    rules: Rules,
    inventory: Arc<Inventory>,
    ports: HashMap<(String, u32), PortEntry>,
    devices: HashMap<String, DeviceEntry>,
    open: HashMap<i64, OpenIncident>,
    /// Root alarm -> the incident it resolved, when, and whether that incident was flagged
    /// as in maintenance.
    last_resolved: HashMap<String, (i64, DateTime<Utc>, bool)>,
    /// Site probes that are offline, with their incident.
    agents_offline: HashMap<String, i64>,
    /// Site probes still offline whose incident a person resolved: a new one opens at the
    /// next tick after the device hold time.
    agents_rearmed: HashMap<String, DateTime<Utc>>,
    /// Stale events (older than the newest applied to their port) that were ignored.
    stale: u64,
    maintenance: Box<dyn Maintenance>,
    /// What the agents told of the cabling (LLDP) and what CNaaS-NMS holds.
    learned: Learned,
    topology: Arc<Topology>,
    /// The reach of the current down set, kept until the down set changes (by its
    /// generation: checking the set itself cost a copy of it per event).
    reach: RefCell<Option<(u64, Arc<Reach>)>>,
    /// Bumped whenever a device's `device_down` alarm becomes active or clears.
    down_generation: u64,
    neighbour_changes: std::collections::VecDeque<NeighbourChange>,
    /// When each device's latest LLDP snapshot was observed.
    lldp_at: HashMap<String, DateTime<Utc>>,
    /// LLDP changed since the topology was built: rebuilt before the next event that needs
    /// it (a burst of snapshots, as after a restart, costs one rebuild, not one each).
    stale_topology: bool,
}

fn port_label(name: Option<&str>, alias: Option<&str>, if_index: u32) -> String {
    let name = name.map_or_else(|| format!("ifIndex {if_index}"), str::to_owned);
    match alias.filter(|a| !a.is_empty()) {
        Some(a) => format!("{name} ({a})"),
        None => name,
    }
}

fn link_severity(role: Option<PortRole>) -> u8 {
    match role {
        Some(PortRole::Uplink) => 2,
        Some(PortRole::Downlink | PortRole::Infrastructure) => 3,
        _ => 5,
    }
}

/// 1 (critical) to 5: a dead core switch takes a campus down, an access switch a corridor.
fn device_severity(role: Option<DeviceRole>) -> u8 {
    match role {
        Some(DeviceRole::Core) => 1,
        Some(DeviceRole::Distribution) | None => 2,
        Some(DeviceRole::Access) => 3,
    }
}

/// Maintenance windows: alarms on a device inside one are recorded and flagged, and the
/// notification rules (issue #5/#6) do not tell the customer. The changes issue provides the
/// real implementation; by default nothing is in maintenance.
pub trait Maintenance: Send {
    /// Whether `device` is inside a maintenance window at `now`.
    fn in_window(&self, device: &str, now: DateTime<Utc>) -> bool;
}

/// No maintenance windows.
pub struct NoMaintenance;

impl Maintenance for NoMaintenance {
    fn in_window(&self, _device: &str, _now: DateTime<Utc>) -> bool {
        false
    }
}

impl Correlator {
    /// An engine with nothing open.
    pub fn new(rules: Rules, inventory: Arc<Inventory>) -> Correlator {
        let topology = Arc::new(Topology::build(&inventory, &Learned::default()));
        Correlator {
            rules,
            inventory,
            ports: HashMap::new(),
            devices: HashMap::new(),
            open: HashMap::new(),
            last_resolved: HashMap::new(),
            agents_offline: HashMap::new(),
            agents_rearmed: HashMap::new(),
            topology,
            learned: Learned::default(),
            reach: RefCell::new(None),
            down_generation: 0,
            neighbour_changes: std::collections::VecDeque::new(),
            lldp_at: HashMap::new(),
            stale_topology: false,
            stale: 0,
            maintenance: Box::new(NoMaintenance),
        }
    }

    /// Uses these maintenance windows.
    pub fn with_maintenance(mut self, maintenance: Box<dyn Maintenance>) -> Correlator {
        self.maintenance = maintenance;
        self
    }

    /// A site probe's retained status changed: `offline` (its last will, or a clean stop) opens
    /// an `agent_offline` incident, `online` clears it.
    pub fn agent_status(
        &mut self,
        agent: &str,
        status: &str,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let alarm = alarm_key(agent, None, AlarmKind::AgentOffline);
        match status {
            "offline" if !self.agents_offline.contains_key(agent) => {
                self.agents_rearmed.remove(agent);
                // Many probes going offline at once (a broker restart, a network outage on
                // the collector's side) are one incident listing them, not one each.
                if let Some(id) = self.agent_group(now) {
                    self.join(id, &alarm, Relation::Member, now, None, tx)?;
                    self.agents_offline.insert(agent.to_owned(), id);
                    return Ok(());
                }
                let new = NewIncident {
                    kind: AlarmKind::AgentOffline,
                    key: alarm.clone(),
                    severity: 2,
                    device: agent.to_owned(),
                    if_index: None,
                    if_name: None,
                    if_alias: None,
                    role: None,
                    site: None,
                    customer: None,
                    summary: format!(
                        "Site probe {agent} is offline: its devices are not monitored"
                    ),
                };
                let id = self.open(&new, now, now, None, tx)?;
                self.agents_offline.insert(agent.to_owned(), id);
            }
            "online" => {
                self.agents_rearmed.remove(agent);
                if let Some(id) = self.agents_offline.remove(agent) {
                    self.clear(id, &alarm, now, None, tx)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An open `agent_offline` incident opened within the grouping window.
    fn agent_group(&self, now: DateTime<Utc>) -> Option<i64> {
        let mut ids: Vec<i64> = self
            .agents_offline
            .values()
            .copied()
            .filter(|id| {
                self.open
                    .get(id)
                    .is_some_and(|o| now - o.opened_at <= self.rules.group_window)
            })
            .collect();
        ids.sort_unstable();
        ids.first().copied()
    }

    /// Forgets everything and rebuilds from the store: after a transaction failed, the
    /// memory may hold changes the store does not (a retry must start from the truth).
    pub fn reset(
        &mut self,
        members: &[OpenMember],
        pending: &[(String, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) {
        self.ports.clear();
        self.devices.clear();
        self.down_generation += 1;
        self.open.clear();
        self.last_resolved.clear();
        self.agents_offline.clear();
        self.agents_rearmed.clear();
        self.restore(members, now);
        self.restore_pending(pending);
    }

    /// Rebuilds the memory of open incidents after a restart, from the store.
    pub fn restore(&mut self, members: &[OpenMember], now: DateTime<Utc>) {
        for m in members {
            // A failing channel's incident is the engine's, resolved when the channel
            // delivers again; the correlator does not hold it.
            if m.alarm.ends_with("||notification_failed") {
                continue;
            }
            let entry = self.open.entry(m.incident).or_insert_with(|| OpenIncident {
                device: m.device.clone(),
                site: m.site.clone(),
                opened_at: m.opened_at,
                active: HashSet::new(),
                root: String::new(),
                in_maintenance: m.in_maintenance,
                severity: None,
                impact: None,
                causes: HashSet::new(),
            });
            entry.root.clone_from(&m.root);
            if !m.active {
                continue;
            }
            entry.active.insert(m.alarm.clone());
            let mut parts = m.alarm.splitn(3, '|');
            let (Some(device), Some(sub), Some(kind)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            match (kind, sub.parse::<u32>().ok()) {
                ("device_down", _) => {
                    let d = self.devices.entry(device.to_owned()).or_default();
                    d.down_since = Some(now);
                    d.active = true;
                    self.down_generation += 1;
                    d.incident = Some(m.incident);
                }
                ("link_down", Some(i)) => {
                    let p = self.ports.entry((device.to_owned(), i)).or_default();
                    p.alarm = PortAlarm::restored_active(now);
                    p.incident = Some(m.incident);
                }
                ("agent_offline", _) => {
                    self.agents_offline.insert(device.to_owned(), m.incident);
                }
                ("port_flapping", Some(i)) => {
                    let p = self.ports.entry((device.to_owned(), i)).or_default();
                    p.alarm = PortAlarm::restored_flapping(now, m.transitions.unwrap_or(0));
                    p.flap_incident = Some(m.incident);
                }
                _ => {}
            }
        }
        self.open.retain(|_, o| !o.active.is_empty());
    }

    /// Rebuilds the quarantined port alarms after a restart (their hold goes on from when the
    /// port went down).
    pub fn restore_pending(&mut self, pending: &[(String, DateTime<Utc>)]) {
        for (key, since) in pending {
            let mut parts = key.splitn(3, '|');
            if let (Some(device), Some(Ok(i)), Some("link_down")) = (
                parts.next(),
                parts.next().map(str::parse::<u32>),
                parts.next(),
            ) {
                let p = self.ports.entry((device.to_owned(), i)).or_default();
                if !p.alarm.is_active() && !p.alarm.is_flapping() {
                    p.alarm = PortAlarm::restored_pending(*since);
                }
            }
        }
    }

    /// Number of incidents the correlator holds open now (the store's count, which includes
    /// incidents it does not track such as failed channels, is the one to report).
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// Events ignored because a newer observation of their port had been applied already.
    pub fn stale_events(&self) -> u64 {
        self.stale
    }

    /// A person's action on an incident, checked against its state.
    pub fn command(
        &mut self,
        incident: i64,
        action: Action,
        actor: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), CommandError> {
        let Some((state, escalated)) = tx.state(incident)? else {
            return Err(CommandError::NotFound(incident));
        };
        let active = matches!(state.as_str(), "open" | "acknowledged");
        // A plain resolve is refused while the store holds active alarms of it.
        let still_active = if action == Action::Resolve && active {
            tx.active_members(incident)?
        } else {
            Vec::new()
        };
        let detail = comment.unwrap_or_default();
        match action {
            Action::Ack if state != "open" => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} is {state}; only an open incident can be acknowledged"
                )));
            }
            Action::Ack => tx.set_state(incident, "acknowledged", now)?,
            Action::Escalate if !active => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} is {state}; it cannot be escalated"
                )));
            }
            Action::Escalate if escalated => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} is already escalated"
                )));
            }
            Action::Escalate => tx.set_escalated(incident, now)?,
            Action::Resolve | Action::ForceResolve if !active => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} is already {state}"
                )));
            }
            Action::Resolve if !still_active.is_empty() => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} still has active alarms ({}); resolve it with \"force\": true to say that you know, and each of them opens a new incident after its hold time",
                    still_active.join(", ")
                )));
            }
            Action::Resolve | Action::ForceResolve => {
                tx.resolve(incident, now)?;
                self.forget(incident, now, tx)?;
            }
            Action::Close if state != "resolved" => {
                return Err(CommandError::Invalid(format!(
                    "incident {incident} is {state}; only a resolved incident can be closed"
                )));
            }
            Action::Close => tx.set_state(incident, "closed", now)?,
            Action::Comment | Action::PublicComment if detail.trim().is_empty() => {
                return Err(CommandError::Invalid("a comment needs text".into()));
            }
            Action::Comment | Action::PublicComment => {}
            Action::LocalWork if !active => {
                return Err(CommandError::Conflict(format!(
                    "incident {incident} is {state}; local work is asked for active incidents"
                )));
            }
            Action::LocalWork if detail.trim().is_empty() => {
                return Err(CommandError::Invalid(
                    "say in `comment` what local work is needed, and where".into(),
                ));
            }
            Action::LocalWork => {}
        }
        tx.note_by(incident, now, action.as_str(), actor, detail)?;
        Ok(())
    }

    /// Drops an incident a person resolved. An alarm of it that is still active starts over:
    /// a port that is still down goes back into quarantine from `now` and a device that still
    /// does not answer waits its hold time again, so the fault opens a new incident then
    /// rather than staying hidden (DESIGN.md: nothing fails silently).
    fn forget(
        &mut self,
        incident: i64,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let Some(o) = self.open.remove(&incident) else {
            return Ok(());
        };
        let mut rearm = Vec::new();
        for ((device, i), p) in &mut self.ports {
            let mine = p.incident == Some(incident) || p.flap_incident == Some(incident);
            if !mine {
                continue;
            }
            p.incident = None;
            p.flap_incident = None;
            if p.alarm.is_down() {
                // The fault is the same: the new incident's first time is still when the
                // port went down (its event moves to the new incident).
                p.alarm = PortAlarm::restored_pending(now);
                rearm.push(alarm_key(device, Some(*i), AlarmKind::LinkDown));
            } else {
                p.alarm = PortAlarm::default();
            }
        }
        for key in rearm {
            tx.set_pending(&key, now)?;
        }
        for d in self.devices.values_mut() {
            if d.incident == Some(incident) {
                d.incident = None;
                if d.active {
                    d.active = false;
                    d.rearmed_at = Some(now);
                    self.down_generation += 1;
                }
            }
        }
        for alarm in &o.active {
            if let Some(agent) = alarm.strip_suffix("||agent_offline")
                && self.agents_offline.get(agent) == Some(&incident)
            {
                self.agents_offline.remove(agent);
                self.agents_rearmed.insert(agent.to_owned(), now);
            }
        }
        Ok(())
    }

    /// The topology as it stands now.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.clone()
    }

    /// The latest neighbour changes, oldest first.
    pub fn neighbour_changes(&self) -> Vec<NeighbourChange> {
        self.neighbour_changes.iter().cloned().collect()
    }

    /// The devices whose `device_down` alarm is active.
    pub fn devices_down(&self) -> HashSet<String> {
        self.down_devices()
    }

    /// A new inventory (a reload or a CNaaS-NMS refresh): the topology is rebuilt with it.
    pub fn set_inventory(&mut self, inventory: Arc<Inventory>) {
        self.inventory = inventory;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.topology = Arc::new(Topology::build(&self.inventory, &self.learned));
        *self.reach.borrow_mut() = None;
    }

    /// A device's LLDP snapshot (a `neighbours` event, also replayed from the store at
    /// start): the topology follows it. A neighbour that is no longer announced (its link is
    /// down) is remembered as cabled, until another neighbour is seen on either end of its
    /// cable or [`LLDP_FORGET`] passes; a neighbour that appeared or changed on a port is
    /// recorded. An older snapshot than the one held is ignored.
    pub fn learn_neighbours(&mut self, e: &Event, at: DateTime<Utc>) {
        let snap = match Neighbours::from_event(e) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(device = %e.device, event = %e.id, error = %why, "neighbours event without a readable snapshot; ignored.");
                return;
            }
        };
        if self.lldp_at.get(&e.device).is_some_and(|t| *t > at) {
            return;
        }
        let first = self.lldp_at.insert(e.device.clone(), at).is_none();
        let label = |n: &cnaas_shared::Neighbour| {
            format!(
                "{} {}",
                n.sys_name.as_deref().unwrap_or(&n.chassis_id),
                n.port_id
            )
        };
        // One neighbour per local port: a known device first.
        let mut now: std::collections::BTreeMap<String, cnaas_shared::Neighbour> =
            std::collections::BTreeMap::new();
        for n in snap.neighbours {
            let known = |x: &cnaas_shared::Neighbour| {
                x.sys_name
                    .as_deref()
                    .and_then(|s| self.topology.device_named(s))
                    .is_some()
            };
            match now.get(&n.local_port) {
                Some(old) if known(old) || !known(&n) => {}
                _ => {
                    now.insert(n.local_port.clone(), n);
                }
            }
        }
        let ports = self.learned.lldp.entry(e.device.clone()).or_default();
        let mut changed = false;
        for (port, n) in &now {
            let before = ports.get(port);
            let same = before.is_some_and(|b| label(&b.neighbour) == label(n));
            if !same && !first {
                let change = NeighbourChange {
                    at,
                    device: e.device.clone(),
                    port: port.clone(),
                    before: before.map(|b| label(&b.neighbour)),
                    after: Some(label(n)),
                };
                tracing::info!(device = %e.device, if_name = %port, before = ?change.before, after = ?change.after, "LLDP neighbour changed.");
                if self.neighbour_changes.len() >= NEIGHBOUR_CHANGES {
                    self.neighbour_changes.pop_front();
                }
                self.neighbour_changes.push_back(change);
            }
            changed |= before.is_none_or(|b| !b.present || b.neighbour != *n);
            ports.insert(
                port.clone(),
                super::topology::LearnedNeighbour {
                    neighbour: n.clone(),
                    seen: at,
                    present: true,
                },
            );
        }
        for (port, l) in ports.iter_mut() {
            if !now.contains_key(port) && l.present {
                l.present = false;
                changed = true;
            }
        }
        let before = ports.len();
        ports.retain(|_, l| l.present || at - l.seen < LLDP_FORGET);
        changed |= ports.len() != before;
        self.stale_topology |= changed;
    }

    /// Builds the topology again if LLDP changed since it was built.
    pub fn settle_topology(&mut self) {
        if std::mem::take(&mut self.stale_topology) {
            self.rebuild();
        }
    }

    /// The reach of the current down set (kept until the down set changes).
    fn reach_now(&self) -> Arc<Reach> {
        if let Some((generation, r)) = self.reach.borrow().as_ref()
            && *generation == self.down_generation
        {
            return r.clone();
        }
        let r = Arc::new(self.topology.reach(&self.down_devices()));
        *self.reach.borrow_mut() = Some((self.down_generation, r.clone()));
        r
    }

    /// The down device that shadows `device` in the current down set.
    fn shadow_of(&self, device: &str, reach: &Reach) -> Option<String> {
        self.topology.shadowed_by(device, reach).map(str::to_owned)
    }

    /// The incident of a device whose `device_down` alarm is active.
    fn down_incident(&self, device: &str) -> Option<i64> {
        self.devices
            .get(device)
            .filter(|d| d.active)
            .and_then(|d| d.incident)
    }

    /// The down device a port alarm is caused by: the device at the other end of the port
    /// (LLDP or CNaaS-NMS), or, for an uplink port whose peer is unknown, a down parent.
    fn port_cause(&self, device: &str, if_index: u32, down: &HashSet<String>) -> Option<String> {
        let port = self.ports.get(&(device.to_owned(), if_index))?;
        if let Some(name) = port.if_name.as_deref()
            && let Some(peer) = self.topology.peer_of_port(device, name)
        {
            return down.contains(peer).then(|| peer.to_owned());
        }
        if port.role == Some(PortRole::Uplink) {
            return self
                .topology
                .parents(device)
                .into_iter()
                .find(|p| down.contains(*p))
                .map(str::to_owned);
        }
        None
    }

    /// The port at the far end of a port's cable, as the engine knows it (by ifName).
    fn far_port(&self, device: &str, if_index: u32) -> Option<(String, u32)> {
        let name = self
            .ports
            .get(&(device.to_owned(), if_index))?
            .if_name
            .as_deref()?;
        let (d, p) = self.topology.far_end(device, name)?;
        self.ports
            .iter()
            .find(|((dev, _), e)| dev == d && e.if_name.as_deref() == Some(p))
            .map(|(k, _)| k.clone())
    }

    /// The incident a device going down shares with others that are down: the other switch
    /// of its pair, or another down parent of a device the two now cut off together.
    fn joint_incident(&self, name: &str, reach: &Reach) -> Option<i64> {
        if let Some(id) = self
            .topology
            .partner(name)
            .and_then(|p| self.down_incident(p))
        {
            return Some(id);
        }
        let level = self.topology.level(name)?;
        for child in self.topology.neighbours(name) {
            if self.topology.level(child).is_none_or(|l| l <= level)
                || !self.topology.is_shadowed(child, reach)
            {
                continue;
            }
            for p in self.topology.parents(child) {
                if p != name
                    && reach.down().contains(p)
                    && !self.topology.is_shadowed(p, reach)
                    && let Some(id) = self.down_incident(p)
                {
                    return Some(id);
                }
            }
        }
        None
    }

    /// Judges what the down devices of a device incident do to the campus, and stores it:
    /// only redundancy lost (a pair partner or a second path carries on) is severity 3 at
    /// most, so nobody is woken at night for it; devices cut off make it an outage with the
    /// device's own severity. A severity raised on an incident already open is told again
    /// (`worsened`). An incident without topology keeps what it opened with.
    fn judge_impact(
        &mut self,
        incident: i64,
        now: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let Some(o) = self.open.get(&incident) else {
            return Ok(());
        };
        if !o.root.ends_with("||device_down") {
            return Ok(());
        }
        let reach = self.reach_now();
        // After a restart the causes are not known: every down device of it that nothing
        // shadows is one.
        let known = !o.causes.is_empty();
        let mut roots: Vec<&str> = self
            .devices
            .iter()
            .filter(|(n, d)| {
                d.active
                    && d.incident == Some(incident)
                    && (!known || o.causes.contains(n.as_str()))
                    && !self.topology.is_shadowed(n, &reach)
            })
            .map(|(n, _)| n.as_str())
            .collect();
        roots.sort_unstable();
        if roots.is_empty() {
            return Ok(());
        }
        let impact = self.topology.impact(&roots, &reach);
        if o.impact.as_ref() == Some(&impact)
            || (o.impact.is_none() && impact.isolated.is_empty() && impact.degraded.is_empty())
        {
            return Ok(());
        }
        let base = roots
            .iter()
            .map(|r| {
                let role = self
                    .inventory
                    .devices
                    .get(*r)
                    .and_then(|d| d.role)
                    .or_else(|| self.topology.role(r));
                device_severity(role)
            })
            .min()
            .unwrap_or(2);
        let who = match roots.as_slice() {
            [one] => format!("Device {one} does not answer"),
            many => format!("Devices {} do not answer", many.join(", ")),
        };
        let list = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(" and {} more", v.len() - 5));
            }
            s
        };
        let (severity, summary) = if impact.redundancy_only() {
            (
                base.max(3),
                format!(
                    "{who}; redundancy lost for {} device(s): {}",
                    impact.degraded.len(),
                    list(&impact.degraded)
                ),
            )
        } else if !impact.isolated.is_empty() {
            (
                base,
                format!(
                    "{who}; {} device(s) cut off: {}",
                    impact.isolated.len(),
                    list(&impact.isolated)
                ),
            )
        } else {
            (base, who)
        };
        let mut customers: Vec<String> = roots
            .iter()
            .map(|r| (*r).to_owned())
            .chain(impact.isolated.iter().cloned())
            .chain(impact.degraded.iter().cloned())
            .filter_map(|d| {
                self.inventory
                    .devices
                    .get(&d)
                    .and_then(|x| x.customer.clone())
            })
            .collect();
        customers.sort();
        customers.dedup();
        let stored = crate::store::IncidentImpact {
            kind: if impact.isolated.is_empty() && !impact.degraded.is_empty() {
                "redundancy_lost"
            } else {
                "outage"
            }
            .into(),
            down: roots.iter().map(|r| (*r).to_owned()).collect(),
            isolated: impact.isolated.clone(),
            degraded: impact.degraded.clone(),
            customers,
        };
        let before = o.severity;
        let opened_now = o.opened_at == now;
        tx.set_impact(incident, severity, &summary, &stored)?;
        let worse = before.is_some_and(|b| severity < b) && !opened_now;
        tx.note(
            incident,
            now,
            if worse { "worsened" } else { "impact" },
            event,
            &summary,
        )?;
        if let Some(o) = self.open.get_mut(&incident) {
            o.severity = Some(severity);
            o.impact = Some(impact);
        }
        Ok(())
    }

    /// Applies one stored event at the collector's time `now`; the rules judge it by when
    /// it was observed ([`event_time`]).
    pub fn on_event(
        &mut self,
        e: &Event,
        role: Option<PortRole>,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let event_id = e.id.to_string();
        let (at, _) = event_time(e.observed_at, now);
        if e.kind != EventKind::Neighbours {
            self.settle_topology();
        }
        match (e.kind, e.if_index) {
            (EventKind::LinkDown | EventKind::LinkUp | EventKind::AdminDown, Some(i))
                if role.is_some_and(PortRole::is_watched) =>
            {
                let key = (e.device.clone(), i);
                let entry = self.ports.entry(key.clone()).or_default();
                let seen = Seen::of(e, at);
                if entry
                    .last_seen
                    .as_ref()
                    .is_some_and(|last| last.is_after(&seen))
                {
                    self.stale += 1;
                    tracing::info!(device = %e.device, if_index = i, event = %e.id, kind = e.kind.as_str(), "Stale event: the port has a newer observation; ignored.");
                    return Ok(());
                }
                entry.last_seen = Some(seen);
                entry.if_name = e.if_name.clone().or(entry.if_name.take());
                entry.if_alias = e.if_alias.clone().or(entry.if_alias.take());
                entry.role = role;
                if let Some(b) = e.bundle() {
                    entry.bundle = Some(b);
                }
                self.port_transition(&key, e.kind == EventKind::LinkDown, at, &event_id, tx)?;
            }
            (EventKind::StateSync, _) => self.state_sync(e, at, &event_id, tx)?,
            (EventKind::Neighbours, _) => self.learn_neighbours(e, at),
            (EventKind::DeviceUnreachable, _) => {
                let d = self.devices.entry(e.device.clone()).or_default();
                if d.down_since.is_none() {
                    d.down_since = Some(at);
                }
                self.maybe_activate_device(&e.device, now, Some(&event_id), tx)?;
            }
            (EventKind::DeviceRebooted, _) => {
                // Worth seeing, nothing to clear: recorded as an incident that is resolved at once.
                let mut new = self.new_incident(AlarmKind::DeviceRebooted, &e.device, None, None);
                new.key = format!("{}|{}", new.key, e.id);
                let id = tx.open(&new, now)?;
                tx.note(id, now, "opened", Some(&event_id), &new.summary)?;
                tx.clear_member(id, &new.key, now)?;
                tx.resolve(id, now)?;
            }
            (EventKind::VlanChanged, Some(i)) if role.is_some_and(PortRole::is_watched) => {
                // A watched port's VLAN is infrastructure: a person looks at it and resolves it.
                let entry = self.ports.entry((e.device.clone(), i)).or_default();
                entry.if_name = e.if_name.clone().or(entry.if_name.take());
                entry.if_alias = e.if_alias.clone().or(entry.if_alias.take());
                entry.role = role;
                let mut new = self.new_incident(
                    AlarmKind::VlanChanged,
                    &e.device,
                    Some(i),
                    self.ports.get(&(e.device.clone(), i)),
                );
                let (old, vlan) = (
                    e.attrs.get("old").cloned().unwrap_or_default(),
                    e.attrs.get("new").cloned().unwrap_or_default(),
                );
                new.summary = format!("{} (VLAN {old} -> {vlan})", new.summary);
                new.key = format!("{}|{}", new.key, e.id);
                self.open(&new, now, at, Some(&event_id), tx)?;
            }
            (EventKind::DeviceReachable, _) => {
                self.device_answers(&e.device, at, &event_id, tx)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A watched port went down (`down`) or up at `at` (its observation time). The hold time
    /// is judged by observation times too: before an up is applied, a down that had lasted
    /// longer than the hold activates, so an outage replayed late is still an incident.
    fn port_transition(
        &mut self,
        key: &(String, u32),
        down: bool,
        at: DateTime<Utc>,
        event_id: &str,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let hold = self.rules.link_hold;
        if !down {
            let outcomes = self
                .ports
                .get_mut(key)
                .map(|p| p.alarm.tick(at, hold))
                .unwrap_or_default();
            self.apply_port(key, &outcomes, at, None, tx)?;
        }
        let Some(entry) = self.ports.get_mut(key) else {
            return Ok(());
        };
        let was_down = entry.alarm.is_down();
        let outcomes = if down {
            entry.alarm.on_down(at)
        } else {
            entry.alarm.on_up(at)
        };
        if down && !was_down {
            entry.down_event = Some((event_id.to_owned(), at));
        }
        self.apply_port(key, &outcomes, at, Some(event_id), tx)?;
        // A zero hold time activates at once rather than at the next tick.
        let outcomes = self
            .ports
            .get_mut(key)
            .map(|p| p.alarm.tick(at, hold))
            .unwrap_or_default();
        self.apply_port(key, &outcomes, at, Some(event_id), tx)?;
        if let Some(p) = self.ports.get_mut(key)
            && !p.alarm.is_down()
        {
            p.down_event = None;
        }
        Ok(())
    }

    /// The device answers again: its `device_down` alarm clears.
    fn device_answers(
        &mut self,
        device: &str,
        at: DateTime<Utc>,
        event_id: &str,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let Some(d) = self.devices.get_mut(device) else {
            return Ok(());
        };
        d.down_since = None;
        d.rearmed_at = None;
        let was_active = std::mem::take(&mut d.active);
        if was_active {
            self.down_generation += 1;
        }
        let Some(d) = self.devices.get_mut(device) else {
            return Ok(());
        };
        if was_active && let Some(incident) = d.incident.take() {
            let alarm = alarm_key(device, None, AlarmKind::DeviceDown);
            self.clear(incident, &alarm, at, Some(event_id), tx)?;
            // A pair partner back: what is left of the incident is judged again.
            self.judge_impact(incident, at, Some(event_id), tx)?;
        }
        Ok(())
    }

    /// An agent's snapshot of a device after it (re)started, reconnected or saw the device
    /// answer again (`attrs.up`, `attrs.down`, `attrs.disabled`: ifIndex lists). The device
    /// answers, and every alarm the snapshot contradicts clears: a port that recovered while
    /// the agent was away is reported up here, never by a `link_up`.
    fn state_sync(
        &mut self,
        e: &Event,
        at: DateTime<Utc>,
        event_id: &str,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let Some(sync) = cnaas_shared::StateSync::from_event(e) else {
            tracing::warn!(device = %e.device, event = %e.id, "state_sync without readable port lists; ignored.");
            return Ok(());
        };
        self.device_answers(&e.device, at, event_id, tx)?;
        let mut contradicted: Vec<(String, u32)> = self
            .ports
            .iter()
            .filter(|((dev, i), p)| dev == &e.device && p.alarm.is_down() && sync.is_not_down(*i))
            .map(|(k, _)| k.clone())
            .collect();
        contradicted.sort();
        for key in contradicted {
            if self
                .ports
                .get(&key)
                .and_then(|p| p.last_seen.as_ref())
                .is_some_and(|last| last.is_after(&Seen::of(e, at)))
            {
                continue;
            }
            tracing::info!(device = %key.0, if_index = key.1, "The agent's state sync says the port is up: its alarm clears.");
            if let Some(p) = self.ports.get_mut(&key) {
                p.last_seen = Some(Seen::of(e, at));
            }
            self.port_transition(&key, false, at, event_id, tx)?;
        }
        Ok(())
    }

    /// Timers: quarantines that ran out, flapping checks, device holds.
    pub fn tick(&mut self, now: DateTime<Utc>, tx: &mut dyn IncidentTx) -> Result<(), StoreError> {
        self.settle_topology();
        // Only a port that is down or flapping has timers; in a stable order, so the same
        // inputs always make the same incidents.
        let mut keys: Vec<(String, u32)> = self
            .ports
            .iter()
            .filter(|(_, p)| p.alarm.is_down() || p.alarm.is_flapping())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        for key in keys {
            let outcomes = match self.ports.get_mut(&key) {
                Some(p) => p.alarm.tick(now, self.rules.link_hold),
                None => continue,
            };
            if !outcomes.is_empty() {
                self.apply_port(&key, &outcomes, now, None, tx)?;
            }
        }
        let mut pending: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.down_since.is_some() && !d.active)
            .map(|(n, _)| n.clone())
            .collect();
        pending.sort_unstable();
        for name in pending {
            self.maybe_activate_device(&name, now, None, tx)?;
        }
        let mut rearmed: Vec<String> = self
            .agents_rearmed
            .iter()
            .filter(|(_, since)| now - **since >= self.rules.device_hold)
            .map(|(a, _)| a.clone())
            .collect();
        rearmed.sort();
        for agent in rearmed {
            self.agent_status(&agent, "offline", now, tx)?;
        }
        self.end_maintenance(now, tx)
    }

    /// Incidents opened inside a maintenance window whose device is no longer inside any
    /// (overlapping windows keep it in until the last one ends) become ordinary incidents:
    /// the flag is cleared and the history says so, which tells the customer.
    fn end_maintenance(
        &mut self,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let mut flagged: Vec<(i64, String)> = self
            .open
            .iter()
            .filter(|(_, o)| o.in_maintenance)
            .map(|(id, o)| (*id, o.device.clone()))
            .collect();
        flagged.sort();
        for (id, device) in flagged {
            if self.maintenance.in_window(&device, now) {
                continue;
            }
            tx.set_in_maintenance(id, false)?;
            tx.note(
                id,
                now,
                "maintenance_ended",
                None,
                "the maintenance window ended with the fault still there",
            )?;
            if let Some(o) = self.open.get_mut(&id) {
                o.in_maintenance = false;
            }
        }
        Ok(())
    }

    fn down_devices(&self) -> HashSet<String> {
        self.devices
            .iter()
            .filter(|(_, d)| d.active)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn site_of(&self, device: &str) -> Option<String> {
        self.inventory
            .devices
            .get(device)
            .and_then(|d| d.site.clone())
    }

    /// An open incident of the same device (else the same site) opened within the window.
    fn group_with(&self, device: &str, now: DateTime<Utc>) -> Option<i64> {
        let recent = |o: &&OpenIncident| now - o.opened_at <= self.rules.group_window;
        let site = self.site_of(device);
        let mut candidates: Vec<(&i64, &OpenIncident)> =
            self.open.iter().filter(|(_, o)| recent(o)).collect();
        candidates.sort_by_key(|(id, _)| **id);
        candidates
            .iter()
            .find(|(_, o)| o.device == device)
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(_, o)| site.is_some() && o.site == site)
            })
            .map(|(id, _)| **id)
    }

    fn new_incident(
        &self,
        kind: AlarmKind,
        device: &str,
        if_index: Option<u32>,
        port: Option<&PortEntry>,
    ) -> NewIncident {
        let inv = self.inventory.devices.get(device);
        let label = if_index.map(|i| {
            port_label(
                port.and_then(|p| p.if_name.as_deref()),
                port.and_then(|p| p.if_alias.as_deref()),
                i,
            )
        });
        let role = port.and_then(|p| p.role);
        let (severity, summary) = match kind {
            AlarmKind::DeviceDown => (
                device_severity(inv.and_then(|d| d.role)),
                format!("Device {device} does not answer"),
            ),
            AlarmKind::LinkDown => {
                let what = match role {
                    Some(PortRole::Uplink) => "Uplink",
                    Some(PortRole::Downlink) => "Downlink",
                    _ => "Infrastructure port",
                };
                // A member of a bundle that is still up: redundancy lost, not the link.
                let bundle = port.and_then(|p| p.bundle.as_ref()).filter(|b| {
                    b.members > 1
                        && !self
                            .ports
                            .get(&(device.to_owned(), b.if_index))
                            .is_some_and(|p| p.alarm.is_down())
                });
                match bundle {
                    Some(b) => {
                        let name = b
                            .name
                            .clone()
                            .unwrap_or_else(|| format!("ifIndex {}", b.if_index));
                        (
                            (link_severity(role) + 1).min(5),
                            format!(
                                "{what} {} on {device} is down: bundle {name} is up on its other member(s), redundancy lost",
                                label.clone().unwrap_or_default()
                            ),
                        )
                    }
                    None => (
                        link_severity(role),
                        format!(
                            "{what} {} on {device} is down",
                            label.clone().unwrap_or_default()
                        ),
                    ),
                }
            }
            AlarmKind::PortFlapping => (
                (link_severity(role) + 1).min(5),
                format!(
                    "Port {} on {device} is flapping",
                    label.clone().unwrap_or_default()
                ),
            ),
            AlarmKind::VlanChanged => (
                3,
                format!(
                    "VLAN of {} on {device} changed",
                    label.clone().unwrap_or_default()
                ),
            ),
            AlarmKind::DeviceRebooted => (4, format!("Device {device} restarted")),
            AlarmKind::AgentOffline => (2, format!("Site probe {device} is offline")),
            AlarmKind::NotificationFailed => (2, format!("Notifications on {device} fail")),
        };
        NewIncident {
            kind,
            key: alarm_key(device, if_index, kind),
            severity,
            device: device.to_owned(),
            if_index,
            if_name: port.and_then(|p| p.if_name.clone()),
            if_alias: port.and_then(|p| p.if_alias.clone()),
            role,
            site: inv.and_then(|d| d.site.clone()),
            customer: inv.and_then(|d| d.customer.clone()),
            summary,
        }
    }

    /// Opens an incident for an alarm (`first` is when its fault began: the incident's first
    /// time), or re-opens its incident resolved moments ago. Both go through the same
    /// maintenance check: inside a window the customer is not told, outside it they are
    /// (whatever the incident's flag was when it resolved).
    fn open(
        &mut self,
        new: &NewIncident,
        now: DateTime<Utc>,
        first: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<i64, StoreError> {
        let in_maintenance = self.maintenance.in_window(&new.device, now);
        // Its incident is still open (other alarms of it are active): the alarm rejoins it as
        // its root (the store allows one open incident per root alarm).
        if let Some(id) = self
            .open
            .iter()
            .find(|(_, o)| o.root == new.key)
            .map(|(id, _)| *id)
        {
            tx.add_member(id, &new.key, Relation::Root, now)?;
            tx.note(id, now, "rejoined", event, &new.summary)?;
            self.track(id, new, now);
            return Ok(id);
        }
        if let Some(&(id, at, was_in_maintenance)) = self.last_resolved.get(&new.key)
            && now - at <= self.rules.reopen_window
        {
            tx.reopen(id, now)?;
            tx.add_member(id, &new.key, Relation::Root, now)?;
            if in_maintenance != was_in_maintenance {
                tx.set_in_maintenance(id, in_maintenance)?;
                let why = if in_maintenance {
                    "the device is inside a maintenance window"
                } else {
                    "the device is no longer inside a maintenance window"
                };
                tx.note(id, now, "maintenance_flag", None, why)?;
            }
            tx.note(id, now, "reopened", event, &new.summary)?;
            self.last_resolved.remove(&new.key);
            self.track(id, new, now);
            if let Some(o) = self.open.get_mut(&id) {
                o.in_maintenance = in_maintenance;
            }
            return Ok(id);
        }
        let id = tx.open(new, first.min(now))?;
        tx.note(id, now, "opened", event, &new.summary)?;
        if in_maintenance {
            tx.set_in_maintenance(id, true)?;
            tx.note(
                id,
                now,
                "in_maintenance",
                None,
                "the device is inside a maintenance window",
            )?;
        }
        self.track(id, new, now);
        if let Some(o) = self.open.get_mut(&id) {
            o.in_maintenance = in_maintenance;
        }
        Ok(id)
    }

    fn track(&mut self, id: i64, new: &NewIncident, now: DateTime<Utc>) {
        let entry = self.open.entry(id).or_insert_with(|| OpenIncident {
            device: new.device.clone(),
            site: new.site.clone(),
            opened_at: now,
            active: HashSet::new(),
            root: new.key.clone(),
            in_maintenance: false,
            severity: Some(new.severity),
            impact: None,
            causes: HashSet::new(),
        });
        entry.active.insert(new.key.clone());
        if new.kind == AlarmKind::DeviceDown {
            entry.causes.insert(new.device.clone());
        }
    }

    fn join(
        &mut self,
        incident: i64,
        alarm: &str,
        relation: Relation,
        now: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        tx.add_member(incident, alarm, relation, now)?;
        tx.note(incident, now, relation.as_str(), event, alarm)?;
        if let Some(o) = self.open.get_mut(&incident) {
            o.active.insert(alarm.to_owned());
        }
        Ok(())
    }

    /// Clears an alarm in its incident; the incident resolves when nothing is left active.
    fn clear(
        &mut self,
        incident: i64,
        alarm: &str,
        now: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        tx.clear_member(incident, alarm, now)?;
        let Some(o) = self.open.get_mut(&incident) else {
            return Ok(());
        };
        o.active.remove(alarm);
        if o.active.is_empty() {
            let root = o.root.clone();
            let in_maintenance = o.in_maintenance;
            self.open.remove(&incident);
            tx.resolve(incident, now)?;
            tx.note(incident, now, "resolved", event, alarm)?;
            self.last_resolved
                .insert(root, (incident, now, in_maintenance));
        } else {
            tx.note(incident, now, "cleared", event, alarm)?;
        }
        Ok(())
    }

    /// Moves an alarm out of `incident` because `into` takes it in (a device down takes in its
    /// ports, a parent its shadowed devices, a flapping port its link alarm). Nothing cleared:
    /// when nothing is left active in `incident` it is *merged* into `into`, not resolved, so
    /// nobody hears a false "resolved"; whoever heard of it hears of `into`'s resolution.
    fn move_out(
        &mut self,
        incident: i64,
        alarm: &str,
        into: i64,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        tx.clear_member(incident, alarm, now)?;
        let Some(o) = self.open.get_mut(&incident) else {
            return Ok(());
        };
        o.active.remove(alarm);
        if o.active.is_empty() {
            self.open.remove(&incident);
            tx.merge(incident, into, now)?;
            tx.note(
                incident,
                now,
                "merged",
                None,
                &format!("merged into #{into}"),
            )?;
            tx.note(into, now, "took_in", None, &format!("took in #{incident}"))?;
            // An alarm of a merged incident that comes back belongs to a new episode.
            self.last_resolved.retain(|_, (id, _, _)| *id != incident);
        } else {
            tx.note(
                incident,
                now,
                "moved",
                None,
                &format!("{alarm} moved to #{into}"),
            )?;
        }
        Ok(())
    }

    fn apply_port(
        &mut self,
        key: &(String, u32),
        outcomes: &[Outcome],
        now: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let (device, if_index) = (key.0.as_str(), key.1);
        let link = alarm_key(device, Some(if_index), AlarmKind::LinkDown);
        let flap = alarm_key(device, Some(if_index), AlarmKind::PortFlapping);
        for outcome in outcomes {
            match outcome {
                Outcome::Pending => tx.set_pending(&link, now)?,
                Outcome::Transient { down_for } => {
                    tx.clear_pending(&link)?;
                    tracing::info!(
                        device,
                        if_index,
                        seconds = down_for.num_seconds(),
                        "Transient link down, within the hold time."
                    );
                }
                Outcome::Activate => {
                    tx.clear_pending(&link)?;
                    // The event that began the fault is linked to the incident (its first
                    // time), also when the hold time ran out at a tick.
                    let started = self.ports.get(key).and_then(|p| p.down_event.clone());
                    let first = started.as_ref().map_or(now, |(_, at)| *at);
                    let cause = started.as_ref().map(|(id, _)| id.as_str()).or(event);
                    // A port whose cable was seen plugged in elsewhere since (LLDP) lost
                    // its link to the move: recorded, no incident.
                    if let Some(name) = self.ports.get(key).and_then(|p| p.if_name.clone())
                        && self.topology.cable_moved(&self.learned, device, &name)
                    {
                        tracing::info!(device, if_name = %name, "Link down on a port whose cable moved elsewhere (LLDP): no incident.");
                        continue;
                    }
                    let target = self.port_target(device, if_index, now);
                    let incident = match target {
                        Some((id, relation)) => {
                            self.join(id, &link, relation, now, cause, tx)?;
                            tx.extend_first(id, first)?;
                            id
                        }
                        None => {
                            let new = self.new_incident(
                                AlarmKind::LinkDown,
                                device,
                                Some(if_index),
                                self.ports.get(key),
                            );
                            self.open(&new, now, first, cause, tx)?
                        }
                    };
                    if let Some(p) = self.ports.get_mut(key) {
                        p.incident = Some(incident);
                    }
                }
                Outcome::Clear => {
                    if let Some(incident) = self.ports.get_mut(key).and_then(|p| p.incident.take())
                    {
                        self.clear(incident, &link, now, event, tx)?;
                    }
                }
                Outcome::FlapStarted { transitions } => {
                    tx.clear_pending(&link)?;
                    let new = self.new_incident(
                        AlarmKind::PortFlapping,
                        device,
                        Some(if_index),
                        self.ports.get(key),
                    );
                    let first = self
                        .ports
                        .get(key)
                        .and_then(|p| p.down_event.as_ref().map(|(_, at)| *at))
                        .unwrap_or(now);
                    // The other end of the cable flapping already: the same incident.
                    let shared = self
                        .far_port(device, if_index)
                        .and_then(|far| self.ports.get(&far).and_then(|p| p.flap_incident))
                        .filter(|id| self.open.contains_key(id));
                    let id = match shared {
                        Some(id) => {
                            self.join(id, &flap, Relation::Member, now, event, tx)?;
                            id
                        }
                        None => self.open(&new, now, first, event, tx)?,
                    };
                    tx.set_transitions(id, *transitions)?;
                    // The link alarm's incident is folded into the flapping one.
                    if let Some(incident) = self.ports.get_mut(key).and_then(|p| p.incident.take())
                    {
                        self.move_out(incident, &link, id, now, tx)?;
                    }
                    if let Some(p) = self.ports.get_mut(key) {
                        p.flap_incident = Some(id);
                    }
                }
                Outcome::FlapCount { transitions } => {
                    if let Some(id) = self.ports.get(key).and_then(|p| p.flap_incident) {
                        tx.set_transitions(id, *transitions)?;
                    }
                }
                Outcome::FlapEnded => {
                    if let Some(incident) =
                        self.ports.get_mut(key).and_then(|p| p.flap_incident.take())
                    {
                        self.clear(incident, &flap, now, event, tx)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Where a port alarm of `device` belongs: its device's incident (device down), the
    /// incident of the down device that shadows it, or a storm group.
    fn port_target(
        &self,
        device: &str,
        if_index: u32,
        now: DateTime<Utc>,
    ) -> Option<(i64, Relation)> {
        if let Some(d) = self.devices.get(device)
            && d.active
            && let Some(id) = d.incident
        {
            return Some((id, Relation::Member));
        }
        let reach = self.reach_now();
        if let Some(parent) = self.shadow_of(device, &reach)
            && let Some(id) = self.devices.get(&parent).and_then(|d| d.incident)
        {
            return Some((id, Relation::Shadowed));
        }
        None.or_else(|| {
            // A link towards a device that is down belongs to that device's incident.
            let peer = self.port_cause(device, if_index, reach.down())?;
            self.down_incident(&peer).map(|id| (id, Relation::Member))
        })
        .or_else(|| {
            // The other end of the same cable is down already: one link, one incident.
            let far = self.far_port(device, if_index)?;
            self.ports
                .get(&far)
                .and_then(|p| p.incident)
                .map(|id| (id, Relation::Member))
        })
        .or_else(|| {
            self.group_with(device, now)
                .map(|id| (id, Relation::Member))
        })
    }

    fn maybe_activate_device(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
        event: Option<&str>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let Some(d) = self.devices.get(name) else {
            return Ok(());
        };
        let due = d
            .rearmed_at
            .or(d.down_since)
            .is_some_and(|since| now - since >= self.rules.device_hold);
        if d.active || !due {
            return Ok(());
        }
        let first = d.down_since.unwrap_or(now);
        let alarm = alarm_key(name, None, AlarmKind::DeviceDown);
        let mut down = self.down_devices();
        down.insert(name.to_owned());
        let reach = self.topology.reach(&down);
        let shadow = self
            .topology
            .shadowed_by(name, &reach)
            .and_then(|p| self.devices.get(p).and_then(|d| d.incident));
        // A device that shadows devices already down is the root cause: it gets its own
        // incident and takes them in, rather than joining theirs.
        let is_root_cause = self
            .devices
            .iter()
            .any(|(n, d)| d.active && self.topology.shadowed_by(n, &reach) == Some(name));
        // The other switch of a pair (or another parent of what the two now cut off) down
        // already: one incident for both.
        let joint = if shadow.is_none() {
            self.joint_incident(name, &reach)
        } else {
            None
        };
        let incident = match (shadow, joint) {
            (Some(id), _) => {
                self.join(id, &alarm, Relation::Shadowed, now, event, tx)?;
                id
            }
            (None, Some(id)) => {
                self.join(id, &alarm, Relation::Member, now, event, tx)?;
                tx.extend_first(id, first)?;
                if let Some(o) = self.open.get_mut(&id) {
                    o.causes.insert(name.to_owned());
                }
                id
            }
            (None, None) if is_root_cause => {
                let new = self.new_incident(AlarmKind::DeviceDown, name, None, None);
                self.open(&new, now, first, event, tx)?
            }
            (None, None) => match self.group_with(name, now) {
                Some(id) => {
                    self.join(id, &alarm, Relation::Member, now, event, tx)?;
                    if let Some(o) = self.open.get_mut(&id) {
                        o.causes.insert(name.to_owned());
                    }
                    id
                }
                None => {
                    let new = self.new_incident(AlarmKind::DeviceDown, name, None, None);
                    self.open(&new, now, first, event, tx)?
                }
            },
        };
        if let Some(d) = self.devices.get_mut(name) {
            d.active = true;
            d.incident = Some(incident);
        }
        self.down_generation += 1;
        self.absorb(name, incident, now, tx)?;
        self.judge_impact(incident, now, event, tx)
    }

    /// Moves into `incident` the active alarms of the device's own ports and of the devices it
    /// shadows (and their ports), from wherever they were.
    fn absorb(
        &mut self,
        name: &str,
        incident: i64,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let reach = self.reach_now();
        let behind: Vec<String> = self
            .devices
            .iter()
            .filter(|(n, d)| d.active && n.as_str() != name && d.incident != Some(incident))
            // Behind this device, or behind another one of the same incident (the other
            // switch of a pair: the two cut them off together).
            .filter(|(n, _)| {
                self.topology
                    .shadowed_by(n, &reach)
                    .is_some_and(|by| self.down_incident(by) == Some(incident))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for child in &behind {
            let alarm = alarm_key(child, None, AlarmKind::DeviceDown);
            if let Some(old) = self.devices.get(child).and_then(|d| d.incident) {
                self.move_out(old, &alarm, incident, now, tx)?;
            }
            if let Some(since) = self.devices.get(child).and_then(|d| d.down_since) {
                tx.extend_first(incident, since)?;
            }
            self.join(incident, &alarm, Relation::Shadowed, now, None, tx)?;
            if let Some(d) = self.devices.get_mut(child) {
                d.incident = Some(incident);
            }
        }
        let topology = self.topology.clone();
        let neighbours: HashSet<&str> = topology.neighbours(name).into_iter().collect();
        let moving: Vec<((String, u32), i64)> = self
            .ports
            .iter()
            .filter(|((dev, i), p)| {
                p.alarm.is_active()
                    && (dev == name
                        || behind.contains(dev)
                        // Only a neighbour's port can lead to this device.
                        || (neighbours.contains(dev.as_str())
                            && self.port_cause(dev, *i, reach.down()).as_deref() == Some(name)))
            })
            .filter_map(|(k, p)| {
                p.incident
                    .filter(|i| *i != incident)
                    .map(|i| (k.clone(), i))
            })
            .collect();
        for ((dev, i), old) in moving {
            let alarm = alarm_key(&dev, Some(i), AlarmKind::LinkDown);
            self.move_out(old, &alarm, incident, now, tx)?;
            if let Some((_, since)) = self
                .ports
                .get(&(dev.clone(), i))
                .and_then(|p| p.down_event.clone())
            {
                tx.extend_first(incident, since)?;
            }
            let relation = if dev == name || !behind.contains(&dev) {
                Relation::Member
            } else {
                Relation::Shadowed
            };
            self.join(incident, &alarm, relation, now, None, tx)?;
            if let Some(p) = self.ports.get_mut(&(dev, i)) {
                p.incident = Some(incident);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
