//! The first-cut rules: watched port down / device unreachable open an incident; link up,
//! an administrative shutdown of the port, or the device answering again resolve it.

use cnaas_shared::role::PortRole;
use cnaas_shared::{Event, EventKind};

use super::Decision;
use crate::config::Inventory;
use crate::store::{AlarmKind, NewIncident, alarm_key};

/// Severity of a port alarm by role (1 critical ... 5 information).
fn port_severity(role: PortRole) -> u8 {
    match role {
        PortRole::Uplink => 2,
        PortRole::Downlink | PortRole::Infrastructure => 3,
        PortRole::Access => 5,
    }
}

fn port_label(event: &Event) -> String {
    let idx = event.if_index.map_or_else(String::new, |i| i.to_string());
    let name = event
        .if_name
        .clone()
        .unwrap_or_else(|| format!("ifIndex {idx}"));
    match event.if_alias.as_deref().filter(|a| !a.is_empty()) {
        Some(alias) => format!("{name} ({alias})"),
        None => name,
    }
}

/// Decides what an event does to incidents.
pub fn decide(event: &Event, role: Option<PortRole>, inventory: &Inventory) -> Decision {
    let inv = inventory.devices.get(&event.device);
    let new = |kind, severity, summary: String| NewIncident {
        kind,
        key: alarm_key(
            &event.device,
            if kind == AlarmKind::LinkDown {
                event.if_index
            } else {
                None
            },
            kind,
        ),
        severity,
        device: event.device.clone(),
        if_index: event.if_index,
        if_name: event.if_name.clone(),
        if_alias: event.if_alias.clone(),
        role,
        site: inv.and_then(|d| d.site.clone()),
        customer: inv.and_then(|d| d.customer.clone()),
        summary,
    };
    match event.kind {
        EventKind::LinkDown => match role {
            Some(r) if r.is_watched() => {
                let what = match r {
                    PortRole::Uplink => "Uplink",
                    PortRole::Downlink => "Downlink",
                    _ => "Infrastructure port",
                };
                Decision::Open(new(
                    AlarmKind::LinkDown,
                    port_severity(r),
                    format!("{what} {} on {} is down", port_label(event), event.device),
                ))
            }
            _ => Decision::Record,
        },
        EventKind::LinkUp | EventKind::AdminDown => Decision::Resolve {
            key: alarm_key(&event.device, event.if_index, AlarmKind::LinkDown),
        },
        EventKind::DeviceUnreachable => Decision::Open(new(
            AlarmKind::DeviceDown,
            2,
            format!("Device {} does not answer", event.device),
        )),
        EventKind::DeviceReachable => Decision::Resolve {
            key: alarm_key(&event.device, None, AlarmKind::DeviceDown),
        },
        EventKind::AdminUp | EventKind::VlanChanged | EventKind::DeviceRebooted => Decision::Record,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::InventoryDevice;
    use cnaas_shared::Source;

    fn inv() -> Inventory {
        let mut i = Inventory::default();
        i.devices.insert(
            "a1".into(),
            InventoryDevice {
                customer: Some("uni-b".into()),
                site: Some("b12".into()),
                ..Default::default()
            },
        );
        i
    }

    fn port(kind: EventKind) -> Event {
        let mut e = Event::new("s", "a1", kind, Source::Poll);
        e.if_index = Some(49);
        e.if_name = Some("Te1/1/1".into());
        e.if_alias = Some("uplink: d1".into());
        e
    }

    #[test]
    fn table() {
        let key = alarm_key("a1", Some(49), AlarmKind::LinkDown);
        let dkey = alarm_key("a1", None, AlarmKind::DeviceDown);
        let cases: Vec<(Event, Option<PortRole>, &str)> = vec![
            (port(EventKind::LinkDown), Some(PortRole::Uplink), "open"),
            (port(EventKind::LinkDown), Some(PortRole::Downlink), "open"),
            (
                port(EventKind::LinkDown),
                Some(PortRole::Infrastructure),
                "open",
            ),
            (port(EventKind::LinkDown), Some(PortRole::Access), "record"),
            (port(EventKind::LinkUp), Some(PortRole::Access), "resolve"),
            (
                port(EventKind::AdminDown),
                Some(PortRole::Uplink),
                "resolve",
            ),
            (port(EventKind::AdminUp), Some(PortRole::Uplink), "record"),
            (
                Event::new("s", "a1", EventKind::DeviceUnreachable, Source::Poll),
                None,
                "open",
            ),
            (
                Event::new("s", "a1", EventKind::DeviceReachable, Source::Poll),
                None,
                "resolve",
            ),
            (
                Event::new("s", "a1", EventKind::DeviceRebooted, Source::Poll),
                None,
                "record",
            ),
        ];
        for (e, role, want) in cases {
            let got = decide(&e, role, &inv());
            let name = match &got {
                Decision::Open(_) => "open",
                Decision::Resolve { .. } => "resolve",
                Decision::Record => "record",
            };
            assert_eq!(name, want, "{} {role:?}", e.kind);
            if let Decision::Resolve { key: k } = &got {
                assert!(k == &key || k == &dkey, "{k}");
            }
        }
    }

    #[test]
    fn incident_fields_from_event_and_inventory() {
        let Decision::Open(n) = decide(&port(EventKind::LinkDown), Some(PortRole::Uplink), &inv())
        else {
            panic!("expected an incident");
        };
        assert_eq!(n.key, "a1|49|link_down");
        assert_eq!(n.severity, 2);
        assert_eq!(n.customer.as_deref(), Some("uni-b"));
        assert_eq!(n.site.as_deref(), Some("b12"));
        assert_eq!(n.summary, "Uplink Te1/1/1 (uplink: d1) on a1 is down");
        let Decision::Open(d) = decide(
            &Event::new("s", "x9", EventKind::DeviceUnreachable, Source::Poll),
            None,
            &inv(),
        ) else {
            panic!("expected an incident");
        };
        assert_eq!(d.key, "x9||device_down");
        assert_eq!(d.customer, None);
    }
}
