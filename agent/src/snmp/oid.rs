//! The OIDs the agent polls (numeric: no MIB files are needed or loaded).

/// An OID as its arcs. Inline up to 14 arcs (every column instance the agent polls, Q-BRIDGE's
/// `dot1qPvid.N` the longest), so decoding a varbind allocates nothing for its name.
pub type OidBuf = smallvec::SmallVec<[u32; 14]>;

/// SNMPv2-MIB::sysUpTime (the scalar's column; `.0` is the instance).
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3];
/// IF-MIB::ifNumber (the scalar's column; `.0` is the instance).
pub const IF_NUMBER: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1];
/// IF-MIB::ifDescr.
pub const IF_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
/// IF-MIB::ifAdminStatus.
pub const IF_ADMIN_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 7];
/// IF-MIB::ifOperStatus.
pub const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
/// IF-MIB::ifLastChange.
pub const IF_LAST_CHANGE: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 9];
/// IF-MIB::ifName.
pub const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// IF-MIB::ifAlias.
pub const IF_ALIAS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18];

/// The instance `column.index`.
pub fn instance(column: &[u32], index: u32) -> OidBuf {
    let mut o = OidBuf::from_slice(column);
    o.push(index);
    o
}

/// Whether `oid` lies strictly below `prefix`.
pub fn is_under(oid: &[u32], prefix: &[u32]) -> bool {
    oid.len() > prefix.len() && oid.starts_with(prefix)
}

/// Dotted form, for logs.
pub fn to_string(oid: &[u32]) -> String {
    let mut s = String::with_capacity(oid.len() * 3);
    for (i, arc) in oid.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&arc.to_string());
    }
    s
}

/// The single-arc table index of a column instance (`column.N` -> `N`); `None` for anything
/// else (tables the agent polls are indexed by ifIndex alone).
pub fn single_index(oid: &[u32], column: &[u32]) -> Option<u32> {
    match oid.strip_prefix(column) {
        Some([i]) => Some(*i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(is_under(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 49],
            IF_OPER_STATUS
        ));
        assert!(!is_under(IF_OPER_STATUS, IF_OPER_STATUS));
        assert!(!is_under(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 9, 1],
            IF_OPER_STATUS
        ));
        assert_eq!(
            single_index(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 49], IF_OPER_STATUS),
            Some(49)
        );
        assert_eq!(
            single_index(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 49, 1], IF_OPER_STATUS),
            None
        );
        assert_eq!(to_string(&[1, 3, 6]), "1.3.6");
    }
}
