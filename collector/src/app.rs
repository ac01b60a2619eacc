//! Runs the collector: store, engine thread, MQTT ingest and the HTTP server; stops them in
//! order (ingest stops forwarding, the engine commits and acknowledges what it holds, then
//! HTTP stops).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use rumqttc::AsyncClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cnaas_shared::runtime::{self, HealthFn};

use crate::config::{CollectorConfig, StoreUrl};
use crate::metrics::CollectorMetrics;
use crate::notify::Routing;
use crate::notify::alarm::{Ingestion, OutOfBand};
use crate::notify::channels::Channels;
use crate::notify::dispatch::{Dispatcher, RetryPolicy};
use crate::store::{OnDamage, SqliteStore, Store};
use crate::{api, engine, ingest, web};

/// Runs until `token` is cancelled, then drains and returns.
pub async fn run(cfg: CollectorConfig, token: CancellationToken) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match &cfg.store {
        StoreUrl::Sqlite(path) => Arc::new(
            SqliteStore::open_with(
                path,
                if cnaas_shared::cli::reinitialise() {
                    OnDamage::MoveAside
                } else {
                    OnDamage::Refuse
                },
            )
            .with_context(|| format!("cannot open the store {}", path.display()))?,
        ),
    };
    let mut registry = Registry::default();
    let metrics = CollectorMetrics::register(&mut registry);

    let mut opts = cfg
        .mqtt
        .client_options(&cfg.base_dir, &format!("cnaas-collector-{}", cfg.id), None)
        .context("invalid [mqtt] settings")?;
    // Acknowledge only after the event is committed.
    opts.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(opts, 1024);

    let inventory = Arc::new(crate::config::LiveInventory::new(cfg.inventory.clone()));
    let routing = Arc::new(Routing::new(
        &cfg.customers,
        cfg.notify.ssc.clone(),
        cfg.notify.secondline.clone(),
        cfg.notify.language.clone(),
        cfg.rules,
    ));
    let wake = Arc::new(tokio::sync::Notify::new());
    let notices = engine::Notices {
        routing: routing.clone(),
        wake: wake.clone(),
        revision: Arc::new(tokio::sync::watch::channel(0).0),
        topology: Default::default(),
    };
    let dispatch_token = CancellationToken::new();
    let channels = Channels::build(
        &cfg.notify.channels,
        &cfg.mqtt,
        &cfg.base_dir,
        &cfg.id,
        &dispatch_token,
    )
    .context("cannot set up the notification channels")?;
    let alarm_channels = channels.clone();
    let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let (tx, engine_thread) = engine::spawn(
        store.clone(),
        inventory.clone(),
        cfg.rules,
        notices.clone(),
        metrics.clone(),
        Box::new(ingest::AckSender(ack_tx)),
        10_000,
    )
    .context("cannot start the engine thread")?;

    let tokens = match &cfg.tokens_file {
        Some(path) => Some(Arc::new(
            api::Tokens::load(path).with_context(|| "cannot load the API tokens")?,
        )),
        None => {
            tracing::warn!("No [api] tokens_file: the API is read-only and needs no token.");
            None
        }
    };
    let listener = TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the API", cfg.api_listen))?;
    let health: HealthFn = {
        let metrics = metrics.clone();
        Arc::new(move || {
            let mqtt = metrics.mqtt_connected.get() == 1;
            let stalled = metrics.ingest_stalled.get() == 1;
            let store_failing = metrics.store_failing.get() == 1;
            let inventory_error = metrics
                .inventory_source_error
                .lock()
                .ok()
                .and_then(|e| e.clone());
            (
                mqtt && !stalled && !store_failing,
                serde_json::json!({
                    "inventory_source_ok": inventory_error.is_none(),
                    "inventory_source_error": inventory_error,
                    "mqtt_connected": mqtt,
                    "ingest_stalled": stalled,
                    "store_failing": store_failing,
                    "ingest_queue": metrics.ingest_queue.get(),
                    "ingest_lag_seconds": metrics.ingest_lag_seconds.get(),
                    "incidents_open": metrics.incidents_open.get(),
                }),
            )
        })
    };
    let http_token = CancellationToken::new();
    let state = api::ApiState {
        inventory: inventory.clone(),
        customers: Arc::new(cfg.customers.clone()),
        store: store.clone(),
        tokens,
        engine: tx.downgrade(),
        notices,
        limits: Arc::new(api::limit::Limits::default()),
    };
    let router = api::router(state.clone())
        .merge(web::router(state, http_token.clone()))
        .merge(runtime::observability_router(Arc::new(registry), health));
    let dispatcher = tokio::spawn(
        Dispatcher {
            store: store.clone(),
            channels,
            routing,
            inventory: inventory.clone(),
            base_url: cfg.notify.base_url.clone(),
            contact: cfg.notify.contact.clone(),
            policy: RetryPolicy {
                attempts: cfg.notify.attempts,
                backoff: cfg.notify.backoff,
                max_backoff: cfg.notify.max_backoff,
                late_retry: cfg.notify.late_retry,
            },
            metrics: metrics.clone(),
            wake,
            engine: tx.downgrade(),
        }
        .run(dispatch_token.clone()),
    );
    let http = tokio::spawn(runtime::serve(listener, router, http_token.clone()));
    let nms_task = cfg.cnaas_nms.clone().map(|nms| {
        tracing::info!(url = %cnaas_shared::config::redact_url(&nms.url), refresh = ?nms.refresh, "The inventory comes from CNaaS-NMS too.");
        tokio::spawn(crate::cnaas_nms::run(
            nms,
            cfg.base_dir.clone(),
            Arc::new(cfg.inventory.clone()),
            inventory.clone(),
            metrics.clone(),
            token.child_token(),
        ))
    });
    tracing::info!(collector = %cfg.id, api = %cfg.api_listen, "Collector started.");

    let engine_done = CancellationToken::new();
    let ingest_task = tokio::spawn(ingest::run(
        ingest::Ingest {
            client,
            eventloop,
            shared_group: cfg.shared_group.clone(),
            tx,
            metrics: metrics.clone(),
            acks: ack_rx,
        },
        token.clone(),
        engine_done.clone(),
        Duration::from_secs(10),
    ));
    let watchdog = tokio::spawn(stall_watchdog(
        metrics.clone(),
        token.clone(),
        cfg.stall_after,
        OutOfBand {
            channels: alarm_channels,
            ssc: cfg.notify.ssc.clone(),
            language: cfg.notify.language.clone(),
            collector: cfg.id.clone(),
            metrics: metrics.clone(),
        },
    ));
    // The engine thread ends once ingest has dropped its sender and the queue is empty.
    let waiter = tokio::task::spawn_blocking(move || {
        if engine_thread.join().is_err() {
            tracing::error!("The engine thread panicked.");
        }
        engine_done.cancel();
    });
    token.cancelled().await;
    // Deliveries under way finish; what is left stays in the outbox for the next start.
    dispatch_token.cancel();
    if let Err(e) = dispatcher.await {
        tracing::error!(error = %e, "The notification dispatcher failed.");
    }
    if let Err(e) = ingest_task.await {
        tracing::error!(error = %e, "The ingest task failed.");
    }
    let _ = waiter.await;
    let _ = watchdog.await;
    if let Some(t) = nms_task {
        let _ = t.await;
    }
    http_token.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "The HTTP server failed."),
        Err(e) => tracing::error!(error = %e, "The HTTP task failed."),
    }
    tracing::info!("Collector stopped.");
    Ok(())
}

