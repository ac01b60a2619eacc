//! The *topology* plan (every 5 min by default, and soon after a watched port changes): who is
//! cabled to which port, and which ports are bundled.
//!
//! - LLDP-MIB `lldpRemTable` (neighbours per local port number) and `lldpLocPortTable` (the
//!   local port's id and description, to map it to an ifIndex: by ifName, by ifDescr, else the
//!   port number is the ifIndex, as most switches and lldpd number them);
//! - link aggregation: IF-MIB `ifStackTable` (configured stacking: the aggregate above its
//!   members) where the upper interface is an aggregator of IEEE8023-LAG-MIB `dot3adAggTable`
//!   (or, on a device without that MIB, is named like one: Po, Port-Channel, bond, ae), joined
//!   with `dot3adAggPortAttachedAggID` (the members attached now).
//!
//! The result is a [`Neighbours`] snapshot, sent as a `neighbours` event when it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cnaas_shared::{Bundle, Neighbour, Neighbours};

use super::LabelMap;
use crate::snmp::SnmpValue;
use crate::snmp::oid::{OidBuf, is_under, single_index};

/// LLDP-MIB::lldpRemChassisIdSubtype.
pub const REM_CHASSIS_SUBTYPE: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 4];
/// LLDP-MIB::lldpRemChassisId.
pub const REM_CHASSIS_ID: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 5];
/// LLDP-MIB::lldpRemPortIdSubtype.
pub const REM_PORT_SUBTYPE: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 6];
/// LLDP-MIB::lldpRemPortId.
pub const REM_PORT_ID: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 7];
/// LLDP-MIB::lldpRemPortDesc.
pub const REM_PORT_DESC: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 8];
/// LLDP-MIB::lldpRemSysName.
pub const REM_SYS_NAME: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 9];
/// LLDP-MIB::lldpLocPortIdSubtype.
pub const LOC_PORT_SUBTYPE: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1, 2];
/// LLDP-MIB::lldpLocPortId.
pub const LOC_PORT_ID: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1, 3];
/// LLDP-MIB::lldpLocPortDesc.
pub const LOC_PORT_DESC: &[u32] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1, 4];
/// IF-MIB::ifStackStatus (index: higher layer, lower layer).
pub const IF_STACK_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 2, 1, 3];
/// IEEE8023-LAG-MIB::dot3adAggActorSystemPriority (a column every aggregator has).
pub const AGG_ACTOR_PRIORITY: &[u32] = &[1, 2, 840, 10006, 300, 43, 1, 1, 1, 1, 2];
/// IEEE8023-LAG-MIB::dot3adAggPortAttachedAggID.
pub const AGG_PORT_ATTACHED: &[u32] = &[1, 2, 840, 10006, 300, 43, 1, 2, 1, 1, 13];

/// The LLDP columns, in the order [`neighbours_from`] reads them.
pub const LLDP_COLUMNS: [&[u32]; 9] = [
    REM_CHASSIS_SUBTYPE,
    REM_CHASSIS_ID,
    REM_PORT_SUBTYPE,
    REM_PORT_ID,
    REM_PORT_DESC,
    REM_SYS_NAME,
    LOC_PORT_SUBTYPE,
    LOC_PORT_ID,
    LOC_PORT_DESC,
];

/// The link aggregation columns, in the order [`bundles_from`] reads them.
pub const LAG_COLUMNS: [&[u32]; 3] = [IF_STACK_STATUS, AGG_ACTOR_PRIORITY, AGG_PORT_ATTACHED];

/// The index after `column` (all of it), if `oid` is in that column.
fn index_of<'a>(oid: &'a [u32], column: &[u32]) -> Option<&'a [u32]> {
    is_under(oid, column).then(|| &oid[column.len()..])
}

fn chassis_subtype(n: i64) -> &'static str {
    match n {
        1 => "chassis_component",
        2 => "interface_alias",
        3 => "port_component",
        4 => "mac",
        5 => "network_address",
        6 => "interface_name",
        7 => "local",
        _ => "unknown",
    }
}

fn port_subtype(n: i64) -> &'static str {
    match n {
        1 => "interface_alias",
        2 => "port_component",
        3 => "mac",
        4 => "network_address",
        5 => "interface_name",
        6 => "agent_circuit_id",
        7 => "local",
        _ => "unknown",
    }
}

