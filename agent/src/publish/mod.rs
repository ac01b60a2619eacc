//! Publishing events over MQTT at QoS 1, and the agent's retained status with its last will.
//!
//! Owns: the MQTT connection (rumqttc's event loop runs in its own task) and the queue of
//! events waiting for it. Device tasks hand events over through a cheap, cloneable
//! [`PublishHandle`]; when every handle is dropped the publisher drains what it holds, waits
//! (bounded) for the broker to acknowledge it, marks the agent offline and disconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use cnaas_shared::mqtt::MqttConfigError;
use cnaas_shared::{Event, topics};
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::metrics::{AgentMetrics, KindLabel};

/// Events queued in memory before the MQTT client, at most.
const QUEUE: usize = 100_000;
/// How long shutdown waits for the broker to acknowledge what was sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The `[mqtt]` section could not be turned into client options.
    #[error(transparent)]
    Config(#[from] MqttConfigError),
}

/// Hands events to the publisher. Cloning is cheap; dropping every clone starts the drain.
#[derive(Clone)]
pub struct PublishHandle {
    tx: mpsc::Sender<Event>,
    metrics: AgentMetrics,
}

impl PublishHandle {
    /// Queues an event. Never blocks a poller: when the queue is full the event is dropped,
    /// counted and logged.
    pub fn submit(&self, event: Event) {
        self.metrics
            .events
            .get_or_create(&KindLabel {
                kind: event.kind.as_str(),
            })
            .inc();
        let (device, kind) = (event.device.clone(), event.kind);
        match self.tx.try_send(event) {
            Ok(()) => {
                self.metrics.publish_queue.inc();
            }
            Err(_) => {
                self.metrics.events_dropped.inc();
                tracing::error!(device = %device, kind = %kind, "Publish queue full; event dropped.");
            }
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

/// Starts the publisher. Returns the handle for device tasks, the connection state, and the
/// task to await at shutdown.
pub fn spawn(
    cfg: &AgentConfig,
    metrics: AgentMetrics,
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
    let handle = PublishHandle {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(run(
        cfg.id.clone(),
        status_topic,
        client,
        eventloop,
        rx,
        metrics,
        state.clone(),
    ));
    Ok((handle, state, task))
}

async fn run(
    agent: String,
    status_topic: String,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    mut rx: mpsc::Receiver<Event>,
    metrics: AgentMetrics,
    state: ConnectionState,
) {
    let acked = Arc::new(AtomicU64::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let stop_driver = CancellationToken::new();
    let driver = {
        let (client, metrics, state, acked, stop, agent, topic, closing) = (
            client.clone(),
            metrics.clone(),
            state.clone(),
            acked.clone(),
            stop_driver.clone(),
            agent.clone(),
            status_topic.clone(),
            closing.clone(),
        );
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let ev = tokio::select! {
                    ev = eventloop.poll() => ev,
                    () = stop.cancelled() => break,
                };
                match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(250);
                        state.connected.store(true, Ordering::Relaxed);
                        metrics.mqtt_connected.set(1);
                        tracing::info!(agent = %agent, "Connected to the MQTT broker.");
                        // QoS 0 on purpose: every PUBACK then belongs to an event. It is
                        // re-sent on every reconnect, so a lost one is repaired.
                        if let Err(e) = client.try_publish(
                            &topic,
                            QoS::AtMostOnce,
                            true,
                            status_payload(&agent, "online"),
                        ) {
                            tracing::warn!(error = %e, "Cannot queue the online status.");
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        metrics.events_published.inc();
                    }
                    Ok(_) => {}
                    Err(_) if closing.load(Ordering::Relaxed) => break,
                    Err(e) => {
                        if state.connected.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "MQTT connection lost; reconnecting.");
                        } else {
                            tracing::debug!(error = %e, "MQTT connection attempt failed.");
                        }
                        metrics.mqtt_connected.set(0);
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = stop.cancelled() => break,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })
    };

    let mut sent: u64 = 0;
    while let Some(event) = rx.recv().await {
        metrics.publish_queue.dec();
        let topic = topics::event_topic(&event.agent, &event.device);
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, false, event.to_json())
            .await
        {
            tracing::error!(error = %e, device = %event.device, "MQTT client closed; event not published.");
            break;
        }
        sent += 1;
    }

    // Every sender is gone: wait (bounded) until the broker has acknowledged what we sent.
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    while acked.load(Ordering::Relaxed) < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pending = sent.saturating_sub(acked.load(Ordering::Relaxed));
    if pending > 0 {
        tracing::warn!(
            pending,
            "Shutting down with events not yet acknowledged by the broker."
        );
    }
    // A clean disconnect suppresses the last will, so say `offline` ourselves.
    if state.is_connected() {
        let _ = client
            .publish(
                &status_topic,
                QoS::AtLeastOnce,
                true,
                status_payload(&agent, "offline"),
            )
            .await;
        let before = acked.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while acked.load(Ordering::Relaxed) == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        closing.store(true, Ordering::Relaxed);
        let _ = client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_driver.cancel();
    let _ = driver.await;
    tracing::info!(sent, "Publisher stopped.");
}
