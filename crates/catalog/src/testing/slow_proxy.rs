//! A TCP proxy on loopback that makes a server slow: what a client sends is held for a set delay
//! before it is passed on; what the server answers comes back at once. In front of a
//! [`super::TestPostgres`], every round trip of a metastore call then takes at least the delay,
//! as with a PostgreSQL server that is far away or overloaded (issue 17: a slow PostgreSQL must not
//! stall the HTTP server). The delay can be changed while connections are open.
//!
//! Each chunk read from a client is forwarded `delay` after it arrived (later chunks queue
//! behind it, in order), so the proxy adds latency without limiting throughput. The proxy runs on
//! a thread of its own with its own tokio runtime: it works for plain tests, async tests and
//! benchmarks alike, and never competes with the runtime of the server under test.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lakeplan_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::USER;

/// What the proxy's thread and the handle share.
#[derive(Default)]
struct Shared {
    delay_ms: AtomicU64,
    /// Client chunks received and not yet passed on (or dropped).
    held: AtomicUsize,
}

/// Counts one held chunk while it lives.
struct Held(Arc<Shared>);

impl Held {
    fn new(shared: &Arc<Shared>) -> Held {
        shared.held.fetch_add(1, Ordering::SeqCst);
        Held(shared.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A delaying proxy to a server on `127.0.0.1:<upstream>`; dropping it closes its port and every
/// connection through it.
pub struct SlowProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SlowProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowProxy")
            .field("port", &self.port)
            .field("delay", &self.delay())
            .finish()
    }
}

fn fail(reason: String) -> Error {
    Error::InvalidOperation {
        op: "start a delaying proxy".into(),
        reason,
    }
}

impl SlowProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to
    /// `127.0.0.1:<upstream>`, client bytes held for `delay`.
    pub fn start(upstream: u16, delay: Duration) -> Result<SlowProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| fail(format!("binding 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| fail(format!("its address: {e}")))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| fail(format!("non-blocking socket: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("its runtime: {e}")))?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lakeplan-slow-proxy".into())
            .spawn(move || runtime.block_on(accept_loop(listener, upstream, for_thread, stopped)))
            .map_err(|e| fail(format!("its thread: {e}")))?;
        let proxy = SlowProxy {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        };
        proxy.set_delay(delay);
        Ok(proxy)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database, as [`super::TestPostgres::url`] names it, through
    /// this proxy.
    pub fn postgres_url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Holds what clients send from now on for `delay` (chunks already held keep theirs).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.shared.delay_ms.load(Ordering::SeqCst))
    }

    /// How many chunks clients sent that the proxy holds now: above 0 while some call is
    /// waiting on the delay.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts until `stopped` fires (or its sender is dropped); returning drops the runtime, which
/// drops every connection's task and so closes its sockets.
async fn accept_loop(
    listener: std::net::TcpListener,
    upstream: u16,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(relay(client, upstream, shared.clone()));
                }
            }
            _ = &mut stopped => return,
        }
    }
}

/// One connection: client → server chunks each held for the delay, server → client at once.
/// Ends when either side closes.
async fn relay(client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, Held)>();
    let shared_up = shared.clone();
    let take = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let delay = Duration::from_millis(shared_up.delay_ms.load(Ordering::SeqCst));
                    let chunk = (
                        Instant::now() + delay,
                        buf[..n].to_vec(),
                        Held::new(&shared_up),
                    );
                    if tx.send(chunk).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let pass_on = async move {
        while let Some((due, bytes, held)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let written = server_w.write_all(&bytes).await;
            drop(held);
            if written.is_err() {
                return;
            }
        }
        let _ = server_w.shutdown().await;
    };
    let answer = tokio::io::copy(&mut server_r, &mut client_w);
    tokio::select! {
        _ = async { tokio::join!(take, pass_on) } => {}
        _ = answer => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::testing::TestPostgres;
    use crate::Metastore;

    /// Calls through the proxy work, take at least the delay once it is set, and the proxy says
    /// while it holds one.
    #[test]
    fn metastore_calls_through_the_proxy_take_the_delay() {
        let pg = TestPostgres::shared().unwrap_or_else(|e| panic!("{e}"));
        let proxy = SlowProxy::start(pg.port(), Duration::ZERO).unwrap();
        assert_eq!(proxy.delay(), Duration::ZERO);
        let schema = pg.fresh_schema();
        let m =
            Arc::new(crate::PostgresMetastore::connect(&proxy.postgres_url(), &schema).unwrap());
        m.set_setting("k", "v").unwrap();
        assert_eq!(proxy.held(), 0);

        let delay = Duration::from_secs(1);
        proxy.set_delay(delay);
        let started = Instant::now();
        let reader = {
            let m = m.clone();
            std::thread::spawn(move || m.get_setting("k"))
        };
        // The call's query is seen held by the proxy (for a whole second: polling sees it).
        while proxy.held() == 0 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(proxy.held() > 0, "the proxy holds the call's query");
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got.as_deref(), Some("v"));
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
        assert_eq!(proxy.held(), 0);

        // Dropping the proxy closes its port.
        let port = proxy.port();
        drop(proxy);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
