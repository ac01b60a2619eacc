//! Runs the agent: the HTTP endpoint, the publisher and one task per device, and stops them
//! in order on shutdown (pollers first, then the publisher drains, then HTTP).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use cnaas_shared::runtime::{self, HealthFn};

use crate::config::{AgentConfig, Reachability};
use crate::metrics::{AgentMetrics, InterfaceTable};
use crate::plans::{self, Shared};
use crate::publish;
use crate::snmp::Credentials;
use crate::spool::Spool;
use crate::traps::{self, Router, Source as TrapSource, TrapAuth};

/// Descriptors kept free beside one socket per device: spool, MQTT, HTTP, the trap listener,
/// NETCONF sessions, ICMP.
const FD_RESERVE: u64 = cnaas_shared::runtime::FD_RESERVE;

/// Whether every device may keep its socket open: raises the soft limit on open files to the
/// hard limit (as Go's runtime does; systemd's default soft limit is 1,024) and checks that
/// one socket per device fits.
fn keep_sockets(devices: usize) -> bool {
    let soft = cnaas_shared::runtime::raise_open_files_limit();
    let need = u64::try_from(devices)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_RESERVE);
    let keep = soft.is_none_or(|n| n >= need);
    if !keep {
        tracing::warn!(
            open_files_limit = ?soft,
            devices,
            "Too few file descriptors for a socket per device: sockets are opened per poll (more CPU). Raise LimitNOFILE."
        );
    }
    keep
}

/// Says what the spool's start-up check found: a damaged file or a lost WAL is an error in
/// the log and `cnaas_agent_spool_lost_at_start` (alerted on), never silence.
fn report_spool(r: &crate::spool::StartReport, metrics: &AgentMetrics) {
    let Some(problem) = &r.damaged else {
        return;
    };
    // -1: some were lost, how many could not be counted.
    metrics.spool_lost_at_start.set(if r.lost_uncounted {
        -1
    } else {
        i64::try_from(r.lost).unwrap_or(i64::MAX)
    });
    let kept = r.kept.as_ref().map(|p| p.display().to_string());
    if r.lost_uncounted {
        tracing::error!(problem = %problem, salvaged = r.salvaged, kept = ?kept, "The spool was damaged: the events that could be read are carried over; an unknown number could not be read and are lost unless they were published before.");
    } else {
        tracing::error!(problem = %problem, salvaged = r.salvaged, lost = r.lost, kept = ?kept, "The spool was damaged: the events that could be read are carried over; up to `lost` events could not be given back and were never published.");
    }
}

