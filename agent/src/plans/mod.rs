//! Polling plans. One task per device runs its plans one after the other, so a device never
//! has more than one request in flight; a semaphore bounds how many devices poll at once.
//! A slow or dead device only ever delays itself.
//!
//! - *link* (every `link_interval`): sysUpTime plus ifAdminStatus, ifOperStatus and
//!   ifLastChange, all in one GETBULK stream.
//! - *labels* (every `labels_interval`, at start, after a reboot and when an unknown ifIndex
//!   appears): ifDescr, ifName, ifAlias, cached between refreshes.
//! - *counters* ([`counters`]), *vlan* ([`vlan`]) and *reachability* (ICMP echo or an SNMP
//!   GET of sysUpTime), each on its own interval.
//!
//! [`device`] runs them; this file holds the pure pieces (decoding walks, roles, events).

pub mod counters;
mod device;
pub mod topology;
pub mod vlan;

pub use device::run_device;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::role::{PortRole, RolePatterns};
use cnaas_shared::{Event, EventKind, Source};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::Device;
use crate::metrics::{AgentMetrics, InterfaceTable};
use crate::publish::PublishHandle;
use crate::snmp::SnmpValue;
use crate::snmp::oid::{self, OidBuf};
use crate::state::{Change, LinkSnapshot, PortLink};

/// ifName, ifAlias and ifDescr of one port. `Box<str>`, not `String`: labels are set once per
/// refresh and held for 100,000 ports, so neither the capacity word nor spare capacity is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// ifName.
    pub name: Box<str>,
    /// ifAlias.
    pub alias: Box<str>,
    /// ifDescr.
    pub descr: Box<str>,
}

/// What every device task shares.
#[derive(Clone)]
pub struct Shared {
    /// The ICMP client, if the process may send ICMP echo.
    pub icmp: Option<Arc<surge_ping::Client>>,
    /// Agent id.
    pub agent: String,
    /// ifAlias role patterns.
    pub roles: Arc<RolePatterns>,
    /// Where events go.
    pub publisher: PublishHandle,
    /// Health metrics.
    pub metrics: AgentMetrics,
    /// Interface metrics.
    pub table: InterfaceTable,
    /// Global bound on devices polled at once.
    pub limit: Arc<Semaphore>,
    /// Whether a device keeps its SNMPv2c socket between polls (when the process may hold a
    /// descriptor per device): opening and closing one per poll was an eighth of the agent's
    /// CPU at 2,000 devices.
    pub keep_sockets: bool,
}

/// Turns a link walk into a snapshot. Rows with unexpected types are skipped.
pub fn link_snapshot(
    scalars: &[(OidBuf, SnmpValue)],
    columns: &[Vec<(OidBuf, SnmpValue)>],
) -> LinkSnapshot {
    let scalar = |column: &[u32]| {
        scalars
            .iter()
            .find(|(o, _)| oid::single_index(o, column) == Some(0))
            .map(|(_, v)| v)
    };
    let uptime = scalar(oid::SYS_UPTIME).and_then(SnmpValue::as_ticks);
    let if_number = scalar(oid::IF_NUMBER).and_then(SnmpValue::as_i64);
    let mut ports = BTreeMap::new();
    if let [admin_col, oper_col, change_col] = columns {
        // A walk's rows come in index order, so the map is built in one pass (densely), and
        // the other two columns are filled in by lookup.
        ports = oper_col
            .iter()
            .filter_map(|(o, v)| {
                let i = oid::single_index(o, oid::IF_OPER_STATUS)?;
                let oper = v.as_i64()?;
                // A port without ifAdminStatus is taken as enabled.
                let link = PortLink {
                    admin: 1,
                    oper,
                    last_change: None,
                };
                Some((i, link))
            })
            .collect();
        for (o, v) in admin_col {
            if let (Some(i), Some(x)) = (oid::single_index(o, oid::IF_ADMIN_STATUS), v.as_i64())
                && let Some(p) = ports.get_mut(&i)
            {
                p.admin = x;
            }
        }
        for (o, v) in change_col {
            if let (Some(i), Some(x)) = (oid::single_index(o, oid::IF_LAST_CHANGE), v.as_ticks())
                && let Some(p) = ports.get_mut(&i)
            {
                p.last_change = Some(x);
            }
        }
    }
    LinkSnapshot {
        uptime,
        if_number,
        ports,
    }
}

