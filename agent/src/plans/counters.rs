//! The *counters* plan: traffic, packet, error and discard counters and ifHighSpeed, all in one
//! GETBULK stream, every `counters_interval` (60 s by default; switches cache counters for
//! 5-15 s, so faster polling only re-reads the cache).
//!
//! Counter32 columns wrap at 2^32 (a 1 Gbit/s port wraps ifInOctets in 34 s). They are exported
//! as 64-bit totals accumulated from wrap-corrected deltas, so a wrap is never a drop to zero or
//! a false spike. After a reboot (sysUpTime went backwards) the totals restart from the raw
//! values, which Prometheus sees as an ordinary counter reset.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::snmp::SnmpValue;
use crate::snmp::oid::{self, OidBuf};

/// How a column's values behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Counter32: wraps at 2^32; accumulated.
    Counter32,
    /// Counter64: exported as read.
    Counter64,
    /// Gauge.
    Gauge,
}

/// One polled column: snmp_exporter's metric name, the OID, its kind and help text.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Metric name (as in snmp_exporter's `if_mib`).
    pub name: &'static str,
    /// Column OID.
    pub oid: &'static [u32],
    /// Behaviour.
    pub kind: Kind,
    /// HELP text (MIB description, as snmp_exporter writes it).
    pub help: &'static str,
}

macro_rules! col {
    ($name:literal, [$($arc:literal),+], $kind:ident, $help:literal) => {
        Column { name: $name, oid: &[$($arc),+], kind: Kind::$kind, help: $help }
    };
}

/// The columns of the plan, in walk order.
pub const COLUMNS: [Column; 17] = [
    col!(
        "ifInOctets",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 10],
        Counter32,
        "The total number of octets received on the interface, including framing characters. - 1.3.6.1.2.1.2.2.1.10"
    ),
    col!(
        "ifInUcastPkts",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 11],
        Counter32,
        "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were not addressed to a multicast or broadcast address at this sub-layer. - 1.3.6.1.2.1.2.2.1.11"
    ),
    col!(
        "ifInDiscards",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 13],
        Counter32,
        "The number of inbound packets which were chosen to be discarded even though no errors had been detected to prevent their being deliverable to a higher-layer protocol. - 1.3.6.1.2.1.2.2.1.13"
    ),
    col!(
        "ifInErrors",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 14],
        Counter32,
        "For packet-oriented interfaces, the number of inbound packets that contained errors preventing them from being deliverable to a higher-layer protocol. - 1.3.6.1.2.1.2.2.1.14"
    ),
    col!(
        "ifOutOctets",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 16],
        Counter32,
        "The total number of octets transmitted out of the interface, including framing characters. - 1.3.6.1.2.1.2.2.1.16"
    ),
    col!(
        "ifOutUcastPkts",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 17],
        Counter32,
        "The total number of packets that higher-level protocols requested be transmitted, and which were not addressed to a multicast or broadcast address at this sub-layer, including those that were discarded or not sent. - 1.3.6.1.2.1.2.2.1.17"
    ),
    col!(
        "ifOutDiscards",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 19],
        Counter32,
        "The number of outbound packets which were chosen to be discarded even though no errors had been detected to prevent their being transmitted. - 1.3.6.1.2.1.2.2.1.19"
    ),
    col!(
        "ifOutErrors",
        [1, 3, 6, 1, 2, 1, 2, 2, 1, 20],
        Counter32,
        "For packet-oriented interfaces, the number of outbound packets that could not be transmitted because of errors. - 1.3.6.1.2.1.2.2.1.20"
    ),
    col!(
        "ifHCInOctets",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6],
        Counter64,
        "The total number of octets received on the interface, including framing characters. - 1.3.6.1.2.1.31.1.1.1.6"
    ),
    col!(
        "ifHCInUcastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 7],
        Counter64,
        "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were not addressed to a multicast or broadcast address at this sub-layer. - 1.3.6.1.2.1.31.1.1.1.7"
    ),
    col!(
        "ifHCInMulticastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 8],
        Counter64,
        "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a multicast address at this sub-layer. - 1.3.6.1.2.1.31.1.1.1.8"
    ),
    col!(
        "ifHCInBroadcastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 9],
        Counter64,
        "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were addressed to a broadcast address at this sub-layer. - 1.3.6.1.2.1.31.1.1.1.9"
    ),
    col!(
        "ifHCOutOctets",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10],
        Counter64,
        "The total number of octets transmitted out of the interface, including framing characters. - 1.3.6.1.2.1.31.1.1.1.10"
    ),
    col!(
        "ifHCOutUcastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 11],
        Counter64,
        "The total number of packets that higher-level protocols requested be transmitted, and which were not addressed to a multicast or broadcast address at this sub-layer, including those that were discarded or not sent. - 1.3.6.1.2.1.31.1.1.1.11"
    ),
    col!(
        "ifHCOutMulticastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 12],
        Counter64,
        "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a multicast address at this sub-layer, including those that were discarded or not sent. - 1.3.6.1.2.1.31.1.1.1.12"
    ),
    col!(
        "ifHCOutBroadcastPkts",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 13],
        Counter64,
        "The total number of packets that higher-level protocols requested be transmitted, and which were addressed to a broadcast address at this sub-layer, including those that were discarded or not sent. - 1.3.6.1.2.1.31.1.1.1.13"
    ),
    col!(
        "ifHighSpeed",
        [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15],
        Gauge,
        "An estimate of the interface's current bandwidth in units of 1,000,000 bits per second. - 1.3.6.1.2.1.31.1.1.1.15"
    ),
];

