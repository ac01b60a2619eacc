//! The engine: one thread that owns the write path. It takes ingested messages in order,
//! correlates, stores (event and incident change in one transaction), and only then
//! acknowledges the MQTT message, so a crash before the commit means a redelivery, not a loss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cnaas_shared::Event;
use rumqttc::Publish;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::Inventory;
use crate::correlate::{self, Action, CommandError, Correlator, Rules};
use crate::metrics::{CollectorMetrics, IncidentLabel, ReasonLabel};
use crate::notify::{Routing, Transition, TransitionKind, outbox};
use crate::store::About;
use crate::store::{AlarmKind, DeadLetter, IncidentTx, NewIncident, Relation, Store, StoreError};

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
    /// The rules' clock: once a second.
    Tick,
    /// A person's action on an incident (from the API), answered on `reply`.
    Command {
        /// Incident id.
        incident: i64,
        /// What to do.
        action: Action,
        /// Who asks (the token's name).
        actor: String,
        /// Optional text.
        comment: Option<String>,
        /// Where the outcome goes.
        reply: tokio::sync::oneshot::Sender<Result<(), CommandError>>,
    },
    /// The dispatcher gave up on a notification: mark it failed and tell SSC.
    NotificationFailed {
        /// The notification.
        notification: i64,
        /// The last error.
        error: String,
    },
    /// A channel with an open `notification_failed` incident delivered again: resolve it and
    /// make the channel's failed notifications due now.
    ChannelRecovered {
        /// Channel name.
        channel: String,
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

/// Starts the engine thread. It ends when every sender is dropped and the queue is empty. A
/// ticker feeds it [`Input::Tick`] every second for the rules' timers.
pub fn spawn(
    store: Arc<dyn Store>,
    live: Arc<crate::config::LiveInventory>,
    rules: Rules,
    notices: Notices,
    metrics: CollectorMetrics,
    acker: Box<dyn Acker>,
    capacity: usize,
) -> std::io::Result<(mpsc::Sender<Envelope>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(capacity);
    // The ticker holds only a weak sender: when ingest drops the last real one, it stops.
    let weak = tx.downgrade();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let Some(tx) = weak.upgrade() else { break };
            if tx
                .send(Envelope {
                    input: Input::Tick,
                    ack: None,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let handle = std::thread::Builder::new().name("engine".into()).spawn(move || {
        let mut inventory = live.get();
        let mut correlator = Correlator::new(rules, inventory.clone())
            .with_maintenance(Box::new(crate::changes::StoredWindows { store: store.clone() }));
        match store.open_members() {
            Ok(members) => correlator.restore(&members, Utc::now()),
            Err(e) => tracing::error!(error = %e, "Cannot read the open incidents; starting without them."),
        }
        match store.pending_alarms() {
            Ok(pending) => correlator.restore_pending(&pending),
            Err(e) => tracing::error!(error = %e, "Cannot read the quarantined alarms; starting without them."),
        }
        match store.lldp_snapshots() {
            Ok(snaps) => {
                for e in &snaps {
                    correlator.learn_neighbours(e, e.observed_at);
                }
                tracing::info!(devices = snaps.len(), links = correlator.topology().links().len(), "Topology rebuilt from the stored LLDP snapshots.");
            }
            Err(e) => tracing::error!(error = %e, "Cannot read the stored LLDP snapshots; the topology starts from the inventory."),
        }
        publish_topology(&mut correlator, &notices);
        set_open_count(store.as_ref(), &metrics);
        let owners = OwnerCache::default();
        while let Some(first) = rx.blocking_recv() {
            // A new inventory (CNaaS-NMS read again) is in force from the next batch on.
            let now_inventory = live.get();
            if !Arc::ptr_eq(&now_inventory, &inventory) {
                inventory = now_inventory;
                correlator.set_inventory(inventory.clone());
                tracing::info!(devices = inventory.devices.len(), links = correlator.topology().links().len(), "New inventory in force.");
            }
            let cx = Cx { store: store.as_ref(), inventory: &inventory, metrics: &metrics, notices: &notices, owners: &owners };
            // Take what is queued (bounded), so a burst shares one transaction per run of events.
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(env) => batch.push(env),
                    Err(_) => break,
                }
            }
            let mut events = Vec::new();
            for env in batch {
                if matches!(env.input, Input::Event { .. } | Input::DeadLetter { .. } | Input::Status { .. }) {
                    metrics.ingest_queue.dec();
                }
                if matches!(env.input, Input::Event { .. }) {
                    events.push(env);
                    continue;
                }
                flush_events(&cx, &mut correlator, acker.as_ref(), &mut events);
                let ack = env.ack;
                process(&cx, &mut correlator, env.input);
                if let Some(p) = ack {
                    acker.ack(&p);
                }
            }
            flush_events(&cx, &mut correlator, acker.as_ref(), &mut events);
            set_open_count(store.as_ref(), &metrics);
            publish_topology(&mut correlator, &notices);
        }
        tracing::info!("Engine stopped.");
    })?;
    Ok((tx, handle))
}

/// What the API shows of the topology: the graph, the devices down, the neighbour changes.
#[derive(Debug, Clone, Default)]
pub struct TopologyView {
    /// The graph.
    pub topology: Arc<crate::correlate::topology::Topology>,
    /// Devices whose `device_down` alarm is active.
    pub down: std::collections::HashSet<String>,
    /// The latest LLDP neighbour changes, oldest first.
    pub changes: Vec<crate::correlate::NeighbourChange>,
}

/// Hands the API a new view when the graph or the down set changed.
fn publish_topology(correlator: &mut Correlator, notices: &Notices) {
    correlator.settle_topology();
    let topology = correlator.topology();
    let down = correlator.devices_down();
    let same = notices
        .topology
        .read()
        .map(|v| Arc::ptr_eq(&v.topology, &topology) && v.down == down)
        .unwrap_or(false);
    if same {
        return;
    }
    let view = TopologyView {
        topology,
        down,
        changes: correlator.neighbour_changes(),
    };
    if let Ok(mut slot) = notices.topology.write() {
        *slot = view;
    }
}

/// Sets the open-incidents gauge from the store (every open incident, also those the
/// correlator does not track, such as failed channels).
fn set_open_count(store: &dyn Store, metrics: &CollectorMetrics) {
    match store.count_open() {
        Ok(n) => {
            metrics
                .incidents_open
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Err(e) => {
            metrics.store_errors.inc();
            tracing::error!(error = %e, "Cannot count the open incidents.");
        }
    }
}

/// The engine's write path driven synchronously, with the clock given by the caller: what the
/// engine thread does with each input, for the model-based test of the whole engine
/// (correlator, store, routing and outbox together) and for tools.
pub struct Core {
    owners: OwnerCache,
    store: Arc<dyn Store>,
    inventory: Arc<Inventory>,
    metrics: CollectorMetrics,
    notices: Notices,
    correlator: Correlator,
}

impl Core {
    /// An engine over `store`, restored from what it holds, with these maintenance windows.
    pub fn new(
        store: Arc<dyn Store>,
        inventory: Arc<Inventory>,
        rules: Rules,
        notices: Notices,
        maintenance: Box<dyn correlate::Maintenance>,
        now: DateTime<Utc>,
    ) -> Result<Core, StoreError> {
        let mut correlator =
            Correlator::new(rules, inventory.clone()).with_maintenance(maintenance);
        correlator.restore(&store.open_members()?, now);
        correlator.restore_pending(&store.pending_alarms()?);
        for e in store.lldp_snapshots()? {
            correlator.learn_neighbours(&e, e.observed_at);
        }
        correlator.settle_topology();
        let mut registry = prometheus_client::registry::Registry::default();
        Ok(Core {
            owners: OwnerCache::default(),
            store,
            inventory,
            metrics: CollectorMetrics::register(&mut registry),
            notices,
            correlator,
        })
    }

    fn run(&mut self, input: Input, now: DateTime<Utc>) {
        let cx = Cx {
            store: self.store.as_ref(),
            inventory: &self.inventory,
            metrics: &self.metrics,
            notices: &self.notices,
            owners: &self.owners,
        };
        process_at(&cx, &mut self.correlator, input, now);
    }

    /// Stores and correlates one event at `now`.
    pub fn event(&mut self, event: Event, now: DateTime<Utc>) {
        let input = Input::Event {
            event,
            received: Instant::now(),
        };
        self.run(input, now);
    }

    /// The rules' timers at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.run(Input::Tick, now);
    }

    /// An agent status message at `now`.
    pub fn status(&mut self, agent: &str, status: &str, now: DateTime<Utc>) {
        let input = Input::Status {
            agent: agent.to_owned(),
            status: status.to_owned(),
            payload: String::new(),
        };
        self.run(input, now);
    }

    /// The dispatcher gave up on a notification at `now`.
    pub fn notification_failed(&mut self, notification: i64, error: &str, now: DateTime<Utc>) {
        let input = Input::NotificationFailed {
            notification,
            error: error.to_owned(),
        };
        self.run(input, now);
    }

    /// A failing channel delivered again at `now`.
    pub fn channel_recovered(&mut self, channel: &str, now: DateTime<Utc>) {
        let input = Input::ChannelRecovered {
            channel: channel.to_owned(),
        };
        self.run(input, now);
    }

    /// A person's action at `now`.
    pub fn command(
        &mut self,
        incident: i64,
        action: Action,
        actor: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CommandError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let input = Input::Command {
            incident,
            action,
            actor: actor.to_owned(),
            comment: comment.map(str::to_owned),
            reply,
        };
        self.run(input, now);
        answer
            .try_recv()
            .unwrap_or_else(|_| Err(CommandError::Invalid("the engine gave no answer".into())))
    }
}

/// What the engine needs to queue notifications.
#[derive(Debug, Clone)]
pub struct Notices {
    /// Who is told what.
    pub routing: Arc<Routing>,
    /// Poked after a commit that queued notifications.
    pub wake: Arc<Notify>,
    /// Bumped after every commit that changed an incident or a change (the dashboard's live
    /// update waits on it).
    pub revision: Arc<watch::Sender<u64>>,
    /// The topology as the engine last saw it.
    pub topology: Arc<std::sync::RwLock<TopologyView>>,
}

impl Notices {
    /// Tells the dashboard that something it shows changed.
    pub fn changed(&self) {
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }
}

/// What one transaction through [`Observed`] did.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    /// Notifications queued.
    queued: usize,
    /// Whether an incident was written.
    touched: bool,
}

