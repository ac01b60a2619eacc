//! The MIB a simulated switch serves: system, IF-MIB `ifTable`, `ifXTable` and `ifStackTable`,
//! BRIDGE-MIB `dot1dBasePortIfIndex` and Q-BRIDGE-MIB `dot1qPvid` (bridge port = 100 +
//! ifIndex), LLDP-MIB `lldpLocPortTable` and `lldpRemTable` (the far end of each cable while
//! the link is up; local port number = ifIndex), IEEE8023-LAG-MIB aggregators and
//! `dot3adAggPortAttachedAggID`. The OID layout is computed once per shape (port count and
//! bundles) and shared by every switch of that shape; values are read from the switch's state
//! when asked.

use std::sync::Arc;
use std::time::Instant;

use crate::model::Switch;

/// An OID as its arcs.
pub type Oid = Vec<u32>;

const SYSTEM: [u32; 7] = [1, 3, 6, 1, 2, 1, 1];
const IF_NUMBER: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 1, 0];
const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const BASE_PORT_IFINDEX: [u32; 11] = [1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2];
const PVID: [u32; 13] = [1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1];
const IF_STACK_STATUS: [u32; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 2, 1, 3];
const LLDP_LOC_PORT: [u32; 10] = [1, 0, 8802, 1, 1, 2, 1, 3, 7, 1];
const LLDP_REM: [u32; 10] = [1, 0, 8802, 1, 1, 2, 1, 4, 1, 1];
const AGG_ENTRY: [u32; 10] = [1, 2, 840, 10006, 300, 43, 1, 1, 1, 1];
const AGG_PORT_ENTRY: [u32; 10] = [1, 2, 840, 10006, 300, 43, 1, 2, 1, 1];

/// What makes two switches share a layout: the port count and the bundles (aggregate
/// ifIndex with its members).
pub type Shape = (usize, Vec<(u32, Vec<u32>)>);

/// The shape of a switch (aggregates are added after the physical ports, so only the last
/// ports are looked at: this runs for every request).
pub fn shape(s: &Switch) -> Shape {
    let mut bundles: Vec<(u32, Vec<u32>)> = s
        .ports
        .iter()
        .rev()
        .take_while(|p| !p.members.is_empty())
        .map(|p| (p.if_index, p.members.clone()))
        .collect();
    bundles.reverse();
    (s.ports.len(), bundles)
}
/// Bridge port numbers are 100 + ifIndex.
pub const BRIDGE_PORT_OFFSET: u32 = 100;

/// What an OID instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    SysDescr,
    SysObjectId,
    SysUpTime,
    SysName,
    IfNumber,
    /// ifTable column, port index (0-based).
    If(u32, usize),
    /// ifXTable column, port index.
    IfX(u32, usize),
    BasePortIfIndex(usize),
    Pvid(usize),
    /// lldpLocPortTable column, port index.
    LldpLoc(u32, usize),
    /// lldpRemTable column, port index (time mark 0, remote index 1).
    LldpRem(u32, usize),
    /// ifStackStatus of (aggregate, member).
    Stack,
    /// dot3adAggActorSystemPriority of an aggregate.
    AggPriority,
    /// dot3adAggPortAttachedAggID of a member port (port index, aggregate ifIndex).
    AggAttached(usize, u32),
}

/// A value to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// INTEGER.
    Int(i64),
    /// OCTET STRING.
    Str(Vec<u8>),
    /// OBJECT IDENTIFIER.
    Oid(Oid),
    /// Gauge32 / Unsigned32.
    Gauge(u32),
    /// Counter32.
    Counter32(u32),
    /// Counter64.
    Counter64(u64),
    /// TimeTicks.
    Ticks(u32),
}

/// A value a SET carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetVal {
    /// INTEGER.
    Int(i64),
    /// Gauge32 / Unsigned32.
    Unsigned(u32),
    /// OCTET STRING.
    Str(Vec<u8>),
    /// Anything else.
    Other,
}

/// Why a SET was refused (SNMPv2 error-status values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// 7.
    WrongType = 7,
    /// 10.
    WrongValue = 10,
    /// 11.
    NoCreation = 11,
    /// 17.
    NotWritable = 17,
}

/// The sorted OID instances of a switch with a given number of ports.
#[derive(Debug)]
pub struct Layout {
    entries: Vec<(Oid, Var)>,
}

fn oid(prefix: &[u32], rest: &[u32]) -> Oid {
    prefix.iter().chain(rest).copied().collect()
}

impl Layout {
    /// The layout for `ports` ports without bundles.
    pub fn new(ports: usize) -> Arc<Layout> {
        Layout::for_shape(&(ports, Vec::new()))
    }

