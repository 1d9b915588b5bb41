//! One connection: a task that owns the socket, and a cheap `Clone` handle that sends requests.
//!
//! The task drives a reader and a writer concurrently (so a peer that stops reading can never
//! stall our reads), matches responses to waiting requests by opaque, and hands broker-initiated
//! requests to the registered [`RequestHandler`]. Any framing or I/O error *poisons* the
//! connection: every waiting request fails at once with the reason, and the pool opens a new
//! connection for the next request. Other connections are not affected.
//!
//! A peer that vanishes silently (power-off, partition, a NAT that forgot the flow) produces no
//! error at all, only silence; three things turn that silence into a close, so that the pool
//! reconnects once the network heals:
//! * a request that times out closes the connection (Java's `clientCloseSocketIfTimeout`), long
//!   polls included: their timeout already allows for the broker's suspend time;
//! * only what we *read* counts as activity for the idle check: our own writes succeed into the
//!   socket buffer whether or not anyone is there;
//! * TCP keepalive (set by the pool) probes a connection on which nothing is in flight.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::error::RemotingError;
use crate::protocol::acl::{self, AclCredentials};
use crate::protocol::frame::{MAX_FRAME_LEN, decode_frame, encode_frame};
use crate::protocol::{Opaque, RemotingCommand, RequestCode, ResponseCode};

/// Process-wide opaque counter, as in Java: ids never repeat across connections, which makes
/// logs unambiguous.
static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(0);

fn next_opaque() -> Opaque {
    Opaque(NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed))
}

/// What a handler answers to a broker-initiated request.
#[derive(Debug)]
pub enum HandlerReply {
    /// Send this response (its opaque and response flag are set by the connection).
    Respond(RemotingCommand),
    /// Handled; nothing to send (oneway requests such as NOTIFY_CONSUMER_IDS_CHANGED).
    NoReply,
}

/// The handler does not know this request code: the connection answers
/// REQUEST_CODE_NOT_SUPPORTED, as a Java client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSupported;

/// A boxed future, so handlers can be stored as trait objects.
pub type HandlerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HandlerReply, NotSupported>> + Send + 'a>>;

/// Receives requests the peer initiates (broker → client).
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request from the peer at `addr`.
    fn handle<'a>(&'a self, addr: &'a str, request: RemotingCommand) -> HandlerFuture<'a>;
}

/// The handler used when none is registered: every request is unsupported.
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectAll;

impl RequestHandler for RejectAll {
    fn handle<'a>(&'a self, _addr: &'a str, _request: RemotingCommand) -> HandlerFuture<'a> {
        Box::pin(async { Err(NotSupported) })
    }
}

/// Tunables of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Largest frame accepted or sent (Java: 16 MiB).
    pub max_frame_len: usize,
    /// Close the connection after this long with nothing read from the peer and nothing in
    /// flight (Java: 120 s, which is also when the broker drops a silent channel). Our own writes
    /// do not count: they prove nothing about the peer.
    pub idle_timeout: Duration,
    /// Capacity of the outbound queue; senders wait when it is full.
    pub outbound_capacity: usize,
    /// Broker-initiated requests handled at once; more are answered SYSTEM_BUSY so a flood can
    /// neither grow memory nor stall the reader.
    pub max_inbound_requests: usize,
    /// When set, every request we send is signed (ACL 1.0, reference 5.2). Our responses to the
    /// broker's requests are not signed, as in Java.
    pub credentials: Option<Arc<AclCredentials>>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_frame_len: MAX_FRAME_LEN,
            idle_timeout: Duration::from_secs(120),
            outbound_capacity: 1024,
            max_inbound_requests: 64,
            credentials: None,
        }
    }
}

/// A request timeout shorter than this says nothing about the peer (the time went elsewhere, e.g.
/// into the connect), so it does not close the connection: Java's `MIN_CLOSE_TIMEOUT_MILLIS`.
pub const MIN_CLOSE_WINDOW: Duration = Duration::from_millis(100);

