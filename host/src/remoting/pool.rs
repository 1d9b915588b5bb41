//! One connection per peer address, opened on first use and replaced once it has closed.
//!
//! The pool holds a slot only for an address with a connection that is open (or being opened):
//! a slot goes when its connection closes or the connect fails, so a long-running process whose
//! brokers come and go at new addresses keeps no trace of the departed ones.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::connection::{Connection, ConnectionConfig, RejectAll, RequestHandler};
use super::error::RemotingError;
use crate::protocol::RemotingCommand;

/// Tunables of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Java's connect timeout: 3 s.
    pub connect_timeout: Duration,
    pub connection: ConnectionConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(3), connection: ConnectionConfig::default() }
    }
}

/// The byte stream of one connection, whatever carries it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// What a [`Dial`] returns.
pub(crate) type DialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Io>, RemotingError>> + Send + 'a>>;

/// Opens the byte stream of a new connection: TCP in production. A seam so that unit tests can
/// script peers in memory (`tokio::io::duplex`) under paused time, where real sockets and
/// auto-advancing clocks do not mix.
pub(crate) trait Dial: Send + Sync + 'static {
    /// Opens a stream to `addr`, giving up after `timeout`.
    fn dial<'a>(&'a self, addr: &'a str, timeout: Duration) -> DialFuture<'a>;
}

/// Dials TCP.
#[derive(Debug, Clone, Copy, Default)]
struct TcpDial;

impl Dial for TcpDial {
    fn dial<'a>(&'a self, addr: &'a str, timeout: Duration) -> DialFuture<'a> {
        Box::pin(async move {
            let stream = connect_tcp(addr, timeout).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

/// Opens a TCP connection to `addr` within `timeout`, tuned for request/response traffic.
pub(crate) async fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, RemotingError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| RemotingError::ConnectTimeout { addr: addr.to_owned(), after: timeout })?
        .map_err(|e| RemotingError::Connect {
            addr: addr.to_owned(),
            reason: Arc::from(e.to_string()),
        })?;
    // Requests are small and latency-bound; Nagle would add up to 40 ms per round trip.
    let _ = stream.set_nodelay(true);
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&KEEPALIVE) {
        // Not fatal: request timeouts and the idle check still find a dead peer.
        tracing::warn!(addr, error = %e, "could not enable TCP keepalive");
    }
    Ok(stream)
}

/// TCP keepalive: after 30 s with nothing in flight, probe every 10 s and give up after 3
/// unanswered probes, so a peer that vanished while the connection was quiet is found within
/// about a minute rather than the system default of two hours. Java leaves SO_KEEPALIVE off and
/// relies on its idle handler and request timeouts, which we have too; keepalive also covers a
/// connection we only write oneway requests to. (It cannot see a peer that is gone while data is
/// unacknowledged; the request timeout covers that.)
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(30))
    .with_interval(Duration::from_secs(10))
    .with_retries(3);

/// A slot per address; its async mutex makes concurrent first requests share one connect.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Removes a slot from the pool on drop while armed: the slot of a connect that failed or was
/// abandoned.
struct RemoveSlot<'a> {
    slots: &'a Mutex<HashMap<String, Slot>>,
    addr: &'a str,
    slot: &'a Slot,
    armed: bool,
}

impl Drop for RemoveSlot<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(self.addr).is_some_and(|s| Arc::ptr_eq(s, self.slot)) {
            slots.remove(self.addr);
        }
    }
}

/// Connections by `host:port`. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct ConnectionPool {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    config: Arc<PoolConfig>,
    handler: Arc<dyn RequestHandler>,
    dialer: Arc<dyn Dial>,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPool").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self::new(PoolConfig::default(), Arc::new(RejectAll))
    }
}

impl ConnectionPool {
    /// A pool whose connections pass broker-initiated requests to `handler`.
    pub fn new(config: PoolConfig, handler: Arc<dyn RequestHandler>) -> Self {
        Self { slots: Arc::default(), config: Arc::new(config), handler, dialer: Arc::new(TcpDial) }
    }

    /// A pool that opens its streams with `dialer` (tests: in-memory peers).
    #[cfg(test)]
    pub(crate) fn with_dialer(
        config: PoolConfig,
        handler: Arc<dyn RequestHandler>,
        dialer: Arc<dyn Dial>,
    ) -> Self {
        Self { slots: Arc::default(), config: Arc::new(config), handler, dialer }
    }

