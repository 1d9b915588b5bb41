//! The push consumer's public face: build it complete, start it, read its stats, shut it down.

use std::sync::{Arc, PoisonError};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::broker_api::BrokerApi;
use super::config::{ConfigError, ConsumerConfig};
use super::handler::{self, ConsumerRequestHandler};
use super::listener::{ConsumeMode, MessageListener};
use super::offset_store::{
    BrokerAddrs, DEFAULT_DIR_NAME, DEFAULT_OFFSET_RPC_TIMEOUT, LocalOffsetStore, OffsetStore,
    OffsetStoreError, RemoteOffsetStore,
};
use super::route::RouteTable;
use super::scheduler;
use super::shared::{Clients, Shared};
use super::stats::{ConsumerStats, TopicStats};
use crate::client::{BrokerClient, ClientError, NameServerClient, Producer, ProducerConfig};
use crate::protocol::body::{CheckClientRequestBody, MessageModel};
use crate::remoting::ConnectionPool;
use crate::remoting::pool::PoolConfig;

/// Why a consumer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    #[error("invalid consumer configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("no subscription: subscribe to at least one topic")]
    NoSubscription,
    #[error("subscription to {topic} with {expression:?} was refused by broker {addr}: {source}")]
    SubscriptionRefused { topic: String, expression: String, addr: String, source: ClientError },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    OffsetStore(#[from] OffsetStoreError),
}

/// A running push consumer. Dropping it without [`PushConsumer::shutdown`] stops its tasks
/// abruptly (nothing is committed that was not consumed, but in-flight messages are redelivered).
#[derive(Debug)]
pub struct PushConsumer {
    shared: Arc<Shared>,
    /// Graceful stop: the scheduler drains and commits, then unregisters.
    cancel: CancellationToken,
    /// Abrupt stop of the queue tasks (drop without shutdown).
    abort: CancellationToken,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    /// Answers broker-initiated requests (running info, consume directly, offset reset).
    requests: Option<tokio::task::JoinHandle<()>>,
}

impl PushConsumer {
    /// Starts a consumer (reference 4.1): validates the config, registers subscriptions (plus
    /// `%RETRY%<group>` in clustering), loads offsets, fetches routes, heartbeats, and
    /// rebalances at once. Returns when the first rebalance has been scheduled.
    pub async fn start(
        config: ConsumerConfig,
        namesrv_addrs: Vec<String>,
        listener: Arc<dyn MessageListener>,
    ) -> Result<Self, ConsumerError> {
        config.validate()?;
        if config.subscriptions.is_empty() {
            return Err(ConsumerError::NoSubscription);
        }
        let client_id = client_id_for(&config, &namesrv_addrs);
        let group = config.group.clone();

        let rebalance_now = Arc::new(Notify::new());
        let (forward, forwarded) = mpsc::channel(64);
        let (commands, command_rx) = mpsc::channel(16);
        // One pool (so one set of connections) per consumer: a broker binds a connection to the
        // client id of its first heartbeat.
        let mut pool_config = PoolConfig::default();
        pool_config.connection.credentials = config.credentials.clone().map(Arc::new);
        let pool = ConnectionPool::new(
            pool_config,
            Arc::new(ConsumerRequestHandler { rebalance_now: Arc::clone(&rebalance_now), forward }),
        );
        let namesrv = NameServerClient::new(pool.clone(), namesrv_addrs)?;
        let broker = BrokerClient::new(pool);
        let broker_api: Arc<dyn BrokerApi> = Arc::new(broker.clone());
        let producer = Producer::new(
            namesrv.clone(),
            broker.clone(),
            ProducerConfig { group: "CLIENT_INNER_PRODUCER".into(), ..Default::default() },
        );
        let routes = Arc::new(RouteTable::default());
        let offsets: OffsetStore = match config.message_model {
            MessageModel::Clustering => RemoteOffsetStore::with_options(
                group,
                Arc::clone(&broker_api),
                Arc::clone(&routes) as Arc<dyn BrokerAddrs>,
                DEFAULT_OFFSET_RPC_TIMEOUT,
                // Ask 5.x brokers not to answer 0 for a group with no offset, so
                // CONSUME_FROM_LAST_OFFSET really skips history (reference 4.10).
                Some(false),
            )
            .into(),
            MessageModel::Broadcasting => {
                let dir = config
                    .local_offset_store_dir
                    .clone()
                    .or_else(LocalOffsetStore::default_dir)
                    .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_DIR_NAME));
                LocalOffsetStore::new(&dir, &client_id, &group)?.into()
            }
        };
        offsets.load().await?;
        let shared = Arc::new(Shared::new(
            config,
            client_id,
            Clients { namesrv, broker: broker_api, producer },
            routes,
            offsets,
            listener,
            rebalance_now,
        ));

        scheduler::refresh_routes(&shared).await;
        check_sql_subscriptions(&shared).await?;
        scheduler::send_heartbeats(&shared).await;
        let cancel = CancellationToken::new();
        let abort = CancellationToken::new();
        // Both tasks (and the queue tasks the scheduler starts) keep the caller's log context.
        let task = tokio::spawn(
            scheduler::run(Arc::clone(&shared), command_rx, cancel.clone(), abort.clone())
                .in_current_span(),
        );
        let requests = tokio::spawn(
            handler::serve(Arc::clone(&shared), forwarded, commands, cancel.clone())
                .in_current_span(),
        );
        tracing::info!(group = %shared.group, client_id = %shared.client_id, "consumer started");
        Ok(Self { shared, cancel, abort, scheduler: Some(task), requests: Some(requests) })
    }

    /// This client's id, as brokers see it.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The consume mode.
    pub fn mode(&self) -> ConsumeMode {
        self.shared.consume_mode()
    }

    /// Live counters of every owned queue (its keys are the owned queues).
    pub fn stats(&self) -> ConsumerStats {
        self.probe().stats()
    }

    /// A read-only view for metrics and health checks, usable while the consumer runs.
    pub fn probe(&self) -> ConsumerProbe {
        ConsumerProbe { shared: Arc::clone(&self.shared) }
    }

    /// Asks for a rebalance now (as NOTIFY_CONSUMER_IDS_CHANGED does).
    pub fn rebalance_now(&self) {
        self.shared.rebalance_now.notify_one();
    }

    /// Graceful shutdown (reference 4.12): stop pulling, let in-flight consumption finish within
    /// the drain deadline, commit offsets, unregister from every broker.
    pub async fn shutdown(mut self) {
        // Not ready from now on: a load balancer or orchestrator stops counting on us first.
        self.shared.ready.store(false, std::sync::atomic::Ordering::Relaxed);
        self.cancel.cancel();
        if let Some(task) = self.scheduler.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "consumer scheduler failed during shutdown");
        }
        if let Some(task) = self.requests.take() {
            let _ = task.await;
        }
        self.abort.cancel();
        tracing::info!(group = %self.shared.group, client_id = %self.shared.client_id, "consumer stopped");
    }
}

