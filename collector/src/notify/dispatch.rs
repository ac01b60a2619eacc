//! The dispatcher: takes due notifications from the outbox, renders each once (kept, so every
//! retry sends the same message), hands it to its channel, and records the outcome. A failure
//! is retried with exponential backoff; a recipient still failing after the retry budget (or
//! failing for good) is reported to the engine, which marks it `failed` and opens a
//! `notification_failed` incident for SSC on another channel (one per failing channel). Until
//! the engine has done so the row stays pending, so a crash in between reports it again rather
//! than losing it. A failed row is still tried every `late_retry` while what it is about is
//! open; delivered then, it is marked `delayed`. The first delivery on a channel that had
//! failed tells the engine, which resolves the channel's incident and makes every failed row of
//! that channel due at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Routing;
use super::channels::{ChannelError, Channels};
use super::render::{ChangeContext, Context, Message, render, render_change, render_order};
use crate::engine::{Envelope, Input};
use crate::metrics::CollectorMetrics;
use crate::store::{About, Delivery, Notification, Store, StoreError};

/// How hard delivery tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per recipient.
    pub attempts: u32,
    /// Wait after the first failure; doubles after each further one.
    pub backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
    /// Wait between late attempts of a notification that failed for good.
    pub late_retry: Duration,
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts (1, 2, ...).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Due notifications taken at once, at most (they are delivered side by side).
const BATCH: u32 = 64;

/// Everything the dispatcher needs.
pub struct Dispatcher {
    /// The outbox.
    pub store: Arc<dyn Store>,
    /// The channels.
    pub channels: Channels,
    /// Customers (for names and time zones in messages).
    pub routing: Arc<Routing>,
    /// Device locations.
    pub inventory: Arc<crate::config::LiveInventory>,
    /// Base URL for links.
    pub base_url: String,
    /// Whom customers ask about a change.
    pub contact: Option<String>,
    /// Retry policy.
    pub policy: RetryPolicy,
    /// Metrics.
    pub metrics: CollectorMetrics,
    /// Poked by the engine after a commit that queued something.
    pub wake: Arc<Notify>,
    /// Where failures are reported.
    pub engine: mpsc::WeakSender<Envelope>,
}

/// Channels with an open `notification_failed` incident, as the dispatcher knows them.
type Failing = std::sync::Mutex<std::collections::HashSet<String>>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Corrupt {
            table: "notifications",
            reason: format!("store task failed: {e}"),
        })
    })
}

