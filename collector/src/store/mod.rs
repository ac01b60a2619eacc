//! Storage of events, incidents and dead letters behind the [`Store`] trait, so PostgreSQL can
//! join SQLite later. Every event and the incident change it causes are written in one
//! transaction.
//!
//! Owns: the schema and its migrations, durable state. Must not: decide anything; the
//! correlation rules hand it a [`Decision`].

mod sqlite;

pub use sqlite::{OnDamage, SqliteStore};

use chrono::{DateTime, Utc};
use cnaas_shared::Event;
use cnaas_shared::role::PortRole;
use serde::Serialize;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file or its folder could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The schema is newer than this build understands.
    #[error("the database schema is version {found}, newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The database file is empty or damaged; nothing was changed.
    #[error(
        "the database {path} is damaged: {problem}. Restore it from a backup, or start with --reinitialise to move it aside (kept as {path}.damaged-<time>) and begin an empty one"
    )]
    Damaged {
        /// The file.
        path: std::path::PathBuf,
        /// What the check found.
        problem: String,
    },
    /// A stored row could not be read back.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Alarm types (one alarm per device, subindex and type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// The device does not answer its agent.
    DeviceDown,
    /// A watched port is down.
    LinkDown,
    /// A watched port keeps going down and up.
    PortFlapping,
    /// A site probe went away: its site is a blind spot.
    AgentOffline,
    /// A device restarted.
    DeviceRebooted,
    /// The VLAN of a watched port changed.
    VlanChanged,
    /// A notification could not be delivered (its device is `channel:NAME`).
    NotificationFailed,
}

impl AlarmKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::DeviceDown => "device_down",
            AlarmKind::LinkDown => "link_down",
            AlarmKind::PortFlapping => "port_flapping",
            AlarmKind::AgentOffline => "agent_offline",
            AlarmKind::DeviceRebooted => "device_rebooted",
            AlarmKind::VlanChanged => "vlan_changed",
            AlarmKind::NotificationFailed => "notification_failed",
        }
    }
}

/// How an alarm belongs to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The alarm the incident is about.
    Root,
    /// Another alarm grouped into it (same device or site, same moment).
    Member,
    /// A device behind the root device (topology shadow), or one of its ports.
    Shadowed,
}

impl Relation {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Root => "root",
            Relation::Member => "member",
            Relation::Shadowed => "shadowed",
        }
    }
}

