//! Interface state from a `<get>` reply's `<data>`: `ietf-interfaces` (RFC 8343, and the older
//! `interfaces-state` of RFC 7223) and `openconfig-interfaces`, turned into what the SNMP plans
//! use: IF-MIB status numbers, ifIndex where the device gives one, last-change, counters.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::plans::Labels;
use crate::plans::counters::{COLUMNS, Raw, Row};
use crate::state::{LinkSnapshot, PortLink};

/// Why a reply cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface state is not well-formed XML: {0}")]
pub struct ParseError(String);

/// Appends the text an entity or character reference stands for.
fn push_ref(out: &mut String, r: &quick_xml::events::BytesRef<'_>) -> Result<(), ParseError> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
        return Ok(());
    }
    let name = std::str::from_utf8(r).map_err(|e| ParseError(e.to_string()))?;
    match quick_xml::escape::resolve_predefined_entity(name) {
        Some(s) => {
            out.push_str(s);
            Ok(())
        }
        None => Err(ParseError(format!("unknown entity &{name};"))),
    }
}

/// The `ietf-interfaces` namespace.
pub const IETF_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-interfaces";
/// The `openconfig-interfaces` namespace.
pub const OPENCONFIG_NS: &str = "http://openconfig.net/yang/interfaces";

/// The subtree filter (the content of `<filter type="subtree">`) for interface state: both
/// ietf containers (RFC 8343's `interfaces` with its state leaves, and RFC 7223's
/// `interfaces-state`), or openconfig's `state` of each interface.
pub fn get_filter(openconfig: bool) -> String {
    if openconfig {
        format!(
            r#"<interfaces xmlns="{OPENCONFIG_NS}"><interface><name/><state/></interface></interfaces>"#
        )
    } else {
        format!(r#"<interfaces xmlns="{IETF_NS}"/><interfaces-state xmlns="{IETF_NS}"/>"#)
    }
}

/// One interface's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfState {
    /// Its name (the key).
    pub name: String,
    /// ifIndex, if the device gives it.
    pub if_index: Option<u32>,
    /// IF-MIB ifAdminStatus: 1 up, 2 down, 3 testing.
    pub admin: Option<i64>,
    /// IF-MIB ifOperStatus: 1 up ... 7 lowerLayerDown.
    pub oper: Option<i64>,
    /// last-change as the device wrote it (RFC 3339 for ietf, nanoseconds for openconfig).
    pub last_change: Option<String>,
    /// description (ifAlias).
    pub description: Option<String>,
    /// Counters by leaf name (`in-octets`, `out-errors`, ...).
    pub counters: Vec<(String, u64)>,
    /// Speed in bits per second (ietf `speed`; openconfig has none in `state`).
    pub speed: Option<u64>,
}

/// IF-MIB's number for an ietf or openconfig status name (`lower-layer-down`,
/// `LOWER_LAYER_DOWN`).
pub fn status_number(name: &str) -> Option<i64> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    Some(match n.as_str() {
        "up" => 1,
        "down" => 2,
        "testing" => 3,
        "unknown" => 4,
        "dormant" => 5,
        "not-present" => 6,
        "lower-layer-down" => 7,
        _ => return None,
    })
}

const COUNTERS: [&str; 12] = [
    "in-octets",
    "in-unicast-pkts",
    "in-broadcast-pkts",
    "in-multicast-pkts",
    "in-discards",
    "in-errors",
    "out-octets",
    "out-unicast-pkts",
    "out-broadcast-pkts",
    "out-multicast-pkts",
    "out-discards",
    "out-errors",
];

