//! The agent's Prometheus metrics.
//!
//! Interface metrics are named and labelled like snmp_exporter's `if_mib` module
//! (`ifOperStatus{ifIndex,ifName,ifAlias,ifDescr}` plus `device`), so dashboards and alert rules
//! written for snmp_exporter work unchanged. They are rendered at scrape time from the
//! [`InterfaceTable`] the pollers keep current, so a renamed port never leaves a stale series.
//! The agent's own health is under `cnaas_agent_*`.

mod interfaces;

pub use interfaces::{InterfaceTable, PortView};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `device` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    /// Device name.
    pub device: String,
}

/// `plan` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanLabel {
    /// Plan name (`link`, `labels`).
    pub plan: &'static str,
}

/// `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Event kind.
    pub kind: &'static str,
}

/// Health metrics of the agent.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Wall time of one poll, by plan.
    pub poll_duration: Family<PlanLabel, Histogram, fn() -> Histogram>,
    /// Polls that failed, by plan.
    pub poll_failures: Family<PlanLabel, Counter>,
    /// Link polls completed (answered or not), by device: the achieved poll rate.
    pub link_polls: Family<DeviceLabel, Counter>,
    /// SNMP requests sent (retries included), by device.
    pub snmp_requests: Family<DeviceLabel, Counter>,
    /// SNMP requests that timed out, by device.
    pub snmp_timeouts: Family<DeviceLabel, Counter>,
    /// Bad responses and socket errors, by device.
    pub snmp_errors: Family<DeviceLabel, Counter>,
    /// NETCONF sessions opened by the polling session, by device (more than one: reconnects).
    pub netconf_sessions: Family<DeviceLabel, Counter>,
    /// 1 while the device answers, 0 once declared unreachable.
    pub device_up: Family<DeviceLabel, Gauge>,
    /// LLDP neighbours the device reported at the last topology poll.
    pub lldp_neighbours: Family<DeviceLabel, Gauge>,
    /// Member ports of the device's link aggregation bundles at the last topology poll.
    pub bundle_members: Family<DeviceLabel, Gauge>,
    /// Events generated, by kind.
    pub events: Family<KindLabel, Counter>,
    /// Events acknowledged by the broker (QoS 1 PUBACK).
    pub events_published: Counter,
    /// Events dropped because the spool writer's queue was full.
    pub events_dropped: Counter,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Events in the on-disk spool (not yet acknowledged by the broker).
    pub spool_depth: Gauge,
    /// Payload bytes in the spool.
    pub spool_bytes: Gauge,
    /// Events dropped from a full spool (oldest first).
    pub spool_dropped: Counter,
    /// Events the spool had taken and no longer held at this start (a damaged file, a
    /// truncated or deleted WAL): at most this many were never published.
    pub spool_lost_at_start: Gauge,
    /// Trap datagrams, by what became of them.
    pub traps: Family<crate::traps::ResultLabel, Counter>,
    /// 1 while the last read of the device source (CNaaS-NMS) succeeded.
    pub inventory_source_up: Gauge,
    /// Devices the device source listed for polling at its last good read.
    pub inventory_source_devices: Gauge,
    /// Why the last read of the device source failed (for `/healthz`).
    pub inventory_source_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl AgentMetrics {
    /// A good read of the device source.
    pub fn inventory_ok(&self, devices: usize) {
        self.inventory_source_up.set(1);
        self.inventory_source_devices
            .set(i64::try_from(devices).unwrap_or(i64::MAX));
        if let Ok(mut e) = self.inventory_source_error.lock() {
            *e = None;
        }
    }

    /// A failed read of the device source.
    pub fn inventory_failed(&self, why: &str) {
        self.inventory_source_up.set(0);
        if let Ok(mut e) = self.inventory_source_error.lock() {
            *e = Some(why.to_owned());
        }
    }
}

/// One device's health series, looked up once when its task starts: a poll then touches no
/// family's hash map or lock (five lookups of a `String` label per poll before).
#[derive(Debug, Clone)]
pub struct DeviceSeries {
    /// `link_polls` of the device.
    pub link_polls: Counter,
    /// `snmp_requests`, `snmp_timeouts`, `snmp_errors` of a device polled over SNMP.
    pub snmp: Option<[Counter; 3]>,
    /// `netconf_sessions` of a device polled over NETCONF.
    pub netconf_sessions: Option<Counter>,
}