/// IF-MIB::ifCounterDiscontinuityTime: sysUpTime when a port's counters last restarted
/// (module reset, counters cleared). Walked with the counters, not exported.
pub const DISCONTINUITY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19];

/// The OIDs of [`COLUMNS`] and then [`DISCONTINUITY`], for the walk.
pub fn column_oids() -> Vec<&'static [u32]> {
    COLUMNS
        .iter()
        .map(|c| c.oid)
        .chain([DISCONTINUITY])
        .collect()
}

/// ifCounterDiscontinuityTime per port, from the walk's last column.
pub fn discontinuities_from(columns: &[Vec<(OidBuf, SnmpValue)>]) -> BTreeMap<u32, u32> {
    columns
        .get(COLUMNS.len())
        .into_iter()
        .flatten()
        .filter_map(|(o, v)| Some((oid::single_index(o, DISCONTINUITY)?, v.as_ticks()?)))
        .collect()
}

/// Raw values of one poll: per ifIndex, per column (`None` where the device had none).
pub type Raw = BTreeMap<u32, Row>;

/// One port's values of the 17 [`COLUMNS`], each there or not: a bit mask beside the values
/// rather than 17 `Option<u64>`s (144 bytes instead of 272 per port, and a port's counters are
/// held twice: 28 MB less at 100,000 ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    present: u32,
    values: [u64; 17],
}

impl Row {
    /// Column `c`'s value, if the device gave it.
    pub fn get(&self, c: usize) -> Option<u64> {
        (c < self.values.len() && self.present & (1 << c) != 0).then(|| self.values[c])
    }

    /// Sets column `c` (ignored past the last column).
    pub fn set(&mut self, c: usize, value: u64) {
        if let Some(slot) = self.values.get_mut(c) {
            *slot = value;
            self.present |= 1 << c;
        }
    }
}

/// Turns a walk of [`COLUMNS`] into raw values per port.
pub fn raw_from(columns: &[Vec<(OidBuf, SnmpValue)>]) -> Raw {
    let mut out: Raw = BTreeMap::new();
    for (c, (col, rows)) in COLUMNS.iter().zip(columns).enumerate() {
        for (o, v) in rows {
            let value = match v {
                SnmpValue::Counter32(x) | SnmpValue::Unsigned32(x) => Some(u64::from(*x)),
                SnmpValue::Counter64(x) => Some(*x),
                SnmpValue::Integer(x) => u64::try_from(*x).ok(),
                _ => None,
            };
            if let (Some(i), Some(value)) = (oid::single_index(o, col.oid), value) {
                out.entry(i).or_default().set(c, value);
            }
        }
    }
    out
}

