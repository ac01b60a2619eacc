//! Store and forward over MQTT: events go to the on-disk spool first, are published from it in
//! order at QoS 1, and leave it only when the broker acknowledges them. The agent's retained
//! status (`online` on every connect, last will `offline`) tells the collector when the site
//! becomes a blind spot.
//!
//! Three tasks, one direction of data each:
//! - the *spool writer* takes events from device tasks (a cheap [`PublishHandle`]), appends them
//!   to the spool in batches and wakes the publisher;
//! - the *publisher* reads the spool in sequence order and hands messages to rumqttc; it is the
//!   only task that publishes, so the order of requests is the order of the spool;
//! - the *driver* owns rumqttc's event loop (reconnect with backoff) and maps each outgoing
//!   packet id to its spool row, so a PUBACK removes exactly that row.
//!
//! When every handle is dropped, the writer finishes, the publisher sends what is left and waits
//! (bounded) for acknowledgements, marks the agent offline and disconnects. Whatever is still
//! unacknowledged stays in the spool and is sent again at the next start.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use cnaas_shared::mqtt::MqttConfigError;
use cnaas_shared::{Event, topics};
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::metrics::{AgentMetrics, KindLabel};
use crate::spool::Spool;

/// Events queued in memory before the spool writer, at most.
const QUEUE: usize = 100_000;
/// Messages read from the spool per round.
const BATCH: usize = 256;
/// How long shutdown waits for the broker to acknowledge what was sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The `[mqtt]` section could not be turned into client options.
    #[error(transparent)]
    Config(#[from] MqttConfigError),
}

/// Hands events to the spool writer. Cloning is cheap; dropping every clone starts the drain.
#[derive(Clone)]
pub struct PublishHandle {
    tx: mpsc::Sender<Event>,
    metrics: AgentMetrics,
    connects: Arc<AtomicU64>,
}

impl PublishHandle {
    /// How many times the publisher has connected to the broker. A device task that sees it
    /// change sends a `state_sync` at its next link poll: whatever the collector missed while
    /// the agent was cut off (a spool that overflowed, a collector that was restored from an
    /// older state), the snapshot repairs.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Queues an event for the spool. Never blocks a poller: if the writer is so far behind
    /// that the queue is full, the event is dropped, counted and logged as an error.
    pub fn submit(&self, event: Event) {
        self.metrics
            .events
            .get_or_create(&KindLabel {
                kind: event.kind.as_str(),
            })
            .inc();
        let (device, kind) = (event.device.clone(), event.kind);
        if self.tx.try_send(event).is_err() {
            self.metrics.events_dropped.inc();
            tracing::error!(device = %device, kind = %kind, "Spool queue full; event dropped.");
        }
    }
}

/// Shared view of the connection for `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionState {
    connected: Arc<AtomicBool>,
}

impl ConnectionState {
    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

fn status_payload(agent: &str, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": 1,
        "agent": agent,
        "status": status,
        "at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    }))
    .unwrap_or_default()
}

/// What a publish request in rumqttc's queue was, in request order.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Spooled(i64),
    Status,
}

/// Which spool row each packet id carries.
#[derive(Default)]
struct Tracking {
    queued: VecDeque<Pending>,
    inflight: HashMap<u16, i64>,
}

impl Tracking {
    /// An outgoing PUBLISH: a packet id already in flight is a retransmission; any other takes
    /// the oldest queued request.
    fn on_outgoing(&mut self, pkid: u16) {
        if pkid != 0 && self.inflight.contains_key(&pkid) {
            return;
        }
        if let Some(Pending::Spooled(seq)) = self.queued.pop_front()
            && pkid != 0
        {
            self.inflight.insert(pkid, seq);
        }
    }

    fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.inflight.is_empty()
    }
}

struct Shared {
    agent: String,
    status_topic: String,
    spool: Arc<Spool>,
    metrics: AgentMetrics,
    state: ConnectionState,
    tracking: Mutex<Tracking>,
    /// Wakes the publisher: new rows in the spool, or a (re)connect wants the status sent.
    wake: Notify,
    status_wanted: AtomicBool,
    other_acks: AtomicU64,
    closing: AtomicBool,
    connects: Arc<AtomicU64>,
}