/// The engine thread's parts, passed down to each step.
struct Cx<'a> {
    store: &'a dyn Store,
    inventory: &'a Inventory,
    metrics: &'a CollectorMetrics,
    notices: &'a Notices,
    owners: &'a OwnerCache,
}

/// The pinned agent of each device seen, so that an event costs no read of the store for it.
/// Cleared when a transaction fails (a pin may have been rolled back) and whenever the store
/// says a pin was released.
#[derive(Debug, Default)]
struct OwnerCache {
    owners: std::cell::RefCell<std::collections::HashMap<String, String>>,
    generation: std::cell::Cell<u64>,
}

impl OwnerCache {
    fn get(&self, store: &dyn Store, device: &str) -> Option<String> {
        let now = store.owners_generation();
        if now != self.generation.get() {
            self.owners.borrow_mut().clear();
            self.generation.set(now);
        }
        self.owners.borrow().get(device).cloned()
    }

    fn put(&self, device: &str, agent: &str) {
        self.owners
            .borrow_mut()
            .insert(device.to_owned(), agent.to_owned());
    }

    fn clear(&self) {
        self.owners.borrow_mut().clear();
    }
}

/// Inputs taken from the queue at once, at most.
const BATCH: usize = 512;

/// Stores and correlates a run of events in one transaction, then acknowledges them.
fn flush_events(
    cx: &Cx<'_>,
    correlator: &mut Correlator,
    acker: &dyn Acker,
    events: &mut Vec<Envelope>,
) {
    if events.is_empty() {
        return;
    }
    let batch: Vec<&Event> = events
        .iter()
        .filter_map(|env| match &env.input {
            Input::Event { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    store_events(cx, correlator, &batch);
    for env in events.drain(..) {
        if let Input::Event { received, .. } = &env.input {
            cx.metrics
                .processing
                .observe(received.elapsed().as_secs_f64());
        }
        if let Some(p) = env.ack {
            acker.ack(&p);
        }
    }
}

/// Stores events and correlates them, all in one transaction (retried whole on failure).
fn store_events(cx: &Cx<'_>, correlator: &mut Correlator, events: &[&Event]) {
    store_events_at(cx, correlator, events, Utc::now());
}

fn store_events_at(
    cx: &Cx<'_>,
    correlator: &mut Correlator,
    events: &[&Event],
    now: DateTime<Utc>,
) {
    let (mut stored, mut duplicate, mut future) = (0u64, 0u64, 0u64);
    let mut refused: Vec<(&Event, String)> = Vec::new();
    let stale_before = correlator.stale_events();
    let queued = with_retry(cx.metrics, "events", || {
        (stored, duplicate, future) = (0, 0, 0);
        refused.clear();
        let mut queued = Done::default();
        let result = cx.store.transaction(&mut |tx| {
            queued = observed(tx, cx, now, |o| {
                for event in events {
                    if let Some(reason) = not_its_device(o, cx, event, now)? {
                        refused.push((event, reason));
                        continue;
                    }
                    let role = correlate::resolve_role(event, cx.inventory);
                    if o.insert_event(event, role, now)? {
                        stored += 1;
                        if correlate::event_time(event.observed_at, now).1 {
                            future += 1;
                            tracing::warn!(event = %event.id, agent = %event.agent, device = %event.device, observed_at = %event.observed_at, "Event observed in the future (clock skew?): judged at the collector's time.");
                        }
                        correlator.on_event(event, role, now, o)?;
                    } else {
                        duplicate += 1;
                        tracing::debug!(event = %event.id, "Duplicate event ignored.");
                    }
                }
                Ok(())
            })?;
            Ok(())
        });
        if result.is_err() {
            reset(cx, correlator, now);
        }
        result.map(|()| queued)
    });
    for (event, reason) in refused {
        let topic = cnaas_shared::topics::event_topic(&event.agent, &event.device);
        let mut payload = event.to_json();
        payload.truncate(crate::ingest::DEAD_LETTER_BYTES);
        let letter = DeadLetter {
            received_at: now,
            topic,
            agent: Some(event.agent.clone()),
            reason,
            payload,
        };
        dead_letter(cx, &letter, "not_owner");
    }
    cx.metrics.events_stored.inc_by(stored);
    cx.metrics.events_duplicate.inc_by(duplicate);
    cx.metrics.events_future.inc_by(future);
    cx.metrics
        .events_stale
        .inc_by(correlator.stale_events().saturating_sub(stale_before));
    cx.committed(queued);
}

impl Cx<'_> {
    /// Counts what a commit queued, wakes the dispatcher and tells the dashboard.
    fn committed(&self, done: Done) {
        if done.touched {
            self.notices.changed();
        }
        let n = done.queued;
        if n > 0 {
            self.metrics
                .notifications_queued
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
            self.notices.wake.notify_one();
        }
    }
}

/// Runs `f` on the transaction through [`Observed`], then, in the same transaction, queues the
/// notifications of the transitions it made. Returns what it did.
fn observed(
    tx: &mut dyn IncidentTx,
    cx: &Cx<'_>,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut Observed<'_>) -> Result<(), StoreError>,
) -> Result<Done, StoreError> {
    let mut o = Observed {
        inner: tx,
        metrics: cx.metrics,
        transitions: Vec::new(),
        touched: false,
    };
    f(&mut o)?;
    let transitions = std::mem::take(&mut o.transitions);
    let touched = o.touched;
    let queued = outbox::enqueue(tx, &cx.notices.routing, &transitions, now)?;
    Ok(Done { queued, touched })
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
            Ok(v) => {
                metrics.store_failing.set(0);
                return v;
            }
            Err(e) => {
                // Visible (metric, /healthz degraded) while it lasts; nothing is acknowledged
                // meanwhile, so the broker keeps what waits.
                metrics.store_errors.inc();
                metrics.store_failing.set(1);
                tracing::error!(error = %e, what, "Store failed; retrying.");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Forwards to the store, counts and logs incident openings and resolutions, and records the
/// transitions that notify someone.
struct Observed<'a> {
    inner: &'a mut dyn IncidentTx,
    metrics: &'a CollectorMetrics,
    transitions: Vec<Transition>,
    /// Whether an incident was written.
    touched: bool,
}

impl Observed<'_> {
    fn record(&mut self, incident: i64, kind: TransitionKind, detail: Option<&str>) {
        self.transitions.push(Transition {
            incident,
            kind,
            detail: detail.map(str::to_owned),
        });
    }
}

impl IncidentTx for Observed<'_> {
    fn device_owner(&mut self, device: &str) -> Result<Option<String>, StoreError> {
        self.inner.device_owner(device)
    }
    fn pin_owner(
        &mut self,
        device: &str,
        agent: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.pin_owner(device, agent, at)
    }
    fn insert_event(
        &mut self,
        event: &Event,
        role: Option<cnaas_shared::role::PortRole>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.insert_event(event, role, at)
    }
    fn open(&mut self, new: &NewIncident, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.touched = true;
        let id = self.inner.open(new, at)?;
        self.metrics
            .incidents
            .get_or_create(&IncidentLabel {
                kind: new.kind.as_str(),
                transition: "opened",
            })
            .inc();
        tracing::info!(incident = id, device = %new.device, if_name = ?new.if_name, kind = new.kind.as_str(), "Incident opened.");
        self.record(id, TransitionKind::Opened, None);
        Ok(id)
    }
    fn add_member(
        &mut self,
        incident: i64,
        alarm: &str,
        relation: Relation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.add_member(incident, alarm, relation, at)
    }
    fn clear_member(
        &mut self,
        incident: i64,
        alarm: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.clear_member(incident, alarm, at)
    }
    fn note(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        event: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.note(incident, at, action, event, detail)?;
        if action == "maintenance_ended" {
            self.record(incident, TransitionKind::MaintenanceEnded, None);
        }
        if action == "worsened" {
            self.record(incident, TransitionKind::Worsened, Some(detail));
        }
        Ok(())
    }
    fn resolve(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.resolve(incident, at)?;
        self.record(incident, TransitionKind::Resolved, None);
        self.metrics
            .incidents
            .get_or_create(&IncidentLabel {
                kind: "any",
                transition: "resolved",
            })
            .inc();
        tracing::info!(incident, "Incident resolved.");
        Ok(())
    }
    fn reopen(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.reopen(incident, at)?;
        self.record(incident, TransitionKind::Reopened, None);
        self.metrics
            .incidents
            .get_or_create(&IncidentLabel {
                kind: "any",
                transition: "reopened",
            })
            .inc();
        tracing::info!(incident, "Incident re-opened.");
        Ok(())
    }
    fn extend_first(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.extend_first(incident, at)
    }
    fn merge(&mut self, incident: i64, into: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.merge(incident, into, at)?;
        self.record(incident, TransitionKind::Merged, None);
        self.metrics
            .incidents
            .get_or_create(&IncidentLabel {
                kind: "any",
                transition: "merged",
            })
            .inc();
        tracing::info!(incident, into, "Incident merged into another.");
        Ok(())
    }
    fn set_impact(
        &mut self,
        incident: i64,
        severity: u8,
        summary: &str,
        impact: &crate::store::IncidentImpact,
    ) -> Result<(), StoreError> {
        self.touched = true;
        tracing::info!(incident, severity, impact = %impact.kind, isolated = impact.isolated.len(), degraded = impact.degraded.len(), "Incident impact judged.");
        self.inner.set_impact(incident, severity, summary, impact)
    }
    fn set_transitions(&mut self, incident: i64, transitions: u32) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.set_transitions(incident, transitions)
    }
    fn state(&mut self, incident: i64) -> Result<Option<(String, bool)>, StoreError> {
        self.inner.state(incident)
    }
    fn active_members(&mut self, incident: i64) -> Result<Vec<String>, StoreError> {
        self.inner.active_members(incident)
    }
    fn set_state(
        &mut self,
        incident: i64,
        state: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.set_state(incident, state, at)
    }
    fn set_escalated(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.set_escalated(incident, at)
    }
    fn set_in_maintenance(&mut self, incident: i64, on: bool) -> Result<(), StoreError> {
        self.touched = true;
        self.inner.set_in_maintenance(incident, on)
    }
    fn set_pending(&mut self, alarm: &str, since: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.set_pending(alarm, since)
    }
    fn clear_pending(&mut self, alarm: &str) -> Result<(), StoreError> {
        self.inner.clear_pending(alarm)
    }
    fn note_by(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.touched = true;
        tracing::info!(incident, action, actor, "Incident changed by a person.");
        self.inner.note_by(incident, at, action, actor, detail)?;
        let detail = Some(detail).filter(|d| !d.trim().is_empty());
        match action {
            "escalated" => self.record(incident, TransitionKind::Escalated, detail),
            "local_work" => self.record(incident, TransitionKind::LocalWork, detail),
            _ => {}
        }
        Ok(())
    }
    fn outbox(&mut self) -> Option<&mut dyn crate::store::OutboxTx> {
        self.inner.outbox()
    }
}