    /// The layout for a shape.
    pub fn for_shape(shape: &Shape) -> Arc<Layout> {
        let (ports, bundles) = (shape.0, &shape.1);
        let mut e: Vec<(Oid, Var)> = vec![
            (oid(&SYSTEM, &[1, 0]), Var::SysDescr),
            (oid(&SYSTEM, &[2, 0]), Var::SysObjectId),
            (oid(&SYSTEM, &[3, 0]), Var::SysUpTime),
            (oid(&SYSTEM, &[5, 0]), Var::SysName),
            (IF_NUMBER.to_vec(), Var::IfNumber),
        ];
        let index = |p: usize| u32::try_from(p + 1).unwrap_or(u32::MAX);
        for col in 1..=22 {
            for p in 0..ports {
                e.push((oid(&IF_ENTRY, &[col, index(p)]), Var::If(col, p)));
            }
        }
        for col in 1..=19 {
            for p in 0..ports {
                e.push((oid(&IFX_ENTRY, &[col, index(p)]), Var::IfX(col, p)));
            }
        }
        for p in 0..ports {
            let bp = BRIDGE_PORT_OFFSET + index(p);
            e.push((oid(&BASE_PORT_IFINDEX, &[bp]), Var::BasePortIfIndex(p)));
            e.push((oid(&PVID, &[bp]), Var::Pvid(p)));
            for col in 2..=4 {
                e.push((oid(&LLDP_LOC_PORT, &[col, index(p)]), Var::LldpLoc(col, p)));
            }
            for col in 4..=9 {
                e.push((oid(&LLDP_REM, &[col, 0, index(p), 1]), Var::LldpRem(col, p)));
            }
        }
        for (agg, members) in bundles {
            e.push((oid(&AGG_ENTRY, &[2, *agg]), Var::AggPriority));
            for m in members {
                e.push((oid(&IF_STACK_STATUS, &[*agg, *m]), Var::Stack));
                if let Some(p) = usize::try_from(*m).ok().and_then(|m| m.checked_sub(1)) {
                    e.push((oid(&AGG_PORT_ENTRY, &[13, *m]), Var::AggAttached(p, *agg)));
                }
            }
        }
        e.sort_by(|a, b| a.0.cmp(&b.0));
        Arc::new(Layout { entries: e })
    }

    fn find(&self, oid: &[u32]) -> Option<Var> {
        self.entries
            .binary_search_by(|(o, _)| o.as_slice().cmp(oid))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| *v)
    }

    /// The value at `oid`, if the switch has that instance.
    pub fn get(&self, s: &Switch, oid: &[u32], now: Instant) -> Option<Val> {
        self.find(oid).and_then(|v| value(s, v, now))
    }

    /// The first instance after `oid` and its value (None: end of the MIB view).
    pub fn next(&self, s: &Switch, oid: &[u32], now: Instant) -> Option<(Oid, Val)> {
        let start = self.entries.partition_point(|(o, _)| o.as_slice() <= oid);
        self.entries[start..]
            .iter()
            .find_map(|(o, v)| value(s, *v, now).map(|val| (o.clone(), val)))
    }

    /// Checks a SET of `oid` to `val` without changing anything.
    pub fn check_set(&self, oid: &[u32], val: &SetVal) -> Result<(), SetError> {
        let Some(var) = self.find(oid) else {
            return Err(SetError::NoCreation);
        };
        match (var, val) {
            (Var::If(7 | 8, _), SetVal::Int(1 | 2)) => Ok(()),
            (Var::If(7 | 8, _), SetVal::Int(_)) => Err(SetError::WrongValue),
            (Var::IfX(18, _), SetVal::Str(b)) if b.len() <= 64 => Ok(()),
            (Var::IfX(18, _), SetVal::Str(_)) => Err(SetError::WrongValue),
            (Var::Pvid(_), SetVal::Unsigned(v)) if (1..=4094).contains(v) => Ok(()),
            (Var::Pvid(_), SetVal::Unsigned(_)) => Err(SetError::WrongValue),
            (Var::If(7 | 8, _) | Var::IfX(18, _) | Var::Pvid(_), _) => Err(SetError::WrongType),
            _ => Err(SetError::NotWritable),
        }
    }

    /// Applies a SET that [`Layout::check_set`] accepted; returns (ifIndex, new oper status)
    /// when a link changed (for a trap).
    pub fn apply_set(
        &self,
        s: &mut Switch,
        oid: &[u32],
        val: &SetVal,
        now: Instant,
    ) -> Option<(u32, i64)> {
        let var = self.find(oid)?;
        let if_index = |p: usize| u32::try_from(p + 1).unwrap_or(u32::MAX);
        match (var, val) {
            // ifOperStatus is read-only on a real switch; here it plays the cable.
            (Var::If(8, p), SetVal::Int(v)) => s
                .set_carrier(if_index(p), *v == 1, now)
                .map(|o| (if_index(p), o)),
            (Var::If(7, p), SetVal::Int(v)) => {
                s.set_admin(if_index(p), *v, now).map(|o| (if_index(p), o))
            }
            (Var::IfX(18, p), SetVal::Str(b)) => {
                if let Some(port) = s.ports.get_mut(p) {
                    port.alias = String::from_utf8_lossy(b).into_owned();
                }
                None
            }
            (Var::Pvid(p), SetVal::Unsigned(v)) => {
                if let Some(port) = s.ports.get_mut(p) {
                    port.pvid = *v;
                }
                None
            }
            _ => None,
        }
    }
}