impl Shared {
    fn tracking(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update_depth(&self) {
        let (count, bytes) = self.spool.depth();
        self.metrics
            .spool_depth
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.metrics
            .spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// Starts the spool writer, publisher and MQTT driver. Returns the handle for device tasks, the
/// connection state, and the task to await at shutdown.
pub fn spawn(
    cfg: &AgentConfig,
    metrics: AgentMetrics,
    spool: Arc<Spool>,
) -> Result<(PublishHandle, ConnectionState, JoinHandle<()>), PublishError> {
    let status_topic = topics::status_topic(&cfg.id);
    let will = LastWill::new(
        status_topic.clone(),
        serde_json::to_vec(&serde_json::json!({"v": 1, "agent": cfg.id, "status": "offline", "reason": "connection lost"}))
            .unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    );
    let opts = cfg.mqtt.client_options(
        &cfg.base_dir,
        &format!("cnaas-agent-{}", cfg.id),
        Some(will),
    )?;
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (tx, rx) = mpsc::channel(QUEUE);
    let state = ConnectionState::default();
    let shared = Arc::new(Shared {
        agent: cfg.id.clone(),
        status_topic,
        spool,
        metrics: metrics.clone(),
        state: state.clone(),
        tracking: Mutex::new(Tracking::default()),
        wake: Notify::new(),
        status_wanted: AtomicBool::new(false),
        other_acks: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        connects: Arc::new(AtomicU64::new(0)),
    });
    shared.update_depth();
    let handle = PublishHandle {
        tx,
        metrics,
        connects: shared.connects.clone(),
    };
    let writer_done = CancellationToken::new();
    let writer = tokio::spawn(spool_writer(rx, shared.clone(), writer_done.clone()));
    let stop_driver = CancellationToken::new();
    let driver = tokio::spawn(drive(eventloop, shared.clone(), stop_driver.clone()));
    let task = tokio::spawn(async move {
        publish_loop(&client, &shared, &writer_done).await;
        finish(&client, &shared).await;
        stop_driver.cancel();
        let _ = writer.await;
        let _ = driver.await;
        shared.update_depth();
        let (left, _) = shared.spool.depth();
        tracing::info!(left_in_spool = left, "Publisher stopped.");
    });
    Ok((handle, state, task))
}

/// Appends queued events to the spool in batches and wakes the publisher.
async fn spool_writer(mut rx: mpsc::Receiver<Event>, shared: Arc<Shared>, done: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        loop {
            // Each event carries its spool row's number as its sequence number: the order
            // in which this agent observed things, across restarts.
            let made = shared.spool.append_with(batch.len(), |i, seq| {
                let e = &mut batch[i];
                e.seq = Some(seq);
                (topics::event_topic(&e.agent, &e.device), e.to_json())
            });
            match made {
                Ok(a) => {
                    if a.dropped > 0 {
                        shared.metrics.spool_dropped.inc_by(a.dropped);
                        tracing::error!(
                            dropped = a.dropped,
                            "Spool full; the oldest events were dropped."
                        );
                    }
                    batch.clear();
                    break;
                }
                Err(e) => {
                    // Keep the batch and retry: the disk may come back (full disk, I/O error).
                    tracing::error!(error = %e, "Cannot write the spool; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        shared.update_depth();
        shared.wake.notify_one();
    }
    done.cancel();
    shared.wake.notify_one();
}

/// Publishes spool rows in order until the writer is done and nothing new is left.
async fn publish_loop(client: &AsyncClient, shared: &Shared, writer_done: &CancellationToken) {
    let mut last = 0i64;
    loop {
        if shared.status_wanted.swap(false, Ordering::Relaxed) {
            shared.tracking().queued.push_back(Pending::Status);
            let online = status_payload(&shared.agent, "online");
            if client
                .publish(&shared.status_topic, QoS::AtMostOnce, true, online)
                .await
                .is_err()
            {
                return;
            }
        }
        let done = writer_done.is_cancelled();
        let rows = match shared.spool.fetch_after(last, BATCH) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the spool; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if rows.is_empty() {
            if done {
                return;
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                () = writer_done.cancelled() => {}
            }
            continue;
        }
        for row in rows {
            shared
                .tracking()
                .queued
                .push_back(Pending::Spooled(row.seq));
            if let Err(e) = client
                .publish(row.topic, QoS::AtLeastOnce, false, row.payload)
                .await
            {
                tracing::error!(error = %e, "MQTT client closed; the rest stays in the spool.");
                return;
            }
            last = row.seq;
        }
    }
}

/// Waits (bounded) for outstanding acknowledgements, says `offline`, disconnects.
async fn finish(client: &AsyncClient, shared: &Shared) {
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    while !shared.tracking().is_idle()
        && shared.state.is_connected()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !shared.tracking().is_idle() {
        tracing::warn!(
            "Stopping with events not yet acknowledged; they stay in the spool for the next start."
        );
    }
    // A clean disconnect suppresses the last will, so say `offline` ourselves.
    if shared.state.is_connected() {
        let before = shared.other_acks.load(Ordering::Relaxed);
        shared.tracking().queued.push_back(Pending::Status);
        let offline = status_payload(&shared.agent, "offline");
        if client
            .publish(&shared.status_topic, QoS::AtLeastOnce, true, offline)
            .await
            .is_ok()
        {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while shared.other_acks.load(Ordering::Relaxed) == before
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        shared.closing.store(true, Ordering::Relaxed);
        let _ = client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Owns rumqttc's event loop: connection state, packet-id tracking, acknowledgements.
async fn drive(mut eventloop: rumqttc::EventLoop, shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            () = stop.cancelled() => break,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(250);
                shared.state.connected.store(true, Ordering::Relaxed);
                shared.connects.fetch_add(1, Ordering::Relaxed);
                shared.metrics.mqtt_connected.set(1);
                tracing::info!(agent = %shared.agent, "Connected to the MQTT broker.");
                // Re-sent on every connect, so a lost one is repaired; QoS 0 is enough.
                shared.status_wanted.store(true, Ordering::Relaxed);
                shared.wake.notify_one();
            }
            Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => shared.tracking().on_outgoing(pkid),
            Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                let seq = shared.tracking().inflight.remove(&ack.pkid);
                match seq {
                    Some(seq) => {
                        if let Err(e) = shared.spool.remove(&[seq]) {
                            // The row is sent again at the next start; the collector de-duplicates.
                            tracing::error!(error = %e, "Cannot remove an acknowledged event from the spool.");
                        }
                        shared.metrics.events_published.inc();
                        shared.update_depth();
                    }
                    None => {
                        shared.other_acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(_) => {}
            Err(_) if shared.closing.load(Ordering::Relaxed) => break,
            Err(e) => {
                if shared.state.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "MQTT connection lost; events wait in the spool.");
                } else {
                    tracing::debug!(error = %e, "MQTT connection attempt failed.");
                }
                shared.metrics.mqtt_connected.set(0);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_map_to_spool_rows_in_request_order() {
        let mut t = Tracking::default();
        t.queued
            .extend([Pending::Status, Pending::Spooled(10), Pending::Spooled(11)]);
        t.on_outgoing(0); // the QoS 0 status
        t.on_outgoing(1);
        t.on_outgoing(2);
        assert_eq!(t.inflight.get(&1), Some(&10));
        assert_eq!(t.inflight.get(&2), Some(&11));
        // After a reconnect rumqttc re-sends packet 1: nothing is consumed.
        t.queued.push_back(Pending::Spooled(12));
        t.on_outgoing(1);
        assert_eq!(t.queued.len(), 1);
        t.on_outgoing(3);
        assert_eq!(t.inflight.get(&3), Some(&12));
        t.inflight.clear();
        assert!(t.is_idle());
    }
}