    /// The live connection to `addr`, connecting if there is none or the last one closed.
    pub async fn get(&self, addr: &str) -> Result<Connection, RemotingError> {
        loop {
            let slot = {
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                Arc::clone(slots.entry(addr.to_owned()).or_default())
            };
            let mut guard = slot.lock().await;
            if !self.is_current(addr, &slot) {
                // Pruned while we waited for it: use the address's slot of now.
                continue;
            }
            if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
                return Ok(conn.clone());
            }
            // Until the connect succeeds the slot holds nothing worth keeping: a failed connect,
            // or a caller that gives up (its timeout) mid-connect, removes it.
            let mut cleanup = RemoveSlot { slots: &self.slots, addr, slot: &slot, armed: true };
            *guard = None;
            let conn = self.connect(addr).await?;
            cleanup.armed = false;
            *guard = Some(conn.clone());
            self.prune_when_closed(addr, &slot, &conn);
            return Ok(conn);
        }
    }

    fn is_current(&self, addr: &str, slot: &Slot) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get(addr).is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Removes `addr`'s slot once `conn` closes, unless the slot has moved on (replaced, or in
    /// use by a caller who is reconnecting: that caller keeps or removes it). Holds neither the
    /// connection nor the pool alive meanwhile.
    fn prune_when_closed(&self, addr: &str, slot: &Slot, conn: &Connection) {
        let closed = conn.closed_signal();
        let slots = Arc::downgrade(&self.slots);
        let slot = Arc::downgrade(slot);
        let addr = addr.to_owned();
        tokio::spawn(async move {
            closed.await;
            let (Some(slots), Some(slot)) = (slots.upgrade(), slot.upgrade()) else { return };
            let mut slots = slots.lock().unwrap_or_else(PoisonError::into_inner);
            if !slots.get(&addr).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                return;
            }
            let dead =
                slot.try_lock().is_ok_and(|held| held.as_ref().is_none_or(Connection::is_closed));
            if dead {
                slots.remove(&addr);
                tracing::debug!(addr, "pruned the slot of a closed connection");
            }
        });
    }

    async fn connect(&self, addr: &str) -> Result<Connection, RemotingError> {
        let stream = self.dialer.dial(addr, self.config.connect_timeout).await?;
        tracing::debug!(addr, "connected");
        Ok(Connection::spawn(
            stream,
            addr,
            self.config.connection.clone(),
            Arc::clone(&self.handler),
        ))
    }

    /// Sends a request to `addr` over its pooled connection. `timeout` bounds the whole call:
    /// the wait for the connection (slot and connect) comes out of it, and the response gets
    /// what is left, as Java's invokeSync subtracts the time spent getting the channel.
    pub async fn request(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let code = cmd.request_code();
        let (conn, left) = self.get_within(addr, timeout).await?;
        let Some(left) = left else {
            return Err(RemotingError::Timeout { addr: addr.to_owned(), code, after: timeout });
        };
        conn.request(cmd, left).await.map_err(|e| match e {
            // Report the caller's timeout, not the remainder it became.
            RemotingError::Timeout { addr, code, .. } => {
                RemotingError::Timeout { addr, code, after: timeout }
            }
            other => other,
        })
    }

    /// Sends a oneway request to `addr`; `timeout` bounds the whole call, as for
    /// [`ConnectionPool::request`].
    pub async fn oneway(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        let code = cmd.request_code();
        let (conn, left) = self.get_within(addr, timeout).await?;
        let Some(left) = left else {
            return Err(RemotingError::Timeout { addr: addr.to_owned(), code, after: timeout });
        };
        conn.oneway(cmd, left).await.map_err(|e| match e {
            RemotingError::Timeout { addr, code, .. } => {
                RemotingError::Timeout { addr, code, after: timeout }
            }
            other => other,
        })
    }

    /// The connection to `addr`, got within `timeout`, and what is left of `timeout` (`None`
    /// when nothing is).
    async fn get_within(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<(Connection, Option<Duration>), RemotingError> {
        let deadline = Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.get(addr)).await.map_err(|_| {
            RemotingError::ConnectTimeout { addr: addr.to_owned(), after: timeout }
        })??;
        let left = deadline.saturating_duration_since(Instant::now());
        Ok((conn, (!left.is_zero()).then_some(left)))
    }

    /// Addresses with a slot (tests check that departed ones are pruned).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Closes and forgets the connection to `addr` (used when a broker leaves the route).
    pub fn close(&self, addr: &str) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).remove(addr);
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