impl AgentMetrics {
    /// The series of one device (created, at 0, if new).
    pub fn device_series(&self, label: &DeviceLabel, snmp: bool, netconf: bool) -> DeviceSeries {
        let counter = |f: &Family<DeviceLabel, Counter>| f.get_or_create(label).clone();
        DeviceSeries {
            link_polls: counter(&self.link_polls),
            snmp: snmp.then(|| {
                [
                    counter(&self.snmp_requests),
                    counter(&self.snmp_timeouts),
                    counter(&self.snmp_errors),
                ]
            }),
            netconf_sessions: netconf.then(|| counter(&self.netconf_sessions)),
        }
    }
}

fn poll_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl AgentMetrics {
    /// Creates and registers every health metric.
    pub fn register(registry: &mut Registry) -> AgentMetrics {
        let m = AgentMetrics {
            poll_duration: Family::new_with_constructor(poll_histogram),
            poll_failures: Family::default(),
            link_polls: Family::default(),
            snmp_requests: Family::default(),
            snmp_timeouts: Family::default(),
            snmp_errors: Family::default(),
            netconf_sessions: Family::default(),
            device_up: Family::default(),
            lldp_neighbours: Family::default(),
            bundle_members: Family::default(),
            events: Family::default(),
            events_published: Counter::default(),
            events_dropped: Counter::default(),
            mqtt_connected: Gauge::default(),
            spool_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_dropped: Counter::default(),
            spool_lost_at_start: Gauge::default(),
            traps: Family::default(),
            inventory_source_up: Gauge::default(),
            inventory_source_devices: Gauge::default(),
            inventory_source_error: std::sync::Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("cnaas_agent");
        r.register(
            "poll_duration_seconds",
            "Wall time of one device poll, by plan",
            m.poll_duration.clone(),
        );
        r.register(
            "poll_failures",
            "Device polls that failed (timeout or error), by plan",
            m.poll_failures.clone(),
        );
        r.register(
            "link_polls",
            "Link polls completed (answered or not), by device; its rate is the achieved poll rate",
            m.link_polls.clone(),
        );
        r.register(
            "snmp_requests",
            "SNMP requests sent, retries included",
            m.snmp_requests.clone(),
        );
        r.register(
            "snmp_timeouts",
            "SNMP requests that got no response in time",
            m.snmp_timeouts.clone(),
        );
        r.register(
            "snmp_errors",
            "SNMP responses that were invalid or stale, and socket errors",
            m.snmp_errors.clone(),
        );
        r.register(
            "netconf_sessions",
            "NETCONF sessions the polling session opened, by device; growth means reconnects",
            m.netconf_sessions.clone(),
        );
        r.register(
            "device_up",
            "1 while the device answers SNMP, 0 once it is declared unreachable",
            m.device_up.clone(),
        );
        r.register(
            "inventory_source_up",
            "1 while the last read of the device source (CNaaS-NMS) succeeded; 0: the devices being polled stay polled",
            m.inventory_source_up.clone(),
        );
        r.register(
            "inventory_source_devices",
            "Devices the device source (CNaaS-NMS) listed for polling at its last good read",
            m.inventory_source_devices.clone(),
        );
        r.register(
            "lldp_neighbours",
            "LLDP neighbours the device reported at the last topology poll",
            m.lldp_neighbours.clone(),
        );
        r.register(
            "bundle_members",
            "Member ports of the device's link aggregation bundles at the last topology poll",
            m.bundle_members.clone(),
        );
        r.register(
            "events",
            "Events generated from state changes, by kind",
            m.events.clone(),
        );
        r.register(
            "events_published",
            "Events acknowledged by the MQTT broker (QoS 1)",
            m.events_published.clone(),
        );
        r.register(
            "events_dropped",
            "Events dropped because the spool writer's queue was full",
            m.events_dropped.clone(),
        );
        r.register(
            "mqtt_connected",
            "1 while the agent is connected to the MQTT broker",
            m.mqtt_connected.clone(),
        );
        r.register(
            "spool_depth",
            "Events in the on-disk spool, not yet acknowledged by the broker",
            m.spool_depth.clone(),
        );
        r.register(
            "spool_bytes",
            "Payload bytes in the on-disk spool",
            m.spool_bytes.clone(),
        );
        r.register(
            "spool_dropped",
            "Events dropped from a full spool, oldest first",
            m.spool_dropped.clone(),
        );
        r.register(
            "spool_lost_at_start",
            "Events the spool had taken and could not give back at this start (damaged file, lost WAL): at most this many were never published; -1: uncounted",
            m.spool_lost_at_start.clone(),
        );
        r.register(
            "traps",
            "Trap datagrams received, by result (delivered, after_reboot, bad_community, malformed, ...)",
            m.traps.clone(),
        );
        m
    }
}
