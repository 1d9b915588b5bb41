//! Clients wired to a test cluster, and small helpers shared by the integration tests.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rmq_wasm::client::admin::TopicSpec;
use rmq_wasm::client::{Admin, BrokerClient, NameServerClient, Producer, ProducerConfig};
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::MessageListener;
use rmq_wasm::protocol::acl::AclCredentials;
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::body::TopicRouteData;
use rmq_wasm::remoting::ConnectionPool;
use rmq_wasm::remoting::connection::RejectAll;
use rmq_wasm::remoting::pool::PoolConfig;

use crate::cluster::Cluster;

/// Every client a test needs, over one connection pool.
#[derive(Debug)]
pub struct Clients {
    pub namesrv: NameServerClient,
    pub broker: BrokerClient,
    pub admin: Admin,
    pub producer: Producer,
}

impl Clients {
    /// Clients for `cluster`.
    pub fn new(cluster: &Cluster) -> Self {
        Self::with_credentials(cluster, None)
    }

    /// Clients for `cluster` that sign every request with `credentials` (a broker with
    /// authentication on).
    pub fn with_credentials(cluster: &Cluster, credentials: Option<AclCredentials>) -> Self {
        let mut config = PoolConfig::default();
        config.connection.credentials = credentials.map(std::sync::Arc::new);
        let pool = ConnectionPool::new(config, std::sync::Arc::new(RejectAll));
        let namesrv = NameServerClient::new(pool.clone(), vec![cluster.namesrv_addr.clone()])
            .expect("one name server address");
        let broker = BrokerClient::new(pool);
        let admin = Admin::new(namesrv.clone(), broker.clone());
        let producer = Producer::new(
            namesrv.clone(),
            broker.clone(),
            ProducerConfig { group: unique("test_producer"), ..Default::default() },
        );
        Self { namesrv, broker, admin, producer }
    }

    /// Sends messages `from..from + n` to `topic` one by one (body `m<i>`, key `k<i>`) and
    /// returns their message ids.
    pub async fn produce_numbered(
        &self,
        topic: &str,
        from: usize,
        n: usize,
    ) -> std::collections::BTreeSet<String> {
        let mut ids = std::collections::BTreeSet::new();
        for i in from..from + n {
            let msg = rmq_wasm::protocol::message::Message::new(
                topic,
                bytes::Bytes::from(format!("m{i}")),
            )
            .with_keys([format!("k{i}")]);
            ids.insert(self.producer.send(msg).await.expect("send").msg_id);
        }
        ids
    }

    /// Creates a topic with `queues` queues on the cluster and waits for its route.
    pub async fn create_topic(
        &self,
        cluster: &Cluster,
        topic: &str,
        queues: i32,
    ) -> anyhow::Result<TopicRouteData> {
        Ok(self
            .admin
            .create_topic(
                &cluster.cluster_name,
                &TopicSpec::new(topic, queues),
                Duration::from_secs(30),
            )
            .await?)
    }
}

/// A name no other test (or earlier run against the same cluster) uses.
/// A test consumer: `sub` read from the first offset by instance `instance`, rebalancing every
/// 2 s for a faster reaction (Java's 20 s still applies by default).
pub fn consumer_config(group: &str, sub: Subscription, instance: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group).subscribe(sub);
    c.instance_name = instance.to_owned();
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c.rebalance_interval = Duration::from_secs(2);
    c
}

/// Starts a push consumer on `cluster`'s name server.
pub async fn start_consumer(
    cluster: &Cluster,
    config: ConsumerConfig,
    listener: Arc<dyn MessageListener>,
) -> PushConsumer {
    PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], listener)
        .await
        .expect("consumer starts")
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or_default();
    format!("{prefix}_{}_{millis}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Installs a test log subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`. Tests wait on
/// conditions, never on fixed sleeps; the short poll interval only bounds the reaction time.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `current()` contains every id in `want`.
pub async fn wait_for_all(
    what: &str,
    timeout: Duration,
    want: &std::collections::BTreeSet<String>,
    current: impl Fn() -> std::collections::BTreeSet<String>,
) {
    wait_for(what, timeout, || current().is_superset(want).then_some(())).await;
}

/// A PULL_MESSAGE header that reads everything from `offset` without a registered subscription
/// (the filter rides on the request) and without long polling: for tests that read a topic back.
pub fn read_back_header(
    topic: &str,
    queue_id: rmq_wasm::protocol::QueueId,
    offset: rmq_wasm::protocol::QueueOffset,
) -> rmq_wasm::protocol::header::PullMessageRequestHeader {
    rmq_wasm::protocol::header::PullMessageRequestHeader {
        consumer_group: "test_reader".into(),
        topic: topic.to_owned(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: rmq_wasm::protocol::header::pull_sys_flag::SUBSCRIPTION,
        commit_offset: rmq_wasm::protocol::QueueOffset(0),
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: rmq_wasm::protocol::EpochMillis(0),
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        bname: None,
    }
}

/// Pulls every queue of `topic` from 0 until a message matching `pred` shows up.
pub async fn read_topic_until(
    c: &Clients,
    cluster: &Cluster,
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&rmq_wasm::protocol::message::MessageExt) -> bool,
) -> rmq_wasm::protocol::message::MessageExt {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(route) = c.namesrv.route(topic).await.unwrap() {
            for q in route.subscribe_queues(topic) {
                let header =
                    read_back_header(topic, q.queue_id, rmq_wasm::protocol::QueueOffset(0));
                if let Ok(r) =
                    c.broker.pull(&cluster.broker_addr, &header, Duration::from_secs(5)).await
                    && let Some(m) = r.messages.into_iter().find(|m| pred(m))
                {
                    return m;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no matching message in {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The CLI binary `exe` (an integration test's `env!("CARGO_BIN_EXE_rmq-wasm-proc")`: Cargo
/// gives that path to integration tests only) with `args`: plain logs at `log`, no backtraces,
/// no cluster settings inherited from the environment the tests run in.
pub fn cli_command(exe: &str, log: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", log)
        .env_remove("RUST_BACKTRACE")
        .env_remove("NAMESRV_ADDR")
        .env_remove("CLUSTER_NAME");
    cmd
}

/// A finished command's status and both outputs, for an assertion's message.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
