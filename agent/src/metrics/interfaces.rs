//! The interface table behind the `if_mib`-compatible metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::plans::{LabelMap, Labels};
use crate::state::LinkSnapshot;

/// One port's exported state and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortView {
    /// ifAdminStatus.
    pub admin: i64,
    /// ifOperStatus.
    pub oper: i64,
    /// ifLastChange in ticks.
    pub last_change: Option<u32>,
    /// ifName, ifAlias, ifDescr: the device task's copy, shared.
    pub labels: Arc<Labels>,
}

#[derive(Debug, Default)]
struct DeviceView {
    uptime: Option<u32>,
    ports: BTreeMap<u32, PortView>,
    counters: Arc<crate::plans::counters::Rows>,
    pvids: BTreeMap<u32, u32>,
}

/// Current interface state of every device, shared between pollers (writers) and the
/// metrics endpoint (reader).
#[derive(Debug, Clone, Default)]
pub struct InterfaceTable {
    inner: Arc<RwLock<HashMap<String, DeviceView>>>,
}

impl InterfaceTable {
    fn update(&self, device: &str, f: impl FnOnce(&mut DeviceView)) {
        if let Ok(mut map) = self.inner.write() {
            match map.get_mut(device) {
                Some(v) => f(v),
                None => f(map.entry(device.to_owned()).or_default()),
            }
        }
    }

    /// Sets one device's link state after a link poll. When the device has the same ports as
    /// before (nearly always), the views are updated in place: a poll allocates nothing here.
    /// `last_change` false leaves ifLastChange out (NETCONF's is a wall-clock time).
    pub fn set_link(
        &self,
        device: &str,
        snap: &LinkSnapshot,
        labels: &LabelMap,
        last_change: bool,
    ) {
        let view = |i: &u32, p: &crate::state::PortLink| PortView {
            admin: p.admin,
            oper: p.oper,
            last_change: p.last_change.filter(|_| last_change),
            labels: labels.get(i).cloned().unwrap_or_default(),
        };
        self.update(device, |v| {
            v.uptime = snap.uptime;
            if !v.ports.keys().eq(snap.ports.keys()) {
                v.ports = snap.ports.iter().map(|(i, p)| (*i, view(i, p))).collect();
                return;
            }
            for ((i, old), p) in v.ports.iter_mut().zip(snap.ports.values()) {
                old.admin = p.admin;
                old.oper = p.oper;
                old.last_change = p.last_change.filter(|_| last_change);
                match labels.get(i) {
                    Some(l) if !Arc::ptr_eq(l, &old.labels) => old.labels = l.clone(),
                    Some(_) => {}
                    None if *old.labels != Labels::default() => old.labels = Arc::default(),
                    None => {}
                }
            }
        });
    }

    /// Replaces one device's counters after a counters poll.
    pub fn set_counters(&self, device: &str, counters: Arc<crate::plans::counters::Rows>) {
        self.update(device, |v| v.counters = counters);
    }

    /// Replaces one device's PVIDs after a VLAN poll.
    pub fn set_pvids(&self, device: &str, pvids: BTreeMap<u32, u32>) {
        self.update(device, |v| v.pvids = pvids);
    }

    /// Forgets a device (it stopped answering: its last values would be stale).
    pub fn clear_device(&self, device: &str) {
        if let Ok(mut map) = self.inner.write() {
            map.remove(device);
        }
    }

    /// One port's view (tests and the trap confirmation path).
    pub fn port(&self, device: &str, if_index: u32) -> Option<PortView> {
        let map = self.inner.read().ok()?;
        map.get(device)?.ports.get(&if_index).cloned()
    }
}

type Getter = fn(&PortView) -> Option<i64>;

fn port_labels<'a>(
    device: &'a str,
    if_index: &'a str,
    port: &'a PortView,
) -> [(&'static str, &'a str); 5] {
    [
        ("device", device),
        ("ifAlias", &*port.labels.alias),
        ("ifDescr", &*port.labels.descr),
        ("ifIndex", if_index),
        ("ifName", &*port.labels.name),
    ]
}

const PORT_METRICS: [(&str, &str, Getter); 3] = [
    (
        "ifAdminStatus",
        "The desired state of the interface. - 1.3.6.1.2.1.2.2.1.7",
        |p| Some(p.admin),
    ),
    (
        "ifOperStatus",
        "The current operational state of the interface. - 1.3.6.1.2.1.2.2.1.8",
        |p| Some(p.oper),
    ),
    (
        "ifLastChange",
        "The value of sysUpTime at the time the interface entered its current operational state. - 1.3.6.1.2.1.2.2.1.9",
        |p| p.last_change.map(i64::from),
    ),
];