impl Dispatcher {
    /// Delivers until `token` is cancelled; deliveries under way are finished first (each is
    /// bounded by its channel's timeout), what is not yet due stays in the outbox.
    pub async fn run(self, token: CancellationToken) {
        let store = self.store.clone();
        let failing: Failing = match blocking(move || store.failing_channels()).await {
            Ok(c) => std::sync::Mutex::new(c.into_iter().collect()),
            Err(e) => {
                tracing::error!(error = %e, "Cannot read which channels are failing.");
                Failing::default()
            }
        };
        let me = Arc::new((self, failing));
        loop {
            if token.is_cancelled() {
                break;
            }
            let store = me.0.store.clone();
            let due = blocking(move || store.due_notifications(Utc::now(), BATCH)).await;
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot read the outbox; trying again.");
                    me.0.metrics.store_errors.inc();
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if due.is_empty() {
                let store = me.0.store.clone();
                let wait = match blocking(move || store.next_due()).await {
                    Ok(Some(t)) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                    _ => Duration::from_secs(60),
                }
                .clamp(Duration::from_millis(5), Duration::from_secs(60));
                tokio::select! {
                    () = token.cancelled() => break,
                    () = me.0.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let mut set = JoinSet::new();
            for n in due {
                let me = me.clone();
                set.spawn(async move { me.0.deliver_one(n, &me.1).await });
            }
            while set.join_next().await.is_some() {}
        }
        tracing::info!("Notification dispatcher stopped.");
    }

    fn count(&self, channel: &str, result: &'static str) {
        self.metrics.count_notification(channel, result);
    }

    async fn message(&self, n: &Notification) -> Result<Message, String> {
        if let (Some(subject), Some(body), Some(payload)) = (&n.subject, &n.body, &n.payload) {
            return Ok(Message {
                subject: subject.clone(),
                body: body.clone(),
                payload: payload.clone(),
            });
        }
        let store = self.store.clone();
        let id = n.about_id;
        let m = match n.about {
            About::Incident => {
                let detail = blocking(move || store.get_incident(id))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("incident {id} does not exist"))?;
                let customer = detail
                    .incident
                    .customer
                    .as_deref()
                    .and_then(|c| self.routing.customer(c));
                let inventory = self.inventory.get();
                render(&Context {
                    notification: n,
                    incident: &detail,
                    customer,
                    device: inventory.devices.get(&detail.incident.device),
                    base_url: &self.base_url,
                })
            }
            About::Change => {
                let change = blocking(move || store.get_change(id))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("change {id} does not exist"))?;
                render_change(&ChangeContext {
                    notification: n,
                    change: &change,
                    customer: n.customer.as_deref().and_then(|c| self.routing.customer(c)),
                    contact: self.contact.as_deref(),
                    base_url: &self.base_url,
                })
            }
            About::ChangeOrder => {
                let order = blocking(move || store.get_change_order(id))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("change order {id} does not exist"))?;
                let customer = self.routing.customer(&order.customer);
                render_order(n, &order, customer, &self.base_url)
            }
        };
        let store = self.store.clone();
        let (nid, s, b, p) = (n.id, m.subject.clone(), m.body.clone(), m.payload.clone());
        blocking(move || store.save_rendered(nid, &s, &b, &p))
            .await
            .map_err(|e| e.to_string())?;
        Ok(m)
    }

    async fn record(&self, n: &Notification, outcome: Delivery) {
        let store = self.store.clone();
        let id = n.id;
        if let Err(e) = blocking(move || store.record_delivery(id, Utc::now(), &outcome)).await {
            // The row stays as it was: delivered again later rather than lost.
            self.metrics.store_errors.inc();
            tracing::error!(notification = id, error = %e, "Cannot record a delivery.");
        }
    }

    /// Marks `n` in flight before an attempt, so that only a notification cut off mid-attempt
    /// by a crash is ever sent again (counted, logged); nothing is sent unmarked.
    async fn mark_in_flight(&self, n: &Notification) -> Result<(), StoreError> {
        let store = self.store.clone();
        let id = n.id;
        let repeat = blocking(move || store.mark_in_flight(id, Utc::now())).await?;
        if repeat {
            self.metrics.notifications_repeated.inc();
            tracing::warn!(notification = n.id, channel = %n.channel, key = %n.key, "An earlier attempt was cut off before its outcome was recorded: sending again with the same idempotency key (the recipient may get it twice).");
        }
        Ok(())
    }

    async fn tell_engine(&self, input: Input) -> bool {
        match self.engine.upgrade() {
            Some(tx) => tx.send(Envelope { input, ack: None }).await.is_ok(),
            None => false,
        }
    }

    async fn deliver_one(&self, n: Notification, failing: &Failing) {
        let late = n.state == "failed";
        let outcome = if n.attempts >= self.policy.attempts && !late {
            // Spent before a restart; the engine never confirmed the failure.
            Err(ChannelError::Permanent(
                n.last_error
                    .clone()
                    .unwrap_or_else(|| "retry budget spent".into()),
            ))
        } else {
            match self.message(&n).await {
                Ok(m) => match self.mark_in_flight(&n).await {
                    Ok(()) => self.channels.deliver(&n, &m).await,
                    Err(e) => Err(ChannelError::Transient(format!(
                        "cannot mark it in flight: {e}"
                    ))),
                },
                Err(e) => Err(ChannelError::Transient(format!("cannot render: {e}"))),
            }
        };
        let failures = n.attempts + 1;
        match outcome {
            Ok(()) => {
                self.count(&n.channel, "delivered");
                if late {
                    self.metrics.notifications_delayed.inc();
                }
                tracing::info!(notification = n.id, about = n.about.as_str(), id = n.about_id, channel = %n.channel, audience = %n.audience, transition = %n.transition, delayed = late, "Notification delivered.");
                self.record(&n, Delivery::Delivered).await;
                let was_failing = failing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&n.channel);
                if was_failing {
                    tracing::info!(channel = %n.channel, "The channel delivers again.");
                    let input = Input::ChannelRecovered {
                        channel: n.channel.clone(),
                    };
                    if !self.tell_engine(input).await {
                        tracing::error!(channel = %n.channel, "The engine has stopped; the channel's incident is resolved after a restart.");
                    }
                }
            }
            Err(ChannelError::Transient(error) | ChannelError::Permanent(error)) if late => {
                // Failed for good before and reported: tried again now and then while what
                // it is about is open.
                self.count(&n.channel, "retry");
                tracing::debug!(notification = n.id, channel = %n.channel, error = %error, "Late delivery failed; trying again later.");
                let next = Utc::now()
                    + TimeDelta::from_std(self.policy.late_retry).unwrap_or(TimeDelta::MAX);
                self.record(&n, Delivery::Retry { error, next }).await;
            }
            Err(ChannelError::Transient(error)) if failures < self.policy.attempts => {
                let wait = self.policy.delay(failures);
                self.count(&n.channel, "retry");
                tracing::warn!(notification = n.id, channel = %n.channel, attempt = failures, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), error = %error, "Delivery failed; will retry.");
                let next = Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                self.record(&n, Delivery::Retry { error, next }).await;
            }
            Err(ChannelError::Transient(error) | ChannelError::Permanent(error)) => {
                self.count(&n.channel, "failed");
                tracing::error!(notification = n.id, about = n.about.as_str(), id = n.about_id, channel = %n.channel, attempts = failures, error = %error, "Delivery failed for good; reporting it to SSC.");
                // Parked until the engine marks it failed (in the same transaction as the
                // incident about it); if the engine is gone, it is reported after a restart.
                let next = Utc::now()
                    + TimeDelta::from_std(self.policy.max_backoff).unwrap_or(TimeDelta::MAX);
                self.record(
                    &n,
                    Delivery::Retry {
                        error: error.clone(),
                        next,
                    },
                )
                .await;
                failing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(n.channel.clone());
                let input = Input::NotificationFailed {
                    notification: n.id,
                    error,
                };
                if !self.tell_engine(input).await {
                    tracing::error!(
                        notification = n.id,
                        "The engine has stopped; the failure is reported after a restart."
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 8,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(20),
            late_retry: Duration::from_secs(600),
        };
        let waits: Vec<u64> = (1..=6).map(|f| p.delay(f).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20, 20]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(20));
    }
}
