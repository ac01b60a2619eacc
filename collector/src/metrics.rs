//! The collector's own metrics (`cnaas_collector_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short, stable reason.
    pub reason: &'static str,
}

/// `kind` and `transition` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IncidentLabel {
    /// Alarm type.
    pub kind: &'static str,
    /// `opened` or `resolved`.
    pub transition: &'static str,
}

/// `channel` and `result` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabel {
    /// Channel name.
    pub channel: String,
    /// `delivered`, `retry` or `failed`.
    pub result: &'static str,
}

/// Collector health and throughput.
#[derive(Debug, Clone)]
pub struct CollectorMetrics {
    /// Valid events stored.
    pub events_stored: Counter,
    /// Events seen before (redeliveries), not stored again.
    pub events_duplicate: Counter,
    /// Messages refused, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Agent status messages.
    pub agent_status: Counter,
    /// Incident transitions.
    pub incidents: Family<IncidentLabel, Counter>,
    /// Incidents open or acknowledged now.
    pub incidents_open: Gauge,
    /// Messages waiting for the engine.
    pub ingest_queue: Gauge,
    /// Time from receipt to commit of one event.
    pub processing: Histogram,
    /// Store failures (retried).
    pub store_errors: Counter,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Delivery attempts by channel and result.
    pub notifications: Family<NotificationLabel, Counter>,
    /// Notifications queued in the outbox.
    pub notifications_queued: Counter,
    /// Events observed more than the allowed skew in the future (judged at the collector's
    /// time instead).
    pub events_future: Counter,
    /// Events older than the newest applied observation of their port (ignored by the rules).
    pub events_stale: Counter,
    /// Notifications delivered only after they had failed for good.
    pub notifications_delayed: Counter,
    /// Delivery attempts of a notification whose previous attempt was cut off (a crash)
    /// before its outcome was recorded: the recipient may get it twice (same idempotency key).
    pub notifications_repeated: Counter,
    /// MQTT messages acknowledged (after their commit).
    pub acks: Counter,
    /// 1 while messages wait for the engine and nothing has been committed for a while.
    pub ingest_stalled: Gauge,
    /// Seconds since the last commit while messages wait (0 when none wait).
    pub ingest_lag_seconds: Gauge,
    /// 1 while a store operation fails (it is retried).
    pub store_failing: Gauge,
    /// 1 while the last read of the inventory source (CNaaS-NMS) succeeded.
    pub inventory_source_up: Gauge,
    /// Devices the inventory source listed at its last good read.
    pub inventory_source_devices: Gauge,
    /// Reads of the inventory source that failed.
    pub inventory_source_failures: Counter,
    /// Unix time of the last good read of the inventory source.
    pub inventory_source_last_success: Gauge,
    /// Why the last read failed (for `/healthz`), none after a good one.
    pub inventory_source_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl CollectorMetrics {
    /// A good read of the inventory source.
    pub fn inventory_ok(&self, devices: usize) {
        self.inventory_source_up.set(1);
        self.inventory_source_devices
            .set(i64::try_from(devices).unwrap_or(i64::MAX));
        self.inventory_source_last_success
            .set(chrono::Utc::now().timestamp());
        if let Ok(mut e) = self.inventory_source_error.lock() {
            *e = None;
        }
    }

    /// A failed read of the inventory source.
    pub fn inventory_failed(&self, why: &str) {
        self.inventory_source_up.set(0);
        self.inventory_source_failures.inc();
        if let Ok(mut e) = self.inventory_source_error.lock() {
            *e = Some(why.to_owned());
        }
    }
}

impl CollectorMetrics {
    /// Counts a delivery attempt's outcome on `channel`.
    pub fn count_notification(&self, channel: &str, result: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabel {
                channel: channel.to_owned(),
                result,
            })
            .inc();
    }
}