type Pending = Mutex<HashMap<Opaque, oneshot::Sender<RemotingCommand>>>;

/// State shared by the handle and the task.
#[derive(Debug)]
struct Shared {
    addr: String,
    pending: Pending,
    /// `Some(reason)` once the connection is closed or poisoned.
    closed: watch::Sender<Option<Arc<str>>>,
    credentials: Option<Arc<AclCredentials>>,
}

impl Shared {
    /// Records why the connection closes, unless a reason is already recorded (the first cause
    /// is the one worth reporting). The task sees it and shuts the connection down.
    fn close(&self, reason: Arc<str>) {
        self.closed.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    fn close_reason(&self) -> Option<Arc<str>> {
        self.closed.borrow().clone()
    }

    fn closed_error(&self) -> RemotingError {
        RemotingError::Closed {
            addr: self.addr.clone(),
            reason: self.close_reason().unwrap_or_else(|| Arc::from("connection task ended")),
        }
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Opaque, oneshot::Sender<RemotingCommand>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a request's pending entry when its caller gives up (timeout or cancellation), so
/// abandoned requests never accumulate.
struct PendingGuard<'a> {
    shared: &'a Shared,
    opaque: Opaque,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.opaque);
    }
}

/// A handle to one connection. Cloning is cheap; the task ends when the connection closes, and
/// is aborted when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<Bytes>,
    _task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Connection {
    /// Starts the task that owns `io`. `addr` names the peer in errors and logs.
    pub fn spawn<IO>(
        io: IO,
        addr: impl Into<String>,
        config: ConnectionConfig,
        handler: Arc<dyn RequestHandler>,
    ) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (closed, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            addr: addr.into(),
            pending: Mutex::new(HashMap::new()),
            closed,
            credentials: config.credentials.clone(),
        });
        let (tx, rx) = mpsc::channel(config.outbound_capacity);
        let task = tokio::spawn(run(io, Arc::clone(&shared), rx, tx.downgrade(), config, handler));
        Self { shared, outbound: tx, _task: Arc::new(AbortOnDrop(task.abort_handle())) }
    }

    /// The peer address this connection was opened for.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// True when both handles are to the same connection (not merely the same address).
    pub fn same_as(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// True once the connection is closed or poisoned; the pool then replaces it.
    pub fn is_closed(&self) -> bool {
        self.shared.close_reason().is_some() || self.outbound.is_closed()
    }

    /// Sends a request and waits for its response, at most `timeout` in all.
    ///
    /// A timeout closes the connection (unless `timeout` was too short to say anything about the
    /// peer, see [`MIN_CLOSE_WINDOW`]): every other request on it fails at once with the reason,
    /// and the pool dials afresh. This is how a peer that vanished without a FIN or RST is
    /// noticed; a slow but live broker costs one reconnect, as in Java.
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let code = cmd.request_code();
        let opaque = next_opaque();
        cmd.opaque = opaque;
        let frame = self.sign_and_encode(&mut cmd)?;
        let (tx, rx) = oneshot::channel();
        self.shared.pending().insert(opaque, tx);
        let _guard = PendingGuard { shared: &self.shared, opaque };
        let exchange = async {
            self.outbound.send(frame).await.map_err(|_| self.shared.closed_error())?;
            rx.await.map_err(|_| self.shared.closed_error())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(mut response)) => {
                // An authentication refusal names the access key (or its absence), so the error
                // a user sees says what to fix rather than "check signature failed.".
                let creds = self.shared.credentials.as_deref();
                if let Some(remark) =
                    acl::refusal_remark(response.response_code(), response.remark.as_deref(), creds)
                {
                    response.remark = Some(remark);
                }
                Ok(response)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => {
                if timeout > MIN_CLOSE_WINDOW {
                    tracing::warn!(
                        addr = %self.shared.addr, ?code, %opaque, ?timeout,
                        "request timed out; closing the connection"
                    );
                    self.shared.close(Arc::from(format!(
                        "request {code:?} (opaque {opaque}) timed out after {timeout:?}; \
                         the peer is presumed lost"
                    )));
                }
                Err(RemotingError::Timeout { addr: self.shared.addr.clone(), code, after: timeout })
            }
        }
    }

    /// Sends a oneway request: no response is expected. Waits (at most `timeout`) only for room
    /// in the outbound queue.
    pub async fn oneway(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        let code = cmd.request_code();
        cmd.opaque = next_opaque();
        cmd.set_oneway();
        let frame = self.sign_and_encode(&mut cmd)?;
        match tokio::time::timeout(timeout, self.outbound.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                Err(RemotingError::Timeout { addr: self.shared.addr.clone(), code, after: timeout })
            }
        }
    }

    /// Signs last, after every field is final: the server recomputes over all ext fields.
    fn sign_and_encode(&self, cmd: &mut RemotingCommand) -> Result<Bytes, RemotingError> {
        if let Some(creds) = &self.shared.credentials {
            acl::sign(cmd.ext_fields.as_map_mut(), &cmd.body, creds);
        }
        let mut buf = BytesMut::new();
        encode_frame(cmd, &mut buf).map_err(|source| RemotingError::Encode {
            addr: self.shared.addr.clone(),
            code: cmd.request_code(),
            source,
        })?;
        Ok(buf.freeze())
    }

    /// Requests waiting for a response (tests check that abandoned ones are cleaned up).
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.shared.pending().len()
    }

    /// Resolves once the connection has closed (or its task is gone), without holding the
    /// connection open meanwhile: the pool watches its slots with it.
    pub(crate) fn closed_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> Arc<str> {
        let mut rx = self.shared.closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_else(|| Arc::from("closed")),
            Err(_) => Arc::from("connection task ended"),
        }
    }
}

