//! One task per device. It runs the device's plans one after the other, each when it is due,
//! plus trap-triggered confirmations, so the device never has more than one request in flight.
//! Before each plan it takes a permit from the agent-wide semaphore.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::Source;
use surge_ping::{PingIdentifier, PingSequence};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::counters::{self, Totals};
use super::{
    LabelMap, Labels, Shared, event_for, jitter, labels_from, link_snapshot, port_role,
    share_labels, topology, vlan,
};
use crate::config::{Device, Reachability};
use crate::metrics::{DeviceLabel, DeviceSeries, PlanLabel};
use crate::netconf::{self, interfaces::Indexer};
use crate::snmp::oid;
use crate::snmp::{ClientStats, SnmpClient, SnmpValue, Target};
use crate::state::{Change, DeviceState, LinkSnapshot, PortLink};
use crate::traps::Hint;

/// Runs one device's plans until `token` is cancelled. `hints` carries trap-triggered
/// re-polls, if a trap listener runs.
pub async fn run_device(
    device: Device,
    shared: Arc<Shared>,
    hints: Option<mpsc::Receiver<Hint>>,
    token: CancellationToken,
) {
    // An async fn keeps its arguments for its whole life, so the task is built here and
    // boxed, and `run` holds only the box: one copy of the task's state per device, not three.
    let span = tracing::info_span!("device", device = %device.name);
    let prober = Prober::choose(&device, &shared)
        .instrument(span.clone())
        .await;
    Box::new(DeviceTask::new(device, shared, prober))
        .run(hints, token)
        .instrument(span)
        .await;
}

