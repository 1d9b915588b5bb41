//! Network faults between our client and a real broker (Apache RocketMQ; skipped with a note on
//! 4.9, which binds every interface, see below).
//!
//! * A silent peer loss — the link black-holes without a FIN or RST (partition, power-off, a NAT
//!   that forgot the flow) — must not stop consumption for good: once the network heals,
//!   consumption resumes within 60 s and nothing is lost.
//! * A peer that sends garbage, or closes mid-frame, resets only its own connection; the error
//!   names it, and the pool's other connections keep working.
//!
//! How the consumer is made to talk through the proxy: the cluster's broker advertises
//! 127.0.0.2 (`brokerIP1`) while it listens on 127.0.0.1, and the proxy listens on
//! 127.0.0.2 at the broker's port. Routes from the name server therefore lead every client to the
//! proxy, and the consumer under test runs unchanged — no test hook in the client, no address
//! rewriting. The name server is reached directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rmq_wasm::client::DEFAULT_RPC_TIMEOUT;
use rmq_wasm::consumer::config::Subscription;
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::protocol::body::HeartbeatData;
use rmq_wasm::protocol::message::MessageExt;
use rmq_wasm::protocol::{RemotingCommand, RequestCode};
use rmq_wasm::remoting::{ConnectionPool, RemotingError};
use rmq_wasm_tests::cluster::{Cluster, ClusterOptions, Flavour};
use rmq_wasm_tests::proxy::Proxy;
use rmq_wasm_tests::support::{
    Clients, consumer_config, init_tracing, start_consumer, unique, wait_for,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The loopback address the broker advertises and the proxy listens on.
const PROXY_IP: &str = "127.0.0.2";

/// This binary's cluster, whose broker advertises [`PROXY_IP`]; `None` (with a note) when the
/// flavour binds every interface, so that no proxy could take the advertised address.
fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let flavour = Flavour::from_env().expect("RMQ_CLUSTER_FLAVOUR");
            if flavour == Flavour::Java4 {
                eprintln!(
                    "skipped: Apache RocketMQ 4.9 binds every interface, so no proxy can stand at \
                     its advertised address (flavour is {flavour})"
                );
                return None;
            }
            let options =
                ClusterOptions { advertised_ip: PROXY_IP.to_owned(), ..ClusterOptions::default() };
            Some(Cluster::start(options).expect("cluster starts"))
        })
        .as_ref()
}

/// Every delivery, by message key.
type Seen = Arc<Mutex<BTreeMap<String, usize>>>;

fn counting(seen: &Seen) -> Arc<dyn MessageListener> {
    let seen = Arc::clone(seen);
    Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let seen = Arc::clone(&seen);
        async move {
            let mut seen = seen.lock().unwrap();
            for m in &msgs {
                let key = m.keys().next().unwrap_or_default().to_owned();
                *seen.entry(key).or_default() += 1;
            }
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }))
}

fn keys(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("k{i}")).collect()
}

