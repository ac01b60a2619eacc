//! CNaaS-NMS as the inventory source (`[inventory.cnaas_nms]`): every `refresh` the collector
//! reads its REST API (v1.0) and puts a new inventory in force:
//!
//! - `GET /api/v1.0/devices` (paged with `page`/`per_page`, `X-Total-Count`): the devices in
//!   state `MANAGED`, with `device_type` ACCESS/DIST/CORE as their role;
//! - `GET /api/v1.0/device/{hostname}/interfaces` for each access switch: `configtype` as the
//!   port role (`ACCESS_UPLINK` uplink, `ACCESS_DOWNLINK` downlink, `MLAG_PEER`
//!   infrastructure, any other `ACCESS_*` access);
//! - `GET /api/v1.0/linknets`: the links, by device id and port;
//! - `GET /api/v1.0/mgmtdomains`: the distribution pairs.
//!
//! `[[device]]` entries of the TOML file override what CNaaS-NMS says (field by field, port by
//! port). A CNaaS-NMS that cannot be reached, answers an error, sends something that is not
//! its API's shape, or suddenly lists no devices at all, leaves the last good inventory in
//! force, and says so: a log line, `cnaas_collector_inventory_source_up 0`, and `/healthz`.
//! The JWT is sent as a bearer token and never logged.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::cnaas_nms::{NmsClient, NmsError, NmsTarget, data_list};
use cnaas_shared::role::PortRole;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{CnaasNmsConfig, DeviceRole, Inventory, LiveInventory};
use crate::correlate::topology::ExternalLink;
use crate::metrics::CollectorMetrics;

#[derive(Debug, Clone, Deserialize)]
struct NmsInterface {
    name: String,
    #[serde(default)]
    configtype: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct NmsLinknet {
    device_a_id: Option<i64>,
    device_a_port: Option<String>,
    device_b_id: Option<i64>,
    device_b_port: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct NmsMgmtdomain {
    device_a_id: Option<i64>,
    device_b_id: Option<i64>,
}

/// What one read of CNaaS-NMS gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    /// Managed devices: role, management address, port roles by interface name.
    pub devices: BTreeMap<String, ImportedDevice>,
    /// Links with ports.
    pub links: Vec<ExternalLink>,
    /// Distribution pairs.
    pub pairs: Vec<(String, String)>,
}

/// One managed device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedDevice {
    /// From `device_type`.
    pub role: Option<DeviceRole>,
    /// `management_ip`.
    pub management_ip: Option<String>,
    /// Port roles from `configtype`.
    pub ports: BTreeMap<String, PortRole>,
}

/// The role of a CNaaS-NMS `device_type`.
pub fn device_role(device_type: &str) -> Option<DeviceRole> {
    match device_type.to_ascii_uppercase().as_str() {
        "ACCESS" => Some(DeviceRole::Access),
        "DIST" => Some(DeviceRole::Distribution),
        "CORE" => Some(DeviceRole::Core),
        _ => None,
    }
}

/// The port role of an interface `configtype`.
pub fn port_role(configtype: &str) -> Option<PortRole> {
    let c = configtype.to_ascii_uppercase();
    match c.as_str() {
        "ACCESS_UPLINK" => Some(PortRole::Uplink),
        "ACCESS_DOWNLINK" => Some(PortRole::Downlink),
        "MLAG_PEER" => Some(PortRole::Infrastructure),
        _ if c.starts_with("ACCESS_") => Some(PortRole::Access),
        _ => None,
    }
}

/// A client of one CNaaS-NMS, for the inventory.
pub struct Client {
    nms: NmsClient,
}

impl Client {
    /// A client for `cfg` (secrets relative to `base_dir`).
    pub fn new(cfg: CnaasNmsConfig, base_dir: PathBuf) -> Result<Client, NmsError> {
        Ok(Client {
            nms: NmsClient::new(NmsTarget {
                url: cfg.url,
                token: cfg.token,
                timeout: cfg.timeout,
                base_dir,
            })?,
        })
    }

    /// Reads everything once.
    pub async fn fetch(&self) -> Result<Imported, NmsError> {
        let token = self.nms.token()?;
        let token = token.as_ref();
        let all = self.nms.devices(token).await?;
        let by_id: HashMap<i64, String> = all.iter().map(|d| (d.id, d.hostname.clone())).collect();
        let mut out = Imported::default();
        for d in &all {
            if !d.is_managed() {
                continue;
            }
            let role = d.device_type.as_deref().and_then(device_role);
            let mut dev = ImportedDevice {
                role,
                management_ip: d.management_ip.clone(),
                ports: BTreeMap::new(),
            };
            // Interfaces are kept by CNaaS-NMS for access switches only.
            if role == Some(DeviceRole::Access) {
                let path = format!("/api/v1.0/device/{}/interfaces", d.hostname);
                let (body, _) = self.nms.get(&path, token).await?;
                let list: Vec<NmsInterface> = data_list(&path, &body, "interfaces")?;
                for i in list {
                    if let Some(r) = i.configtype.as_deref().and_then(port_role) {
                        dev.ports.insert(i.name, r);
                    }
                }
            }
            out.devices.insert(d.hostname.clone(), dev);
        }
        let path = "/api/v1.0/linknets";
        let (body, _) = self.nms.get(path, token).await?;
        let links: Vec<NmsLinknet> = data_list(path, &body, "linknets")?;
        for l in links {
            let name = |id: Option<i64>| id.and_then(|i| by_id.get(&i).cloned());
            if let (Some(a), Some(b)) = (name(l.device_a_id), name(l.device_b_id)) {
                out.links.push(ExternalLink {
                    a,
                    a_port: l.device_a_port,
                    b,
                    b_port: l.device_b_port,
                });
            }
        }
        let path = "/api/v1.0/mgmtdomains";
        let (body, _) = self.nms.get(path, token).await?;
        let domains: Vec<NmsMgmtdomain> = data_list(path, &body, "mgmtdomains")?;
        for m in domains {
            let name = |id: Option<i64>| id.and_then(|i| by_id.get(&i).cloned());
            if let (Some(a), Some(b)) = (name(m.device_a_id), name(m.device_b_id)) {
                out.pairs.push((a, b));
            }
        }
        Ok(out)
    }
}

