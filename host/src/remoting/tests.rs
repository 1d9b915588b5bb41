//! Connection and pool behaviour against a scripted peer over `tokio::io::duplex` or loopback TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::duplex;
use tokio::net::TcpListener;

use super::connection::{
    Connection, ConnectionConfig, HandlerFuture, HandlerReply, NotSupported, RejectAll,
    RequestHandler,
};
use super::error::RemotingError;
use super::fake::FakePeer;
use super::pool::{ConnectionPool, Dial, DialFuture, Io, PoolConfig};
use crate::protocol::header::{GetConsumerListByGroupRequestHeader, OffsetResponseHeader};
use crate::protocol::{Opaque, QueueOffset, RemotingCommand, RequestCode, ResponseCode};

const LONG: Duration = Duration::from_secs(5);

fn conn_pair(handler: Arc<dyn RequestHandler>) -> (Connection, FakePeer<tokio::io::DuplexStream>) {
    let (a, b) = duplex(1 << 20);
    (Connection::spawn(a, "fake:1", ConnectionConfig::default(), handler), FakePeer::new(b))
}

fn list_request(group: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GetConsumerListByGroup,
        &GetConsumerListByGroupRequestHeader { consumer_group: group.into() },
    )
}

fn offset_response(to: &RemotingCommand, offset: i64) -> RemotingCommand {
    RemotingCommand::response_to(to, ResponseCode::Success, None)
        .with_header(&OffsetResponseHeader { offset: QueueOffset(offset) })
}