/// Keys of `want` never delivered, and keys delivered more than once.
fn lost_and_duplicated(seen: &Seen, want: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let seen = seen.lock().unwrap();
    let lost = want.iter().filter(|k| !seen.contains_key(*k)).cloned().collect();
    let dup = seen.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{k}×{n}")).collect();
    (lost, dup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_resumes_within_60s_after_a_black_hole_heals_and_nothing_is_lost() {
    init_tracing();
    let Some(cluster) = cluster() else { return };
    let broker = &cluster.brokers()[0];
    let proxy = Proxy::start(&broker.addr, &broker.listen_addr).await.expect("proxy binds");
    let topic = unique("blackhole");
    let seen: Seen = Arc::default();
    let consumer;
    {
        // Clients of their own: the test's producer is not what is under test, and its
        // connection through the proxy is cut below too.
        let c = Clients::new(cluster);
        c.create_topic(cluster, &topic, 4).await.unwrap();
        let config = consumer_config(&unique("blackhole_group"), Subscription::all(&topic), "bh");
        consumer = start_consumer(cluster, config, counting(&seen)).await;
        c.produce_numbered(&topic, 0, 100).await;
        let first = keys(0..100);
        wait_for("the first 100 messages consumed", Duration::from_secs(60), || {
            let seen = seen.lock().unwrap();
            first.iter().all(|k| seen.contains_key(k)).then_some(())
        })
        .await;
    }
    let accepted_before = proxy.accepted();

    // The black hole lasts longer than the longest request timeout of the consumer (the pull's
    // 30 s), so every request in flight when it began has timed out before the network heals.
    // This is the fault's duration, not a synchronisation: nothing can be awaited in a network
    // that says nothing.
    proxy.black_hole();
    let black_hole = Duration::from_secs(35);
    let began = tokio::time::Instant::now();
    tokio::time::sleep(black_hole).await;
    assert!(proxy.stranded() >= 1, "the consumer's connection was cut");
    eprintln!(
        "black hole of {:?}: {} connection(s) cut, {} accepted meanwhile",
        began.elapsed(),
        proxy.stranded(),
        proxy.accepted() - accepted_before
    );
    proxy.resume();
    let healed = tokio::time::Instant::now();

    // A fresh producer (its connection opens after the network healed).
    let c = Clients::new(cluster);
    c.produce_numbered(&topic, 100, 100).await;
    let second = keys(100..200);
    let resumed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if second.iter().all(|k| seen.lock().unwrap().contains_key(k)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let all = keys(0..200);
    let (lost, duplicated) = lost_and_duplicated(&seen, &all);
    eprintln!(
        "after healing: resumed in {:?}; lost {} {lost:?}; duplicated {} {duplicated:?}",
        healed.elapsed(),
        lost.len(),
        duplicated.len()
    );
    assert!(
        resumed.is_ok(),
        "consumption did not resume within 60 s of the network healing: {} of 100 new messages \
         missing",
        second.iter().filter(|k| !seen.lock().unwrap().contains_key(*k)).count()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    consumer.shutdown().await;
}

/// What the fake broker does with a connection, in accept order.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Reads a request, answers four bytes that announce a frame longer than the maximum.
    Garbage,
    /// Reads a request, writes the first bytes of a frame, and closes.
    CloseMidFrame,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_or_closing_mid_frame_resets_only_its_own_connection() {
    init_tracing();
    let Some(cluster) = cluster() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap().to_string();
    let script = [Misbehaviour::Garbage, Misbehaviour::CloseMidFrame];
    let fake_broker = tokio::spawn(async move {
        for what in script {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            // Any bytes will do: the client has sent its request.
            let _ = sock.read(&mut buf).await.unwrap();
            match what {
                Misbehaviour::Garbage => {
                    sock.write_all(&[0xFF, 0xFF, 0xFF, 0xFF]).await.unwrap();
                    // Hold the socket until the client hangs up: the close must be the client's.
                    while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                }
                Misbehaviour::CloseMidFrame => {
                    // Length 200, header length 50, then 6 of the 196 bytes promised; close.
                    sock.write_all(&[0, 0, 0, 200, 0, 0, 0, 50, b'{', b'"']).await.unwrap();
                }
            }
        }
    });

    // One pool for everything: the real name server and broker (directly, not through any
    // proxy), and the fake broker.
    let pool = ConnectionPool::default();
    let real = broker_heartbeat_ok(&pool, &cluster.brokers()[0].listen_addr).await;
    let namesrv = namesrv_ok(&pool, &cluster.namesrv_addr).await;

    for expected in ["invalid frame", "mid-frame"] {
        let request = RemotingCommand::request_without_header(RequestCode::HeartBeat);
        let err = pool.request(&fake, request, DEFAULT_RPC_TIMEOUT).await.unwrap_err();
        eprintln!("fake broker: {err}");
        match &err {
            RemotingError::Closed { addr, reason } => {
                assert_eq!(addr, &fake, "the error names the peer at fault");
                assert!(reason.contains(expected), "{expected}: {reason}");
            }
            other => panic!("expected the fake broker's connection to close, got {other:?}"),
        }
        assert!(err.to_string().contains(&fake), "{err}");
        // The other connections are the very same, and still work.
        let again = broker_heartbeat_ok(&pool, &cluster.brokers()[0].listen_addr).await;
        assert!(again.same_as(&real) && !real.is_closed(), "the broker connection was kept");
        let again = namesrv_ok(&pool, &cluster.namesrv_addr).await;
        assert!(again.same_as(&namesrv) && !namesrv.is_closed(), "the name server one too");
    }
    tokio::time::timeout(Duration::from_secs(10), fake_broker)
        .await
        .expect("the fake broker saw both connections end")
        .unwrap();
}

/// A heartbeat to the real broker at `addr` succeeds; returns the connection it used.
async fn broker_heartbeat_ok(pool: &ConnectionPool, addr: &str) -> rmq_wasm::remoting::Connection {
    let data = HeartbeatData { client_id: unique("faults_client"), ..Default::default() };
    let cmd =
        RemotingCommand::request_without_header(RequestCode::HeartBeat).with_body(data.encode());
    let resp = pool.request(addr, cmd, DEFAULT_RPC_TIMEOUT).await.expect("broker answers");
    assert_eq!(resp.response_code(), rmq_wasm::protocol::ResponseCode::Success);
    pool.get(addr).await.unwrap()
}

/// The name server at `addr` answers GET_BROKER_CLUSTER_INFO; returns the connection it used.
async fn namesrv_ok(pool: &ConnectionPool, addr: &str) -> rmq_wasm::remoting::Connection {
    let cmd = RemotingCommand::request_without_header(RequestCode::GetBrokerClusterInfo);
    let resp = pool.request(addr, cmd, DEFAULT_RPC_TIMEOUT).await.expect("name server answers");
    assert_eq!(resp.response_code(), rmq_wasm::protocol::ResponseCode::Success);
    pool.get(addr).await.unwrap()
}