/// An id by its subtype: a MAC address as `aa:bb:cc:dd:ee:ff`, a network address (IANA
/// family byte, then the address) as text, anything else as printable text.
fn decode_id(subtype: &str, value: &SnmpValue) -> String {
    let SnmpValue::OctetString(b) = value else {
        return value.as_text().unwrap_or_default();
    };
    match subtype {
        "mac" if b.len() == 6 => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        "network_address" if b.len() == 5 && b[0] == 1 => {
            format!("{}.{}.{}.{}", b[1], b[2], b[3], b[4])
        }
        "network_address" if b.len() == 17 && b[0] == 2 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[1..]);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => printable(value),
    }
}

/// Text without control characters (names go into logs, mails and the dashboard).
fn printable(v: &SnmpValue) -> String {
    v.as_text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The neighbours of a walk of [`LLDP_COLUMNS`]. Rows missing a chassis or port id are
/// skipped; a local port is named by its ifName where it maps to one.
pub fn neighbours_from(columns: &[Vec<(OidBuf, SnmpValue)>], labels: &LabelMap) -> Vec<Neighbour> {
    let [
        chassis_sub,
        chassis,
        port_sub,
        port,
        port_desc,
        sys_name,
        loc_sub,
        loc_id,
        loc_desc,
    ] = columns
    else {
        return Vec::new();
    };
    // Remote rows by (local port number, remote index); the time mark is left out (a row
    // seen at two time marks is one neighbour).
    type Key = (u32, u32);
    fn rows<'a>(col: &'a [(OidBuf, SnmpValue)], column: &[u32]) -> BTreeMap<Key, &'a SnmpValue> {
        col.iter()
            .filter_map(|(o, v)| match index_of(o, column)? {
                [_, port, idx] => Some(((*port, *idx), v)),
                _ => None,
            })
            .collect()
    }
    let loc = |col: &[(OidBuf, SnmpValue)], column: &[u32]| -> HashMap<u32, SnmpValue> {
        col.iter()
            .filter_map(|(o, v)| Some((single_index(o, column)?, v.clone())))
            .collect()
    };
    let (loc_sub, loc_id, loc_desc) = (
        loc(loc_sub, LOC_PORT_SUBTYPE),
        loc(loc_id, LOC_PORT_ID),
        loc(loc_desc, LOC_PORT_DESC),
    );
    let by_name: HashMap<&str, u32> = labels
        .iter()
        .filter(|(_, l)| !l.name.is_empty())
        .map(|(i, l)| (&*l.name, *i))
        .collect();
    let by_descr: HashMap<&str, u32> = labels
        .iter()
        .filter(|(_, l)| !l.descr.is_empty())
        .map(|(i, l)| (&*l.descr, *i))
        .collect();
    let local_port = |num: u32| -> (Option<u32>, String) {
        let id = loc_id.get(&num).map(printable).unwrap_or_default();
        let desc = loc_desc.get(&num).map(printable).unwrap_or_default();
        let id_is_name = matches!(loc_sub.get(&num).and_then(SnmpValue::as_i64), Some(5 | 7));
        let if_index = (id_is_name && !id.is_empty())
            .then(|| by_name.get(id.as_str()).copied())
            .flatten()
            .or_else(|| by_name.get(desc.as_str()).copied())
            .or_else(|| by_descr.get(desc.as_str()).copied())
            .or_else(|| labels.contains_key(&num).then_some(num));
        let name = if_index
            .and_then(|i| labels.get(&i))
            .map(|l| l.name.to_string())
            .filter(|n| !n.is_empty())
            .or_else(|| (!id.is_empty() && id_is_name).then(|| id.clone()))
            .or_else(|| (!desc.is_empty()).then(|| desc.clone()))
            .unwrap_or_else(|| format!("lldp port {num}"));
        (if_index, name)
    };
    let (chassis_sub, chassis, port_sub, port, port_desc, sys_name) = (
        rows(chassis_sub, REM_CHASSIS_SUBTYPE),
        rows(chassis, REM_CHASSIS_ID),
        rows(port_sub, REM_PORT_SUBTYPE),
        rows(port, REM_PORT_ID),
        rows(port_desc, REM_PORT_DESC),
        rows(sys_name, REM_SYS_NAME),
    );
    let mut out = BTreeSet::new();
    for (key, chassis_value) in &chassis {
        let Some(port_value) = port.get(key) else {
            continue;
        };
        let cs = chassis_subtype(chassis_sub.get(key).and_then(|v| v.as_i64()).unwrap_or(0));
        let ps = port_subtype(port_sub.get(key).and_then(|v| v.as_i64()).unwrap_or(0));
        let (if_index, local) = local_port(key.0);
        let text = |m: &BTreeMap<Key, &SnmpValue>| {
            m.get(key).map(|v| printable(v)).filter(|s| !s.is_empty())
        };
        out.insert(Neighbour {
            if_index,
            local_port: local,
            chassis_id: decode_id(cs, chassis_value),
            chassis_subtype: cs.to_owned(),
            port_id: decode_id(ps, port_value),
            port_subtype: ps.to_owned(),
            port_descr: text(&port_desc),
            sys_name: text(&sys_name),
        });
    }
    out.into_iter().collect()
}