/// Interfaces in a `<data>` element. An interface named in both `interfaces` and
/// `interfaces-state` is one interface; subinterfaces are not interfaces here.
pub fn parse(data: &str) -> Result<Vec<IfState>, ParseError> {
    let mut r = Reader::from_str(data);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut out: Vec<IfState> = Vec::new();
    let mut current: Option<(usize, IfState)> = None;
    let err = |e: &dyn std::fmt::Display| ParseError(e.to_string());
    loop {
        match r.read_event().map_err(|e| err(&e))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let parent = path.last().map(String::as_str);
                if name == "interface"
                    && matches!(parent, Some("interfaces" | "interfaces-state"))
                    && current.is_none()
                {
                    current = Some((path.len() + 1, IfState::default()));
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| err(&e))?),
            Event::GeneralRef(g) => push_ref(&mut text, &g)?,
            Event::End(_) => {
                if let Some((depth, st)) = current.as_mut() {
                    // The leaf's path below <interface>: [leaf], [state, leaf],
                    // [statistics, leaf] or [state, counters, leaf].
                    let below: Vec<&str> = path
                        .get(*depth..)
                        .unwrap_or_default()
                        .iter()
                        .map(String::as_str)
                        .collect();
                    let value = text.trim();
                    match below.as_slice() {
                        ["name"] => st.name = value.to_owned(),
                        ["admin-status"] | ["state", "admin-status"] => {
                            st.admin = status_number(value);
                        }
                        ["oper-status"] | ["state", "oper-status"] => {
                            st.oper = status_number(value)
                        }
                        ["if-index"] | ["state", "ifindex"] => st.if_index = value.parse().ok(),
                        ["last-change"] | ["state", "last-change"] => {
                            st.last_change = Some(value.to_owned());
                        }
                        ["speed"] => st.speed = value.parse().ok(),
                        ["description"] | ["state", "description"] => {
                            st.description = Some(value.to_owned());
                        }
                        ["statistics", c] | ["state", "counters", c] if COUNTERS.contains(c) => {
                            if let Ok(v) = value.parse() {
                                st.counters.push(((*c).to_owned(), v));
                            }
                        }
                        [] => {
                            // </interface>: merge with one of the same name.
                            if let Some((_, done)) = current.take() {
                                merge(&mut out, done);
                            }
                        }
                        _ => {}
                    }
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out.retain(|i| !i.name.is_empty());
    Ok(out)
}

fn merge(out: &mut Vec<IfState>, new: IfState) {
    match out.iter_mut().find(|i| i.name == new.name) {
        None => out.push(new),
        Some(old) => {
            old.if_index = old.if_index.or(new.if_index);
            old.admin = old.admin.or(new.admin);
            old.oper = old.oper.or(new.oper);
            old.last_change = old.last_change.take().or(new.last_change);
            old.description = old.description.take().or(new.description);
            old.speed = old.speed.or(new.speed);
            if old.counters.is_empty() {
                old.counters = new.counters;
            }
        }
    }
}

/// ifIndex numbers for interface names: the device's own `if-index` where it gives one, else a
/// number given on first sight (from 2^30 up, clear of real ifIndex values) and kept for the
/// life of the device task, so events and metrics keep naming the same port.
#[derive(Debug, Default)]
pub struct Indexer {
    given: HashMap<String, u32>,
    next: u32,
}

const FIRST_ASSIGNED: u32 = 1 << 30;

impl Indexer {
    /// The ifIndex of `st`.
    pub fn index(&mut self, st: &IfState) -> u32 {
        if let Some(i) = st.if_index {
            return i;
        }
        if let Some(i) = self.given.get(&st.name) {
            return *i;
        }
        let i = FIRST_ASSIGNED.saturating_add(self.next);
        self.next = self.next.saturating_add(1);
        self.given.insert(st.name.clone(), i);
        i
    }
}

/// `last-change` as a number the state diff can compare: seconds since 1970 (RFC 3339 from
/// ietf-interfaces, nanoseconds from openconfig), truncated to 32 bits. Only its changes
/// matter (a port that bounced between two polls); it is not exported as ifLastChange.
pub fn last_change_mark(text: &str) -> Option<u32> {
    let t = text.trim();
    let secs = match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d.timestamp(),
        Err(_) => i64::try_from(t.parse::<u64>().ok()? / 1_000_000_000).ok()?,
    };
    // Keeping the low 32 bits is wanted: equality is all that is used.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(secs as u32)
}

/// The ietf/openconfig counter leaves and the IF-MIB column each one fills.
const COUNTER_COLUMNS: [(&str, &str); 12] = [
    ("in-octets", "ifHCInOctets"),
    ("in-unicast-pkts", "ifHCInUcastPkts"),
    ("in-multicast-pkts", "ifHCInMulticastPkts"),
    ("in-broadcast-pkts", "ifHCInBroadcastPkts"),
    ("in-discards", "ifInDiscards"),
    ("in-errors", "ifInErrors"),
    ("out-octets", "ifHCOutOctets"),
    ("out-unicast-pkts", "ifHCOutUcastPkts"),
    ("out-multicast-pkts", "ifHCOutMulticastPkts"),
    ("out-broadcast-pkts", "ifHCOutBroadcastPkts"),
    ("out-discards", "ifOutDiscards"),
    ("out-errors", "ifOutErrors"),
];

fn column(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

/// What one `<get>` gives the plans: the link snapshot, the labels (name as ifName and ifDescr,
/// description as ifAlias) and the counters as the IF-MIB columns the SNMP counters plan reads.
/// Interfaces without an oper-status are left out.
pub fn to_plans(
    ifs: &[IfState],
    indexer: &mut Indexer,
) -> (LinkSnapshot, HashMap<u32, Labels>, Raw) {
    let mut snap = LinkSnapshot::default();
    let mut labels = HashMap::new();
    let mut raw = Raw::new();
    for st in ifs {
        let Some(oper) = st.oper else { continue };
        let i = indexer.index(st);
        snap.ports.insert(
            i,
            PortLink {
                admin: st.admin.unwrap_or(1),
                oper,
                last_change: st.last_change.as_deref().and_then(last_change_mark),
            },
        );
        labels.insert(
            i,
            Labels {
                name: st.name.as_str().into(),
                alias: st.description.as_deref().unwrap_or_default().into(),
                descr: st.name.as_str().into(),
            },
        );
        let mut row = Row::default();
        for (leaf, value) in &st.counters {
            if let Some(c) = COUNTER_COLUMNS
                .iter()
                .find(|(l, _)| l == leaf)
                .and_then(|(_, name)| column(name))
            {
                row.set(c, *value);
            }
        }
        if let (Some(bps), Some(c)) = (st.speed, column("ifHighSpeed")) {
            row.set(c, bps / 1_000_000);
        }
        raw.insert(i, row);
    }
    snap.if_number = i64::try_from(snap.ports.len()).ok();
    (snap, labels, raw)
}

/// Whether a notification's content is about interfaces, and so worth a `<get>` to confirm:
/// it names an interface (`interface`, `if-name`, `ifIndex`, ...), a link (`linkDown`), or
/// carries the ietf- or openconfig-interfaces namespace.
pub fn is_about_interfaces(event_xml: &str) -> bool {
    let lower = event_xml.to_ascii_lowercase();
    [
        "interface",
        "if-name",
        "ifname",
        "if-index",
        "ifindex",
        "linkdown",
        "linkup",
        "link-down",
        "link-up",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ietf_config_and_state_make_one_interface() {
        let data = r#"<data>
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface><name>ge-0/0/1</name><description>uplink dist-1 &amp; core</description><enabled>true</enabled></interface>
  </interfaces>
  <interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface>
      <name>ge-0/0/1</name><admin-status>up</admin-status><oper-status>lower-layer-down</oper-status>
      <last-change>2026-11-25T03:00:00Z</last-change><if-index>513</if-index><speed>10000000000</speed>
      <statistics><in-octets>12345</in-octets><out-errors>2</out-errors><discontinuity-time>x</discontinuity-time></statistics>
    </interface>
    <interface><name>ge-0/0/2</name><admin-status>down</admin-status><oper-status>down</oper-status></interface>
  </interfaces-state>
</data>"#;
        let ifs = parse(data).unwrap();
        assert_eq!(ifs.len(), 2);
        let a = &ifs[0];
        assert_eq!(a.name, "ge-0/0/1");
        assert_eq!(a.description.as_deref(), Some("uplink dist-1 & core"));
        assert_eq!((a.admin, a.oper, a.if_index), (Some(1), Some(7), Some(513)));
        assert_eq!(a.last_change.as_deref(), Some("2026-11-25T03:00:00Z"));
        assert_eq!(a.speed, Some(10_000_000_000));
        assert_eq!(
            a.counters,
            vec![
                ("in-octets".to_owned(), 12345),
                ("out-errors".to_owned(), 2)
            ]
        );
        assert_eq!((ifs[1].admin, ifs[1].oper), (Some(2), Some(2)));
    }

    #[test]
    fn openconfig_state_without_its_subinterfaces() {
        let data = r#"<data><interfaces xmlns="http://openconfig.net/yang/interfaces">
  <interface><name>Ethernet1</name>
    <state><name>Ethernet1</name><admin-status>UP</admin-status><oper-status>DOWN</oper-status><ifindex>1</ifindex>
      <last-change>1764039600000000000</last-change><counters><in-octets>99</in-octets></counters></state>
    <subinterfaces><subinterface><index>0</index><state><oper-status>UP</oper-status></state></subinterface></subinterfaces>
  </interface></interfaces></data>"#;
        let ifs = parse(data).unwrap();
        assert_eq!(ifs.len(), 1);
        assert_eq!(
            (ifs[0].admin, ifs[0].oper, ifs[0].if_index),
            (Some(1), Some(2), Some(1))
        );
        assert_eq!(ifs[0].counters, vec![("in-octets".to_owned(), 99)]);
    }

    #[test]
    fn status_names_both_ways_and_filters() {
        assert_eq!(status_number("LOWER_LAYER_DOWN"), Some(7));
        assert_eq!(status_number(" not-present "), Some(6));
        assert_eq!(status_number("sideways"), None);
        assert!(get_filter(false).contains("interfaces-state"));
        assert!(get_filter(true).contains(OPENCONFIG_NS));
        // Mismatched tags are an error, not a partial answer.
        assert!(parse("<data><interfaces><interface></data>").is_err());
    }

    #[test]
    fn plans_get_status_labels_counters_and_stable_indexes() {
        let with = |name: &str, idx: Option<u32>, oper: Option<i64>| IfState {
            name: name.into(),
            if_index: idx,
            oper,
            ..IfState::default()
        };
        let mut a = with("ge-0/0/1", Some(513), Some(2));
        a.admin = Some(1);
        a.description = Some("uplink dist-1".into());
        a.last_change = Some("2026-11-25T03:00:00Z".into());
        a.counters = vec![
            ("in-octets".into(), 10),
            ("out-errors".into(), 2),
            ("bogus".into(), 9),
        ];
        a.speed = Some(10_000_000_000);
        let b = with("ge-0/0/2", None, Some(1));
        let c = with("ge-0/0/3", None, Some(1));
        let no_status = with("vlan10", None, None);
        let mut idx = Indexer::default();
        let (snap, labels, raw) = to_plans(&[a, b.clone(), c.clone(), no_status], &mut idx);
        assert_eq!(snap.ports.len(), 3);
        assert_eq!(snap.if_number, Some(3));
        assert_eq!(snap.ports[&513].oper, 2);
        assert_eq!(snap.ports[&513].last_change, Some(1_795_575_600));
        assert_eq!(&*labels[&513].alias, "uplink dist-1");
        assert_eq!(&*labels[&513].name, "ge-0/0/1");
        let row = &raw[&513];
        assert_eq!(row.get(column("ifHCInOctets").unwrap()), Some(10));
        assert_eq!(row.get(column("ifOutErrors").unwrap()), Some(2));
        assert_eq!(row.get(column("ifHighSpeed").unwrap()), Some(10_000));
        assert_eq!(row.get(column("ifInOctets").unwrap()), None);
        // Assigned numbers do not move when the order changes or a port disappears.
        let (b_at, c_at) = (idx.index(&b), idx.index(&c));
        assert_ne!(b_at, c_at);
        let (again, _, _) = to_plans(&[c], &mut idx);
        assert_eq!(again.ports.keys().copied().collect::<Vec<_>>(), vec![c_at]);
        assert!(b_at >= FIRST_ASSIGNED);
    }

    #[test]
    fn last_change_from_either_model() {
        assert_eq!(
            last_change_mark("2026-11-25T03:00:00Z"),
            Some(1_795_575_600)
        );
        assert_eq!(
            last_change_mark("2026-11-25T04:00:00+01:00"),
            Some(1_795_575_600)
        );
        assert_eq!(last_change_mark("1795575600000000000"), Some(1_795_575_600));
        assert_eq!(last_change_mark("yesterday"), None);
    }

    const SAMPLE: &str = r#"<data><interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces"><interface><name>ge-0/0/1</name><admin-status>up</admin-status><oper-status>down</oper-status><if-index>7</if-index><statistics><in-octets>99</in-octets></statistics></interface></interfaces-state></data>"#;

    proptest::proptest! {
        // What a server sends is not trusted: any text is an answer or a ParseError, never a
        // panic, and never an interface without a name.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,400}") {
            if let Ok(ifs) = parse(&text) {
                proptest::prop_assert!(ifs.iter().all(|i| !i.name.is_empty()));
            }
        }

        // A real reply cut anywhere, or with one byte replaced, is read or refused; whole, it
        // keeps its one interface and its numbers.
        #[test]
        fn cut_or_damaged_replies(cut in 0usize..400, at in 0usize..400, ch in proptest::char::any()) {
            let cut = SAMPLE.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(SAMPLE.len());
            let _ = parse(&SAMPLE[..cut]);
            let mut damaged: Vec<char> = SAMPLE.chars().collect();
            if let Some(c) = damaged.get_mut(at % SAMPLE.len()) {
                *c = ch;
            }
            let _ = parse(&damaged.into_iter().collect::<String>());
            let whole = parse(SAMPLE).unwrap();
            proptest::prop_assert_eq!(whole.len(), 1);
            proptest::prop_assert_eq!((whole[0].admin, whole[0].oper, whole[0].if_index), (Some(1), Some(2), Some(7)));
        }
    }

    #[test]
    fn which_notifications_are_about_interfaces() {
        assert!(is_about_interfaces(
            r#"<link-state xmlns="urn:x"><if-name>ge-0/0/1</if-name></link-state>"#
        ));
        assert!(is_about_interfaces(r#"<linkDown xmlns="urn:x"/>"#));
        assert!(!is_about_interfaces(
            r#"<netconf-session-start xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"><username>a</username></netconf-session-start>"#
        ));
    }
}