fn process(cx: &Cx<'_>, correlator: &mut Correlator, input: Input) {
    process_at(cx, correlator, input, Utc::now());
}

/// One input at the time `now` (the engine passes the clock; the model-based test its own).
fn process_at(cx: &Cx<'_>, correlator: &mut Correlator, input: Input, now: DateTime<Utc>) {
    let metrics = cx.metrics;
    match input {
        // The main loop stores events in runs (flush_events); a single one goes the same way.
        Input::Event { event, received } => {
            store_events_at(cx, correlator, &[&event], now);
            metrics.processing.observe(received.elapsed().as_secs_f64());
        }
        Input::Command {
            incident,
            action,
            actor,
            comment,
            reply,
        } => {
            let mut outcome = Ok(());
            let mut queued = Done::default();
            let stored = cx.store.process(None, &mut |tx| {
                queued = observed(tx, cx, now, |o| {
                    outcome = match correlator.command(
                        incident,
                        action,
                        &actor,
                        comment.as_deref(),
                        now,
                        o,
                    ) {
                        Err(CommandError::Store(e)) => return Err(e),
                        other => other,
                    };
                    Ok(())
                })?;
                Ok(())
            });
            let result = match stored {
                Err(e) => {
                    metrics.store_errors.inc();
                    reset(cx, correlator, now);
                    Err(CommandError::Store(e))
                }
                Ok(_) => {
                    cx.committed(queued);
                    outcome
                }
            };
            let _ = reply.send(result);
        }
        Input::Tick => {
            let queued = in_transaction(cx, correlator, "tick", now, |c, o| c.tick(now, o));
            cx.committed(queued);
        }
        Input::NotificationFailed {
            notification,
            error,
        } => {
            let queued = in_transaction(cx, correlator, "notification failure", now, |_, o| {
                report_failure(o, notification, &error, now)
            });
            cx.committed(queued);
        }
        Input::ChannelRecovered { channel } => {
            let queued = in_transaction(cx, correlator, "channel recovered", now, |_, o| {
                channel_recovered(o, &channel, now)
            });
            cx.committed(queued);
            cx.notices.wake.notify_one();
        }
        Input::DeadLetter { letter, reason } => dead_letter(cx, &letter, reason),
        Input::Status {
            agent,
            status,
            payload,
        } => {
            metrics.agent_status.inc();
            tracing::info!(agent = %agent, status = %status, "Agent status.");
            with_retry(metrics, "agent status", || {
                cx.store.set_agent_status(&agent, &status, &payload, now)
            });
            let queued = in_transaction(cx, correlator, "agent status", now, |c, o| {
                c.agent_status(&agent, &status, now, o)
            });
            cx.committed(queued);
        }
    }
}