/// Labels per ifIndex, each shared (by reference count) with the exported interface table, so
/// a link poll copies no strings.
pub type LabelMap = HashMap<u32, Arc<Labels>>;

/// `new` labels as a [`LabelMap`], keeping `old`'s shared copy of every port whose labels did
/// not change (the interface table then sees the same pointer and has nothing to update).
pub fn share_labels(old: &LabelMap, new: HashMap<u32, Labels>) -> LabelMap {
    new.into_iter()
        .map(|(i, l)| match old.get(&i) {
            Some(same) if **same == l => (i, same.clone()),
            _ => (i, Arc::new(l)),
        })
        .collect()
}

/// Turns a label walk into labels per ifIndex.
pub fn labels_from(columns: &[Vec<(OidBuf, SnmpValue)>]) -> HashMap<u32, Labels> {
    let mut out: HashMap<u32, Labels> = HashMap::new();
    type Setter = fn(&mut Labels, String);
    let cols: [(&[u32], Setter); 3] = [
        (oid::IF_DESCR, |l, s| l.descr = s.into_boxed_str()),
        (oid::IF_NAME, |l, s| l.name = s.into_boxed_str()),
        (oid::IF_ALIAS, |l, s| l.alias = s.into_boxed_str()),
    ];
    for ((column, set), rows) in cols.iter().zip(columns) {
        for (o, v) in rows {
            if let (Some(i), Some(text)) = (oid::single_index(o, column), v.as_text()) {
                set(out.entry(i).or_default(), text);
            }
        }
    }
    out
}

/// The role of a port: inventory (by ifName, then ifIndex), then ifAlias patterns, else access.
pub fn port_role(
    device: &Device,
    roles: &RolePatterns,
    if_index: u32,
    labels: Option<&Labels>,
) -> PortRole {
    if let Some(l) = labels
        && let Some(r) = device.ports.get(&*l.name)
    {
        return *r;
    }
    if let Some(r) = device.ports.get(&if_index.to_string()) {
        return *r;
    }
    labels
        .and_then(|l| roles.match_alias(&l.alias))
        .unwrap_or(PortRole::Access)
}

/// An event about one port: its labels and its role filled in.
fn port_event(
    agent: &str,
    device: &Device,
    roles: &RolePatterns,
    labels: &LabelMap,
    if_index: u32,
    kind: EventKind,
) -> Event {
    let mut e = Event::new(agent, &device.name, kind, Source::Poll);
    let l = labels.get(&if_index).map(|l| &**l);
    e.if_index = Some(if_index);
    e.if_name = l.map(|l| l.name.to_string()).filter(|s| !s.is_empty());
    e.if_alias = l.map(|l| l.alias.to_string()).filter(|s| !s.is_empty());
    e.attrs.insert(
        "role".into(),
        json!(port_role(device, roles, if_index, l).as_str()),
    );
    e
}