/// The connection task: reads and writes concurrently until either side fails, then fails
/// every waiting request.
async fn run<IO>(
    io: IO,
    shared: Arc<Shared>,
    mut outbound: mpsc::Receiver<Bytes>,
    replies: mpsc::WeakSender<Bytes>,
    config: ConnectionConfig,
    handler: Arc<dyn RequestHandler>,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    // Only reads: a write succeeds into the socket buffer even when the peer is gone.
    let last_read = Arc::new(Mutex::new(Instant::now()));
    let mut close_requested = shared.closed.subscribe();
    let mut inbound: JoinSet<()> = JoinSet::new();

    let read_side = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            loop {
                match decode_frame(&mut buf, config.max_frame_len) {
                    Ok(Some(cmd)) => {
                        dispatch(cmd, &shared, &replies, &handler, &mut inbound, &config);
                    }
                    Ok(None) => break,
                    Err(e) => return format!("invalid frame from peer: {e}"),
                }
            }
            // Reap finished handler tasks so the set stays small.
            while inbound.try_join_next().is_some() {}
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) if buf.is_empty() => return "peer closed the connection".to_owned(),
                Ok(0) => {
                    return format!(
                        "peer closed the connection mid-frame ({} bytes of an incomplete frame)",
                        buf.len()
                    );
                }
                // Any bytes count, so a large frame arriving slowly is not idleness.
                Ok(_) => touch(&last_read),
                Err(e) => return format!("read failed: {e}"),
            }
        }
    };

    let write_side = async {
        let mut batch = BytesMut::with_capacity(64 * 1024);
        loop {
            let Some(first) = outbound.recv().await else {
                return "all handles dropped".to_owned();
            };
            // Coalesce frames that are already queued into one write.
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < 256 * 1024 {
                let Ok(frame) = outbound.try_recv() else { break };
                batch.extend_from_slice(&frame);
            }
            if let Err(e) = writer.write_all(&batch).await {
                return format!("write failed: {e}");
            }
        }
    };

    let idle = async {
        loop {
            let since = last_read.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
            // A waiting request is bounded by its own timeout, which closes the connection.
            if since >= config.idle_timeout && shared.pending().is_empty() {
                return format!(
                    "idle: nothing read from the peer for {:?} and no request waiting",
                    config.idle_timeout
                );
            }
            let wait = config.idle_timeout.saturating_sub(since).max(Duration::from_millis(100));
            tokio::time::sleep(wait).await;
        }
    };

    let requested = async {
        match close_requested.wait_for(Option::is_some).await {
            Ok(reason) => reason.as_deref().unwrap_or("closed").to_owned(),
            Err(_) => "closed".to_owned(),
        }
    };

    let reason = tokio::select! {
        r = read_side => r,
        r = write_side => r,
        r = idle => r,
        r = requested => r,
    };
    tracing::debug!(addr = %shared.addr, %reason, "connection closed");
    shared.close(Arc::from(reason.as_str()));
    // Dropping the senders wakes every waiter, which then reads the close reason.
    shared.pending().clear();
    inbound.abort_all();
    let _ = writer.shutdown().await;
}