fn value(s: &Switch, var: Var, now: Instant) -> Option<Val> {
    let c32 = |v: u64| Val::Counter32(u32::try_from(v & 0xffff_ffff).unwrap_or(0));
    Some(match var {
        Var::SysDescr => Val::Str(format!("CNaaS simulated switch {}", s.name).into_bytes()),
        Var::SysObjectId => Val::Oid(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
        Var::SysUpTime => Val::Ticks(s.uptime(now)),
        Var::SysName => Val::Str(s.name.clone().into_bytes()),
        Var::IfNumber => Val::Int(i64::try_from(s.ports.len()).unwrap_or(i64::MAX)),
        Var::BasePortIfIndex(p) => Val::Int(i64::from(s.ports.get(p)?.if_index)),
        Var::Pvid(p) => Val::Gauge(s.ports.get(p)?.pvid),
        Var::LldpLoc(col, p) => {
            let port = s.ports.get(p).filter(|x| x.members.is_empty())?;
            match col {
                2 => Val::Int(5),
                _ => Val::Str(port.name.clone().into_bytes()),
            }
        }
        Var::LldpRem(col, p) => {
            let port = s.ports.get(p).filter(|x| x.oper() == 1)?;
            let peer = port.peer.as_ref()?;
            match col {
                4 => Val::Int(4),
                5 => Val::Str(crate::model::chassis_mac(&peer.switch).to_vec()),
                6 => Val::Int(5),
                7 => Val::Str(peer.port.clone().into_bytes()),
                8 => Val::Str(peer.alias.clone().into_bytes()),
                _ => Val::Str(peer.switch.clone().into_bytes()),
            }
        }
        Var::Stack | Var::AggPriority => {
            Val::Int(if matches!(var, Var::Stack) { 1 } else { 32768 })
        }
        Var::AggAttached(p, agg) => {
            let up = s.ports.get(p)?.oper() == 1;
            Val::Int(if up { i64::from(agg) } else { 0 })
        }
        Var::If(col, p) => {
            let port = s.ports.get(p)?;
            let (inb, outb) = port.octets(now);
            match col {
                1 => Val::Int(i64::from(port.if_index)),
                2 => Val::Str(port.name.clone().into_bytes()),
                3 => Val::Int(6),
                4 => Val::Int(9216),
                5 => Val::Gauge(port.speed_mbps.saturating_mul(1_000_000)),
                6 => {
                    let i = port.if_index.to_be_bytes();
                    Val::Str(vec![0x02, 0xca, 0xa5, i[1], i[2], i[3]])
                }
                7 => Val::Int(port.admin),
                8 => Val::Int(port.oper()),
                9 => Val::Ticks(port.last_change),
                10 => c32(inb),
                11 => c32(inb / 500),
                16 => c32(outb),
                17 => c32(outb / 500),
                12 | 13 | 14 | 15 | 18 | 19 | 20 => Val::Counter32(0),
                21 => Val::Gauge(0),
                22 => Val::Oid(vec![0, 0]),
                _ => return None,
            }
        }
        Var::IfX(col, p) => {
            let port = s.ports.get(p)?;
            let (inb, outb) = port.octets(now);
            match col {
                1 => Val::Str(port.name.clone().into_bytes()),
                2..=5 => Val::Counter32(0),
                6 => Val::Counter64(inb),
                7 => Val::Counter64(inb / 500),
                10 => Val::Counter64(outb),
                11 => Val::Counter64(outb / 500),
                8 | 9 | 12 | 13 => Val::Counter64(0),
                14 => Val::Int(1),
                15 => Val::Gauge(port.speed_mbps),
                16 => Val::Int(2),
                17 => Val::Int(1),
                18 => Val::Str(port.alias.clone().into_bytes()),
                19 => Val::Ticks(0),
                _ => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Role;

    #[test]
    fn walks_in_order_and_ends() {
        let now = Instant::now();
        let s = Switch::new("a1", Role::Access, Some("d1"), 52, now);
        let l = Layout::new(52);
        // 4 system scalars, ifNumber, 22 + 19 columns, 2 bridge columns, 3 LLDP local and
        // 6 LLDP remote columns of 52 ports.
        assert_eq!(l.entries.len(), 5 + 52 * (22 + 19 + 2 + 3 + 6));
        let mut at: Oid = vec![0];
        let mut n = 0;
        while let Some((o, _)) = l.next(&s, &at, now) {
            assert!(o > at);
            at = o;
            n += 1;
        }
        // No cable: no remote rows.
        assert_eq!(n, 5 + 52 * (22 + 19 + 2 + 3));
        assert_eq!(
            l.get(&s, &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, 52], now),
            Some(Val::Str(b"Te1/1/2".to_vec()))
        );
        assert_eq!(l.get(&s, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 53], now), None);
        // The next after ifDescr.52 is ifType.1.
        assert_eq!(
            l.next(&s, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 52], now)
                .unwrap()
                .0,
            vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 3, 1]
        );
    }

    #[test]
    fn sets_check_first_and_change_the_switch() {
        let now = Instant::now();
        let mut s = Switch::new("a1", Role::Access, Some("d1"), 8, now);
        let l = Layout::new(8);
        let admin5 = [1, 3, 6, 1, 2, 1, 2, 2, 1, 7, 5];
        assert_eq!(
            l.check_set(&admin5, &SetVal::Int(3)),
            Err(SetError::WrongValue)
        );
        assert_eq!(
            l.check_set(&admin5, &SetVal::Str(vec![])),
            Err(SetError::WrongType)
        );
        assert_eq!(
            l.check_set(&[1, 3, 6, 1, 2, 1, 1, 5, 0], &SetVal::Str(vec![])),
            Err(SetError::NotWritable)
        );
        assert_eq!(
            l.apply_set(&mut s, &admin5, &SetVal::Int(2), now),
            Some((5, 2))
        );
        assert_eq!(
            l.get(&s, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 5], now),
            Some(Val::Int(2))
        );
        let pvid = [1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1, 105];
        assert!(l.check_set(&pvid, &SetVal::Unsigned(20)).is_ok());
        l.apply_set(&mut s, &pvid, &SetVal::Unsigned(20), now);
        assert_eq!(l.get(&s, &pvid, now), Some(Val::Gauge(20)));
    }

    #[test]
    fn a_cnaas_access_switch_serves_its_cabling_and_its_bundle() {
        let now = Instant::now();
        let mut c = crate::model::Campus::cnaas(8, 4, 8, now);
        let a = c.get("access-1-1").unwrap().clone();
        let l = Layout::for_shape(&shape(&a));
        // Po1 (ifIndex 9) over Te1/1/1 (7) and Te1/1/2 (8).
        assert_eq!(
            l.get(&a, &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, 9], now),
            Some(Val::Str(b"Po1".to_vec()))
        );
        assert_eq!(
            l.get(&a, &[1, 3, 6, 1, 2, 1, 31, 1, 2, 1, 3, 9, 8], now),
            Some(Val::Int(1))
        );
        // lldpRemSysName of Te1/1/2 is dist-1b; its port is dist-1b's port 1.
        let sys_name = [1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 9, 0, 8, 1];
        assert_eq!(
            l.get(&a, &sys_name, now),
            Some(Val::Str(b"dist-1b".to_vec()))
        );
        assert_eq!(
            l.get(&a, &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 7, 0, 8, 1], now),
            Some(Val::Str(b"Te1/0/1".to_vec()))
        );
        // The member down: no neighbour there, the bundle still up, not attached.
        let sw = c.get_mut("access-1-1").unwrap();
        sw.set_carrier(8, false, now);
        let a = sw.clone();
        assert_eq!(l.get(&a, &sys_name, now), None);
        assert_eq!(
            l.get(&a, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 9], now),
            Some(Val::Int(1))
        );
        assert_eq!(
            l.get(&a, &[1, 2, 840, 10006, 300, 43, 1, 2, 1, 1, 13, 8], now),
            Some(Val::Int(0))
        );
        // Both down: the bundle is down.
        let sw = c.get_mut("access-1-1").unwrap();
        sw.set_carrier(7, false, now);
        assert_eq!(
            l.get(sw, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 9], now),
            Some(Val::Int(2))
        );
    }
}