/// The inventory in force: the TOML file's, with CNaaS-NMS's devices added under it (a
/// `[[device]]` entry wins field by field and port by port).
pub fn merge(base: &Inventory, imported: &Imported, cfg: &CnaasNmsConfig) -> Inventory {
    let mut inv = base.clone();
    for (name, d) in &imported.devices {
        let entry = inv.devices.entry(name.clone()).or_default();
        let toml = base.devices.get(name);
        if toml.and_then(|t| t.role).is_none() {
            entry.role = d.role;
        }
        if toml.and_then(|t| t.customer.as_ref()).is_none() {
            entry.customer.clone_from(&cfg.customer);
        }
        if toml.and_then(|t| t.site.as_ref()).is_none() {
            entry.site.clone_from(&cfg.site);
        }
        for (port, role) in &d.ports {
            entry.ports.entry(port.clone()).or_insert(*role);
        }
    }
    inv.links.extend(imported.links.iter().cloned());
    inv.pairs.extend(imported.pairs.iter().cloned());
    inv
}

/// Reads CNaaS-NMS every `refresh` until `token` is cancelled, putting each good read in
/// force on `live` and keeping the last good one on any failure.
pub async fn run(
    cfg: CnaasNmsConfig,
    base_dir: PathBuf,
    base: Arc<Inventory>,
    live: Arc<LiveInventory>,
    metrics: CollectorMetrics,
    token: CancellationToken,
) {
    let client = match Client::new(cfg.clone(), base_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot set up the CNaaS-NMS client; the inventory is the file's only.");
            return;
        }
    };
    let mut last_good: Option<usize> = None;
    loop {
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = client.fetch() => r,
            () = token.cancelled() => return,
        };
        let result = result.and_then(|imported| match last_good {
            Some(n) if n > 0 && imported.devices.is_empty() => Err(NmsError::Emptied(n)),
            _ => Ok(imported),
        });
        match result {
            Ok(imported) => {
                let merged = merge(&base, &imported, &cfg);
                tracing::info!(
                    devices = imported.devices.len(),
                    links = imported.links.len(),
                    pairs = imported.pairs.len(),
                    ms = started.elapsed().as_millis(),
                    "Inventory read from CNaaS-NMS."
                );
                metrics.inventory_ok(imported.devices.len());
                last_good = Some(imported.devices.len());
                live.set(merged);
            }
            Err(e) => {
                tracing::warn!(error = %e, kept = ?last_good, "CNaaS-NMS could not be read; the last good inventory stays in force.");
                metrics.inventory_failed(&e.to_string());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(cfg.refresh.max(Duration::from_secs(1))) => {}
            () = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::InventoryDevice;

    #[test]
    fn types_and_configtypes() {
        assert_eq!(device_role("DIST"), Some(DeviceRole::Distribution));
        assert_eq!(device_role("access"), Some(DeviceRole::Access));
        assert_eq!(device_role("UNKNOWN"), None);
        assert_eq!(port_role("ACCESS_UPLINK"), Some(PortRole::Uplink));
        assert_eq!(port_role("ACCESS_DOWNLINK"), Some(PortRole::Downlink));
        assert_eq!(port_role("MLAG_PEER"), Some(PortRole::Infrastructure));
        assert_eq!(port_role("ACCESS_AUTO"), Some(PortRole::Access));
        assert_eq!(port_role("ACCESS_UNTAGGED"), Some(PortRole::Access));
        assert_eq!(port_role("CUSTOM"), None);
    }

    #[test]
    fn the_file_wins_field_by_field() {
        let mut base = Inventory::default();
        base.devices.insert(
            "a1".into(),
            InventoryDevice {
                customer: Some("uni-x".into()),
                ports: [("Ethernet1".to_owned(), PortRole::Infrastructure)].into(),
                ..Default::default()
            },
        );
        let mut imported = Imported::default();
        imported.devices.insert(
            "a1".into(),
            ImportedDevice {
                role: Some(DeviceRole::Access),
                management_ip: None,
                ports: [
                    ("Ethernet1".to_owned(), PortRole::Access),
                    ("Ethernet2".to_owned(), PortRole::Uplink),
                ]
                .into(),
            },
        );
        imported
            .devices
            .insert("d1".into(), ImportedDevice::default());
        let cfg = CnaasNmsConfig {
            url: "http://x".into(),
            token: cnaas_shared::config::SecretSource {
                file: None,
                env: None,
            },
            refresh: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            customer: Some("uni-a".into()),
            site: None,
        };
        let inv = merge(&base, &imported, &cfg);
        let a1 = &inv.devices["a1"];
        assert_eq!(a1.customer.as_deref(), Some("uni-x"));
        assert_eq!(a1.role, Some(DeviceRole::Access));
        assert_eq!(a1.ports["Ethernet1"], PortRole::Infrastructure);
        assert_eq!(a1.ports["Ethernet2"], PortRole::Uplink);
        assert_eq!(inv.devices["d1"].customer.as_deref(), Some("uni-a"));
    }
}