impl Collector for InterfaceTable {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(map) = self.inner.read() else {
            return Ok(());
        };
        let mut devices: Vec<&String> = map.keys().collect();
        devices.sort();
        for (name, help, get) in PORT_METRICS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for device in &devices {
                let Some(view) = map.get(*device) else {
                    continue;
                };
                for (if_index, port) in &view.ports {
                    let Some(v) = get(port) else { continue };
                    let idx = if_index.to_string();
                    let labels = port_labels(device, &idx, port);
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        // Counters keep snmp_exporter's names (`ifHCInOctets`, not `..._total`), so they are
        // declared `unknown`: OpenMetrics would otherwise demand the `_total` suffix, and
        // rate() works the same on them.
        for (c, col) in crate::plans::counters::COLUMNS.iter().enumerate() {
            let kind = match col.kind {
                crate::plans::counters::Kind::Gauge => MetricType::Gauge,
                _ => MetricType::Unknown,
            };
            let mut family = encoder.encode_descriptor(col.name, col.help, None, kind)?;
            for device in &devices {
                let Some(view) = map.get(*device) else {
                    continue;
                };
                for (if_index, values) in view.counters.iter() {
                    let (Some(v), Some(port)) = (values.get(c), view.ports.get(&if_index)) else {
                        continue;
                    };
                    let idx = if_index.to_string();
                    let labels = port_labels(device, &idx, port);
                    family.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "dot1qPvid",
            "The PVID, the VLAN-ID assigned to untagged frames or Priority-Tagged frames received on this port. - 1.3.6.1.2.1.17.7.1.4.5.1.1",
            None,
            MetricType::Gauge,
        )?;
        for device in &devices {
            let Some(view) = map.get(*device) else {
                continue;
            };
            for (if_index, pvid) in &view.pvids {
                let Some(port) = view.ports.get(if_index) else {
                    continue;
                };
                let idx = if_index.to_string();
                family
                    .encode_family(&port_labels(device, &idx, port))?
                    .encode_gauge(pvid)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "sysUpTime",
            "The time (in hundredths of a second) since the network management portion of the system was last re-initialized. - 1.3.6.1.2.1.1.3",
            None,
            MetricType::Gauge,
        )?;
        for device in devices {
            if let Some(up) = map.get(device).and_then(|v| v.uptime) {
                ConstGauge::new(i64::from(up))
                    .encode(family.encode_family(&[("device", device.as_str())])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn renders_like_snmp_exporter() {
        let t = InterfaceTable::default();
        let snap = |oper: i64| LinkSnapshot {
            uptime: Some(1234),
            if_number: Some(1),
            ports: [(
                49,
                crate::state::PortLink {
                    admin: 1,
                    oper,
                    last_change: Some(4549),
                },
            )]
            .into(),
        };
        let labels: LabelMap = [(
            49,
            Arc::new(Labels {
                name: "Te1/1/1".into(),
                alias: "uplink: \"dist1\"".into(),
                descr: "TenGigabitEthernet1/1/1".into(),
            }),
        )]
        .into();
        // First the device without labels, then with them and a changed state: the views
        // are updated in place and take the shared labels.
        t.set_link("a-b12-01", &snap(1), &LabelMap::new(), true);
        assert_eq!(&*t.port("a-b12-01", 49).unwrap().labels.name, "");
        t.set_link("a-b12-01", &snap(2), &labels, true);
        let p = t.port("a-b12-01", 49).unwrap();
        assert!(
            Arc::ptr_eq(&p.labels, &labels[&49]),
            "labels are shared, not copied"
        );
        assert_eq!((p.oper, p.last_change), (2, Some(4549)));
        t.set_link("a-b12-01", &snap(2), &labels, false);
        assert_eq!(t.port("a-b12-01", 49).unwrap().last_change, None);
        t.set_link("a-b12-01", &snap(2), &labels, true);
        let mut reg = Registry::default();
        reg.register_collector(Box::new(t.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("# HELP ifOperStatus The current operational state of the interface."),
            "{out}"
        );
        assert!(out.contains(
            "ifOperStatus{device=\"a-b12-01\",ifAlias=\"uplink: \\\"dist1\\\"\",ifDescr=\"TenGigabitEthernet1/1/1\",ifIndex=\"49\",ifName=\"Te1/1/1\"} 2"
        ), "{out}");
        assert!(out.contains("sysUpTime{device=\"a-b12-01\"} 1234"), "{out}");
        t.clear_device("a-b12-01");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(!out.contains("ifOperStatus{"), "{out}");
    }
}