/// Exported rows in ifIndex order, in one allocation of the exact size (a `BTreeMap`'s nodes
/// cost a third more: 5 MB at 100,000 ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows(Vec<(u32, Row)>);

impl Rows {
    /// The row of `port`.
    pub fn get(&self, port: u32) -> Option<&Row> {
        let i = self.0.binary_search_by_key(&port, |(p, _)| *p).ok()?;
        self.0.get(i).map(|(_, r)| r)
    }

    /// Every port's row, in ifIndex order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Row)> {
        self.0.iter().map(|(p, r)| (*p, r))
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Exported values per port and column.
///
/// A Counter32 total is kept congruent to the device's raw value modulo 2^32 (it starts at the
/// raw value and only ever grows by deltas taken modulo 2^32), so the previous raw value is the
/// previous total's low 32 bits and need not be kept beside it.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Shared with the exported interface table, not copied.
    totals: Arc<Rows>,
    discontinuities: BTreeMap<u32, u32>,
}

impl Totals {
    /// Folds in a poll. `reset` (after a reboot) restarts every total from the raw value; a
    /// port whose ifCounterDiscontinuityTime moved restarts on its own.
    pub fn update(&mut self, raw: Raw, reset: bool, discontinuities: BTreeMap<u32, u32>) {
        // `raw` iterates in ifIndex order, so the rows come out sorted.
        let totals: Vec<(u32, Row)> = raw
            .iter()
            .map(|(&port, values)| {
                let moved = match (self.discontinuities.get(&port), discontinuities.get(&port)) {
                    (Some(before), Some(now)) => before != now,
                    _ => false,
                };
                let prev = self.totals.get(port).filter(|_| !(reset || moved));
                let mut t = Row::default();
                for (c, col) in COLUMNS.iter().enumerate() {
                    let Some(now) = values.get(c) else { continue };
                    t.set(
                        c,
                        match (col.kind, prev.and_then(|p| p.get(c))) {
                            (Kind::Counter32, Some(total)) => {
                                // Modular difference against the last raw value (the total's
                                // low 32 bits): correct across one wrap between polls.
                                let delta = now.wrapping_sub(total) & 0xffff_ffff;
                                total.wrapping_add(delta)
                            }
                            _ => now,
                        },
                    );
                }
                (port, t)
            })
            .collect();
        self.totals = Arc::new(Rows(totals));
        self.discontinuities = discontinuities;
    }

