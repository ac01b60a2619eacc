//! Interface state from a `<get>` reply's `<data>`: `ietf-interfaces` (RFC 8343, and the older
//! `interfaces-state` of RFC 7223) and `openconfig-interfaces`, turned into what the SNMP plans
//! use: IF-MIB status numbers, ifIndex where the device gives one, last-change, counters.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::message::MessageError;

/// The `ietf-interfaces` namespace.
pub const IETF_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-interfaces";
/// The `openconfig-interfaces` namespace.
pub const OPENCONFIG_NS: &str = "http://openconfig.net/yang/interfaces";

/// The `<get>` with a subtree filter for interface state: both ietf containers, or
/// openconfig's.
pub fn get_filter(openconfig: bool) -> String {
    if openconfig {
        format!(
            r#"<get><filter type="subtree"><interfaces xmlns="{OPENCONFIG_NS}"><interface><name/><state/></interface></interfaces></filter></get>"#
        )
    } else {
        format!(
            r#"<get><filter type="subtree"><interfaces xmlns="{IETF_NS}"/><interfaces-state xmlns="{IETF_NS}"/></filter></get>"#
        )
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
pub fn parse(data: &str) -> Result<Vec<IfState>, MessageError> {
    let mut r = Reader::from_str(data);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut out: Vec<IfState> = Vec::new();
    let mut current: Option<(usize, IfState)> = None;
    let err = |e: &dyn std::fmt::Display| MessageError::Xml(e.to_string());
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
            Event::GeneralRef(g) => super::message::push_ref(&mut text, &g)?,
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
            if old.counters.is_empty() {
                old.counters = new.counters;
            }
        }
    }
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
      <last-change>2026-11-25T03:00:00Z</last-change><if-index>513</if-index>
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
}