/// Watches ingestion: messages waiting for the engine while nothing is committed (nothing
/// acknowledged) for `stall_after` is a stall: `cnaas_collector_ingest_stalled` 1, `/healthz`
/// 503, an error in the log; it clears when commits resume.
async fn stall_watchdog(
    metrics: CollectorMetrics,
    token: CancellationToken,
    stall_after: Duration,
    ssc: OutOfBand,
) {
    let every = (stall_after / 6).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut last = metrics.acks.get();
    let mut stuck = Duration::ZERO;
    let mut since = chrono::Utc::now();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let acks = metrics.acks.get();
        if metrics.ingest_queue.get() > 0 && acks == last {
            if stuck.is_zero() {
                since = chrono::Utc::now() - every;
            }
            stuck += every;
        } else {
            stuck = Duration::ZERO;
        }
        last = acks;
        metrics
            .ingest_lag_seconds
            .set(i64::try_from(stuck.as_secs()).unwrap_or(i64::MAX));
        let stalled = stuck >= stall_after;
        let was = metrics.ingest_stalled.get() == 1;
        let waiting = metrics.ingest_queue.get();
        if stalled && !was {
            tracing::error!(
                waiting,
                seconds = stuck.as_secs(),
                "Ingestion stalled: messages wait and nothing has been committed. Telling SSC."
            );
            let ssc = ssc.clone();
            let at = since;
            tokio::spawn(async move { ssc.tell(Ingestion::Stalled, at, waiting).await });
        } else if !stalled && was {
            tracing::info!("Ingestion moves again.");
            let ssc = ssc.clone();
            let at = since;
            tokio::spawn(async move { ssc.tell(Ingestion::Moving, at, waiting).await });
        }
        metrics.ingest_stalled.set(i64::from(stalled));
    }
}