async fn next_hint(hints: &mut Option<mpsc::Receiver<Hint>>) -> Option<Hint> {
    match hints {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How reachability is probed.
enum Prober {
    Icmp(Arc<surge_ping::Client>, IpAddr),
    Snmp,
}

impl Prober {
    async fn choose(device: &Device, shared: &Shared) -> Prober {
        if device.reachability == Reachability::Snmp {
            return Prober::Snmp;
        }
        let ip = tokio::net::lookup_host(device.address.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip());
        match (&shared.icmp, ip) {
            (Some(client), Some(ip)) => Prober::Icmp(client.clone(), ip),
            _ => {
                if device.reachability == Reachability::Icmp {
                    tracing::warn!(
                        "ICMP echo is not possible here (no permission or no address); probing with SNMP."
                    );
                }
                Prober::Snmp
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Link,
    Counters,
    Vlan,
    Reach,
    Topology,
}

/// What the topology plan knows of a device (boxed: most of the time nothing changes).
#[derive(Default)]
struct TopologyState {
    /// The snapshot last sent (none yet: as if an empty one had been, so a device without
    /// LLDP and bundles sends nothing).
    sent: cnaas_shared::Neighbours,
    /// The bundle of each member port.
    bundle_of: HashMap<u32, cnaas_shared::BundleRef>,
    /// An aggregate's role from its members (an uplink bundle is an uplink).
    aggregate_role: HashMap<u32, cnaas_shared::PortRole>,
    /// A watched port changed: poll the topology soon.
    soon: Option<Instant>,
}

/// The next instant after `at` on the `interval` grid that is later than `now`: a plan that
/// overran skips the missed runs and keeps its phase.
fn advance(at: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = at + interval;
    if next <= now {
        let behind = now.duration_since(next).as_nanos();
        let steps = u32::try_from(behind / interval.as_nanos().max(1) + 1).unwrap_or(u32::MAX);
        next += interval.saturating_mul(steps);
    }
    next
}

/// A NETCONF device's polling session and what the plans keep between its answers.
struct Netconf {
    session: netconf::Session,
    /// Sessions opened that the metrics already count.
    reported_sessions: u64,
    indexer: Indexer,
    /// Wake-ups from the notification listener.
    wake: mpsc::Receiver<()>,
    wake_tx: Option<mpsc::Sender<()>>,
}

/// Why the device task woke up between its plans.
enum Wake {
    Trap(Hint),
    Notification,
}

async fn next_notification(nc: &mut Option<Box<Netconf>>) {
    match nc {
        Some(n) => {
            if n.wake.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

struct DeviceTask {
    device: Device,
    shared: Arc<Shared>,
    /// The SNMP client; none for a device polled over NETCONF only.
    client: Option<SnmpClient>,
    /// Boxed: most devices have none, and every task would carry its size.
    netconf: Option<Box<Netconf>>,
    prober: Prober,
    state: DeviceState,
    labels: LabelMap,
    labels_due: Option<Instant>,
    totals: Totals,
    rebooted_since_counters: bool,
    /// The publisher's connect count when this device last reported its full state.
    seen_connects: u64,
    if_number: Option<i64>,
    ping_seq: u16,
    snmp_only_warned: bool,
    reported: ClientStats,
    label: DeviceLabel,
    series: DeviceSeries,
    /// What `device_up` last said (set only when it changes).
    up: Option<bool>,
    topology: Box<TopologyState>,
}

impl DeviceTask {
    fn new(device: Device, shared: Arc<Shared>, prober: Prober) -> DeviceTask {
        let client = device.credentials.as_ref().map(|credentials| {
            SnmpClient::new(Target {
                addr: device.address.clone(),
                credentials: credentials.clone(),
                timeout: device.timeout,
                retries: device.retries,
                max_repetitions: device.max_repetitions,
            })
        });
        let netconf = device.netconf.as_ref().map(|t| {
            let (tx, rx) = mpsc::channel(1);
            Box::new(Netconf {
                session: netconf::Session::new(t.clone()),
                reported_sessions: 0,
                indexer: Indexer::default(),
                wake: rx,
                wake_tx: Some(tx),
            })
        });
        let label = DeviceLabel {
            device: device.name.clone(),
        };
        let series = shared
            .metrics
            .device_series(&label, client.is_some(), netconf.is_some());
        DeviceTask {
            device,
            shared,
            client,
            netconf,
            prober,
            state: DeviceState::default(),
            labels: HashMap::new(),
            labels_due: None,
            totals: Totals::default(),
            rebooted_since_counters: false,
            seen_connects: 0,
            if_number: None,
            ping_seq: 0,
            snmp_only_warned: false,
            reported: ClientStats::default(),
            series,
            up: None,
            label,
            topology: Box::default(),
        }
    }

    fn interval(&self, plan: Plan) -> Duration {
        match plan {
            Plan::Link => self.device.link_interval,
            Plan::Counters => self.device.counters_interval,
            Plan::Vlan => self.device.vlan_interval,
            Plan::Reach => self.device.reachability_interval,
            Plan::Topology => self.device.topology_interval,
        }
    }

    async fn run(
        mut self: Box<Self>,
        mut hints: Option<mpsc::Receiver<Hint>>,
        token: CancellationToken,
    ) {
        // The first link poll comes within 2 s of start (spread over that window), so the agent
        // knows every device's state soon after a restart; the other plans follow it.
        let now = Instant::now();
        let first = now
            + jitter(
                &self.device.name,
                self.device.link_interval.min(Duration::from_secs(2)),
            );
        let mut due = [
            (Plan::Link, first),
            (Plan::Counters, first + Duration::from_millis(500)),
            (Plan::Vlan, first + Duration::from_millis(1000)),
            (Plan::Reach, first + self.device.reachability_interval),
            (Plan::Topology, first + Duration::from_millis(1500)),
        ];
        tracing::info!(address = %self.device.address, interval = ?self.device.link_interval, netconf = self.netconf.is_some(), "Polling.");
        let listener = match (&self.device.netconf, &mut self.netconf) {
            (Some(target), Some(nc)) if target.notifications => nc.wake_tx.take().map(|tx| {
                tokio::spawn(
                    netconf::listen(
                        target.clone(),
                        nc.session.connects(),
                        tx,
                        token.child_token(),
                    )
                    .instrument(tracing::Span::current()),
                )
            }),
            _ => None,
        };
        loop {
            if let Some(soon) = self.topology.soon.take()
                && let Some(d) = due.iter_mut().find(|(p, _)| *p == Plan::Topology)
            {
                d.1 = d.1.min(soon);
            }
            let slot = (0..due.len()).min_by_key(|&i| due[i].1).unwrap_or(0);
            let (plan, at) = due[slot];
            let hint = tokio::select! {
                () = tokio::time::sleep_until(at) => None,
                h = next_hint(&mut hints) => match h {
                    Some(h) => Some(Wake::Trap(h)),
                    None => {
                        hints = None;
                        continue;
                    }
                },
                () = next_notification(&mut self.netconf) => Some(Wake::Notification),
                () = token.cancelled() => break,
            };
            let Ok(_permit) = self.shared.limit.clone().acquire_owned().await else {
                break;
            };
            // The link poll's future lives inside this task's; the rarer plans are boxed, so
            // that each of thousands of device tasks is as large as a link poll needs (14 KB
            // per task before, 28 MB at 2,000 devices), not as large as the largest plan.
            let work = async {
                match hint {
                    Some(Wake::Trap(Hint::Port(i))) => Box::pin(self.confirm_port(i)).await,
                    Some(Wake::Trap(Hint::Repoll)) => self.poll_link(Source::Trap).await,
                    Some(Wake::Notification) => self.poll_link(Source::Netconf).await,
                    None => match plan {
                        Plan::Link => self.poll_link(Source::Poll).await,
                        Plan::Counters => Box::pin(self.poll_counters()).await,
                        Plan::Vlan => Box::pin(self.poll_vlan()).await,
                        Plan::Reach => Box::pin(self.probe()).await,
                        Plan::Topology => Box::pin(self.poll_topology()).await,
                    },
                }
            };
            tokio::select! {
                () = work => {}
                () = token.cancelled() => break,
            }
            if let Some(c) = &mut self.client
                && !self.shared.keep_sockets
            {
                c.release();
            }
            if hint.is_none() {
                due[slot].1 = advance(at, self.interval(plan), Instant::now());
            }
        }
        if let Some(nc) = &mut self.netconf {
            match nc.session.close().await {
                Ok(()) => tracing::debug!("NETCONF session closed."),
                Err(e) => tracing::debug!(error = %e, "NETCONF close-session failed."),
            }
        }
        if let Some(l) = listener {
            let _ = l.await;
        }
        tracing::debug!("Device task stopped.");
    }

    async fn poll_link(&mut self, source: Source) {
        if self.netconf.is_some() {
            return Box::pin(self.poll_link_netconf(source)).await;
        }
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let result = client
            .bulk_walk(
                &[oid::SYS_UPTIME, oid::IF_NUMBER],
                &[
                    oid::IF_ADMIN_STATUS,
                    oid::IF_OPER_STATUS,
                    oid::IF_LAST_CHANGE,
                ],
            )
            .await;
        self.observe("link", started, result.is_err());
        self.series.link_polls.inc();
        match result {
            Ok(walk) => {
                let snap = link_snapshot(&walk.scalars, &walk.columns);
                // A port that was not there at the last poll, or a changed ifNumber, may be a
                // new module: relabel.
                let if_number_changed = snap.if_number.is_some()
                    && std::mem::replace(&mut self.if_number, snap.if_number) != snap.if_number;
                let new_port =
                    if_number_changed || snap.ports.keys().any(|i| !self.state.knows_port(*i));
                self.sync_after_reconnect();
                let changes = self.state.on_poll_ok(&snap);
                let rebooted = changes.iter().any(|c| matches!(c, Change::Rebooted { .. }));
                self.rebooted_since_counters |= rebooted;
                let due = self.labels_due.is_none_or(|t| Instant::now() >= t);
                if due || rebooted || new_port {
                    Box::pin(self.refresh_labels()).await;
                }
                self.set_up(true);
                self.snmp_only_warned = false;
                self.export(&snap, true);
                self.emit(&changes, Some(&snap), source);
            }
            Err(e) => {
                tracing::debug!(error = %e, "Link poll failed.");
                Box::pin(self.link_poll_failed(&e.to_string(), "SNMP", source)).await;
            }
        }
    }

    /// A link poll got no answer. With ICMP, reachability is the ping's to decide: a switch
    /// that forwards and answers ping but not SNMP (or NETCONF) is not down (and must not flap
    /// between the two).
    async fn link_poll_failed(&mut self, why: &str, protocol: &str, source: Source) {
        if !matches!(self.prober, Prober::Icmp(..)) {
            return self.missed(why, source);
        }
        if !self.ping().await {
            return self.missed(why, Source::Ping);
        }
        if !self.snmp_only_warned {
            self.snmp_only_warned = true;
            tracing::warn!(
                error = why,
                protocol,
                "Device answers ping but not {protocol}; it is monitored blind."
            );
        }
        if let Some(c) = self.state.on_answer() {
            self.set_up(true);
            self.emit(&[c], None, Source::Ping);
        }
    }

    /// A poll or probe got no answer: after `unreachable_after` in a row the device is down.
    fn missed(&mut self, why: &str, source: Source) {
        let changes = self.state.on_poll_failed(self.device.unreachable_after);
        if !changes.is_empty() {
            tracing::warn!(error = why, "Device unreachable.");
            self.set_up(false);
            self.shared.table.clear_device(&self.device.name);
        }
        self.emit(&changes, None, source);
    }

    fn set_up(&mut self, up: bool) {
        if self.up != Some(up) {
            self.up = Some(up);
            self.shared
                .metrics
                .device_up
                .get_or_create(&self.label)
                .set(i64::from(up));
        }
    }

    /// Re-reads one port after a trap; a confirmed change becomes an event with source `trap`.
    async fn confirm_port(&mut self, if_index: u32) {
        if self.netconf.is_some() {
            return self.poll_link_netconf(Source::Trap).await;
        }
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let i = [if_index];
        let oids = [
            [oid::SYS_UPTIME, &[0]].concat(),
            [oid::IF_ADMIN_STATUS, &i].concat(),
            [oid::IF_OPER_STATUS, &i].concat(),
            [oid::IF_LAST_CHANGE, &i].concat(),
        ];
        let refs: Vec<&[u32]> = oids.iter().map(Vec::as_slice).collect();
        let result = client.get(&refs).await;
        self.observe("trap_confirm", started, result.is_err());
        let vbs = match result {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, if_index, "Cannot confirm a trap; the next poll will tell.");
                return;
            }
        };
        let value = |o: &[u32]| vbs.iter().find(|(x, _)| x.as_slice() == o).map(|(_, v)| v);
        let Some(oper) = value(&oids[2]).and_then(SnmpValue::as_i64) else {
            tracing::info!(
                if_index,
                "Trap names a port the device does not have (any more)."
            );
            return;
        };
        let cur = PortLink {
            admin: value(&oids[1]).and_then(SnmpValue::as_i64).unwrap_or(1),
            oper,
            last_change: value(&oids[3]).and_then(SnmpValue::as_ticks),
        };
        let changes = self.state.on_port_update(if_index, &cur);
        let mut snap = LinkSnapshot {
            uptime: value(&oids[0]).and_then(SnmpValue::as_ticks),
            ..LinkSnapshot::default()
        };
        snap.ports.insert(if_index, cur);
        if changes.is_empty() {
            tracing::debug!(if_index, "Trap confirmed nothing new.");
        }
        self.emit(&changes, Some(&snap), Source::Trap);
    }

    async fn poll_counters(&mut self) {
        if self.netconf.is_some() {
            return self.poll_counters_netconf().await;
        }
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let columns = counters::column_oids();
        let result = client.bulk_walk(&[], &columns).await;
        self.observe("counters", started, result.is_err());
        match result {
            Ok(walk) => {
                let reset = std::mem::take(&mut self.rebooted_since_counters);
                self.totals.update(
                    counters::raw_from(&walk.columns),
                    reset,
                    counters::discontinuities_from(&walk.columns),
                );
                self.shared
                    .table
                    .set_counters(&self.device.name, self.totals.values().clone());
            }
            Err(e) => tracing::debug!(error = %e, "Counter poll failed."),
        }
    }

    async fn poll_vlan(&mut self) {
        // Port VLANs come from Q-BRIDGE-MIB: SNMP only.
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let result = client
            .bulk_walk(&[], &[vlan::BASE_PORT_IF_INDEX, vlan::DOT1Q_PVID])
            .await;
        self.observe("vlan", started, result.is_err());
        match result {
            Ok(walk) => {
                let pvids = vlan::pvids_from(&walk.columns);
                let changes = self.state.on_vlans(pvids.clone());
                self.shared.table.set_pvids(&self.device.name, pvids);
                self.emit(&changes, None, Source::Poll);
            }
            Err(e) => tracing::debug!(error = %e, "VLAN poll failed."),
        }
    }

    /// LLDP neighbours and link aggregation; a `neighbours` event when the snapshot changed
    /// or the agent reconnected since it was last sent.
    async fn poll_topology(&mut self) {
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let lldp = client.bulk_walk(&[], &topology::LLDP_COLUMNS).await;
        let lag = match &lldp {
            Ok(_) => Some(client.bulk_walk(&[], &topology::LAG_COLUMNS).await),
            Err(_) => None,
        };
        let failed = lldp.is_err() || lag.as_ref().is_some_and(Result::is_err);
        self.observe("topology", started, failed);
        let (Ok(lldp), Some(Ok(lag))) = (lldp, lag) else {
            tracing::debug!("Topology poll failed; the last snapshot stands.");
            return;
        };
        let snap = topology::snapshot(&lldp.columns, &lag.columns, &self.labels);
        let label = &self.label;
        self.shared
            .metrics
            .lldp_neighbours
            .get_or_create(label)
            .set(i64::try_from(snap.neighbours.len()).unwrap_or(i64::MAX));
        self.shared.metrics.bundle_members.get_or_create(label).set(
            i64::try_from(snap.bundles.iter().map(|b| b.members.len()).sum::<usize>())
                .unwrap_or(i64::MAX),
        );
        let t = &mut *self.topology;
        t.bundle_of.clear();
        t.aggregate_role.clear();
        for b in &snap.bundles {
            let r = cnaas_shared::BundleRef {
                if_index: b.if_index,
                name: b.name.clone(),
                members: u32::try_from(b.members.len()).unwrap_or(u32::MAX),
            };
            let mut role = None;
            for m in &b.members {
                t.bundle_of.insert(*m, r.clone());
                let mr = port_role(
                    &self.device,
                    &self.shared.roles,
                    *m,
                    self.labels.get(m).map(|l| &**l),
                );
                if mr.is_watched() && role.is_none_or(|x: cnaas_shared::PortRole| mr < x) {
                    role = Some(mr);
                }
            }
            if let Some(role) = role {
                t.aggregate_role.insert(b.if_index, role);
            }
        }
        // Sent when it changed only: the spool delivers it, and the collector keeps it.
        if t.sent == snap {
            return;
        }
        let mut e = cnaas_shared::Event::new(
            &self.shared.agent,
            &self.device.name,
            cnaas_shared::EventKind::Neighbours,
            Source::Poll,
        );
        snap.write(&mut e.attrs);
        tracing::info!(
            neighbours = snap.neighbours.len(),
            bundles = snap.bundles.len(),
            "Topology snapshot."
        );
        t.sent = snap;
        self.shared.publisher.submit(e);
    }

    /// The reachability probe: ICMP echo, or an SNMP GET of sysUpTime.
    async fn probe(&mut self) {
        let started = Instant::now();
        let (ok, source) = if matches!(self.prober, Prober::Icmp(..)) {
            (self.ping().await, Source::Ping)
        } else if self.netconf.is_some() {
            // The NETCONF link poll is the probe: each one that fails counts.
            return;
        } else if let Some(client) = &mut self.client {
            let uptime = [oid::SYS_UPTIME, &[0]].concat();
            let result = client.get(&[uptime.as_slice()]).await;
            self.observe("reachability", started, result.is_err());
            (result.is_ok(), Source::Poll)
        } else {
            return;
        };
        self.shared
            .metrics
            .poll_duration
            .get_or_create(&PlanLabel {
                plan: "reachability",
            })
            .observe(started.elapsed().as_secs_f64());
        if ok {
            if let Some(c) = self.state.on_answer() {
                self.set_up(true);
                self.emit(&[c], None, source);
            }
        } else {
            self.missed("no answer to the reachability probe", source);
        }
    }

    /// One ICMP echo (with the device's retries); false without an ICMP prober.
    async fn ping(&mut self) -> bool {
        let Prober::Icmp(client, ip) = &self.prober else {
            return false;
        };
        let ident = PingIdentifier(u16::try_from(std::process::id() & 0xffff).unwrap_or(0));
        let mut pinger = client.pinger(*ip, ident).await;
        pinger.timeout(self.device.timeout);
        for _ in 0..=self.device.retries {
            self.ping_seq = self.ping_seq.wrapping_add(1);
            if pinger
                .ping(PingSequence(self.ping_seq), &[0u8; 16])
                .await
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// After the agent (re)connected to the broker, the next link poll reports every port.
    fn sync_after_reconnect(&mut self) {
        let connects = self.shared.publisher.connects();
        if connects != self.seen_connects {
            self.seen_connects = connects;
            self.state.request_sync();
        }
    }

    fn emit(&mut self, changes: &[Change], snap: Option<&LinkSnapshot>, source: Source) {
        for c in changes {
            let mut e = event_for(
                &self.shared.agent,
                &self.device,
                &self.shared.roles,
                &self.labels,
                snap,
                c,
            );
            e.source = source;
            if let Some(i) = e.if_index {
                if let Some(b) = self.topology.bundle_of.get(&i)
                    && let Ok(v) = serde_json::to_value(b)
                {
                    e.attrs.insert("bundle".into(), v);
                }
                if let Some(role) = self.topology.aggregate_role.get(&i)
                    && !e.role().is_some_and(cnaas_shared::PortRole::is_watched)
                {
                    e.attrs
                        .insert("role".into(), serde_json::Value::from(role.as_str()));
                }
                // The cabling may have changed with the link: look again soon.
                if matches!(c, Change::Port { .. })
                    && e.role().is_some_and(cnaas_shared::PortRole::is_watched)
                    && self.client.is_some()
                {
                    self.topology.soon = Some(Instant::now() + Duration::from_secs(3));
                }
            }
            tracing::info!(kind = %e.kind, source = e.source.as_str(), if_index = ?e.if_index, if_name = ?e.if_name, "State change.");
            self.shared.publisher.submit(e);
        }
    }

    async fn refresh_labels(&mut self) {
        let Some(client) = &mut self.client else {
            return;
        };
        let started = Instant::now();
        let result = client
            .bulk_walk(&[], &[oid::IF_DESCR, oid::IF_NAME, oid::IF_ALIAS])
            .await;
        self.observe("labels", started, result.is_err());
        match result {
            Ok(walk) => {
                self.labels = share_labels(&self.labels, labels_from(&walk.columns));
                self.labels_due = Some(Instant::now() + self.device.labels_interval);
                tracing::debug!(ports = self.labels.len(), "Labels refreshed.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Label refresh failed; keeping the cached labels.")
            }
        }
    }

    fn export(&self, snap: &LinkSnapshot, last_change: bool) {
        self.shared
            .table
            .set_link(&self.device.name, snap, &self.labels, last_change);
    }

    /// One `<get>` of interface state for `plan`, turned into what the plans use; None for a
    /// device without NETCONF. Counts the poll's time, failure and any new session.
    async fn netconf_poll(
        &mut self,
        plan: &'static str,
    ) -> Option<Result<(LinkSnapshot, HashMap<u32, Labels>, counters::Raw), netconf::NcError>> {
        let nc = self.netconf.as_mut()?;
        let started = Instant::now();
        let result = nc.session.interfaces().await;
        let converted = result.map(|ifs| netconf::interfaces::to_plans(&ifs, &mut nc.indexer));
        let opened = nc.session.opened();
        if let Some(c) = &self.series.netconf_sessions {
            c.inc_by(opened.saturating_sub(nc.reported_sessions));
        }
        nc.reported_sessions = opened;
        self.observe(plan, started, converted.is_err());
        Some(converted)
    }

    /// The link plan over NETCONF: one `<get>` gives status, labels and the snapshot; the
    /// state diff, events and metrics are the SNMP plan's.
    async fn poll_link_netconf(&mut self, source: Source) {
        let Some(converted) = self.netconf_poll("link").await else {
            return;
        };
        self.series.link_polls.inc();
        // Events from NETCONF say so; a trap-triggered confirmation stays `trap`.
        let source = if source == Source::Trap {
            Source::Trap
        } else {
            Source::Netconf
        };
        match converted {
            Ok((snap, labels, _)) => {
                self.sync_after_reconnect();
                let changes = self.state.on_poll_ok(&snap);
                self.labels = share_labels(&self.labels, labels);
                self.set_up(true);
                self.snmp_only_warned = false;
                // last-change is a wall-clock time here, not ifLastChange's sysUpTime ticks.
                self.export(&snap, false);
                self.emit(&changes, Some(&snap), source);
            }
            Err(e) => {
                tracing::debug!(error = %e, "NETCONF link poll failed.");
                self.link_poll_failed(&e.to_string(), "NETCONF", source)
                    .await;
            }
        }
    }

    /// The counters plan over NETCONF: the statistics of the same `<get>`, as the IF-MIB
    /// columns they correspond to (in-octets is ifHCInOctets, speed is ifHighSpeed, ...).
    async fn poll_counters_netconf(&mut self) {
        let Some(converted) = self.netconf_poll("counters").await else {
            return;
        };
        match converted {
            Ok((_, _, raw)) => {
                self.totals
                    .update(raw, false, std::collections::BTreeMap::new());
                self.shared
                    .table
                    .set_counters(&self.device.name, self.totals.values().clone());
            }
            Err(e) => tracing::debug!(error = %e, "NETCONF counter poll failed."),
        }
    }

    fn observe(&mut self, plan: &'static str, started: Instant, failed: bool) {
        let m = &self.shared.metrics;
        let p = PlanLabel { plan };
        if plan != "reachability" {
            m.poll_duration
                .get_or_create(&p)
                .observe(started.elapsed().as_secs_f64());
        }
        if failed {
            m.poll_failures.get_or_create(&p).inc();
        }
        let (Some(client), Some([requests, timeouts, errors])) = (&self.client, &self.series.snmp)
        else {
            return;
        };
        let now = client.stats();
        requests.inc_by(now.requests - self.reported.requests);
        if now.timeouts != self.reported.timeouts {
            timeouts.inc_by(now.timeouts - self.reported.timeouts);
        }
        if now.errors != self.reported.errors {
            errors.inc_by(now.errors - self.reported.errors);
        }
        self.reported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrunning_plans_skip_missed_runs_and_keep_their_phase() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(advance(t0, s, t0), t0 + s);
        assert_eq!(
            advance(t0, s, t0 + Duration::from_millis(2500)),
            t0 + Duration::from_secs(3)
        );
        assert_eq!(
            advance(t0, s, t0 + Duration::from_secs(2)),
            t0 + Duration::from_secs(3)
        );
    }
}
