//! Which role a port has, as the collector sees it.

use cnaas_shared::Event;
use cnaas_shared::role::PortRole;

use crate::config::Inventory;

/// The role of the port an event is about: the inventory (by ifName, then ifIndex), then the
/// collector's ifAlias patterns, then the role the agent sent, else `access`. `None` for
/// device events.
pub fn resolve_role(event: &Event, inventory: &Inventory) -> Option<PortRole> {
    let if_index = event.if_index?;
    let device = inventory.devices.get(&event.device);
    if let Some(d) = device {
        if let Some(r) = event.if_name.as_ref().and_then(|n| d.ports.get(n)) {
            return Some(*r);
        }
        if let Some(r) = d.ports.get(&if_index.to_string()) {
            return Some(*r);
        }
    }
    if let Some(r) = event
        .if_alias
        .as_deref()
        .and_then(|a| inventory.roles.match_alias(a))
    {
        return Some(r);
    }
    Some(event.role().unwrap_or(PortRole::Access))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::InventoryDevice;
    use cnaas_shared::role::{RolePatterns, RolePatternsConfig};
    use cnaas_shared::{EventKind, Source};
    use serde_json::json;

    #[test]
    fn order_of_sources() {
        let mut inv = Inventory {
            roles: RolePatterns::build(&RolePatternsConfig {
                uplink: vec!["(?i)^uplink".into()],
                ..Default::default()
            })
            .unwrap(),
            ..Default::default()
        };
        inv.devices.insert(
            "a1".into(),
            InventoryDevice {
                ports: [
                    ("Gi1/0/1".to_owned(), PortRole::Infrastructure),
                    ("5".to_owned(), PortRole::Downlink),
                ]
                .into(),
                ..Default::default()
            },
        );
        let ev = |name: &str, idx: u32, alias: Option<&str>, agent_role: Option<&str>| {
            let mut e = Event::new("s", "a1", EventKind::LinkDown, Source::Poll);
            e.if_index = Some(idx);
            e.if_name = Some(name.into());
            e.if_alias = alias.map(Into::into);
            if let Some(r) = agent_role {
                e.attrs.insert("role".into(), json!(r));
            }
            e
        };
        assert_eq!(
            resolve_role(&ev("Gi1/0/1", 1, Some("uplink"), None), &inv),
            Some(PortRole::Infrastructure)
        );
        assert_eq!(
            resolve_role(&ev("Gi1/0/5", 5, None, None), &inv),
            Some(PortRole::Downlink)
        );
        assert_eq!(
            resolve_role(&ev("Te1/1/2", 50, Some("Uplink: d2"), Some("access")), &inv),
            Some(PortRole::Uplink)
        );
        assert_eq!(
            resolve_role(
                &ev("Gi1/0/9", 9, Some("room"), Some("infrastructure")),
                &inv
            ),
            Some(PortRole::Infrastructure)
        );
        assert_eq!(
            resolve_role(&ev("Gi1/0/9", 9, Some("room"), None), &inv),
            Some(PortRole::Access)
        );
        let device_event = Event::new("s", "a1", EventKind::DeviceUnreachable, Source::Poll);
        assert_eq!(resolve_role(&device_event, &inv), None);
    }
}