#[tokio::test]
async fn responses_are_matched_by_opaque_even_out_of_order() {
    let (conn, mut peer) = conn_pair(Arc::new(RejectAll));
    let c1 = conn.clone();
    let c2 = conn.clone();
    let r1 = tokio::spawn(async move { c1.request(list_request("a"), LONG).await });
    let r2 = tokio::spawn(async move { c2.request(list_request("b"), LONG).await });
    let q1 = peer.recv().await.unwrap();
    let q2 = peer.recv().await.unwrap();
    assert_ne!(q1.opaque, q2.opaque);
    // Answer in reverse order, each with a value derived from its request.
    for q in [&q2, &q1] {
        let group: GetConsumerListByGroupRequestHeader = q.header().unwrap();
        let value = if group.consumer_group == "a" { 1 } else { 2 };
        peer.send(&offset_response(q, value)).await;
    }
    let a: OffsetResponseHeader = r1.await.unwrap().unwrap().header().unwrap();
    let b: OffsetResponseHeader = r2.await.unwrap().unwrap().header().unwrap();
    assert_eq!((a.offset.0, b.offset.0), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn timed_out_and_cancelled_requests_leave_no_pending_entry() {
    let (conn, peer) = conn_pair(Arc::new(RejectAll));
    let err = conn.request(list_request("g"), Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(
        err,
        RemotingError::Timeout { code: RequestCode::GetConsumerListByGroup, .. }
    ));
    assert_eq!(conn.pending_len(), 0);
    // The timeout closed the connection (see the pool tests for what follows).
    assert!(conn.is_closed());
    drop(peer);

    // Cancelled by dropping the future mid-flight: that says nothing about the peer, so the
    // connection stays open.
    let (conn, mut peer) = conn_pair(Arc::new(RejectAll));
    let c = conn.clone();
    let task = tokio::spawn(async move { c.request(list_request("g"), LONG).await });
    let _seen = peer.recv().await.unwrap();
    assert_eq!(conn.pending_len(), 1);
    task.abort();
    let _ = task.await;
    assert_eq!(conn.pending_len(), 0);

    // The connection is still usable afterwards.
    let c = conn.clone();
    let ok = tokio::spawn(async move { c.request(list_request("g"), LONG).await });
    let q = peer.recv().await.unwrap();
    peer.send(&offset_response(&q, 5)).await;
    assert!(ok.await.unwrap().is_ok());
}

#[tokio::test]
async fn oneway_requests_carry_the_flag_and_expect_nothing() {
    let (conn, mut peer) = conn_pair(Arc::new(RejectAll));
    conn.oneway(list_request("g"), LONG).await.unwrap();
    let q = peer.recv().await.unwrap();
    assert!(q.is_oneway());
    assert!(!q.is_response());
    assert_eq!(conn.pending_len(), 0);
}

/// Answers NOTIFY with nothing, GET_CONSUMER_LIST with an offset, and knows nothing else.
#[derive(Default)]
struct CountingHandler {
    notified: AtomicUsize,
}

impl RequestHandler for CountingHandler {
    fn handle<'a>(&'a self, _addr: &'a str, request: RemotingCommand) -> HandlerFuture<'a> {
        Box::pin(async move {
            match request.request_code() {
                RequestCode::NotifyConsumerIdsChanged => {
                    self.notified.fetch_add(1, Ordering::SeqCst);
                    Ok(HandlerReply::NoReply)
                }
                RequestCode::GetConsumerListByGroup => Ok(HandlerReply::Respond(
                    RemotingCommand::response_to(&request, ResponseCode::Success, None)
                        .with_body(&b"{}"[..]),
                )),
                _ => Err(NotSupported),
            }
        })
    }
}

#[tokio::test]
async fn broker_initiated_requests_reach_the_handler() {
    let handler = Arc::new(CountingHandler::default());
    let (conn, mut peer) = conn_pair(Arc::clone(&handler) as Arc<dyn RequestHandler>);

    // A broker request whose opaque collides with one of ours is still a request: the flag bit
    // decides, never the opaque.
    let mut req = list_request("g");
    req.opaque = Opaque(0);
    peer.send(&req).await;
    let resp = peer.recv().await.unwrap();
    assert!(resp.is_response());
    assert_eq!(resp.opaque, Opaque(0));
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert_eq!(&resp.body[..], b"{}");

    // Unknown code → REQUEST_CODE_NOT_SUPPORTED.
    let mut unknown = RemotingCommand::request_without_header(RequestCode::Other(9999));
    unknown.opaque = Opaque(77);
    peer.send(&unknown).await;
    let resp = peer.recv().await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::RequestCodeNotSupported);
    assert_eq!(resp.opaque, Opaque(77));

    // Oneway: handled, never answered (the next thing the peer sees is our own request).
    let mut notify = RemotingCommand::request_without_header(RequestCode::NotifyConsumerIdsChanged);
    notify.set_oneway();
    peer.send(&notify).await;
    // An unsupported oneway is not answered either.
    let mut unknown_oneway = RemotingCommand::request_without_header(RequestCode::Other(9998));
    unknown_oneway.set_oneway();
    peer.send(&unknown_oneway).await;
    let c = conn.clone();
    let ours = tokio::spawn(async move { c.request(list_request("x"), LONG).await });
    let next = peer.recv().await.unwrap();
    assert!(!next.is_response(), "no reply to oneway requests");
    assert_eq!(next.request_code(), RequestCode::GetConsumerListByGroup);
    peer.send(&offset_response(&next, 1)).await;
    ours.await.unwrap().unwrap();
    assert_eq!(handler.notified.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_invalid_frame_poisons_only_that_connection() {
    let (conn, mut peer) = conn_pair(Arc::new(RejectAll));
    let (other, mut other_peer) = conn_pair(Arc::new(RejectAll));
    let c = conn.clone();
    let waiting = tokio::spawn(async move { c.request(list_request("g"), LONG).await });
    let _ = peer.recv().await.unwrap();
    peer.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF]).await;
    let err = waiting.await.unwrap().unwrap_err();
    match &err {
        RemotingError::Closed { reason, .. } => {
            assert!(reason.contains("invalid frame"), "{reason}")
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(conn.is_closed());
    // A later request on the poisoned connection fails fast with the same reason.
    let err = conn.request(list_request("g"), LONG).await.unwrap_err();
    assert!(matches!(err, RemotingError::Closed { .. }));
    // The other connection is untouched.
    let o = other.clone();
    let ok = tokio::spawn(async move { o.request(list_request("g"), LONG).await });
    let q = other_peer.recv().await.unwrap();
    other_peer.send(&offset_response(&q, 3)).await;
    assert!(ok.await.unwrap().is_ok());
    assert!(!other.is_closed());
}

#[tokio::test(start_paused = true)]
async fn idle_connections_close_but_not_while_a_request_waits() {
    let (a, b) = duplex(1 << 16);
    let config = ConnectionConfig { idle_timeout: Duration::from_secs(10), ..Default::default() };
    let conn = Connection::spawn(a, "fake:1", config, Arc::new(RejectAll));
    let mut peer = FakePeer::new(b);
    let c = conn.clone();
    let waiting =
        tokio::spawn(async move { c.request(list_request("g"), Duration::from_secs(60)).await });
    let q = peer.recv().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!conn.is_closed(), "a pending request keeps the connection open");
    peer.send(&offset_response(&q, 1)).await;
    waiting.await.unwrap().unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(20), conn.closed()).await.unwrap();
    assert!(reason.contains("idle"), "{reason}");
}

#[tokio::test]
async fn the_pool_reconnects_after_a_connection_is_poisoned() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let server = tokio::spawn(async move {
        // First connection: answer one request, then send garbage. Second: answer normally.
        for round in 0..2 {
            let (sock, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut peer = FakePeer::new(sock);
            let q = peer.recv().await.unwrap();
            peer.send(&offset_response(&q, round)).await;
            if round == 0 {
                peer.send_raw(b"\x00\x00\x00\x08\x07\x00\x00\x00garbage!").await;
                // Wait for the client to drop us.
                while peer.recv().await.is_some() {}
            } else {
                while let Some(q) = peer.recv().await {
                    peer.send(&offset_response(&q, 100)).await;
                }
            }
        }
    });
    let pool = ConnectionPool::new(PoolConfig::default(), Arc::new(RejectAll));
    let conn = pool.get(&addr).await.unwrap();
    let first = pool.request(&addr, list_request("g"), LONG).await.unwrap();
    assert_eq!(first.header::<OffsetResponseHeader>().unwrap().offset.0, 0);
    tokio::time::timeout(LONG, conn.closed()).await.unwrap();
    let second = pool.request(&addr, list_request("g"), LONG).await.unwrap();
    assert_eq!(second.header::<OffsetResponseHeader>().unwrap().offset.0, 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    pool.close_all();
    drop(conn);
    server.abort();
}

#[tokio::test]
async fn connect_errors_name_the_address() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let err = ConnectionPool::default().request(&addr, list_request("g"), LONG).await.unwrap_err();
    assert!(err.to_string().contains(&addr), "{err}");
}

#[tokio::test]
async fn requests_are_signed_when_credentials_are_set() {
    use crate::protocol::acl::{AclCredentials, content_to_sign, signature};
    let (a, b) = duplex(1 << 16);
    let creds = Arc::new(AclCredentials::new("AK", "SK"));
    let config = ConnectionConfig { credentials: Some(creds), ..Default::default() };
    let conn = Connection::spawn(a, "fake:1", config, Arc::new(RejectAll));
    let mut peer = FakePeer::new(b);
    conn.oneway(list_request("G").with_body(&b"xyz"[..]), LONG).await.unwrap();
    let got = peer.recv().await.unwrap();
    assert_eq!(got.ext_fields.get("AccessKey"), Some("AK"));
    let mut unsigned: std::collections::BTreeMap<String, String> =
        got.ext_fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let sig = unsigned.remove("Signature").expect("signed");
    // Recompute as the server does: values in key order, then the body.
    assert_eq!(sig, signature(b"SK", &content_to_sign(&unsigned, &got.body)));
    // Content is "AK" + "G" + body.
    assert_eq!(content_to_sign(&unsigned, &got.body), b"AKGxyz".to_vec());
}

/// The peers a [`DuplexDial`] hands out, with the address each was dialled for.
type DialledPeers = tokio::sync::mpsc::Receiver<(String, FakePeer<tokio::io::DuplexStream>)>;

/// Dials in memory: every dial hands the peer's end of a fresh duplex pipe to the test, after
/// `delay` (a slow connect), or refuses addresses that start with `gone`.
struct DuplexDial {
    delay: Duration,
    peers: tokio::sync::mpsc::Sender<(String, FakePeer<tokio::io::DuplexStream>)>,
    dials: AtomicUsize,
}

impl DuplexDial {
    fn new(delay: Duration) -> (Arc<Self>, DialledPeers) {
        let (peers, rx) = tokio::sync::mpsc::channel(16);
        (Arc::new(Self { delay, peers, dials: AtomicUsize::new(0) }), rx)
    }
}

impl Dial for DuplexDial {
    fn dial<'a>(&'a self, addr: &'a str, timeout: Duration) -> DialFuture<'a> {
        Box::pin(async move {
            self.dials.fetch_add(1, Ordering::SeqCst);
            tokio::time::timeout(timeout, tokio::time::sleep(self.delay)).await.map_err(|_| {
                RemotingError::ConnectTimeout { addr: addr.to_owned(), after: timeout }
            })?;
            if addr.starts_with("gone") {
                return Err(RemotingError::Connect {
                    addr: addr.to_owned(),
                    reason: Arc::from("connection refused"),
                });
            }
            let (ours, theirs) = duplex(1 << 16);
            let _ = self.peers.send((addr.to_owned(), FakePeer::new(theirs))).await;
            Ok(Box::new(ours) as Box<dyn Io>)
        })
    }
}

fn duplex_pool(delay: Duration) -> (ConnectionPool, Arc<DuplexDial>, DialledPeers) {
    let (dialer, peers) = DuplexDial::new(delay);
    let pool = ConnectionPool::with_dialer(
        PoolConfig::default(),
        Arc::new(RejectAll),
        Arc::clone(&dialer) as Arc<dyn Dial>,
    );
    (pool, dialer, peers)
}

/// A silent peer (power-off, partition, NAT drop) shows only as a timeout. Java closes the
/// channel then (`clientCloseSocketIfTimeout`); so do we: the other requests on the connection
/// fail at once with a reason that says why, and the next request gets a fresh connection
/// instead of queueing behind a dead one forever.
#[tokio::test(start_paused = true)]
async fn a_timed_out_request_closes_the_connection_and_the_pool_dials_afresh() {
    let (pool, dialer, mut peers) = duplex_pool(Duration::ZERO);
    let first = pool.get("fake:1").await.unwrap();
    let (_, mut peer) = peers.recv().await.unwrap();
    // A long-poll style request that would wait a minute, and a short one; the peer reads both
    // and answers neither.
    let p = pool.clone();
    let long = tokio::spawn(async move {
        p.request("fake:1", list_request("a"), Duration::from_secs(60)).await
    });
    let _ = peer.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.request("fake:1", list_request("b"), Duration::from_secs(3)).await.unwrap_err();
    assert!(matches!(err, RemotingError::Timeout { .. }), "{err:?}");
    let other = long.await.unwrap().unwrap_err();
    match &other {
        RemotingError::Closed { addr, reason } => {
            assert_eq!(addr, "fake:1");
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("the waiting request should fail with the close reason, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "failed at once, not after its own 60 s");
    assert!(first.is_closed(), "the timed-out connection is closed");
    let second = pool.get("fake:1").await.unwrap();
    assert!(!second.is_closed());
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 2, "a fresh connection was dialled");
    // The fresh connection works.
    let (_, mut peer2) = peers.recv().await.unwrap();
    let p = pool.clone();
    let ok = tokio::spawn(async move { p.request("fake:1", list_request("c"), LONG).await });
    let q = peer2.recv().await.unwrap();
    peer2.send(&offset_response(&q, 7)).await;
    assert!(ok.await.unwrap().is_ok());
}

/// One timeout bounds the whole call: a slow connect leaves less time for the response, as
/// Java's invokeSync subtracts the time spent getting the channel.
#[tokio::test(start_paused = true)]
async fn a_pool_request_is_bounded_by_one_timeout_including_the_connect() {
    let (pool, _dialer, mut peers) = duplex_pool(Duration::from_secs(2));
    let timeout = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let p = pool.clone();
    let call = tokio::spawn(async move { p.request("fake:1", list_request("g"), timeout).await });
    // The peer reads the request and never answers.
    let (_, mut peer) = peers.recv().await.unwrap();
    let _ = peer.recv().await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RemotingError::Timeout { .. }), "{err:?}");
    assert!(took <= timeout, "the call took {took:?}, over its timeout of {timeout:?}");
    assert!(err.to_string().contains("after 3s"), "names the caller's timeout: {err}");
}

/// A long-running process whose brokers change addresses must not keep a slot (and a dead
/// connection) per address it ever used: slots go when their connection closes or the connect
/// fails.
#[tokio::test(start_paused = true)]
async fn slots_of_closed_connections_and_failed_connects_are_pruned() {
    let (pool, _dialer, mut peers) = duplex_pool(Duration::ZERO);
    let mut held = Vec::new();
    for i in 0..3 {
        let addr = format!("fake:{i}");
        held.push(pool.get(&addr).await.unwrap());
        peers.recv().await.unwrap();
        // Dropping the peer's end closes the connection ("peer closed the connection").
    }
    assert!(pool.get("gone:1").await.is_err());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.slot_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} slot(s) left after every connection closed",
            pool.slot_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for conn in &held {
        assert!(conn.is_closed());
    }
    // A pruned address connects again on demand.
    let again = pool.get("fake:0").await.unwrap();
    let (_, _peer) = peers.recv().await.unwrap();
    assert!(!again.is_closed());
    assert_eq!(pool.slot_count(), 1);
}

