//! A bounded, self-stopping HTTP load generator: many half-written requests, as a slowloris
//! client or a broken proxy makes them, from several loopback source addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Connections that send half a request head and then nothing. They are closed when this is
/// dropped, or after `hold` at the latest.
pub struct HalfOpen {
    /// Connections opened.
    pub opened: Arc<AtomicUsize>,
    /// Connections the server closed (or refused).
    pub closed_by_server: Arc<AtomicUsize>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HalfOpen {
    /// Opens `n` connections to 127.0.0.1:`port`, spread over the source addresses
    /// 127.0.0.`first_source`.. (`sources` of them), each sending `GET / HTTP/1.1\r\nHost:`.
    pub fn start(
        port: u16,
        n: usize,
        first_source: u8,
        sources: u8,
        hold: Duration,
    ) -> Result<HalfOpen> {
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("load generator runtime")?;
        let (o, c, s) = (opened.clone(), closed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..n {
                    let source = first_source
                        .saturating_add(u8::try_from(i % usize::from(sources.max(1))).unwrap_or(0));
                    let (o, c, s) = (o.clone(), c.clone(), s.clone());
                    tasks.spawn(async move {
                        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                            return;
                        };
                        if socket
                            .bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))
                            .is_err()
                        {
                            return;
                        }
                        let Ok(mut stream) = socket
                            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                            .await
                        else {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        o.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(b"GET / HTTP/1.1\r\nHost:").await.is_err() {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        let mut buf = [0u8; 256];
                        tokio::select! {
                            () = s.cancelled() => {}
                            () = tokio::time::sleep(hold) => {}
                            r = stream.read(&mut buf) => {
                                // Closed (EOF, reset) or answered (408): the server let go.
                                let _ = r;
                                c.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                    // Not all at once: a burst of SYNs beyond the listen backlog is dropped.
                    if i % 100 == 99 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
        });
        Ok(HalfOpen {
            opened,
            closed_by_server: closed,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HalfOpen {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