impl CollectorMetrics {
    /// Creates and registers every metric.
    pub fn register(registry: &mut Registry) -> CollectorMetrics {
        let m = CollectorMetrics {
            events_stored: Counter::default(),
            events_duplicate: Counter::default(),
            dead_letters: Family::default(),
            agent_status: Counter::default(),
            incidents: Family::default(),
            incidents_open: Gauge::default(),
            ingest_queue: Gauge::default(),
            processing: Histogram::new([
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
            store_errors: Counter::default(),
            mqtt_connected: Gauge::default(),
            notifications: Family::default(),
            notifications_queued: Counter::default(),
            events_future: Counter::default(),
            events_stale: Counter::default(),
            notifications_delayed: Counter::default(),
            notifications_repeated: Counter::default(),
            acks: Counter::default(),
            ingest_stalled: Gauge::default(),
            ingest_lag_seconds: Gauge::default(),
            store_failing: Gauge::default(),
            inventory_source_up: Gauge::default(),
            inventory_source_devices: Gauge::default(),
            inventory_source_failures: Counter::default(),
            inventory_source_last_success: Gauge::default(),
            inventory_source_error: std::sync::Arc::default(),
        };
        let r0 = registry.sub_registry_with_prefix("cnaas_collector");
        r0.register(
            "events_future",
            "Events observed more than 5 s ahead of the collector's clock, judged at the collector's time",
            m.events_future.clone(),
        );
        r0.register(
            "events_stale",
            "Events older than the newest applied observation of their port, ignored by the rules",
            m.events_stale.clone(),
        );
        r0.register(
            "mqtt_acks",
            "MQTT messages acknowledged after their commit",
            m.acks.clone(),
        );
        r0.register(
            "ingest_stalled",
            "1 while messages wait for the engine and nothing has been committed for [ingest] stall_after",
            m.ingest_stalled.clone(),
        );
        r0.register(
            "ingest_lag_seconds",
            "Seconds since the last commit while messages wait (0 when none wait)",
            m.ingest_lag_seconds.clone(),
        );
        r0.register(
            "store_failing",
            "1 while a store operation fails and is being retried",
            m.store_failing.clone(),
        );
        r0.register(
            "inventory_source_up",
            "1 while the last read of the inventory source (CNaaS-NMS) succeeded; 0: the last good inventory stays in force",
            m.inventory_source_up.clone(),
        );
        r0.register(
            "inventory_source_devices",
            "Managed devices the inventory source listed at its last good read",
            m.inventory_source_devices.clone(),
        );
        r0.register(
            "inventory_source_failures",
            "Reads of the inventory source (CNaaS-NMS) that failed",
            m.inventory_source_failures.clone(),
        );
        r0.register(
            "inventory_source_last_success_timestamp_seconds",
            "Unix time of the last good read of the inventory source",
            m.inventory_source_last_success.clone(),
        );
        r0.register(
            "notifications_delayed",
            "Notifications delivered after they had failed for good (channel back, or resent)",
            m.notifications_delayed.clone(),
        );
        r0.register(
            "notifications_repeated",
            "Attempts that may repeat a message sent just before a crash (same idempotency key)",
            m.notifications_repeated.clone(),
        );
        let r = registry.sub_registry_with_prefix("cnaas_collector");
        r.register(
            "events_stored",
            "Valid events stored",
            m.events_stored.clone(),
        );
        r.register(
            "events_duplicate",
            "Events received again (same id) and not stored twice",
            m.events_duplicate.clone(),
        );
        r.register(
            "dead_letters",
            "Messages refused and kept in the dead-letter table, by reason",
            m.dead_letters.clone(),
        );
        r.register(
            "agent_status_messages",
            "Agent status messages received",
            m.agent_status.clone(),
        );
        r.register(
            "incident_transitions",
            "Incidents opened and resolved, by alarm type",
            m.incidents.clone(),
        );
        r.register(
            "incidents_open",
            "Incidents open or acknowledged now",
            m.incidents_open.clone(),
        );
        r.register(
            "ingest_queue_depth",
            "Messages received and waiting for the engine",
            m.ingest_queue.clone(),
        );
        r.register(
            "event_processing_seconds",
            "Time from receipt of an event to its commit",
            m.processing.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed and were retried",
            m.store_errors.clone(),
        );
        r.register(
            "mqtt_connected",
            "1 while the collector is connected to the MQTT broker",
            m.mqtt_connected.clone(),
        );
        r.register(
            "notifications",
            "Notification delivery attempts, by channel and result (delivered, retry, failed)",
            m.notifications.clone(),
        );
        r.register(
            "notifications_queued",
            "Notifications written to the outbox (one per incident transition and recipient)",
            m.notifications_queued.clone(),
        );
        m
    }
}
