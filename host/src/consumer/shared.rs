//! What every consumer task reads: configuration, identity, clients, routes, offsets, the
//! listener and the consume bound. Built once at start-up, fully, then shared behind an `Arc` —
//! no field is filled in later.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{Notify, Semaphore};

use super::broker_api::BrokerApi;
use super::config::ConsumerConfig;
use super::listener::{ConsumeMode, MessageListener};
use super::offset_store::OffsetStore;
use super::route::RouteTable;
use super::stats::QueueStats;
use crate::client::{NameServerClient, Producer};
use crate::protocol::MessageQueue;
use crate::protocol::body::{MessageModel, SubscriptionData};

/// Context shared by the scheduler, the queue tasks and the consume jobs.
pub(crate) struct Shared {
    pub config: ConsumerConfig,
    pub group: Arc<str>,
    pub client_id: String,
    /// Topic → subscription, including the retry topic in clustering. The `subVersion` here is
    /// what heartbeats and pulls both send, so they always agree.
    pub subscriptions: RwLock<BTreeMap<String, SubscriptionData>>,
    pub namesrv: NameServerClient,
    /// Every broker request of the core: [`crate::client::BrokerClient`], or a scripted fake in
    /// unit tests.
    pub broker: Arc<dyn BrokerApi>,
    pub routes: Arc<RouteTable>,
    pub offsets: OffsetStore,
    /// What consume jobs need (and all they see).
    pub consume: Arc<ConsumeEnv>,
    /// Wakes the rebalance early (NOTIFY_CONSUMER_IDS_CHANGED, OFFSET_ILLEGAL, start).
    pub rebalance_now: Arc<Notify>,
    /// Live counters of owned queues.
    pub stats: RwLock<HashMap<MessageQueue, Arc<QueueStats>>>,
    /// When the consumer started: CONSUME_FROM_TIMESTAMP's default is 30 min before it.
    pub started_at: crate::protocol::EpochMillis,
    /// Orderly: when each queue's broker lock was last confirmed. Written by the rebalance and
    /// the periodic lock-all, read by queue tasks before pulling and consuming.
    pub locks: std::sync::Mutex<HashMap<MessageQueue, tokio::time::Instant>>,
    /// The "skipped N messages" notice of a new group starting at the last offset, once set:
    /// logged the first time only (rebalances come every 20 s).
    pub skip_notice: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("group", &self.group)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What consume jobs need, and nothing more: the listener and its concurrency bound, and the
/// names and clients to hand a failed message back, re-send it to `%RETRY%<group>` or write it to
/// the DLQ. (Offsets, subscriptions, locks and the rebalance stay with the queue tasks and the
/// scheduler: a consume job reports its outcomes back to its queue task, which commits.)
pub(crate) struct ConsumeEnv {
    pub group: Arc<str>,
    /// `%RETRY%<group>`.
    pub retry_topic: Arc<str>,
    pub message_model: MessageModel,
    /// The effective max reconsume times sent with send-backs.
    pub max_reconsume_times: i32,
    pub listener: Arc<dyn MessageListener>,
    /// Bounds listener calls across all queues (Java's consume thread pool size).
    pub permits: Semaphore,
    pub broker: Arc<dyn BrokerApi>,
    /// Fallback retry sends (reference 4.8) and DLQ copies.
    pub producer: Producer,
    /// Masters to send failed messages back to.
    pub routes: Arc<RouteTable>,
}

impl std::fmt::Debug for ConsumeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeEnv").field("group", &self.group).finish_non_exhaustive()
    }
}

/// The clients the core talks through.
pub(crate) struct Clients {
    pub namesrv: NameServerClient,
    pub broker: Arc<dyn BrokerApi>,
    pub producer: Producer,
}

impl Shared {
    /// The context of a consumer with `config`: its subscriptions (plus `%RETRY%<group>` in
    /// clustering), consume bound and reconsume limit are derived here, once.
    pub fn new(
        config: ConsumerConfig,
        client_id: String,
        clients: Clients,
        routes: Arc<RouteTable>,
        offsets: OffsetStore,
        listener: Arc<dyn MessageListener>,
        rebalance_now: Arc<Notify>,
    ) -> Self {
        let group: Arc<str> = Arc::from(config.group.as_str());
        let retry_topic: Arc<str> = Arc::from(super::policy::retry_topic(&group));
        let mut subscriptions: BTreeMap<String, SubscriptionData> = config
            .subscriptions
            .iter()
            .map(|s| (s.topic.clone(), s.to_subscription_data()))
            .collect();
        if config.message_model == MessageModel::Clustering {
            subscriptions
                .insert(retry_topic.to_string(), SubscriptionData::new(retry_topic.as_ref(), "*"));
        }
        let Clients { namesrv, broker, producer } = clients;
        let consume = Arc::new(ConsumeEnv {
            group: Arc::clone(&group),
            retry_topic,
            message_model: config.message_model,
            max_reconsume_times: config.effective_max_reconsume_times(),
            listener,
            permits: Semaphore::new(config.consume_thread_max as usize),
            broker: Arc::clone(&broker),
            producer,
            routes: Arc::clone(&routes),
        });
        Self {
            consume,
            started_at: crate::protocol::EpochMillis::now(),
            locks: std::sync::Mutex::default(),
            skip_notice: std::sync::OnceLock::new(),
            config,
            group,
            client_id,
            subscriptions: RwLock::new(subscriptions),
            namesrv,
            broker,
            routes,
            offsets,
            rebalance_now,
            stats: RwLock::default(),
        }
    }

    /// The subscription of `topic`, if subscribed.
    pub fn subscription(&self, topic: &str) -> Option<SubscriptionData> {
        self.subscriptions.read().unwrap_or_else(PoisonError::into_inner).get(topic).cloned()
    }

    /// Subscribed topics, retry topic included.
    pub fn topics(&self) -> Vec<String> {
        self.subscriptions.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// All subscriptions, for heartbeats.
    pub fn subscription_list(&self) -> Vec<SubscriptionData> {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Number of queues owned now (per-topic flow-control thresholds are split over them).
    pub fn owned_queue_count(&self) -> usize {
        self.stats.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Orderly: whether this client holds a fresh broker lock on `queue` (the client-side lock
    /// expires after 30 s without renewal, half the broker's 60 s).
    pub fn is_locked(&self, queue: &MessageQueue) -> bool {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
            .is_some_and(|at| at.elapsed() <= super::process_queue::LOCK_MAX_LIVE_TIME)
    }

    /// Records the outcome of a lock request.
    pub fn set_locked(&self, queue: &MessageQueue, locked: bool) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locked {
            locks.insert(queue.clone(), tokio::time::Instant::now());
        } else {
            locks.remove(queue);
        }
    }

    /// Orderly clustering locks its queues on the broker; broadcasting and concurrent never do.
    pub fn needs_locks(&self) -> bool {
        self.config.consume_mode == ConsumeMode::Orderly
            && self.config.message_model == MessageModel::Clustering
    }

    pub fn consume_mode(&self) -> ConsumeMode {
        self.config.consume_mode
    }
}
