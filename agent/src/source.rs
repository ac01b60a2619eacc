//! Devices from CNaaS-NMS (`[inventory.cnaas_nms]`): the agent polls every device CNaaS-NMS
//! manages (state `MANAGED`, of the configured `device_type`s) at its `management_ip`, with
//! the section's SNMP credentials and `[defaults]`; a `[[device]]` entry of the same name wins.
//! The list is read at start and every `refresh`: a device that appears is polled from then
//! on, one that goes is no longer polled. A CNaaS-NMS that cannot be read, answers an error or
//! suddenly lists nothing changes nothing (the devices being polled stay polled) and says so:
//! a log line, `cnaas_agent_inventory_source_up 0`, `/healthz`.

use std::collections::{BTreeMap, HashSet};

use cnaas_shared::cnaas_nms::{NmsClient, NmsDevice, NmsError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Device, DeviceSource};
use crate::metrics::AgentMetrics;

/// A change of the device list.
#[derive(Debug)]
pub enum Change {
    /// Poll this device from now on.
    Add(Box<Device>),
    /// Stop polling this device.
    Remove(String),
}

/// The devices of a CNaaS-NMS device list the agent polls (`skip`: names the file has).
pub fn devices_from(
    source: &DeviceSource,
    list: &[NmsDevice],
    skip: &HashSet<String>,
) -> BTreeMap<String, Device> {
    let mut out = BTreeMap::new();
    for d in list {
        let kind = d.device_type.as_deref().unwrap_or("").to_ascii_uppercase();
        if !d.is_managed() || !source.types.contains(&kind) || skip.contains(&d.hostname) {
            continue;
        }
        if !cnaas_shared::topics::is_valid_level(&d.hostname) {
            tracing::warn!(device = %d.hostname, "CNaaS-NMS device name cannot be used in an MQTT topic; not polled.");
            continue;
        }
        let Some(ip) = d
            .management_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        else {
            tracing::warn!(device = %d.hostname, "CNaaS-NMS lists no usable management_ip; not polled.");
            continue;
        };
        let mut device = source.template.clone();
        device.name.clone_from(&d.hostname);
        device.address = std::net::SocketAddr::new(ip, source.port).to_string();
        out.insert(d.hostname.clone(), device);
    }
    out
}

/// Reads the list once.
pub async fn read(
    source: &DeviceSource,
    client: &NmsClient,
    skip: &HashSet<String>,
) -> Result<BTreeMap<String, Device>, NmsError> {
    let token = client.token()?;
    let list = client.devices(token.as_ref()).await?;
    Ok(devices_from(source, &list, skip))
}

/// Reads the list every `refresh` and sends what changed against `polled`, until `token`
/// is cancelled.
pub async fn watch(
    source: DeviceSource,
    client: NmsClient,
    skip: HashSet<String>,
    mut polled: BTreeMap<String, Device>,
    tx: mpsc::Sender<Change>,
    metrics: AgentMetrics,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(source.refresh) => {}
            () = token.cancelled() => return,
        }
        let result = tokio::select! {
            r = read(&source, &client, &skip) => r,
            () = token.cancelled() => return,
        };
        let now = match result {
            Ok(now) if now.is_empty() && !polled.is_empty() => {
                let e = NmsError::Emptied(polled.len());
                tracing::warn!(error = %e, "CNaaS-NMS could not be read; the devices being polled stay polled.");
                metrics.inventory_failed(&e.to_string());
                continue;
            }
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "CNaaS-NMS could not be read; the devices being polled stay polled.");
                metrics.inventory_failed(&e.to_string());
                continue;
            }
        };
        metrics.inventory_ok(now.len());
        for name in polled.keys() {
            if !now.contains_key(name) {
                tracing::info!(device = %name, "No longer in CNaaS-NMS: not polled any more.");
                if tx.send(Change::Remove(name.clone())).await.is_err() {
                    return;
                }
            }
        }
        for (name, d) in &now {
            let same = polled.get(name).is_some_and(|old| old.address == d.address);
            if !same {
                if polled.contains_key(name) {
                    let _ = tx.send(Change::Remove(name.clone())).await;
                }
                tracing::info!(device = %name, address = %d.address, "From CNaaS-NMS: polled from now on.");
                if tx.send(Change::Add(Box::new(d.clone()))).await.is_err() {
                    return;
                }
            }
        }
        polled = now;
    }
}
