//! A producer: SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE with Java's defaults (reference 2.12).
//!
//! The host needs one for the plugin `produce` capability, for the retry fallback to
//! `%RETRY%<group>` and for the demo; tests use it to fill topics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{BrokerClient, ClientError, NameServerClient, header_of};
use crate::protocol::body::{TopicRouteData, java_string_hash};
use crate::protocol::header::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
use crate::protocol::message::{
    CompressionType, Message, compress_body, encode_batch, new_uniq_key, property, sysflag,
};
use crate::protocol::{
    EpochMillis, MessageQueue, QueueOffset, RemotingCommand, RequestCode, ResponseCode,
};

/// Producer settings; defaults are Java's `DefaultMQProducer`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Producer group, reported to the broker (`PGROUP`-style bookkeeping only).
    pub group: String,
    /// Per attempt (Java `sendMsgTimeout`: 3 s).
    pub send_timeout: Duration,
    /// Extra attempts on another queue after a failure (Java `retryTimesWhenSendFailed`: 2).
    pub retries: u32,
    /// Bodies at least this large are zlib-compressed (Java `compressMsgBodyOverHowmuch`: 4 KiB).
    pub compress_threshold: usize,
    /// Largest body accepted (Java `maxMessageSize`: 4 MiB, the broker's default limit too).
    pub max_message_size: usize,
    /// How long a topic's publish route is cached (Java refreshes every 30 s).
    pub route_ttl: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            group: "DEFAULT_PRODUCER".into(),
            send_timeout: Duration::from_secs(3),
            retries: 2,
            compress_threshold: 4096,
            max_message_size: 4 * 1024 * 1024,
            route_ttl: Duration::from_secs(30),
        }
    }
}

/// Which queue a send goes to.
#[derive(Debug, Clone, Copy)]
pub enum QueueSelector<'a> {
    /// Rotate over the writable queues (Java's default), skipping a failed broker on retry.
    RoundRobin,
    /// Java's `SelectMessageQueueByHash`: `abs(key.hashCode()) % queues`, so one key always lands
    /// on one queue and keeps its order. No retry on another queue, which would break the order.
    ShardingKey(&'a str),
    /// Exactly this queue.
    Queue(&'a MessageQueue),
}

/// Whether the broker stored the message durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    Ok,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// Outcome of a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The client-side unique id (`UNIQ_KEY`); comma-separated for a batch.
    pub msg_id: String,
    /// The broker's offset message id(s).
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    /// Offset of the (first) message in its queue.
    pub queue_offset: QueueOffset,
}

#[derive(Debug)]
struct PublishRoute {
    fetched: Instant,
    route: TopicRouteData,
    queues: Vec<MessageQueue>,
}

/// Sends messages. Cheap to share behind an `Arc`; sends may run concurrently.
#[derive(Debug)]
pub struct Producer {
    namesrv: NameServerClient,
    broker: BrokerClient,
    config: ProducerConfig,
    routes: Mutex<HashMap<String, Arc<PublishRoute>>>,
    next_queue: AtomicUsize,
}

impl Producer {
    pub fn new(namesrv: NameServerClient, broker: BrokerClient, config: ProducerConfig) -> Self {
        Self {
            namesrv,
            broker,
            config,
            routes: Mutex::default(),
            next_queue: AtomicUsize::new(rand::random::<u16>().into()),
        }
    }

    /// Sends one message to a round-robin queue.
    pub async fn send(&self, msg: Message) -> Result<SendResult, ClientError> {
        self.send_with(msg, QueueSelector::RoundRobin).await
    }

