//! The event: one observed change on a device or port, as the agent publishes it and the
//! collector ingests it (wire format `"v": 1`, DESIGN.md section 4).
//!
//! Decoding is strict about what the format promises (version, required fields, their types)
//! and says exactly which field was wrong, so the collector can dead-letter a bad message with a
//! useful reason. Unknown extra fields are ignored so that a newer agent can add fields without
//! breaking an older collector.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The wire-format version this build writes and reads.
pub const WIRE_VERSION: u64 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A port's operational status went from up to down (or is down at first sight).
    LinkDown,
    /// A port's operational status came back up.
    LinkUp,
    /// A port was administratively shut.
    AdminDown,
    /// A port was administratively enabled.
    AdminUp,
    /// The access VLAN (PVID) of a port changed; `attrs.old` and `attrs.new` hold the VLANs.
    VlanChanged,
    /// The device stopped answering.
    DeviceUnreachable,
    /// The device answers again.
    DeviceReachable,
    /// The device restarted (`sysUpTime` went backwards).
    DeviceRebooted,
    /// The agent's snapshot of a device: sent after the agent starts, after it reconnects to
    /// the broker, and when the device answers again, so alarms it contradicts clear. The
    /// ports are in `attrs` as ifIndex lists (see [`StateSync`]). Added to wire version 1
    /// without a version change: a collector that does not know it keeps it as a dead letter.
    StateSync,
    /// The agent's topology snapshot of a device: its LLDP neighbours per local port and its
    /// link aggregation bundles, in `attrs` (see [`Neighbours`]). Sent by the topology plan
    /// when the snapshot differs from the last one sent (a device without LLDP or bundles
    /// sends none).
    /// Added to wire version 1 like `state_sync`: a collector that does not know it keeps it
    /// as a dead letter, so collectors are upgraded before agents.
    Neighbours,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: [EventKind; 10] = [
        EventKind::LinkDown,
        EventKind::LinkUp,
        EventKind::AdminDown,
        EventKind::AdminUp,
        EventKind::VlanChanged,
        EventKind::DeviceUnreachable,
        EventKind::DeviceReachable,
        EventKind::DeviceRebooted,
        EventKind::StateSync,
        EventKind::Neighbours,
    ];

    /// The name used on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LinkDown => "link_down",
            EventKind::LinkUp => "link_up",
            EventKind::AdminDown => "admin_down",
            EventKind::AdminUp => "admin_up",
            EventKind::VlanChanged => "vlan_changed",
            EventKind::DeviceUnreachable => "device_unreachable",
            EventKind::DeviceReachable => "device_reachable",
            EventKind::DeviceRebooted => "device_rebooted",
            EventKind::StateSync => "state_sync",
            EventKind::Neighbours => "neighbours",
        }
    }

    /// Whether the event is about one port (and so carries `if_index`).
    pub fn is_port_event(self) -> bool {
        matches!(
            self,
            EventKind::LinkDown
                | EventKind::LinkUp
                | EventKind::AdminDown
                | EventKind::AdminUp
                | EventKind::VlanChanged
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// The port lists of a `state_sync` event: `attrs.up`, `attrs.down` and `attrs.disabled`
/// (administratively down), each an array of ifIndex numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSync {
    /// Ports whose link is up.
    pub up: Vec<u32>,
    /// Ports whose link is down (down, notPresent, lowerLayerDown).
    pub down: Vec<u32>,
    /// Ports shut on purpose.
    pub disabled: Vec<u32>,
}

impl StateSync {
    /// Writes the lists into an event's attributes.
    pub fn write(&self, attrs: &mut Map<String, Value>) {
        for (name, list) in [
            ("up", &self.up),
            ("down", &self.down),
            ("disabled", &self.disabled),
        ] {
            attrs.insert(name.into(), Value::from(list.clone()));
        }
    }

    /// Reads the lists of a `state_sync` event; None when one is missing or not a list of
    /// ifIndex numbers.
    pub fn from_event(e: &Event) -> Option<StateSync> {
        let list = |name: &str| -> Option<Vec<u32>> {
            e.attrs
                .get(name)?
                .as_array()?
                .iter()
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect()
        };
        Some(StateSync {
            up: list("up")?,
            down: list("down")?,
            disabled: list("disabled")?,
        })
    }

    /// Whether the snapshot says the port is not down (up, or shut on purpose).
    pub fn is_not_down(&self, if_index: u32) -> bool {
        self.up.contains(&if_index) || self.disabled.contains(&if_index)
    }
}

/// One LLDP neighbour as a device sees it on one of its ports (LLDP-MIB `lldpRemTable`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Neighbour {
    /// ifIndex of the local port, where `lldpLocPortTable` maps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_index: Option<u32>,
    /// The local port's name (ifName, else `lldpLocPortDesc`, else its LLDP port number).
    pub local_port: String,
    /// The neighbour's chassis id, decoded by its subtype (a MAC address as `aa:bb:..`).
    pub chassis_id: String,
    /// `lldpRemChassisIdSubtype` by name: `mac`, `network_address`, `local`, ...
    pub chassis_subtype: String,
    /// The neighbour's port id, decoded by its subtype.
    pub port_id: String,
    /// `lldpRemPortIdSubtype` by name: `interface_name`, `mac`, `local`, ...
    pub port_subtype: String,
    /// `lldpRemPortDesc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_descr: Option<String>,
    /// `lldpRemSysName`: the name the collector matches to its devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
}

