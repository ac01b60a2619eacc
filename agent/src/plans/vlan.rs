//! The *vlan* plan: Q-BRIDGE-MIB `dot1qPvid` per bridge port, mapped to ifIndex through
//! BRIDGE-MIB `dot1dBasePortIfIndex`, both in one GETBULK stream (60 s by default). A changed
//! PVID becomes a `vlan_changed` event with `attrs.old` and `attrs.new`.

use std::collections::{BTreeMap, HashMap};

use crate::snmp::SnmpValue;
use crate::snmp::oid::{self, OidBuf};

/// BRIDGE-MIB::dot1dBasePortIfIndex.
pub const BASE_PORT_IF_INDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2];
/// Q-BRIDGE-MIB::dot1qPvid.
pub const DOT1Q_PVID: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1];

/// PVID per ifIndex from a walk of `[BASE_PORT_IF_INDEX, DOT1Q_PVID]`. Bridge ports without
/// an ifIndex mapping are skipped.
pub fn pvids_from(columns: &[Vec<(OidBuf, SnmpValue)>]) -> BTreeMap<u32, u32> {
    let [map, pvid] = columns else {
        return BTreeMap::new();
    };
    let if_index: HashMap<u32, u32> = map
        .iter()
        .filter_map(|(o, v)| {
            let port = oid::single_index(o, BASE_PORT_IF_INDEX)?;
            let idx = u32::try_from(v.as_i64()?).ok()?;
            Some((port, idx))
        })
        .collect();
    pvid.iter()
        .filter_map(|(o, v)| {
            let port = oid::single_index(o, DOT1Q_PVID)?;
            let vlan = u32::try_from(v.as_i64()?).ok()?;
            Some((*if_index.get(&port)?, vlan))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_ports_map_to_if_index() {
        let map = vec![
            (
                crate::snmp::oid::instance(BASE_PORT_IF_INDEX, 101),
                SnmpValue::Integer(1),
            ),
            (
                crate::snmp::oid::instance(BASE_PORT_IF_INDEX, 149),
                SnmpValue::Integer(49),
            ),
        ];
        let pvid = vec![
            (
                crate::snmp::oid::instance(DOT1Q_PVID, 101),
                SnmpValue::Unsigned32(10),
            ),
            (
                crate::snmp::oid::instance(DOT1Q_PVID, 149),
                SnmpValue::Unsigned32(1),
            ),
            (
                crate::snmp::oid::instance(DOT1Q_PVID, 200),
                SnmpValue::Unsigned32(99),
            ),
        ];
        let p = pvids_from(&[map, pvid]);
        assert_eq!(p, [(1, 10), (49, 1)].into());
    }
}