    /// Sends one message to the queue `selector` picks.
    pub async fn send_with(
        &self,
        mut msg: Message,
        selector: QueueSelector<'_>,
    ) -> Result<SendResult, ClientError> {
        self.validate(&msg.topic, msg.body.len())?;
        prepare_properties(&mut msg);
        let mut sys_flag = 0;
        if msg.body.len() >= self.config.compress_threshold
            && let Ok(compressed) = compress_body(CompressionType::Zlib, &msg.body)
        {
            msg.body = compressed;
            sys_flag |= sysflag::COMPRESSED | sysflag::COMPRESSION_ZLIB;
        }
        let uniq = msg.properties.get(property::UNIQ_KEY).unwrap_or_default().to_owned();
        let props = msg.properties.encode();
        let reconsume_times =
            msg.properties.get(property::RECONSUME_TIME).and_then(|v| v.parse().ok());
        let max_reconsume_times =
            msg.properties.get(property::MAX_RECONSUME_TIMES).and_then(|v| v.parse().ok());
        let topic = msg.topic.clone();
        let body = msg.body.clone();
        self.send_to_selected(&topic, selector, |queue| {
            let header = SendMessageRequestHeaderV2 {
                producer_group: self.config.group.clone(),
                topic: topic.clone(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                queue_id: queue.queue_id,
                sys_flag,
                born_timestamp: EpochMillis::now(),
                flag: msg.flag,
                properties: Some(props.clone()),
                reconsume_times,
                unit_mode: Some(false),
                max_reconsume_times,
                batch: Some(false),
                bname: Some(queue.broker_name.clone()),
            };
            RemotingCommand::request(RequestCode::SendMessageV2, &header).with_body(body.clone())
        })
        .await
        .map(|mut r| {
            r.msg_id = uniq.clone();
            r
        })
    }

    /// Sends messages of one topic as a single SEND_BATCH_MESSAGE: they land in one queue,
    /// consecutively.
    pub async fn send_batch(
        &self,
        mut msgs: Vec<Message>,
        selector: QueueSelector<'_>,
    ) -> Result<SendResult, ClientError> {
        let Some(first) = msgs.first() else {
            return Err(ClientError::InvalidMessage("a batch needs at least one message".into()));
        };
        let topic = first.topic.clone();
        for m in &mut msgs {
            if m.topic != topic {
                return Err(ClientError::InvalidMessage(format!(
                    "a batch must have one topic: {topic} vs {}",
                    m.topic
                )));
            }
            if m.delay_level() > 0 {
                return Err(ClientError::InvalidMessage(
                    "delayed messages cannot be sent in a batch".into(),
                ));
            }
            prepare_properties(m);
        }
        let body = encode_batch(&msgs).map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        self.validate(&topic, body.len())?;
        let uniqs: Vec<&str> =
            msgs.iter().filter_map(|m| m.properties.get(property::UNIQ_KEY)).collect();
        let uniq = uniqs.join(",");
        // The broker appends the batch's properties to every message in it, so they carry only
        // WAIT, as Java's `MessageBatch` does; a batch UNIQ_KEY would override each message's.
        let mut batch_props = crate::protocol::message::Properties::new();
        batch_props.insert(property::WAIT, "true");
        let props = batch_props.encode();
        self.send_to_selected(&topic, selector, |queue| {
            let header = SendMessageRequestHeaderV2 {
                producer_group: self.config.group.clone(),
                topic: topic.clone(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                queue_id: queue.queue_id,
                sys_flag: 0,
                born_timestamp: EpochMillis::now(),
                flag: 0,
                properties: Some(props.clone()),
                reconsume_times: None,
                unit_mode: Some(false),
                max_reconsume_times: None,
                batch: Some(true),
                bname: Some(queue.broker_name.clone()),
            };
            RemotingCommand::request(RequestCode::SendBatchMessage, &header).with_body(body.clone())
        })
        .await
        .map(|mut r| {
            r.msg_id = uniq.clone();
            r
        })
    }

    fn validate(&self, topic: &str, body_len: usize) -> Result<(), ClientError> {
        if topic.is_empty() || topic.len() > 127 {
            return Err(ClientError::InvalidMessage(format!(
                "topic {topic:?} must be 1..=127 characters"
            )));
        }
        if body_len == 0 {
            return Err(ClientError::InvalidMessage("the message body is empty".into()));
        }
        if body_len > self.config.max_message_size {
            return Err(ClientError::InvalidMessage(format!(
                "the body is {body_len} bytes, over the {}-byte limit",
                self.config.max_message_size
            )));
        }
        Ok(())
    }

    /// Picks a queue, sends, and retries on another queue after a retriable failure.
    async fn send_to_selected(
        &self,
        topic: &str,
        selector: QueueSelector<'_>,
        build: impl Fn(&MessageQueue) -> RemotingCommand,
    ) -> Result<SendResult, ClientError> {
        let attempts = match selector {
            QueueSelector::RoundRobin => self.config.retries + 1,
            _ => 1,
        };
        let mut last_broker: Option<String> = None;
        let mut last_err = None;
        for attempt in 0..attempts {
            let route = self.route(topic, attempt > 0).await?;
            let queue =
                pick_queue(&route.queues, selector, &self.next_queue, last_broker.as_deref())
                    .ok_or_else(|| ClientError::NoRoute(topic.to_owned()))?;
            let Some(addr) = route.route.master_addr(&queue.broker_name).map(str::to_owned) else {
                last_err = Some(ClientError::NoMaster {
                    topic: topic.to_owned(),
                    broker: queue.broker_name.clone(),
                });
                last_broker = Some(queue.broker_name.clone());
                continue;
            };
            match self.send_once(&addr, &queue, build(&queue)).await {
                Ok(result) => return Ok(result),
                Err(e) if retriable(&e) => {
                    tracing::debug!(topic, %addr, error = %e, attempt, "send failed; retrying on another queue");
                    last_broker = Some(queue.broker_name.clone());
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::NoRoute(topic.to_owned())))
    }

    async fn send_once(
        &self,
        addr: &str,
        queue: &MessageQueue,
        cmd: RemotingCommand,
    ) -> Result<SendResult, ClientError> {
        let request = cmd.request_code();
        let resp = self
            .broker
            .request_expecting(
                addr,
                cmd,
                &[
                    ResponseCode::Success,
                    ResponseCode::FlushDiskTimeout,
                    ResponseCode::FlushSlaveTimeout,
                    ResponseCode::SlaveNotAvailable,
                ],
                self.config.send_timeout,
            )
            .await?;
        let status = match resp.response_code() {
            ResponseCode::FlushDiskTimeout => SendStatus::FlushDiskTimeout,
            ResponseCode::FlushSlaveTimeout => SendStatus::FlushSlaveTimeout,
            ResponseCode::SlaveNotAvailable => SendStatus::SlaveNotAvailable,
            _ => SendStatus::Ok,
        };
        let h: SendMessageResponseHeader = header_of(addr, request, &resp)?;
        Ok(SendResult {
            status,
            msg_id: String::new(),
            offset_msg_id: h.msg_id,
            queue: MessageQueue::new(queue.topic.clone(), queue.broker_name.clone(), h.queue_id),
            queue_offset: h.queue_offset,
        })
    }

    /// The topic's publish route, from cache unless stale or `refresh` is set.
    async fn route(&self, topic: &str, refresh: bool) -> Result<Arc<PublishRoute>, ClientError> {
        if !refresh {
            let cached =
                self.routes.lock().unwrap_or_else(PoisonError::into_inner).get(topic).cloned();
            if let Some(route) = cached.filter(|r| r.fetched.elapsed() < self.config.route_ttl) {
                return Ok(route);
            }
        }
        let route = self
            .namesrv
            .route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute(topic.to_owned()))?;
        let queues = route.publish_queues(topic);
        if queues.is_empty() {
            return Err(ClientError::NoWritableQueue(topic.to_owned()));
        }
        let entry = Arc::new(PublishRoute { fetched: Instant::now(), route, queues });
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), Arc::clone(&entry));
        Ok(entry)
    }
}