/// Why `event`'s agent may not speak for its device (None: it may). The inventory's
/// `agents` decide where given; otherwise the first agent to report the device is pinned as
/// its only one (in the same transaction as the event).
fn not_its_device(
    tx: &mut dyn IncidentTx,
    cx: &Cx<'_>,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    if let Some(d) = cx.inventory.devices.get(&event.device)
        && !d.agents.is_empty()
    {
        if d.agents.contains(&event.agent) {
            return Ok(None);
        }
        return Ok(Some(format!(
            "agent `{}` may not report device `{}`: the inventory allows {}",
            event.agent,
            event.device,
            d.agents.join(", ")
        )));
    }
    let owner = match cx.owners.get(cx.store, &event.device) {
        Some(o) => Some(o),
        None => {
            // Read from the store once; later events of the device find it in the cache.
            let stored = tx.device_owner(&event.device)?;
            if let Some(o) = &stored {
                cx.owners.put(&event.device, o);
            }
            stored
        }
    };
    match owner {
        Some(owner) if owner == event.agent => Ok(None),
        Some(owner) => Ok(Some(format!(
            "agent `{}` may not report device `{}`: it is pinned to agent `{owner}` (release it with DELETE /api/v1/devices/{}/owner when the device has moved)",
            event.agent, event.device, event.device
        ))),
        None => {
            tracing::info!(device = %event.device, agent = %event.agent, "First event of the device: pinned to its agent.");
            tx.pin_owner(&event.device, &event.agent, now)?;
            cx.owners.put(&event.device, &event.agent);
            Ok(None)
        }
    }
}

