//! A loopback TCP proxy for network fault tests: forwards every connection it accepts to one
//! upstream address, until it is told to black-hole.
//!
//! [`Proxy::black_hole`] models a silent peer loss — a partition, a peer that powered off, a NAT
//! that forgot its mappings: from then on no byte crosses the proxy in either direction, and
//! nothing is closed either, so neither side sees a FIN or RST; the kernel keeps accepting
//! writes until its buffers fill, exactly as on a real network that drops packets. Connections
//! opened during the black hole are accepted (the kernel completes the handshake) and get the
//! same treatment.
//!
//! [`Proxy::resume`] heals the network for *new* connections only. The flows that were cut stay
//! cut: their state is gone on the far side, as after a NAT drop or a peer reboot, which is the
//! case a client must handle by itself (close and reconnect). A brief partition whose TCP flows
//! survive needs no help from the client, so it is not what this proxy models.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once (more are closed at accept), fixed
//! copy buffers, and every socket is closed when the proxy is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Connections the proxy holds at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Copy buffer per direction and connection.
const BUFFER: usize = 16 * 1024;

/// What happens to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forwarding,
    BlackHole,
}

/// Counters a test can wait on.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicUsize,
    stranded: AtomicUsize,
}

/// A running proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct Proxy {
    listen: SocketAddr,
    upstream: String,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (e.g. `127.0.0.2:10911`) and forwards to `upstream`.
    pub async fn start(listen: &str, upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Forwarding);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream.to_owned(),
            mode.subscribe(),
            Arc::clone(&counters),
        ));
        Ok(Self { listen, upstream: upstream.to_owned(), mode, counters, task })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where traffic goes.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Stops forwarding without closing anything: every current connection is cut for good,
    /// and so is every connection accepted until [`Proxy::resume`].
    pub fn black_hole(&self) {
        self.mode.send_replace(Mode::BlackHole);
    }

    /// Forwards new connections again; connections cut by the black hole stay cut.
    pub fn resume(&self) {
        self.mode.send_replace(Mode::Forwarding);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections cut by a black hole (held open, forwarding nothing).
    pub fn stranded(&self) -> usize {
        self.counters.stranded.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it closes them all.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::warn!("proxy: {MAX_CONNECTIONS} connections already, closing a new one");
                    continue;
                };
                let upstream = upstream.clone();
                let mode = mode.clone();
                let counters = Arc::clone(&counters);
                connections.spawn(async move {
                    let _permit = permit;
                    relay(client, &upstream, mode, &counters).await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Forwards one connection until either side closes it, or strands it at a black hole.
async fn relay(
    mut client: TcpStream,
    upstream: &str,
    mut mode: watch::Receiver<Mode>,
    counters: &Counters,
) {
    if *mode.borrow_and_update() == Mode::Forwarding {
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            // Upstream refused: the client sees its connection close, as it would directly.
            return;
        };
        let _ = server.set_nodelay(true);
        let _ = client.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUFFER, BUFFER) => return,
            _ = mode.wait_for(|m| *m == Mode::BlackHole) => {}
        }
        // Cut: hold both sockets open, forwarding nothing, until the proxy is dropped.
        counters.stranded.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        drop(server);
    } else {
        counters.stranded.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    drop(client);
}