/// What a running consumer shows an operator: owned queues, per-topic counters and
/// histograms, readiness. Cheap to clone; reading it takes no lock the consume path holds for
/// more than a map copy.
#[derive(Debug, Clone)]
pub struct ConsumerProbe {
    shared: Arc<Shared>,
}

impl ConsumerProbe {
    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// This client's id, as brokers see it.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Live counters of every owned queue (its keys are the owned queues).
    pub fn stats(&self) -> ConsumerStats {
        let stats = self.shared.stats.read().unwrap_or_else(PoisonError::into_inner);
        ConsumerStats { queues: stats.iter().map(|(q, s)| (q.clone(), s.snapshot())).collect() }
    }

    /// Every subscribed topic (the retry topic included) and its life-long counters.
    pub fn topics(&self) -> impl Iterator<Item = (&str, Arc<TopicStats>)> {
        self.shared.topic_stats.iter().map(|(t, s)| (t.as_str(), Arc::clone(s)))
    }

    /// Ready: the last rebalance placed every subscribed topic — each had a route and a member
    /// list, and every queue allocated to this client is being consumed (or none was
    /// allocated, e.g. more members than queues).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.abort.cancel();
    }
}

/// Java checks a SQL92 subscription with the broker before relying on it (CHECK_CLIENT_CONFIG);
/// a broker without property filtering refuses, and we fail fast with the reason.
async fn check_sql_subscriptions(shared: &Shared) -> Result<(), ConsumerError> {
    for sub in shared.subscription_list() {
        if sub.expression_type != crate::protocol::body::ExpressionType::Sql92 {
            continue;
        }
        let body = CheckClientRequestBody {
            client_id: shared.client_id.clone(),
            group: shared.group.to_string(),
            subscription_data: sub.clone(),
            namespace: None,
        };
        for addr in shared.routes.all_broker_addrs() {
            shared
                .broker
                .check_client_config(&addr, &body, shared.config.mq_client_api_timeout)
                .await
                .map_err(|source| ConsumerError::SubscriptionRefused {
                    topic: sub.topic.clone(),
                    expression: sub.sub_string.clone(),
                    addr: addr.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// The client id (reference 4.1), with the IP this host uses to reach the first name server:
/// what brokers see, without any I/O beyond a local route lookup.
fn client_id_for(config: &ConsumerConfig, namesrv_addrs: &[String]) -> String {
    let ip = namesrv_addrs
        .first()
        .and_then(|addr| {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
            socket.connect(addr.as_str()).ok()?;
            socket.local_addr().ok().map(|a| a.ip())
        })
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    super::config::client_id(
        ip,
        &config.instance_name,
        config.unit_name.as_deref(),
        config.message_model,
        std::process::id(),
        nanos,
    )
}