/// Whether a name looks like an aggregate interface (for devices without IEEE8023-LAG-MIB).
fn named_like_a_bundle(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["po", "port-channel", "bond", "ae", "lag", "trk"]
        .iter()
        .any(|p| n.starts_with(p) && n[p.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The bundles of a walk of [`LAG_COLUMNS`]: each aggregate with its members (configured in
/// `ifStackTable`, and those `dot3adAggPortAttachedAggID` says are attached now).
pub fn bundles_from(columns: &[Vec<(OidBuf, SnmpValue)>], labels: &LabelMap) -> Vec<Bundle> {
    let [stack, aggs, attached] = columns else {
        return Vec::new();
    };
    let aggregators: BTreeSet<u32> = aggs
        .iter()
        .filter_map(|(o, _)| single_index(o, AGG_ACTOR_PRIORITY))
        .collect();
    let is_bundle = |i: u32| {
        aggregators.contains(&i)
            || (aggregators.is_empty()
                && labels.get(&i).is_some_and(|l| named_like_a_bundle(&l.name)))
    };
    let mut members: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for (o, v) in stack {
        // Active (1) rows only; a member is the lower layer of its aggregate.
        if v.as_i64() != Some(1) {
            continue;
        }
        if let Some([high, low]) = index_of(o, IF_STACK_STATUS)
            && *high != 0
            && *low != 0
            && is_bundle(*high)
        {
            members.entry(*high).or_default().insert(*low);
        }
    }
    for (o, v) in attached {
        if let (Some(port), Some(agg)) = (
            single_index(o, AGG_PORT_ATTACHED),
            v.as_i64().and_then(|n| u32::try_from(n).ok()),
        ) && agg != 0
            && agg != port
        {
            members.entry(agg).or_default().insert(port);
        }
    }
    members
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(agg, m)| Bundle {
            if_index: agg,
            name: labels
                .get(&agg)
                .map(|l| l.name.to_string())
                .filter(|n| !n.is_empty()),
            members: m.into_iter().collect(),
        })
        .collect()
}

/// The snapshot of one topology walk.
pub fn snapshot(
    lldp: &[Vec<(OidBuf, SnmpValue)>],
    lag: &[Vec<(OidBuf, SnmpValue)>],
    labels: &LabelMap,
) -> Neighbours {
    Neighbours {
        neighbours: neighbours_from(lldp, labels),
        bundles: bundles_from(lag, labels),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plans::Labels;
    use std::sync::Arc;

    fn at(column: &[u32], index: &[u32]) -> OidBuf {
        let mut o = OidBuf::from_slice(column);
        o.extend_from_slice(index);
        o
    }

    fn labels() -> LabelMap {
        let mut m = LabelMap::new();
        for (i, name, descr) in [
            (49, "Te1/1/1", "TenGigabitEthernet1/1/1"),
            (50, "Te1/1/2", "TenGigabitEthernet1/1/2"),
            (100, "Po1", "Port-channel1"),
        ] {
            m.insert(
                i,
                Arc::new(Labels {
                    name: name.into(),
                    alias: "".into(),
                    descr: descr.into(),
                }),
            );
        }
        m
    }

    fn s(x: &str) -> SnmpValue {
        SnmpValue::OctetString(x.as_bytes().to_vec())
    }

    #[test]
    fn lldp_rows_become_neighbours_on_named_ports() {
        let cols = vec![
            vec![
                (at(REM_CHASSIS_SUBTYPE, &[0, 1, 1]), SnmpValue::Integer(4)),
                (at(REM_CHASSIS_SUBTYPE, &[0, 2, 3]), SnmpValue::Integer(7)),
            ],
            vec![
                (
                    at(REM_CHASSIS_ID, &[0, 1, 1]),
                    SnmpValue::OctetString(vec![0x02, 0, 0x5e, 0x10, 0xab, 0x01]),
                ),
                (at(REM_CHASSIS_ID, &[0, 2, 3]), s("d2")),
            ],
            vec![
                (at(REM_PORT_SUBTYPE, &[0, 1, 1]), SnmpValue::Integer(5)),
                (at(REM_PORT_SUBTYPE, &[0, 2, 3]), SnmpValue::Integer(3)),
            ],
            vec![
                (at(REM_PORT_ID, &[0, 1, 1]), s("Ethernet3")),
                (
                    at(REM_PORT_ID, &[0, 2, 3]),
                    SnmpValue::OctetString(vec![0xaa, 0xbb, 0xcc, 0, 1, 2]),
                ),
            ],
            vec![(at(REM_PORT_DESC, &[0, 1, 1]), s("to a1"))],
            vec![
                (at(REM_SYS_NAME, &[0, 1, 1]), s("d1.campus.example")),
                (at(REM_SYS_NAME, &[0, 2, 3]), s("d2\n")),
            ],
            // Port 1 names itself by ifName; port 2 only by its description (ifDescr).
            vec![
                (at(LOC_PORT_SUBTYPE, &[1]), SnmpValue::Integer(5)),
                (at(LOC_PORT_SUBTYPE, &[2]), SnmpValue::Integer(3)),
            ],
            vec![
                (at(LOC_PORT_ID, &[1]), s("Te1/1/1")),
                (
                    at(LOC_PORT_ID, &[2]),
                    SnmpValue::OctetString(vec![1, 2, 3, 4, 5, 6]),
                ),
            ],
            vec![(at(LOC_PORT_DESC, &[2]), s("TenGigabitEthernet1/1/2"))],
        ];
        let n = neighbours_from(&cols, &labels());
        assert_eq!(n.len(), 2, "{n:#?}");
        let a = n.iter().find(|x| x.local_port == "Te1/1/1").unwrap();
        assert_eq!(a.if_index, Some(49));
        assert_eq!(a.chassis_id, "02:00:5e:10:ab:01");
        assert_eq!(a.chassis_subtype, "mac");
        assert_eq!(a.port_id, "Ethernet3");
        assert_eq!(a.port_descr.as_deref(), Some("to a1"));
        assert_eq!(a.sys_name.as_deref(), Some("d1.campus.example"));
        let b = n.iter().find(|x| x.local_port == "Te1/1/2").unwrap();
        assert_eq!(b.if_index, Some(50));
        assert_eq!(b.port_id, "aa:bb:cc:00:01:02");
        assert_eq!(
            b.sys_name.as_deref(),
            Some("d2"),
            "control characters dropped"
        );
    }

    #[test]
    fn a_port_number_that_maps_nowhere_is_still_named() {
        let cols = vec![
            vec![(at(REM_CHASSIS_SUBTYPE, &[0, 7, 1]), SnmpValue::Integer(7))],
            vec![(at(REM_CHASSIS_ID, &[0, 7, 1]), s("x"))],
            vec![(at(REM_PORT_SUBTYPE, &[0, 7, 1]), SnmpValue::Integer(7))],
            vec![(at(REM_PORT_ID, &[0, 7, 1]), s("p"))],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        ];
        let n = neighbours_from(&cols, &labels());
        assert_eq!(n[0].local_port, "lldp port 7");
        assert_eq!(n[0].if_index, None);
        // A short walk (a device without LLDP-MIB) is no neighbours, not a panic.
        assert!(neighbours_from(&cols[..3], &labels()).is_empty());
    }

    #[test]
    fn bundles_from_the_stack_and_the_lag_mib() {
        let cols = vec![
            vec![
                (at(IF_STACK_STATUS, &[0, 49]), SnmpValue::Integer(1)),
                (at(IF_STACK_STATUS, &[100, 49]), SnmpValue::Integer(1)),
                (at(IF_STACK_STATUS, &[100, 50]), SnmpValue::Integer(1)),
                // A VLAN interface above a port is no bundle.
                (at(IF_STACK_STATUS, &[200, 49]), SnmpValue::Integer(1)),
            ],
            vec![(at(AGG_ACTOR_PRIORITY, &[100]), SnmpValue::Integer(32768))],
            vec![
                (at(AGG_PORT_ATTACHED, &[49]), SnmpValue::Integer(100)),
                (at(AGG_PORT_ATTACHED, &[50]), SnmpValue::Integer(0)),
            ],
        ];
        let b = bundles_from(&cols, &labels());
        assert_eq!(
            b,
            vec![Bundle {
                if_index: 100,
                name: Some("Po1".into()),
                members: vec![49, 50],
            }]
        );
        // Without LAG-MIB, a stacked interface named like a bundle is one.
        let cols = vec![cols[0].clone(), vec![], vec![]];
        let b = bundles_from(&cols, &labels());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].members, vec![49, 50]);
    }
}