/// Keeps a refused message, counted by reason. The log line is rate-limited: a flood of
/// refused messages must not become a flood of log.
fn dead_letter(cx: &Cx<'_>, letter: &DeadLetter, reason: &'static str) {
    static LOG: cnaas_shared::runtime::LogLimiter = cnaas_shared::runtime::LogLimiter::new();
    if let Some(suppressed) = LOG.allow() {
        tracing::warn!(topic = %letter.topic, agent = ?letter.agent, reason = %letter.reason, suppressed, "Message refused; kept as a dead letter.");
    }
    cx.metrics
        .dead_letters
        .get_or_create(&ReasonLabel { reason })
        .inc();
    with_retry(cx.metrics, "dead letter", || cx.store.dead_letter(letter));
}

/// Runs `f` through [`observed`] in one transaction, retried until it commits; returns what
/// it did. A failed attempt resets the correlator from the store first, so a retry starts from
/// the truth rather than from changes that were rolled back.
fn in_transaction(
    cx: &Cx<'_>,
    correlator: &mut Correlator,
    what: &str,
    now: DateTime<Utc>,
    mut f: impl FnMut(&mut Correlator, &mut Observed<'_>) -> Result<(), StoreError>,
) -> Done {
    with_retry(cx.metrics, what, || {
        let mut queued = Done::default();
        let result = cx.store.process(None, &mut |tx| {
            queued = observed(tx, cx, now, |o| f(correlator, o))?;
            Ok(())
        });
        if result.is_err() {
            reset(cx, correlator, now);
        }
        result.map(|_| queued)
    })
}

/// Rebuilds the correlator's memory from the store after a transaction failed.
fn reset(cx: &Cx<'_>, correlator: &mut Correlator, now: DateTime<Utc>) {
    // A pin made in the failed transaction is gone with it.
    cx.owners.clear();
    match (cx.store.open_members(), cx.store.pending_alarms()) {
        (Ok(members), Ok(pending)) => correlator.reset(&members, &pending, now),
        (Err(e), _) | (_, Err(e)) => {
            cx.metrics.store_errors.inc();
            tracing::error!(error = %e, "Cannot read the open incidents to reset the correlator after a failed transaction.");
        }
    }
}

/// The alarm key of a channel's `notification_failed` incident.
fn channel_alarm(channel: &str) -> String {
    crate::store::alarm_key(
        &format!("{}{channel}", crate::notify::route::FAILED_CHANNEL_PREFIX),
        None,
        AlarmKind::NotificationFailed,
    )
}

/// A channel delivers again: its incident resolves (SSC hears of it) and its failed
/// notifications are tried at once.
fn channel_recovered(
    o: &mut Observed<'_>,
    channel: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = channel_alarm(channel);
    let Some(outbox) = o.outbox() else {
        return Ok(());
    };
    let retried = outbox.retry_failed(channel, now)?;
    let Some(id) = outbox.open_by_key(&key)? else {
        return Ok(());
    };
    o.clear_member(id, &key, now)?;
    o.resolve(id, now)?;
    o.note(
        id,
        now,
        "resolved",
        None,
        &format!(
            "channel {channel} delivers again; {retried} failed notification(s) are sent late now"
        ),
    )
}

/// Marks a notification failed and opens the `notification_failed` incident of its channel
/// (one per failing channel: later failures are lines of its history), which routing sends
/// to SSC on the other channels. A failed report of a failure is not reported again (two
/// broken channels would feed each other); it stays in the API and the metrics.
fn report_failure(
    o: &mut Observed<'_>,
    id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(outbox) = o.outbox() else {
        return Ok(());
    };
    let Some(n) = outbox.fail(id, error)? else {
        return Ok(());
    };
    let about = match n.about {
        About::Incident => outbox.incident(n.about_id)?,
        About::Change | About::ChangeOrder => None,
    };
    let what = format!(
        "notification {} ({} to {} {} via channel {}) failed after {} attempts: {error}",
        n.id, n.transition, n.audience, n.recipient, n.channel, n.attempts
    );
    if about
        .as_ref()
        .is_some_and(|i| i.kind == crate::notify::route::NOTIFICATION_FAILED)
    {
        tracing::error!(notification = n.id, incident = n.about_id, channel = %n.channel, "The report of a failed notification failed too; it stays in the API.");
        return o.note(n.about_id, now, "notification_failed", None, &what);
    }
    let subject = match n.about {
        About::Incident => format!("Incident {}", n.about_id),
        About::Change => format!("Change {}", n.about_id),
        About::ChangeOrder => format!("Change order {}", n.about_id),
    };
    let key = channel_alarm(&n.channel);
    // The channel's incident: a later failure is a line of its history.
    let channel_incident = match outbox.open_by_key(&key)? {
        Some(open) => {
            o.note(
                open,
                now,
                "notification_failed",
                None,
                &format!("{subject}: {what}"),
            )?;
            open
        }
        None => {
            let new = NewIncident {
                kind: AlarmKind::NotificationFailed,
                key,
                severity: 2,
                device: format!(
                    "{}{}",
                    crate::notify::route::FAILED_CHANNEL_PREFIX,
                    n.channel
                ),
                if_index: None,
                if_name: None,
                if_alias: None,
                role: None,
                site: about.as_ref().and_then(|i| i.site.clone()),
                customer: None,
                summary: format!(
                    "Notifications on channel {} fail (first: {subject}: {what})",
                    n.channel
                ),
            };
            let opened = o.open(&new, now)?;
            o.note(opened, now, "opened", None, &new.summary)?;
            opened
        }
    };
    if about.is_some() {
        o.note(
            n.about_id,
            now,
            "notification_failed",
            None,
            &format!("{what}; incident {channel_incident} tells SSC"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DeviceRole, InventoryDevice};
    use crate::customers::{ContactPoint, CustomerEntry, check};
    use crate::store::{NotificationFilter, SqliteStore};
    use cnaas_shared::{EventKind, Source};

    struct NoAck;
    impl Acker for NoAck {
        fn ack(&self, _publish: &Publish) {}
    }

    fn point(to: &str) -> ContactPoint {
        ContactPoint {
            channel: "mail".into(),
            to: to.into(),
            name: None,
        }
    }

    /// A distribution switch with 50 access switches behind it, all of customer `a`.
    fn campus() -> (Inventory, Routing, Rules) {
        let mut inv = Inventory::default();
        let dev = |role, uplink: Option<&str>| InventoryDevice {
            customer: Some("a".into()),
            site: Some("s1".into()),
            role: Some(role),
            uplinks: uplink.map(str::to_owned).into_iter().collect(),
            ..InventoryDevice::default()
        };
        inv.devices
            .insert("d1".into(), dev(DeviceRole::Distribution, None));
        for n in 1..=50 {
            inv.devices
                .insert(format!("a{n:02}"), dev(DeviceRole::Access, Some("d1")));
        }
        let customer = check(
            &CustomerEntry {
                id: "a".into(),
                name: "A".into(),
                timezone: "Europe/Oslo".into(),
                language: "nb".into(),
                opening_hours: vec!["mon-sun 00:00-23:59".into()],
                incident: Some(point("servicedesk@a.no")),
                change: Some(point("change@a.no")),
                local_support: Some(point("helpdesk@a.no")),
                technical: vec![point("ola.nordmann@a.no")],
                administrative: vec![point("kontrakt@a.no")],
            },
            &["mail".into()],
        )
        .0
        .unwrap();
        let rules = Rules {
            group_window: chrono::TimeDelta::milliseconds(500),
            ..Rules::default()
        };
        let routing = Routing::new(
            &[customer],
            vec![ContactPoint {
                channel: "queue".into(),
                to: "ssc".into(),
                name: None,
            }],
            vec![],
            "nb".into(),
            rules,
        );
        (inv, routing, rules)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storm_is_told_once_per_recipient_as_the_grouped_incident() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("c.db")).unwrap());
        let (inv, routing, rules) = campus();
        let mut registry = prometheus_client::registry::Registry::default();
        let (tx, thread) = spawn(
            store.clone(),
            Arc::new(crate::config::LiveInventory::new(inv)),
            rules,
            Notices {
                routing: Arc::new(routing),
                wake: Arc::new(Notify::new()),
                revision: Arc::new(watch::channel(0).0),
                topology: Default::default(),
            },
            CollectorMetrics::register(&mut registry),
            Box::new(NoAck),
            1000,
        )
        .unwrap();
        // Two access switches are reported before their distribution switch, the rest after.
        let mut names = vec!["a07".to_owned(), "a31".to_owned(), "d1".to_owned()];
        names.extend(
            (1..=50)
                .map(|n| format!("a{n:02}"))
                .filter(|n| n != "a07" && n != "a31"),
        );
        for name in names {
            let event = Event::new("site", &name, EventKind::DeviceUnreachable, Source::Poll);
            tx.send(Envelope {
                input: Input::Event {
                    event,
                    received: Instant::now(),
                },
                ack: None,
            })
            .await
            .unwrap();
        }
        drop(tx);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let rows = store
            .list_notifications(&NotificationFilter {
                limit: 1000,
                ..NotificationFilter::default()
            })
            .unwrap();
        let told: Vec<(i64, String, String)> = rows
            .iter()
            .filter(|n| n.state == "pending")
            .map(|n| (n.about_id, n.transition.clone(), n.recipient.clone()))
            .collect();
        // One incident (the distribution switch's), one opening per recipient; the access
        // switches' own openings were superseded before they were due. (The technical contact
        // is told too when the test runs in the closed minute 23:59 or on a public holiday.)
        let mut recipients: Vec<&str> = told.iter().map(|t| t.2.as_str()).collect();
        recipients.retain(|r| *r != "ola.nordmann@a.no");
        recipients.sort_unstable();
        assert_eq!(recipients, ["servicedesk@a.no", "ssc"], "{rows:#?}");
        assert!(told.iter().all(|t| t.0 == told[0].0 && t.1 == "opened-1"));
        let detail = store.get_incident(told[0].0).unwrap().unwrap();
        assert_eq!(detail.incident.device, "d1");
        assert_eq!(detail.alarms.len(), 51);
        // a07 and a31 shared one incident (same site, same moment) until d1 took them in.
        let superseded: Vec<&str> = rows
            .iter()
            .filter(|n| n.state == "superseded")
            .map(|n| n.recipient.as_str())
            .filter(|r| *r != "ola.nordmann@a.no")
            .collect();
        assert_eq!(superseded.len(), 2, "{rows:#?}");
        assert!(
            rows.iter()
                .all(|n| n.created_at + chrono::TimeDelta::milliseconds(500) == n.due_at)
        );
    }

    fn core(inv: Inventory) -> (Core, Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("c.db")).unwrap());
        let (_, routing, rules) = campus();
        let core = Core::new(
            store.clone(),
            Arc::new(inv),
            rules,
            Notices {
                routing: Arc::new(routing),
                wake: Arc::new(Notify::new()),
                revision: Arc::new(watch::channel(0).0),
                topology: Default::default(),
            },
            Box::new(crate::correlate::NoMaintenance),
            Utc::now(),
        )
        .unwrap();
        (core, store, dir)
    }

    fn dead_letters(store: &Arc<dyn Store>) -> u64 {
        store.count_dead_letters().unwrap()
    }

    #[test]
    fn only_the_agents_a_device_belongs_to_may_report_it() {
        let (mut inv, ..) = campus();
        inv.devices.get_mut("d1").unwrap().agents = vec!["site-b".into()];
        let (mut core, store, _dir) = core(inv);
        let now = Utc::now();
        // The inventory names the agent: another one is refused, nothing is opened.
        core.event(
            Event::new("evil", "d1", EventKind::DeviceUnreachable, Source::Poll),
            now,
        );
        core.tick(now + chrono::TimeDelta::seconds(5));
        assert_eq!(dead_letters(&store), 1);
        assert_eq!(store.count_open().unwrap(), 0);
        // Its own agent is heard.
        core.event(
            Event::new("site-b", "d1", EventKind::DeviceUnreachable, Source::Poll),
            now,
        );
        core.tick(now + chrono::TimeDelta::seconds(5));
        assert_eq!(store.count_open().unwrap(), 1);
        assert_eq!(dead_letters(&store), 1);

        // Without `agents`, the first agent to report a device is pinned to it.
        core.event(
            Event::new("site-a", "a01", EventKind::DeviceReachable, Source::Poll),
            now,
        );
        core.event(
            Event::new("evil", "a01", EventKind::DeviceUnreachable, Source::Poll),
            now,
        );
        assert_eq!(dead_letters(&store), 2);
        let owners = store.device_owners().unwrap();
        assert_eq!(
            owners
                .iter()
                .map(|o| (o.device.as_str(), o.agent.as_str()))
                .collect::<Vec<_>>(),
            [("a01", "site-a")]
        );
        // Released (the switch moved to another agent): the next agent to report it is pinned.
        assert!(store.unpin_owner("a01").unwrap());
        core.event(
            Event::new("site-c", "a01", EventKind::DeviceReachable, Source::Poll),
            now,
        );
        assert_eq!(dead_letters(&store), 2);
        assert_eq!(store.device_owners().unwrap()[0].agent, "site-c");
    }

    #[test]
    fn an_older_observation_never_overrides_a_newer_one_by_the_agents_numbers() {
        let (mut inv, ..) = campus();
        inv.devices
            .get_mut("a01")
            .unwrap()
            .ports
            .insert("1".into(), cnaas_shared::role::PortRole::Uplink);
        let (mut core, store, _dir) = core(inv);
        let t0 = Utc::now();
        let port = |kind, seq: u64, at| {
            let mut e = Event::new("site", "a01", kind, Source::Poll);
            e.if_index = Some(1);
            e.seq = Some(seq);
            e.observed_at = at;
            e
        };
        // The agent's clock was set back between the two: its numbers still say which is
        // newer. The link_up (seq 11) came first; the link_down (seq 10, an older observation
        // replayed from the spool) must not open an incident.
        core.event(
            port(EventKind::LinkUp, 11, t0 - chrono::TimeDelta::seconds(30)),
            t0,
        );
        core.event(
            port(EventKind::LinkDown, 10, t0 - chrono::TimeDelta::seconds(10)),
            t0,
        );
        core.tick(t0 + chrono::TimeDelta::seconds(120));
        assert_eq!(store.count_open().unwrap(), 0);
        // A newer number is applied even though its clock reads earlier.
        core.event(
            port(EventKind::LinkDown, 12, t0 - chrono::TimeDelta::seconds(40)),
            t0,
        );
        core.tick(t0 + chrono::TimeDelta::seconds(120));
        assert_eq!(store.count_open().unwrap(), 1);
    }
}