/// Sets what Java's `Message` carries by default: a unique id and "wait for store".
fn prepare_properties(msg: &mut Message) {
    if msg.properties.get(property::UNIQ_KEY).is_none() {
        msg.properties.insert(property::UNIQ_KEY, new_uniq_key());
    }
    if msg.properties.get(property::WAIT).is_none() {
        msg.properties.insert(property::WAIT, "true");
    }
}

/// Failures worth another queue: transport errors and the broker codes Java retries on.
fn retriable(e: &ClientError) -> bool {
    match e {
        ClientError::Remoting(r) => r.is_transport(),
        ClientError::Broker { code, .. } => matches!(
            code,
            ResponseCode::TopicNotExist
                | ResponseCode::ServiceNotAvailable
                | ResponseCode::SystemError
                | ResponseCode::NoPermission
                | ResponseCode::NotLeaderForQueue
                | ResponseCode::SystemBusy
        ),
        _ => false,
    }
}

/// The queue policy, as a plain function so it can be table-tested.
pub fn pick_queue(
    queues: &[MessageQueue],
    selector: QueueSelector<'_>,
    counter: &AtomicUsize,
    avoid_broker: Option<&str>,
) -> Option<MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    match selector {
        QueueSelector::Queue(q) => Some(q.clone()),
        QueueSelector::ShardingKey(key) => {
            let hash = java_string_hash(key).unsigned_abs() as usize;
            queues.get(hash % queues.len()).cloned()
        }
        QueueSelector::RoundRobin => {
            for _ in 0..queues.len() {
                let i = counter.fetch_add(1, Ordering::Relaxed) % queues.len();
                let q = &queues[i];
                if avoid_broker != Some(q.broker_name.as_str()) {
                    return Some(q.clone());
                }
            }
            let i = counter.fetch_add(1, Ordering::Relaxed) % queues.len();
            queues.get(i).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QueueId;

    fn queues() -> Vec<MessageQueue> {
        (0..4)
            .map(|i| MessageQueue::new("T", if i < 2 { "a" } else { "b" }, QueueId(i % 2)))
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_avoids_the_failed_broker() {
        let qs = queues();
        let counter = AtomicUsize::new(0);
        let picked: Vec<_> = (0..4)
            .map(|_| pick_queue(&qs, QueueSelector::RoundRobin, &counter, None).unwrap())
            .collect();
        assert_eq!(picked, qs);
        for _ in 0..8 {
            let q = pick_queue(&qs, QueueSelector::RoundRobin, &counter, Some("a")).unwrap();
            assert_eq!(q.broker_name, "b");
        }
    }

    #[test]
    fn sharding_key_is_stable_and_matches_java_hash_mod() {
        let qs = queues();
        let counter = AtomicUsize::new(0);
        // "order-1".hashCode() in Java is 1234332016... computed independently below.
        for key in ["order-1", "order-2", "k", ""] {
            let h =
                key.encode_utf16().fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
            let expected = &qs[(h.unsigned_abs() as usize) % qs.len()];
            for _ in 0..3 {
                let q = pick_queue(&qs, QueueSelector::ShardingKey(key), &counter, None).unwrap();
                assert_eq!(&q, expected, "key {key}");
            }
        }
        assert_eq!(pick_queue(&[], QueueSelector::RoundRobin, &counter, None), None);
    }
}