    /// The exported values.
    pub fn values(&self) -> &Arc<Rows> {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(port: u32, in_octets: u64, hc_in: u64) -> Raw {
        let mut v = Row::default();
        v.set(0, in_octets);
        v.set(8, hc_in);
        [(port, v)].into()
    }

    #[test]
    fn a_row_keeps_which_columns_are_there() {
        let mut r = Row::default();
        assert_eq!(r.get(0), None);
        r.set(0, 0);
        r.set(16, u64::MAX);
        r.set(17, 5);
        assert_eq!(
            (r.get(0), r.get(16), r.get(1), r.get(17)),
            (Some(0), Some(u64::MAX), None, None)
        );
        assert!(std::mem::size_of::<Row>() <= 144);
    }

    #[test]
    fn counter32_wraps_are_accumulated_not_dropped() {
        let mut t = Totals::default();
        t.update(raw(1, 4_294_967_000, 10), false, BTreeMap::new());
        assert_eq!(t.values().get(1).unwrap().get(0), Some(4_294_967_000));
        // Wrapped: 296 octets to the top, then 704 more.
        t.update(raw(1, 704, 20), false, BTreeMap::new());
        assert_eq!(t.values().get(1).unwrap().get(0), Some(4_294_968_000));
        t.update(raw(1, 1704, 30), false, BTreeMap::new());
        assert_eq!(t.values().get(1).unwrap().get(0), Some(4_294_969_000));
        // Counter64 is exported as read.
        assert_eq!(t.values().get(1).unwrap().get(8), Some(30));
    }

    #[test]
    fn a_reboot_restarts_from_the_raw_value() {
        let mut t = Totals::default();
        t.update(raw(1, 1000, 1000), false, BTreeMap::new());
        t.update(raw(1, 2000, 2000), false, BTreeMap::new());
        t.update(raw(1, 50, 50), true, BTreeMap::new());
        assert_eq!(t.values().get(1).unwrap().get(0), Some(50));
        assert_eq!(t.values().get(1).unwrap().get(8), Some(50));
    }

    #[test]
    fn a_counter_discontinuity_restarts_only_that_port() {
        let mut t = Totals::default();
        let mut two = raw(1, 1000, 0);
        two.extend(raw(2, 1000, 0));
        t.update(two.clone(), false, [(1, 5), (2, 5)].into());
        let mut later = raw(1, 3000, 0);
        later.extend(raw(2, 40, 0));
        // Port 2's counters were cleared at tick 900: 40 is a new start, not a wrap.
        t.update(later, false, [(1, 5), (2, 900)].into());
        assert_eq!(t.values().get(1).unwrap().get(0), Some(3000));
        assert_eq!(t.values().get(2).unwrap().get(0), Some(40));
    }

    #[test]
    fn ports_appearing_and_vanishing() {
        let mut t = Totals::default();
        t.update(raw(1, 100, 0), false, BTreeMap::new());
        let mut both = raw(1, 200, 0);
        both.extend(raw(2, 7, 0));
        t.update(both, false, BTreeMap::new());
        assert_eq!(t.values().get(2).unwrap().get(0), Some(7));
        t.update(raw(2, 9, 0), false, BTreeMap::new());
        assert!(t.values().get(1).is_none());
        assert_eq!(t.values().len(), 1);
        assert_eq!(t.values().get(2).unwrap().get(0), Some(9));
    }

    proptest::proptest! {
        // Without the previous raw value kept: the same totals as the textbook way (keep the
        // last raw value, add the modular difference), over any readings and reboots.
        #[test]
        fn totals_match_keeping_the_last_raw_value(
            polls in proptest::collection::vec((proptest::prelude::any::<u32>(), proptest::bool::weighted(0.1)), 1..60)
        ) {
            let mut t = Totals::default();
            let (mut last, mut total): (Option<u64>, u64) = (None, 0);
            for (now, reboot) in polls {
                let now = u64::from(now);
                t.update(raw(3, now, 0), reboot, BTreeMap::new());
                total = match last {
                    Some(before) if !reboot => total.wrapping_add(now.wrapping_sub(before) & 0xffff_ffff),
                    _ => now,
                };
                last = Some(now);
                proptest::prop_assert_eq!(t.values().get(3).unwrap().get(0), Some(total));
            }
        }
    }

    #[test]
    fn walk_to_raw() {
        let mut cols: Vec<Vec<(OidBuf, SnmpValue)>> = COLUMNS
            .iter()
            .enumerate()
            .map(|(n, c)| {
                vec![(
                    crate::snmp::oid::instance(c.oid, 5),
                    SnmpValue::Counter32(u32::try_from(n).unwrap_or(0)),
                )]
            })
            .collect();
        cols.push(vec![(
            crate::snmp::oid::instance(DISCONTINUITY, 5),
            SnmpValue::Timeticks(77),
        )]);
        let r = raw_from(&cols);
        assert_eq!(discontinuities_from(&cols), [(5, 77)].into());
        assert_eq!(r[&5].get(3), Some(3));
        assert_eq!(r[&5].get(16), Some(16));
    }
}