/// Runs until `token` is cancelled, then drains and returns.
pub async fn run(mut cfg: AgentConfig, token: CancellationToken) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = AgentMetrics::register(&mut registry);
    let table = InterfaceTable::default();
    registry.register_collector(Box::new(table.clone()));

    let listener = TcpListener::bind(cfg.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} for /metrics", cfg.metrics_listen))?;
    let spool = Arc::new(
        Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)
            .with_context(|| format!("cannot open the spool in {}", cfg.spool_dir.display()))?,
    );
    report_spool(spool.start_report(), &metrics);
    let (publisher, connection, publish_task) =
        publish::spawn(&cfg, metrics.clone(), spool).context("cannot set up the MQTT publisher")?;

    // CNaaS-NMS's managed devices are polled too: read once now (a failure leaves the file's
    // devices and is retried at the next refresh), then watched.
    let file_devices: HashSet<String> = cfg.devices.iter().map(|d| d.name.clone()).collect();
    let mut from_source: HashMap<String, CancellationToken> = HashMap::new();
    let source = match cfg.device_source.clone() {
        None => None,
        Some(src) => {
            let client = cnaas_shared::cnaas_nms::NmsClient::new(src.target.clone())
                .context("cannot set up the CNaaS-NMS client")?;
            let polled = match crate::source::read(&src, &client, &file_devices).await {
                Ok(devices) => {
                    tracing::info!(devices = devices.len(), "Devices read from CNaaS-NMS.");
                    metrics.inventory_ok(devices.len());
                    devices
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CNaaS-NMS could not be read at start; polling the file's devices, trying again at the next refresh.");
                    metrics.inventory_failed(&e.to_string());
                    BTreeMap::new()
                }
            };
            for d in polled.values() {
                from_source.insert(d.name.clone(), token.child_token());
                cfg.devices.push(d.clone());
            }
            Some((src, client, polled))
        }
    };
    let names = Arc::new(std::sync::Mutex::new(
        cfg.devices
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<String>>(),
    ));
    // False once the trap receiver has stopped on its own (it never should).
    let traps_alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let health: HealthFn = {
        let traps_alive = traps_alive.clone();
        let connection = connection.clone();
        let metrics = metrics.clone();
        let names = names.clone();
        Arc::new(move || {
            let (mut up, mut link_polls) = (0usize, 0u64);
            let names = names.lock().map(|n| n.clone()).unwrap_or_default();
            let devices_total = names.len();
            let source_error = metrics
                .inventory_source_error
                .lock()
                .ok()
                .and_then(|e| e.clone());
            for n in &names {
                let label = crate::metrics::DeviceLabel { device: n.clone() };
                if metrics.device_up.get(&label).is_some_and(|g| g.get() == 1) {
                    up += 1;
                }
                link_polls += metrics.link_polls.get(&label).map_or(0, |c| c.get());
            }
            let mqtt = connection.is_connected();
            let traps = traps_alive.load(std::sync::atomic::Ordering::Relaxed);
            // The poll count is here too, so a check of the poll rate need not render the whole
            // interface table (millions of series at thousands of switches).
            (
                mqtt && traps,
                serde_json::json!({ "mqtt_connected": mqtt, "traps_receiving": traps, "devices": devices_total, "devices_up": up, "link_polls": link_polls, "inventory_source_error": source_error }),
            )
        })
    };
    let http_token = CancellationToken::new();
    // Only Prometheus and health checks come here: a few connections, so that the devices'
    // sockets keep their descriptors.
    let http = tokio::spawn(runtime::serve_with(
        listener,
        runtime::observability_router(Arc::new(registry), health),
        http_token.clone(),
        runtime::HttpLimits {
            max_connections: 64,
            per_peer: 16,
            ..runtime::HttpLimits::for_process()
        },
    ));
    tracing::info!(agent = %cfg.id, devices = cfg.devices.len(), metrics = %cfg.metrics_listen, "Agent started.");

    // One ICMP socket for every device, if the process may open one (root or a ping group).
    let needs_icmp = cfg
        .devices
        .iter()
        .any(|d| d.reachability != Reachability::Snmp);
    let icmp = if needs_icmp {
        match surge_ping::Client::new(&surge_ping::Config::default()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot open an ICMP socket; reachability is probed with SNMP.");
                None
            }
        }
    } else {
        None
    };
    let shared = Arc::new(Shared {
        icmp,
        agent: cfg.id.clone(),
        roles: Arc::new(cfg.roles.clone()),
        publisher,
        metrics,
        table,
        limit: Arc::new(Semaphore::new(cfg.max_concurrent)),
        keep_sockets: keep_sockets(cfg.devices.len()),
    });
    let mut hints = HashMap::new();
    let trap_task = match cfg.traps_listen {
        Some(listen) => {
            let socket = UdpSocket::bind(listen)
                .await
                .with_context(|| format!("cannot listen for traps on {listen}"))?;
            let mut router = Router::new(cfg.traps_quiet);
            for d in &cfg.devices {
                // Traps are SNMP: a device polled over NETCONF only sends none we could read.
                let auth = match &d.credentials {
                    Some(Credentials::V2c { community }) => TrapAuth::Community(community.clone()),
                    Some(Credentials::V3(v3)) => TrapAuth::Usm(v3.clone()),
                    None => continue,
                };
                let ip = tokio::net::lookup_host(d.address.as_str())
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .map(|a| a.ip());
                let Some(ip) = ip else {
                    tracing::warn!(device = %d.name, address = %d.address, "Cannot resolve the device; its traps will be refused.");
                    continue;
                };
                let (tx, rx) = mpsc::channel(8);
                router.add(
                    ip,
                    TrapSource {
                        name: d.name.clone(),
                        auth,
                        hints: tx,
                    },
                );
                hints.insert(d.name.clone(), rx);
            }
            tracing::info!(listen = %listen, "Receiving traps.");
            // Supervised: should the receiver ever stop before shutdown, that is an error in
            // the log and /healthz, not silence.
            let receiver = tokio::spawn(traps::run(
                socket,
                router,
                shared.metrics.traps.clone(),
                token.child_token(),
            ));
            let token = token.clone();
            let alive = traps_alive.clone();
            Some(tokio::spawn(async move {
                let ended = receiver.await;
                if !token.is_cancelled() {
                    alive.store(false, std::sync::atomic::Ordering::Relaxed);
                    match ended {
                        Err(e) => {
                            tracing::error!(error = %e, "The trap receiver failed: traps are no longer received (/healthz degraded). Restart the agent.")
                        }
                        Ok(()) => tracing::error!(
                            "The trap receiver stopped: traps are no longer received (/healthz degraded). Restart the agent."
                        ),
                    }
                }
            }))
        }
        None => None,
    };
    let mut pollers = JoinSet::new();
    for device in cfg.devices {
        let rx = hints.remove(&device.name);
        let own = from_source
            .get(&device.name)
            .cloned()
            .unwrap_or_else(|| token.child_token());
        pollers.spawn(plans::run_device(device, shared.clone(), rx, own));
    }
    let (changes_tx, mut changes) = mpsc::channel(64);
    let watcher = source.map(|(src, client, polled)| {
        tokio::spawn(crate::source::watch(
            src,
            client,
            file_devices,
            polled,
            changes_tx,
            shared.metrics.clone(),
            token.child_token(),
        ))
    });
    // Devices CNaaS-NMS adds are polled (traps from them are routed after a restart); those
    // it removes stop.
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            change = changes.recv() => match change {
                None => token.cancelled().await,
                Some(crate::source::Change::Add(device)) => {
                    let own = token.child_token();
                    from_source.insert(device.name.clone(), own.clone());
                    if let Ok(mut n) = names.lock() {
                        n.push(device.name.clone());
                    }
                    pollers.spawn(plans::run_device(*device, shared.clone(), None, own));
                }
                Some(crate::source::Change::Remove(name)) => {
                    if let Some(t) = from_source.remove(&name) {
                        t.cancel();
                    }
                    if let Ok(mut n) = names.lock() {
                        n.retain(|x| x != &name);
                    }
                }
            },
        }
    }
    // Only the device tasks may keep the publisher alive now.
    drop(shared);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    while let Some(res) = pollers.join_next().await {
        if let Err(e) = res {
            tracing::error!(error = %e, "A device task failed.");
        }
    }
    if let Some(t) = trap_task
        && let Err(e) = t.await
    {
        tracing::error!(error = %e, "The trap task failed.");
    }
    if let Err(e) = publish_task.await {
        tracing::error!(error = %e, "The publisher task failed.");
    }
    http_token.cancel();
    if let Err(e) = http.await {
        tracing::error!(error = %e, "The HTTP task failed.");
    }
    tracing::info!("Agent stopped.");
    Ok(())
}