/// Builds the wire event for a change.
pub fn event_for(
    agent: &str,
    device: &Device,
    roles: &RolePatterns,
    labels: &LabelMap,
    snap: Option<&LinkSnapshot>,
    change: &Change,
) -> Event {
    match change {
        Change::Port {
            if_index,
            kind,
            initial,
            between_polls,
        } => {
            let mut e = port_event(agent, device, roles, labels, *if_index, *kind);
            if let Some(p) = snap.and_then(|s| s.ports.get(if_index)) {
                e.attrs.insert("admin_status".into(), json!(p.admin));
                e.attrs.insert("oper_status".into(), json!(p.oper));
            }
            if *initial {
                e.attrs.insert("initial".into(), json!(true));
            }
            if *between_polls {
                e.attrs.insert("between_polls".into(), json!(true));
            }
            e
        }
        Change::Reachability { kind, failures } => {
            let mut e = Event::new(agent, &device.name, *kind, Source::Poll);
            if *kind == EventKind::DeviceUnreachable {
                e.attrs.insert("failed_polls".into(), json!(failures));
            }
            e
        }
        Change::Vlan { if_index, old, new } => {
            let mut e = port_event(
                agent,
                device,
                roles,
                labels,
                *if_index,
                EventKind::VlanChanged,
            );
            e.attrs.insert("old".into(), json!(old));
            e.attrs.insert("new".into(), json!(new));
            e
        }
        Change::Rebooted {
            old_uptime,
            new_uptime,
        } => {
            let mut e = Event::new(agent, &device.name, EventKind::DeviceRebooted, Source::Poll);
            e.attrs.insert("old_uptime".into(), json!(old_uptime));
            e.attrs.insert("new_uptime".into(), json!(new_uptime));
            e
        }
        Change::Sync(sync) => {
            let mut e = Event::new(agent, &device.name, EventKind::StateSync, Source::Poll);
            sync.write(&mut e.attrs);
            e
        }
    }
}