/// Incident changes inside one transaction (the correlation engine's view of the store).
pub trait IncidentTx {
    /// Stores an event; false when its id was stored before (a redelivery).
    fn insert_event(
        &mut self,
        event: &Event,
        role: Option<PortRole>,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The agent pinned as the one reporting `device` (first sight), if any.
    fn device_owner(&mut self, device: &str) -> Result<Option<String>, StoreError>;
    /// Pins `agent` as the one reporting `device`.
    fn pin_owner(&mut self, device: &str, agent: &str, at: DateTime<Utc>)
    -> Result<(), StoreError>;
    /// Opens an incident with its root alarm; returns its id.
    fn open(&mut self, new: &NewIncident, at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Adds (or re-activates) an alarm as a member of an incident.
    fn add_member(
        &mut self,
        incident: i64,
        alarm: &str,
        relation: Relation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Marks a member alarm cleared.
    fn clear_member(
        &mut self,
        incident: i64,
        alarm: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A line of history; with an event id, the event is also linked to the incident.
    fn note(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        event: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// Resolves the incident.
    fn resolve(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Opens a resolved incident again.
    fn reopen(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Moves the incident's first time back to `at` if that is earlier (an alarm that joins
    /// it began before it opened).
    fn extend_first(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Marks an incident `merged` into another (its alarms now belong to `into`). Incidents
    /// merged into it before follow it to `into`.
    fn merge(&mut self, incident: i64, into: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The running transition count of a flapping incident.
    fn set_transitions(&mut self, incident: i64, transitions: u32) -> Result<(), StoreError>;
    /// The alarms of an incident that are active, as stored.
    fn active_members(&mut self, incident: i64) -> Result<Vec<String>, StoreError>;
    /// State and escalated flag of an incident, if it exists.
    fn state(&mut self, incident: i64) -> Result<Option<(String, bool)>, StoreError>;
    /// Sets the state (`acknowledged`, `closed`; `resolve` and `reopen` have their own).
    fn set_state(
        &mut self,
        incident: i64,
        state: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Stores what the incident's down devices do to the campus, with the severity and
    /// summary that follow from it.
    fn set_impact(
        &mut self,
        incident: i64,
        severity: u8,
        summary: &str,
        impact: &IncidentImpact,
    ) -> Result<(), StoreError>;
    /// Marks the incident escalated to 2nd line.
    fn set_escalated(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Remembers that a watched port went down at `since` and is in quarantine, so a restart
    /// does not forget it (the agent will not report it again while it stays down).
    fn set_pending(&mut self, alarm: &str, since: DateTime<Utc>) -> Result<(), StoreError>;
    /// Forgets a quarantined alarm (it cleared or became active).
    fn clear_pending(&mut self, alarm: &str) -> Result<(), StoreError>;
    /// Flags the incident as inside a maintenance window (or no longer).
    fn set_in_maintenance(&mut self, incident: i64, on: bool) -> Result<(), StoreError>;
    /// A line of history by a person.
    fn note_by(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// The notification outbox of this transaction, where the store has one.
    fn outbox(&mut self) -> Option<&mut dyn OutboxTx>;
}

/// The notification outbox inside an incident transaction: notifications are written in the
/// same commit as the incident change that causes them.
pub trait OutboxTx {
    /// The incident as it stands inside this transaction.
    fn incident(&mut self, id: i64) -> Result<Option<Incident>, StoreError>;
    /// How many history lines of this action the incident has (numbers repeated transitions).
    fn history_count(&mut self, incident: i64, action: &str) -> Result<u32, StoreError>;
    /// Queues a notification; false when its idempotency key is queued already.
    fn enqueue(&mut self, n: &NewNotification) -> Result<bool, StoreError>;
    /// Marks the not yet attempted notifications of the incident's opening superseded (it
    /// resolved or was taken into another incident before anyone was told); returns whether
    /// its latest opening went untold that way.
    fn opening_untold(&mut self, incident: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Marks a notification failed for good; returns it (None if it is not pending).
    fn fail(&mut self, id: i64, error: &str) -> Result<Option<Notification>, StoreError>;
    /// Who was told (or is about to be told) of an opening of `incident` or of an incident
    /// merged into it: exactly they are told of its resolution.
    fn told_of(&mut self, incident: i64) -> Result<Vec<ToldOf>, StoreError>;
    /// The open (or acknowledged) incident of an alarm key, if any.
    fn open_by_key(&mut self, key: &str) -> Result<Option<i64>, StoreError>;
    /// Makes every failed notification of a channel due at `at` (the channel is back).
    fn retry_failed(&mut self, channel: &str, at: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Stores an accepted change (its `id` is ignored); returns its id.
    fn insert_change(&mut self, change: &crate::changes::Change) -> Result<i64, StoreError>;
    /// Stores a change's new window, state, revision, notice time and reason.
    fn update_change(&mut self, change: &crate::changes::Change) -> Result<(), StoreError>;
    /// Stores an accepted change order (its `id` is ignored); returns its id.
    fn insert_change_order(
        &mut self,
        order: &crate::changes::ChangeOrder,
    ) -> Result<i64, StoreError>;
}

/// A recipient who heard of an incident, as the outbox recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToldOf {
    /// `ssc`, `incident`, `technical`, ...
    pub audience: String,
    /// Channel name.
    pub channel: String,
    /// Address on the channel.
    pub recipient: String,
    /// Language.
    pub language: String,
    /// The customer whose people it is for.
    pub customer: Option<String>,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    /// An incident.
    Incident,
    /// A planned or emergency change.
    Change,
    /// A customer's change order.
    ChangeOrder,
}

impl About {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            About::Incident => "incident",
            About::Change => "change",
            About::ChangeOrder => "change_order",
        }
    }

    /// From the stored name (the schema allows only these three).
    pub fn parse(s: &str) -> About {
        match s {
            "change" => About::Change,
            "change_order" => About::ChangeOrder,
            _ => About::Incident,
        }
    }
}

/// A notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Idempotency key: subject, transition and recipient.
    pub key: String,
    /// What it is about.
    pub about: About,
    /// The incident, change or order id.
    pub about_id: i64,
    /// The customer whose people it is for (None for SSC and 2nd line).
    pub customer: Option<String>,
    /// `opened`, `resolved-2`, `escalated`, ...
    pub transition: String,
    /// `ssc`, `secondline`, `incident`, `technical`, `local_support`.
    pub audience: String,
    /// Channel name.
    pub channel: String,
    /// Address on the channel.
    pub recipient: String,
    /// `nb` or `en`.
    pub language: String,
    /// Free text that goes with it (the work asked for, an escalation comment).
    pub detail: Option<String>,
    /// Not before this time (the grouping window).
    pub due_at: DateTime<Utc>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// A notification as stored, with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// What it is about.
    pub about: About,
    /// The incident, change or order id.
    pub about_id: i64,
    /// The customer whose people it is for.
    pub customer: Option<String>,
    /// Transition.
    pub transition: String,
    /// Audience.
    pub audience: String,
    /// Channel name.
    pub channel: String,
    /// Address.
    pub recipient: String,
    /// Language.
    pub language: String,
    /// Free text.
    pub detail: Option<String>,
    /// `pending`, `delivered`, `failed` or `superseded`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Next attempt not before.
    pub due_at: DateTime<Utc>,
    /// Delivered at.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// Subject, once rendered (rendered once, so every retry sends the same message).
    pub subject: Option<String>,
    /// Plain-text body, once rendered.
    pub body: Option<String>,
    /// JSON document, once rendered.
    pub payload: Option<serde_json::Value>,
    /// Delivered only after it had failed for good (its channel came back, or SSC resent it).
    pub delayed: bool,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The channel took it.
    Delivered,
    /// It failed; try again at `next` (a failure for good is marked by the engine, see
    /// [`OutboxTx::fail`]).
    Retry {
        /// Why.
        error: String,
        /// Next attempt.
        next: DateTime<Utc>,
    },
}

/// Filters for listing notifications.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    /// Only about this incident, change or order.
    pub about: Option<(About, i64)>,
    /// Only this state.
    pub state: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only for this customer's people.
    pub customer: Option<String>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// An alarm of an open incident, as stored (to rebuild the engine after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMember {
    /// Incident.
    pub incident: i64,
    /// Alarm key.
    pub alarm: String,
    /// Whether the alarm is still active.
    pub active: bool,
    /// Device of the incident.
    pub device: String,
    /// Site of the incident.
    pub site: Option<String>,
    /// When the incident opened.
    pub opened_at: DateTime<Utc>,
    /// The incident's running transition count (flapping).
    pub transitions: Option<u32>,
    /// Whether the incident is flagged as inside a maintenance window.
    pub in_maintenance: bool,
    /// The incident's root alarm.
    pub root: String,
}

/// The identity of an alarm: `device|subindex|type` (subindex is the ifIndex or empty).
pub fn alarm_key(device: &str, subindex: Option<u32>, kind: AlarmKind) -> String {
    match subindex {
        Some(i) => format!("{device}|{i}|{}", kind.as_str()),
        None => format!("{device}||{}", kind.as_str()),
    }
}

/// An incident to open, as the rules describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// Alarm type.
    pub kind: AlarmKind,
    /// Alarm identity.
    pub key: String,
    /// 1 (critical) to 5 (information).
    pub severity: u8,
    /// Device.
    pub device: String,
    /// ifIndex for port alarms.
    pub if_index: Option<u32>,
    /// ifName.
    pub if_name: Option<String>,
    /// ifAlias.
    pub if_alias: Option<String>,
    /// Port role.
    pub role: Option<PortRole>,
    /// Site from inventory.
    pub site: Option<String>,
    /// Customer from inventory.
    pub customer: Option<String>,
    /// One line for people.
    pub summary: String,
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// Alarm type.
    pub kind: String,
    /// `open`, `acknowledged`, `resolved`, `closed`, or `merged` (taken into another incident,
    /// named by `merged_into`).
    pub state: String,
    /// 1-5.
    pub severity: u8,
    /// Device.
    pub device: String,
    /// ifIndex.
    pub if_index: Option<u32>,
    /// ifName.
    pub if_name: Option<String>,
    /// ifAlias.
    pub if_alias: Option<String>,
    /// Port role.
    pub role: Option<String>,
    /// Site.
    pub site: Option<String>,
    /// Customer.
    pub customer: Option<String>,
    /// One line for people.
    pub summary: String,
    /// When it opened (the first event's observation time).
    pub opened_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// For `port_flapping`: up/down transitions so far.
    pub transitions: Option<u32>,
    /// Escalated to 2nd line.
    pub escalated: bool,
    /// Opened while its device was inside a maintenance window.
    pub in_maintenance: bool,
    /// For a `merged` incident: the incident it was taken into.
    pub merged_into: Option<i64>,
    /// For a device incident on a known topology: what its down devices do to the campus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<IncidentImpact>,
}

/// What the down devices of an incident do to the campus (topology), as stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IncidentImpact {
    /// `outage` (devices cut off, or the device itself) or `redundancy_lost` (everything
    /// still reachable over another path).
    pub kind: String,
    /// The down devices that are the cause.
    pub down: Vec<String>,
    /// Devices cut off from the core.
    pub isolated: Vec<String>,
    /// Devices still reachable that lost a path (a parent, a bundle member).
    pub degraded: Vec<String>,
    /// The customers of all of them.
    pub customers: Vec<String>,
}

/// An alarm of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentAlarm {
    /// `device|subindex|type`.
    pub alarm: String,
    /// `root`, `member` or `shadowed`.
    pub relation: String,
    /// Whether it is still active.
    pub active: bool,
    /// When it joined.
    pub since: DateTime<Utc>,
    /// When it cleared.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// One line of an incident's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// What (`opened`, `joined`, `resolved`, ...).
    pub action: String,
    /// Who (`system` or a person).
    pub actor: String,
    /// The event that caused it.
    pub event_id: Option<String>,
    /// Free text.
    pub detail: Option<String>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Event id.
    pub id: String,
    /// Agent.
    pub agent: String,
    /// Device.
    pub device: String,
    /// Kind.
    pub kind: String,
    /// Source.
    pub source: String,
    /// Observation time.
    pub observed_at: DateTime<Utc>,
    /// When the collector stored it.
    pub received_at: DateTime<Utc>,
    /// ifIndex.
    pub if_index: Option<u32>,
    /// ifName.
    pub if_name: Option<String>,
    /// ifAlias.
    pub if_alias: Option<String>,
    /// Role the collector gave the port.
    pub role: Option<String>,
    /// Attributes.
    pub attrs: serde_json::Value,
    /// Incident it belongs to.
    pub incident_id: Option<i64>,
}

/// An incident with its history and events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentDetail {
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// Member alarms: the root first, then in the order they joined.
    pub alarms: Vec<IncidentAlarm>,
    /// History, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Member events, oldest first: the newest [`DETAIL_EVENTS`] of them (a storm has
    /// thousands); the rest through `GET /api/v1/events?incident=ID&before=...`.
    pub events: Vec<StoredEvent>,
    /// How many events the incident has in all.
    pub events_total: u64,
}

/// Events an incident's detail carries at most.
pub const DETAIL_EVENTS: u32 = 200;

/// Filters for listing incidents.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only this customer.
    pub customer: Option<String>,
    /// Only this device.
    pub device: Option<String>,
    /// Only this severity or more severe (1 is the most severe).
    pub max_severity: Option<u8>,
    /// At most this many (newest first).
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this device.
    pub device: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only the events of this incident.
    pub incident: Option<i64>,
    /// Only events before this one (keyset paging: its observation time and id).
    pub before: Option<EventCursor>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// Where a page of events ends: the last event's observation time and id. The next page
/// starts right after it, read along an index (no offset to skip over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    /// Observation time as stored.
    pub observed_at: DateTime<Utc>,
    /// Event id.
    pub id: String,
}

impl EventCursor {
    /// The cursor after `e`.
    pub fn after(e: &StoredEvent) -> EventCursor {
        EventCursor {
            observed_at: e.observed_at,
            id: e.id.clone(),
        }
    }

    /// The text form in a URL: `<RFC 3339 time>~<id>`.
    pub fn encode(&self) -> String {
        format!(
            "{}~{}",
            self.observed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.id
        )
    }

    /// Reads the text form.
    pub fn decode(s: &str) -> Option<EventCursor> {
        let (at, id) = s.split_once('~')?;
        let observed_at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        (!id.is_empty()).then(|| EventCursor {
            observed_at,
            id: id.to_owned(),
        })
    }
}

/// Which agent may report a device, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceOwner {
    /// Device name.
    pub device: String,
    /// The agent allowed to report it.
    pub agent: String,
    /// When it was pinned (its first event from that agent).
    pub pinned_at: DateTime<Utc>,
}

/// A message that could not be ingested.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// MQTT topic.
    pub topic: String,
    /// Agent id, from the topic where it could be read.
    pub agent: Option<String>,
    /// Why it was refused.
    pub reason: String,
    /// The payload as received.
    pub payload: Vec<u8>,
}

/// Durable state of the collector.
pub trait Store: Send + Sync {
    /// Stores the event (if any) and, unless it was seen before, runs `f` on the incidents,
    /// all in one transaction. Returns false for a duplicate event.
    fn process(
        &self,
        event: Option<(&Event, Option<PortRole>, DateTime<Utc>)>,
        f: &mut dyn FnMut(&mut dyn IncidentTx) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError>;
    /// Runs `f` in one transaction (many events at once: one commit for all of them).
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn IncidentTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// The alarms of every open incident.
    fn open_members(&self) -> Result<Vec<OpenMember>, StoreError>;
    /// The latest LLDP snapshot (`neighbours` event) of every device, for the topology.
    fn lldp_snapshots(&self) -> Result<Vec<Event>, StoreError>;
    /// Alarms in quarantine: key and since when.
    fn pending_alarms(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
    /// Every change, newest window first.
    fn changes(&self) -> Result<Vec<crate::changes::Change>, StoreError>;
    /// One change.
    fn get_change(&self, id: i64) -> Result<Option<crate::changes::Change>, StoreError>;
    /// Change orders, newest first (of one customer, or all).
    fn change_orders(
        &self,
        customer: Option<&str>,
    ) -> Result<Vec<crate::changes::ChangeOrder>, StoreError>;
    /// One change order.
    fn get_change_order(&self, id: i64) -> Result<Option<crate::changes::ChangeOrder>, StoreError>;
    /// Keeps a message that could not be ingested.
    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    /// The devices pinned to the agent that first reported them, by device name.
    fn device_owners(&self) -> Result<Vec<DeviceOwner>, StoreError>;
    /// Forgets a device's pinned agent (it was moved to another agent): the next agent to
    /// report it is pinned. False when none was pinned.
    fn unpin_owner(&self, device: &str) -> Result<bool, StoreError>;
    /// A number that changes whenever a pin is released (caches of pins compare it).
    fn owners_generation(&self) -> u64;
    /// Marks a notification in flight just before a delivery attempt. True when it already
    /// was: an earlier attempt was cut off (a crash) before its outcome was recorded, so this
    /// one may repeat a message that went out (counted as a repeat).
    fn mark_in_flight(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Records an agent's status message.
    fn set_agent_status(
        &self,
        agent: &str,
        status: &str,
        payload: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Lists incidents, newest first.
    fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError>;
    /// One incident with history and events.
    fn get_incident(&self, id: i64) -> Result<Option<IncidentDetail>, StoreError>;
    /// Lists events, newest first.
    fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;
    /// Number of open (or acknowledged) incidents.
    fn count_open(&self) -> Result<u64, StoreError>;
    /// Number of dead letters.
    fn count_dead_letters(&self) -> Result<u64, StoreError>;
    /// Pending notifications due at `now`, oldest first.
    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError>;
    /// When the next pending notification falls due.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Keeps the rendered message, so retries send the same one.
    fn save_rendered(
        &self,
        id: i64,
        subject: &str,
        body: &str,
        payload: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Records a delivery attempt.
    fn record_delivery(
        &self,
        id: i64,
        at: DateTime<Utc>,
        outcome: &Delivery,
    ) -> Result<(), StoreError>;
    /// The channels with an open `notification_failed` incident.
    fn failing_channels(&self) -> Result<Vec<String>, StoreError>;
    /// SSC asks for a notification to be sent again now: a failed one is tried at once (and
    /// marked delayed when it goes through), a delivered one is queued again. Returns the
    /// state it had (None: no such notification); pending or superseded ones are left alone.
    fn resend(&self, id: i64, at: DateTime<Utc>) -> Result<Option<String>, StoreError>;
    /// Lists notifications, newest first.
    fn list_notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>, StoreError>;
}
