//! One connection per peer address, opened on first use and replaced once it has closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;

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

/// A slot per address; its async mutex makes concurrent first requests share one connect.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Connections by `host:port`. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct ConnectionPool {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    config: Arc<PoolConfig>,
    handler: Arc<dyn RequestHandler>,
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
        Self { slots: Arc::default(), config: Arc::new(config), handler }
    }

    /// The live connection to `addr`, connecting if there is none or the last one closed.
    pub async fn get(&self, addr: &str) -> Result<Connection, RemotingError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(addr.to_owned()).or_default())
        };
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = self.connect(addr).await?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self, addr: &str) -> Result<Connection, RemotingError> {
        let after = self.config.connect_timeout;
        let stream = tokio::time::timeout(after, TcpStream::connect(addr))
            .await
            .map_err(|_| RemotingError::ConnectTimeout { addr: addr.to_owned(), after })?
            .map_err(|e| RemotingError::Connect {
                addr: addr.to_owned(),
                reason: Arc::from(e.to_string()),
            })?;
        // Requests are small and latency-bound; Nagle would add up to 40 ms per round trip.
        let _ = stream.set_nodelay(true);
        tracing::debug!(addr, "connected");
        Ok(Connection::spawn(
            stream,
            addr,
            self.config.connection.clone(),
            Arc::clone(&self.handler),
        ))
    }

    /// Sends a request to `addr` over its pooled connection.
    pub async fn request(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let conn = tokio::time::timeout(timeout, self.get(addr)).await.map_err(|_| {
            RemotingError::ConnectTimeout { addr: addr.to_owned(), after: timeout }
        })??;
        conn.request(cmd, timeout).await
    }

    /// Sends a oneway request to `addr`.
    pub async fn oneway(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        let conn = tokio::time::timeout(timeout, self.get(addr)).await.map_err(|_| {
            RemotingError::ConnectTimeout { addr: addr.to_owned(), after: timeout }
        })??;
        conn.oneway(cmd, timeout).await
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