/// A caller that gives up mid-connect (its timeout is shorter than the connect) leaves no slot
/// behind either: an address that never answers must not pin memory.
#[tokio::test(start_paused = true)]
async fn a_connect_abandoned_by_its_caller_leaves_no_slot() {
    let (pool, dialer, _peers) = duplex_pool(Duration::from_secs(2));
    let err = pool.request("slow:1", list_request("g"), Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, RemotingError::ConnectTimeout { .. }), "{err:?}");
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 1);
    assert_eq!(pool.slot_count(), 0, "the abandoned connect left its slot");
}

/// Our own writes say nothing about the peer: a connection on which we keep sending (oneway
/// offset commits, say) but never hear back from the peer is idle, and closes.
#[tokio::test(start_paused = true)]
async fn only_reads_from_the_peer_count_as_activity() {
    let (a, b) = duplex(1 << 20);
    let config = ConnectionConfig { idle_timeout: Duration::from_secs(10), ..Default::default() };
    let conn = Connection::spawn(a, "fake:1", config, Arc::new(RejectAll));
    let _silent = FakePeer::new(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !conn.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open after 30 s of writes and no reads (idle timeout 10 s)"
        );
        let _ = conn.oneway(list_request("g"), LONG).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let reason = conn.closed().await;
    assert!(reason.contains("idle"), "{reason}");
}

/// TCP keepalive finds a peer that vanished while nothing was in flight, without our traffic.
#[tokio::test]
async fn tcp_connections_have_keepalive_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stream = super::pool::connect_tcp(&addr, LONG).await.unwrap();
    let sock = socket2::SockRef::from(&stream);
    assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE is off");
    assert!(
        sock.tcp_keepalive_time().unwrap() <= Duration::from_secs(60),
        "keepalive idle time {:?} is the system default (hours)",
        sock.tcp_keepalive_time().unwrap()
    );
}