/// A stable offset in `[0, interval)` per device, so many devices do not poll in lock-step.
pub fn jitter(name: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(h.finish() % ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cnaas_shared::config::Secret;
    use cnaas_shared::role::RolePatternsConfig;

    fn col(base: &[u32], rows: &[(u32, SnmpValue)]) -> Vec<(OidBuf, SnmpValue)> {
        rows.iter()
            .map(|(i, v)| (crate::snmp::oid::instance(base, *i), v.clone()))
            .collect()
    }

    #[test]
    fn snapshot_from_walk() {
        let scalars = vec![
            (
                crate::snmp::oid::instance(oid::SYS_UPTIME, 0),
                SnmpValue::Timeticks(777),
            ),
            (
                crate::snmp::oid::instance(oid::IF_NUMBER, 0),
                SnmpValue::Integer(3),
            ),
        ];
        let columns = vec![
            col(
                oid::IF_ADMIN_STATUS,
                &[(1, SnmpValue::Integer(1)), (2, SnmpValue::Integer(2))],
            ),
            col(
                oid::IF_OPER_STATUS,
                &[
                    (1, SnmpValue::Integer(1)),
                    (2, SnmpValue::Integer(2)),
                    (3, SnmpValue::Integer(2)),
                ],
            ),
            col(
                oid::IF_LAST_CHANGE,
                &[
                    (1, SnmpValue::Timeticks(5)),
                    (3, SnmpValue::OctetString(vec![])),
                ],
            ),
        ];
        let s = link_snapshot(&scalars, &columns);
        assert_eq!(s.uptime, Some(777));
        assert_eq!(s.if_number, Some(3));
        assert_eq!(
            s.ports[&1],
            PortLink {
                admin: 1,
                oper: 1,
                last_change: Some(5)
            }
        );
        assert_eq!(
            s.ports[&2],
            PortLink {
                admin: 2,
                oper: 2,
                last_change: None
            }
        );
        assert_eq!(s.ports[&3].admin, 1);
    }

    fn device() -> Device {
        Device {
            name: "a-b12-01".into(),
            address: "127.0.0.1:161".into(),
            credentials: Some(crate::snmp::Credentials::V2c {
                community: Secret::new("c"),
            }),
            netconf: None,
            link_interval: Duration::from_secs(1),
            labels_interval: Duration::from_secs(600),
            timeout: Duration::from_millis(300),
            retries: 1,
            unreachable_after: 3,
            max_repetitions: 25,
            counters_interval: Duration::from_secs(60),
            vlan_interval: Duration::from_secs(60),
            topology_interval: Duration::from_secs(300),
            reachability_interval: Duration::from_secs(15),
            reachability: crate::config::Reachability::Snmp,
            ports: [
                ("Te1/1/1".to_owned(), PortRole::Uplink),
                ("7".to_owned(), PortRole::Infrastructure),
            ]
            .into(),
        }
    }

    #[test]
    fn roles_inventory_then_alias_then_access() {
        let roles = RolePatterns::build(&RolePatternsConfig {
            uplink: vec!["(?i)^uplink".into()],
            ..Default::default()
        })
        .unwrap();
        let d = device();
        let l = |name: &str, alias: &str| Labels {
            name: name.into(),
            alias: alias.into(),
            descr: Box::default(),
        };
        assert_eq!(
            port_role(&d, &roles, 49, Some(&l("Te1/1/1", "whatever"))),
            PortRole::Uplink
        );
        assert_eq!(
            port_role(&d, &roles, 7, Some(&l("Gi1/0/7", ""))),
            PortRole::Infrastructure
        );
        assert_eq!(
            port_role(&d, &roles, 50, Some(&l("Te1/1/2", "Uplink: dist2"))),
            PortRole::Uplink
        );
        assert_eq!(
            port_role(&d, &roles, 1, Some(&l("Gi1/0/1", "B12-R101"))),
            PortRole::Access
        );
        assert_eq!(port_role(&d, &roles, 1, None), PortRole::Access);
    }

    #[test]
    fn events_carry_labels_role_and_status() {
        let roles = RolePatterns::default();
        let walked: HashMap<u32, Labels> = [(
            49,
            Labels {
                name: "Te1/1/1".into(),
                alias: "uplink: dist1".into(),
                descr: "Ten".into(),
            },
        )]
        .into();
        let labels = share_labels(&LabelMap::new(), walked.clone());
        // A refresh with the same labels keeps the shared copy; a changed port gets a new one.
        assert!(Arc::ptr_eq(
            &share_labels(&labels, walked.clone())[&49],
            &labels[&49]
        ));
        let mut renamed = walked;
        if let Some(l) = renamed.get_mut(&49) {
            l.alias = "uplink: dist2".into();
        }
        assert_eq!(&*share_labels(&labels, renamed)[&49].alias, "uplink: dist2");
        let mut snap = LinkSnapshot::default();
        snap.ports.insert(
            49,
            PortLink {
                admin: 1,
                oper: 2,
                last_change: None,
            },
        );
        let change = Change::Port {
            if_index: 49,
            kind: EventKind::LinkDown,
            initial: false,
            between_polls: false,
        };
        let e = event_for("site", &device(), &roles, &labels, Some(&snap), &change);
        assert_eq!(e.if_name.as_deref(), Some("Te1/1/1"));
        assert_eq!(e.if_alias.as_deref(), Some("uplink: dist1"));
        assert_eq!(e.attrs["role"], json!("uplink"));
        assert_eq!(e.attrs["oper_status"], json!(2));
        assert_eq!(e.role(), Some(PortRole::Uplink));
        assert!(e.attrs.get("initial").is_none());
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let i = Duration::from_secs(2);
        assert_eq!(jitter("a", i), jitter("a", i));
        assert!(jitter("b", i) < i);
        let distinct: std::collections::HashSet<_> =
            (0..50).map(|n| jitter(&format!("sw{n}"), i)).collect();
        assert!(distinct.len() > 40);
    }

    #[test]
    fn labels_from_walk() {
        let columns = vec![
            col(
                oid::IF_DESCR,
                &[(1, SnmpValue::OctetString(b"GigabitEthernet1/0/1".to_vec()))],
            ),
            col(
                oid::IF_NAME,
                &[
                    (1, SnmpValue::OctetString(b"Gi1/0/1".to_vec())),
                    (2, SnmpValue::OctetString(b"Gi1/0/2".to_vec())),
                ],
            ),
            col(
                oid::IF_ALIAS,
                &[(2, SnmpValue::OctetString(b"uplink".to_vec()))],
            ),
        ];
        let l = labels_from(&columns);
        assert_eq!(
            l[&1],
            Labels {
                name: "Gi1/0/1".into(),
                alias: Box::default(),
                descr: "GigabitEthernet1/0/1".into()
            }
        );
        assert_eq!(&*l[&2].alias, "uplink");
    }
}