/// A link aggregation bundle (port-channel) and its member ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// ifIndex of the aggregate interface.
    pub if_index: u32,
    /// Its ifName where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ifIndex of each member port.
    pub members: Vec<u32>,
}

/// The attributes of a `neighbours` event: `attrs.neighbours` and `attrs.bundles`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Neighbours {
    /// LLDP neighbours, one per local port and remote system.
    pub neighbours: Vec<Neighbour>,
    /// Link aggregation bundles.
    #[serde(default)]
    pub bundles: Vec<Bundle>,
}

impl Neighbours {
    /// Writes the snapshot into an event's attributes.
    pub fn write(&self, attrs: &mut Map<String, Value>) {
        if let Ok(Value::Object(m)) = serde_json::to_value(self) {
            attrs.extend(m);
        }
    }

    /// Reads the snapshot of a `neighbours` event; an error says which part is wrong.
    pub fn from_event(e: &Event) -> Result<Neighbours, String> {
        serde_json::from_value(Value::Object(e.attrs.clone())).map_err(|err| err.to_string())
    }
}

/// The bundle a member port belongs to, as link events carry it in `attrs.bundle`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleRef {
    /// ifIndex of the aggregate interface.
    pub if_index: u32,
    /// Its ifName where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many members the bundle has (this one included).
    pub members: u32,
}

impl Event {
    /// The bundle of a member port (`attrs.bundle`), if the agent sent one.
    pub fn bundle(&self) -> Option<BundleRef> {
        serde_json::from_value(self.attrs.get("bundle")?.clone()).ok()
    }
}

/// How the agent learned of the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A scheduled poll.
    Poll,
    /// A trap, confirmed by a poll.
    Trap,
    /// A NETCONF `<get>` or notification.
    Netconf,
    /// An ICMP echo probe.
    Ping,
}

impl Source {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Poll => "poll",
            Source::Trap => "trap",
            Source::Netconf => "netconf",
            Source::Ping => "ping",
        }
    }

    fn parse(s: &str) -> Option<Source> {
        [Source::Poll, Source::Trap, Source::Netconf, Source::Ping]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One event, as published by an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id (UUIDv7, so ids sort by creation time); the collector de-duplicates on it.
    pub id: Uuid,
    /// Id of the agent that observed the change.
    pub agent: String,
    /// Device name as configured on the agent.
    pub device: String,
    /// What happened.
    pub kind: EventKind,
    /// How it was learned.
    pub source: Source,
    /// When the agent observed it (serialised as RFC 3339 with milliseconds, UTC).
    pub observed_at: DateTime<Utc>,
    /// ifIndex of the port, for port events.
    pub if_index: Option<u32>,
    /// ifName of the port where known.
    pub if_name: Option<String>,
    /// ifAlias (the port description) where known.
    pub if_alias: Option<String>,
    /// Kind-specific details, e.g. `role`, `old`/`new` for `vlan_changed`.
    pub attrs: Map<String, Value>,
    /// The agent's sequence number: higher is observed later, across the agent's restarts
    /// (increasing per device, with gaps). Absent from agents older than the field; then the
    /// collector orders by `observed_at` alone.
    pub seq: Option<u64>,
}