fn touch(last: &Mutex<Instant>) {
    *last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
}

/// Routes one inbound command: a response to its waiter, a request to the handler.
fn dispatch(
    cmd: RemotingCommand,
    shared: &Arc<Shared>,
    replies: &mpsc::WeakSender<Bytes>,
    handler: &Arc<dyn RequestHandler>,
    inbound: &mut JoinSet<()>,
    config: &ConnectionConfig,
) {
    if cmd.is_response() {
        match shared.pending().remove(&cmd.opaque) {
            // The waiter may have just given up; that is fine.
            Some(tx) => drop(tx.send(cmd)),
            None => {
                tracing::debug!(addr = %shared.addr, opaque = %cmd.opaque, "response for an abandoned request")
            }
        }
        return;
    }
    let Some(replies) = replies.upgrade() else { return };
    if inbound.len() >= config.max_inbound_requests {
        if !cmd.is_oneway() {
            let busy = RemotingCommand::response_to(
                &cmd,
                ResponseCode::SystemBusy,
                Some("too many requests in flight".into()),
            );
            if let Some(frame) = encode_reply(&busy, &shared.addr) {
                let _ = replies.try_send(frame);
            }
        }
        return;
    }
    let handler = Arc::clone(handler);
    let shared = Arc::clone(shared);
    inbound.spawn(async move {
        let oneway = cmd.is_oneway();
        let code = cmd.request_code();
        let request = cmd.clone_envelope();
        let reply = match handler.handle(&shared.addr, cmd).await {
            Ok(HandlerReply::Respond(mut resp)) => {
                resp.opaque = request.opaque;
                resp.flag |= 1;
                Some(resp)
            }
            Ok(HandlerReply::NoReply) => None,
            Err(NotSupported) => Some(RemotingCommand::response_to(
                &request,
                ResponseCode::RequestCodeNotSupported,
                Some(format!("request code {} not supported", code.code())),
            )),
        };
        if let (false, Some(reply)) = (oneway, reply)
            && let Some(frame) = encode_reply(&reply, &shared.addr)
        {
            let _ = replies.send(frame).await;
        }
        if matches!(code, RequestCode::Other(_)) {
            tracing::debug!(addr = %shared.addr, code = code.code(), "unsupported request from peer");
        }
    });
}

/// Encodes a reply to the peer; a reply that cannot be encoded (a handler bug, such as a body
/// over 16 MiB) is logged and dropped, and the peer's own timeout handles it.
fn encode_reply(reply: &RemotingCommand, addr: &str) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match encode_frame(reply, &mut buf) {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::warn!(addr, code = reply.code, error = %e, "dropping unencodable reply");
            None
        }
    }
}

impl RemotingCommand {
    /// A copy without body and ext fields: enough to answer the request later.
    fn clone_envelope(&self) -> Self {
        Self {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: None,
            ext_fields: crate::protocol::ExtFields::new(),
            body: bytes::Bytes::new(),
            serialize_type: self.serialize_type,
        }
    }
}
