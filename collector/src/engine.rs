//! The engine: one thread that owns the write path. It takes ingested messages in order,
//! correlates, stores (event and incident change in one transaction), and only then
//! acknowledges the MQTT message, so a crash before the commit means a redelivery, not a loss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cnaas_shared::Event;
use rumqttc::{AsyncClient, Publish};
use tokio::sync::mpsc;

use crate::config::Inventory;
use crate::correlate;
use crate::metrics::{CollectorMetrics, IncidentLabel, ReasonLabel};
use crate::store::{DeadLetter, Decision, Store, StoreError, Transition};

/// One message for the engine.
#[derive(Debug)]
pub enum Input {
    /// A valid event.
    Event {
        /// The event.
        event: Event,
        /// When it was received.
        received: Instant,
    },
    /// A message that was refused.
    DeadLetter {
        /// The letter.
        letter: DeadLetter,
        /// Stable reason label for metrics.
        reason: &'static str,
    },
    /// An agent status message.
    Status {
        /// Agent id.
        agent: String,
        /// `online` / `offline`.
        status: String,
        /// Raw payload.
        payload: String,
    },
}

/// An input and the MQTT message to acknowledge once it is committed.
#[derive(Debug)]
pub struct Envelope {
    /// What to do.
    pub input: Input,
    /// The message to acknowledge after the commit.
    pub ack: Option<Publish>,
}

/// How the engine acknowledges messages.
pub trait Acker: Send + 'static {
    /// Acknowledges a committed message.
    fn ack(&self, publish: &Publish);
}

impl Acker for AsyncClient {
    fn ack(&self, publish: &Publish) {
        if let Err(e) = self.try_ack(publish) {
            tracing::warn!(error = %e, topic = %publish.topic, "Cannot acknowledge; the broker will redeliver.");
        }
    }
}

/// Starts the engine thread. It ends when every sender is dropped and the queue is empty.
pub fn spawn(
    store: Arc<dyn Store>,
    inventory: Arc<Inventory>,
    metrics: CollectorMetrics,
    acker: Box<dyn Acker>,
    capacity: usize,
) -> std::io::Result<(mpsc::Sender<Envelope>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(capacity);
    let handle = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            if let Ok(open) = store.count_open() {
                metrics
                    .incidents_open
                    .set(i64::try_from(open).unwrap_or(i64::MAX));
            }
            while let Some(env) = rx.blocking_recv() {
                metrics.ingest_queue.dec();
                process(store.as_ref(), &inventory, &metrics, env.input);
                if let Some(p) = env.ack {
                    acker.ack(&p);
                }
            }
            tracing::info!("Engine stopped.");
        })?;
    Ok((tx, handle))
}

/// Retries a store operation until it works: ingestion waits rather than loses a message.
fn with_retry<T>(
    metrics: &CollectorMetrics,
    what: &str,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> T {
    let mut delay = Duration::from_millis(50);
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) => {
                metrics.store_errors.inc();
                tracing::error!(error = %e, what, "Store failed; retrying.");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn process(store: &dyn Store, inventory: &Inventory, metrics: &CollectorMetrics, input: Input) {
    match input {
        Input::Event { event, received } => {
            let role = correlate::resolve_role(&event, inventory);
            let decision = correlate::decide(&event, role, inventory);
            let applied = with_retry(metrics, "event", || {
                store.apply(&event, role, &decision, Utc::now())
            });
            metrics.processing.observe(received.elapsed().as_secs_f64());
            if !applied.stored {
                metrics.events_duplicate.inc();
                tracing::debug!(event = %event.id, "Duplicate event ignored.");
                return;
            }
            metrics.events_stored.inc();
            if let Some((id, t)) = applied.incident {
                let kind = match &decision {
                    Decision::Open(n) => n.kind.as_str(),
                    _ if event.if_index.is_some() => "link_down",
                    _ => "device_down",
                };
                match t {
                    Transition::Opened => {
                        metrics.incidents_open.inc();
                        metrics
                            .incidents
                            .get_or_create(&IncidentLabel {
                                kind,
                                transition: "opened",
                            })
                            .inc();
                        tracing::info!(incident = id, device = %event.device, if_name = ?event.if_name, kind, "Incident opened.");
                    }
                    Transition::Resolved => {
                        metrics.incidents_open.dec();
                        metrics
                            .incidents
                            .get_or_create(&IncidentLabel {
                                kind,
                                transition: "resolved",
                            })
                            .inc();
                        tracing::info!(incident = id, device = %event.device, if_name = ?event.if_name, kind, "Incident resolved.");
                    }
                    Transition::Joined => {}
                }
            }
        }
        Input::DeadLetter { letter, reason } => {
            tracing::warn!(topic = %letter.topic, agent = ?letter.agent, reason = %letter.reason, "Message refused; kept as a dead letter.");
            metrics
                .dead_letters
                .get_or_create(&ReasonLabel { reason })
                .inc();
            with_retry(metrics, "dead letter", || store.dead_letter(&letter));
        }
        Input::Status {
            agent,
            status,
            payload,
        } => {
            metrics.agent_status.inc();
            tracing::info!(agent = %agent, status = %status, "Agent status.");
            with_retry(metrics, "agent status", || {
                store.set_agent_status(&agent, &status, &payload, Utc::now())
            });
        }
    }
}