/// Why a message is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not JSON at all.
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    /// The payload is JSON but not an object.
    #[error("payload is not a JSON object")]
    NotAnObject,
    /// The `v` field names a version this build does not understand.
    #[error("unsupported wire version {0} (this build reads v{WIRE_VERSION})")]
    UnsupportedVersion(String),
    /// A required field is absent (or null).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` has the wrong type: expected {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A field has the right type but an invalid value.
    #[error("field `{field}` is invalid: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

impl DecodeError {
    /// A short, stable label for metrics (`reason="missing_field"`).
    pub fn reason_label(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::InvalidValue { .. } => "invalid_value",
        }
    }
}

impl Event {
    /// A new event with a fresh id, observed now.
    pub fn new(agent: &str, device: &str, kind: EventKind, source: Source) -> Event {
        Event {
            id: Uuid::now_v7(),
            agent: agent.to_owned(),
            device: device.to_owned(),
            kind,
            source,
            observed_at: Utc::now(),
            if_index: None,
            if_name: None,
            if_alias: None,
            attrs: Map::new(),
            seq: None,
        }
    }

    /// The JSON object of the wire format.
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(WIRE_VERSION));
        m.insert("id".into(), Value::from(self.id.to_string()));
        m.insert("agent".into(), Value::from(self.agent.clone()));
        m.insert("device".into(), Value::from(self.device.clone()));
        m.insert("kind".into(), Value::from(self.kind.as_str()));
        m.insert("source".into(), Value::from(self.source.as_str()));
        m.insert(
            "observed_at".into(),
            Value::from(
                self.observed_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        );
        m.insert(
            "if_index".into(),
            self.if_index.map_or(Value::Null, Value::from),
        );
        m.insert(
            "if_name".into(),
            self.if_name.clone().map_or(Value::Null, Value::from),
        );
        m.insert(
            "if_alias".into(),
            self.if_alias.clone().map_or(Value::Null, Value::from),
        );
        m.insert("attrs".into(), Value::Object(self.attrs.clone()));
        if let Some(seq) = self.seq {
            m.insert("seq".into(), Value::from(seq));
        }
        Value::Object(m)
    }

    /// The wire encoding (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a `Value` built from owned strings and numbers cannot fail.
        serde_json::to_vec(&self.to_json_value()).unwrap_or_default()
    }

    /// Decodes and validates one wire message.
    pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(DecodeError::NotAnObject);
        };
        match obj.get("v") {
            None | Some(Value::Null) => return Err(DecodeError::MissingField("v")),
            Some(Value::Number(n)) if n.as_u64() == Some(WIRE_VERSION) => {}
            Some(other) => return Err(DecodeError::UnsupportedVersion(other.to_string())),
        }
        let id_text = req_str(&obj, "id")?;
        let id = Uuid::parse_str(id_text).map_err(|e| DecodeError::InvalidValue {
            field: "id",
            reason: e.to_string(),
        })?;
        let agent = non_empty(&obj, "agent")?;
        let device = non_empty(&obj, "device")?;
        let kind_text = req_str(&obj, "kind")?;
        let kind = kind_text
            .parse::<EventKind>()
            .map_err(|()| DecodeError::InvalidValue {
                field: "kind",
                reason: format!("unknown event kind `{kind_text}`"),
            })?;
        let source_text = req_str(&obj, "source")?;
        let source = Source::parse(source_text).ok_or_else(|| DecodeError::InvalidValue {
            field: "source",
            reason: format!("unknown source `{source_text}` (poll, trap, netconf or ping)"),
        })?;
        let at_text = req_str(&obj, "observed_at")?;
        let observed_at = DateTime::parse_from_rfc3339(at_text)
            .map_err(|e| DecodeError::InvalidValue {
                field: "observed_at",
                reason: format!("`{at_text}` is not RFC 3339: {e}"),
            })?
            .with_timezone(&Utc);
        if observed_at > Utc::now() + MAX_FUTURE {
            return Err(DecodeError::InvalidValue {
                field: "observed_at",
                reason: format!("`{at_text}` is more than a day in the future"),
            });
        }
        let if_index = match obj.get("if_index") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| DecodeError::InvalidValue {
                        field: "if_index",
                        reason: format!("{n} is not an ifIndex (0..=4294967295)"),
                    })?,
            ),
            Some(_) => {
                return Err(DecodeError::WrongType {
                    field: "if_index",
                    expected: "an integer or null",
                });
            }
        };
        if kind.is_port_event() && if_index.is_none() {
            return Err(DecodeError::MissingField("if_index"));
        }
        let if_name = opt_str(&obj, "if_name")?;
        let if_alias = opt_str(&obj, "if_alias")?;
        for (field, v) in [("if_name", &if_name), ("if_alias", &if_alias)] {
            if let Some(v) = v {
                printable(field, v)?;
            }
        }
        let attrs = match obj.get("attrs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(DecodeError::WrongType {
                    field: "attrs",
                    expected: "an object",
                });
            }
        };
        let seq = match obj.get("seq") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                Some(n.as_u64().ok_or_else(|| DecodeError::InvalidValue {
                    field: "seq",
                    reason: format!("{n} is not a sequence number (0..=2^64-1)"),
                })?)
            }
            Some(_) => {
                return Err(DecodeError::WrongType {
                    field: "seq",
                    expected: "an integer or null",
                });
            }
        };
        Ok(Event {
            seq,
            id,
            agent: agent.to_owned(),
            device: device.to_owned(),
            kind,
            source,
            observed_at,
            if_index,
            if_name,
            if_alias,
            attrs,
        })
    }

    /// The port's role as the agent classified it (`attrs.role`), if any.
    pub fn role(&self) -> Option<crate::role::PortRole> {
        self.attrs
            .get("role")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, DecodeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(DecodeError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn non_empty<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, DecodeError> {
    let s = req_str(obj, field)?;
    if s.is_empty() {
        return Err(DecodeError::InvalidValue {
            field,
            reason: "must not be empty".into(),
        });
    }
    printable(field, s)?;
    Ok(s)
}

/// Names end up in log lines, mails and the dashboard: a control character (a newline that
/// would forge a log line, an escape sequence for a terminal) is refused.
fn printable(field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.chars().any(char::is_control) {
        return Err(DecodeError::InvalidValue {
            field,
            reason: "must not contain control characters".into(),
        });
    }
    Ok(())
}

/// How far ahead of the decoder's clock an observation time may be: clocks drift, a day does
/// not (an event dated 9999 is refused).
pub const MAX_FUTURE: chrono::TimeDelta = chrono::TimeDelta::days(1);

fn opt_str(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, DecodeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string or null",
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Event {
        let mut e = Event::new("site-b12", "a-b12-01", EventKind::LinkDown, Source::Poll);
        e.if_index = Some(49);
        e.if_name = Some("Te1/1/1".into());
        e.if_alias = Some("uplink: dist1".into());
        e.attrs.insert("role".into(), json!("uplink"));
        // Milliseconds are what the wire keeps.
        e.observed_at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        e
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn wire_shape_matches_the_design() {
        let v: Value = serde_json::from_slice(&sample().to_json()).unwrap();
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["kind"], json!("link_down"));
        assert_eq!(v["source"], json!("poll"));
        assert_eq!(v["observed_at"], json!("2026-11-24T10:00:00.123Z"));
        assert_eq!(v["if_index"], json!(49));
        assert_eq!(v["attrs"]["role"], json!("uplink"));
    }

    #[test]
    fn sequence_numbers_are_optional_and_round_trip() {
        let mut e = sample();
        assert!(
            !serde_json::from_slice::<Value>(&e.to_json())
                .unwrap()
                .as_object()
                .unwrap()
                .contains_key("seq")
        );
        e.seq = Some(1_764_000_000_000_123);
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back.seq, Some(1_764_000_000_000_123));
        assert!(matches!(
            Event::from_json(&with("seq", Some(json!(-1)))),
            Err(DecodeError::InvalidValue { field: "seq", .. })
        ));
        assert!(matches!(
            Event::from_json(&with("seq", Some(json!("7")))),
            Err(DecodeError::WrongType { field: "seq", .. })
        ));
    }

    #[test]
    fn device_event_without_port_round_trips() {
        let e = Event::new("a", "d", EventKind::DeviceUnreachable, Source::Poll);
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back.if_index, None);
        assert_eq!(back.kind, EventKind::DeviceUnreachable);
    }

    fn with(field: &str, value: Option<Value>) -> Vec<u8> {
        let mut v = sample().to_json_value();
        let obj = v.as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(field.into(), x),
            None => obj.remove(field),
        };
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn rejections_name_the_field() {
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (b"{not json".to_vec(), DecodeError::Json(String::new())),
            (b"[1,2]".to_vec(), DecodeError::NotAnObject),
            (
                with("v", Some(json!(2))),
                DecodeError::UnsupportedVersion("2".into()),
            ),
            (
                with("v", Some(json!("1"))),
                DecodeError::UnsupportedVersion("\"1\"".into()),
            ),
            (with("v", None), DecodeError::MissingField("v")),
            (with("id", None), DecodeError::MissingField("id")),
            (with("agent", None), DecodeError::MissingField("agent")),
            (
                with("device", Some(Value::Null)),
                DecodeError::MissingField("device"),
            ),
            (with("kind", None), DecodeError::MissingField("kind")),
            (with("source", None), DecodeError::MissingField("source")),
            (
                with("observed_at", None),
                DecodeError::MissingField("observed_at"),
            ),
            (
                with("if_index", None),
                DecodeError::MissingField("if_index"),
            ),
            (
                with("device", Some(json!(7))),
                DecodeError::WrongType {
                    field: "device",
                    expected: "a string",
                },
            ),
            (
                with("if_index", Some(json!("49"))),
                DecodeError::WrongType {
                    field: "if_index",
                    expected: "an integer or null",
                },
            ),
            (
                with("attrs", Some(json!([]))),
                DecodeError::WrongType {
                    field: "attrs",
                    expected: "an object",
                },
            ),
            (
                with("if_name", Some(json!(1))),
                DecodeError::WrongType {
                    field: "if_name",
                    expected: "a string or null",
                },
            ),
        ];
        for (bytes, want) in cases {
            let got = Event::from_json(&bytes).unwrap_err();
            match (&got, &want) {
                (DecodeError::Json(_), DecodeError::Json(_)) => {}
                _ => assert_eq!(got, want, "for {}", String::from_utf8_lossy(&bytes)),
            }
        }
    }

    #[test]
    fn invalid_values_are_rejected_with_the_field() {
        for (field, value) in [
            ("id", json!("not-a-uuid")),
            ("kind", json!("link_sideways")),
            ("source", json!("pigeon")),
            ("observed_at", json!("yesterday")),
            ("if_index", json!(-1)),
            ("if_index", json!(1u64 << 40)),
            ("agent", json!("")),
            // A newline would forge a log line; an escape would drive a terminal.
            ("device", json!("sw1\n2026-12-02T00:00:00Z ERROR forged")),
            ("if_alias", json!("uplink\u{1b}[2J")),
            ("observed_at", json!("9999-01-01T00:00:00.000Z")),
        ] {
            match Event::from_json(&with(field, Some(value))).unwrap_err() {
                DecodeError::InvalidValue { field: f, .. } => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let e = Event::from_json(&with("future_field", Some(json!({"x": 1})))).unwrap();
        assert_eq!(e.device, "a-b12-01");
    }

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Event::from_json(&bytes);
        }

        #[test]
        fn round_trip_any_port_event(
            agent in "[a-z0-9-]{1,20}",
            device in "[a-z0-9.-]{1,30}",
            if_index in any::<u32>(),
            name in proptest::option::of("[^\\p{Cc}]{0,20}"),
            kind in proptest::sample::select(EventKind::ALL.to_vec()),
        ) {
            let mut e = Event::new(&agent, &device, kind, Source::Trap);
            e.if_index = Some(if_index);
            e.if_name = name;
            e.observed_at = DateTime::from_timestamp_millis(e.observed_at.timestamp_millis()).unwrap();
            prop_assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
        }
    }
}
