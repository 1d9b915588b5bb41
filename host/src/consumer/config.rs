//! What a push consumer is told to do: group, subscriptions, consume mode and every tuning knob,
//! with Java's defaults and Java's valid ranges (reference 4.11).
//!
//! The defaults are Java's on purpose: a group mixes our consumers with Java (and other) clients,
//! and the broker-side behaviour they share (retry counts, long-poll times, allocation) only lines
//! up when both sides use the same numbers. [`ConsumerConfig::validate`] is Java's `checkConfig`:
//! it refuses the same values, and names the field, the value and the range it had to be in.
//!
//! Every time is a [`Duration`]. Java counts in milliseconds (and `consumeTimeout` in minutes);
//! the ranges below are Java's converted to durations.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::consumer::process_queue::LOCK_MAX_LIVE_TIME;
use crate::protocol::acl::AclCredentials;
use crate::protocol::body::{ConsumeFromWhere, MessageModel, SubscriptionData};
use crate::protocol::types::EpochMillis;

/// Java's `MixAll.DEFAULT_CONSUMER_GROUP`: the placeholder group of a consumer built without
/// one. The broker treats it as a system group, so a real consumer may not use it.
pub const DEFAULT_CONSUMER_GROUP: &str = "DEFAULT_CONSUMER";

/// Java's default `instanceName` (`ClientConfig`). In clustering it is replaced with
/// `<pid>#<nanoTime>` so two processes on one host get distinct client ids (see [`client_id`]).
pub const DEFAULT_INSTANCE_NAME: &str = "DEFAULT";

/// Longest group name a 5.x client accepts (`Validators.GROUP_MAX_LENGTH`; 4.9.8 allowed 255).
/// It is 127 − `"%RETRY%".len()`, so the group's retry topic still fits the topic limit.
pub const GROUP_MAX_LEN: usize = 120;

/// Longest topic name (`Validators.TOPIC_MAX_LENGTH`).
pub const TOPIC_MAX_LEN: usize = 127;

/// How a group consumes the messages of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsumeMode {
    /// Messages of a queue are consumed in parallel; a failed message is sent back to the broker
    /// for a delayed retry and the queue moves on (`MessageListenerConcurrently`).
    #[default]
    Concurrently,
    /// Messages of a queue are consumed one batch at a time, in order, under a broker-side
    /// queue lock; a failure suspends the queue and the same messages come again
    /// (`MessageListenerOrderly`).
    Orderly,
}

/// How the subscribed topics' messages are fetched (`docs/pop.md`). The group's own
/// `%RETRY%<group>` topic is always pulled, as the 5.x broker requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestMode {
    /// Each member owns whole queues (client-side allocation) and pulls them: members past the
    /// queue count stay idle.
    #[default]
    Pull,
    /// 5.x POP: the broker hands messages to any member that asks, hides them until acked or
    /// their invisible time passes, and redelivers what was not acked. Every member pops every
    /// broker's queues (queue id -1), so a group can outnumber the queues.
    Pop,
    /// Whatever the broker's QUERY_ASSIGNMENT says per queue (the admin sets it per topic and
    /// group with SET_MESSAGE_REQUEST_MODE; the broker's default is PULL, allocated by the
    /// broker).
    Broker,
}

/// How the queues of a topic are split among the live consumers of a group (reference 4.3).
///
/// Every member of a group must use the same strategy, Java clients included, or two members
/// will claim the same queue while another queue has no owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AllocateStrategy {
    /// Contiguous, near-equal slices of the sorted queue list (`AllocateMessageQueueAveragely`).
    #[default]
    Avg,
    /// Round-robin over the sorted queue list (`AllocateMessageQueueAveragelyByCircle`).
    AvgByCircle,
    /// An MD5 hash ring with `virtual_nodes` points per consumer
    /// (`AllocateMessageQueueConsistentHash`); moves fewer queues when membership changes.
    ConsistentHash { virtual_nodes: u32 },
}

impl AllocateStrategy {
    /// Java's virtual node count for `new AllocateMessageQueueConsistentHash()`.
    pub const DEFAULT_VIRTUAL_NODES: u32 = 10;

    /// Valid virtual node counts. Java only refuses negatives, but 0 gives an empty ring that
    /// assigns no queue to anybody, and the ring is rebuilt on every rebalance, so we bound it.
    pub const VIRTUAL_NODES_RANGE: RangeInclusive<u32> = 1..=10_000;

    /// Consistent hashing with Java's default of 10 virtual nodes.
    pub fn consistent_hash() -> Self {
        Self::ConsistentHash { virtual_nodes: Self::DEFAULT_VIRTUAL_NODES }
    }

    /// The strategy's Java name (`AllocateMessageQueueStrategy.getName()`), as admin tools and
    /// running-info reports show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avg => "AVG",
            Self::AvgByCircle => "AVG_BY_CIRCLE",
            Self::ConsistentHash { .. } => "CONSISTENT_HASH",
        }
    }
}

/// Which messages of a topic a subscription takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expression {
    /// Tags separated by `||`, or `*` for every message. Filtered by the broker on the tag hash
    /// and again by the client on the tag text.
    Tag(String),
    /// An SQL92 predicate over message properties, evaluated by the broker only (it must have
    /// `enablePropertyFilter=true`).
    Sql92(String),
}

/// One topic subscription of the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub topic: String,
    pub expression: Expression,
}

impl Subscription {
    /// Every message of `topic` (tag expression `*`).
    pub fn all(topic: impl Into<String>) -> Self {
        Self::tag(topic, "*")
    }

    /// A tag subscription such as `"TagA || TagB"`.
    pub fn tag(topic: impl Into<String>, expression: impl Into<String>) -> Self {
        Self { topic: topic.into(), expression: Expression::Tag(expression.into()) }
    }

    /// An SQL92 subscription such as `"a BETWEEN 1 AND 3"`.
    pub fn sql92(topic: impl Into<String>, expression: impl Into<String>) -> Self {
        Self { topic: topic.into(), expression: Expression::Sql92(expression.into()) }
    }

    /// The wire form for heartbeats and pulls, with tag hash codes computed and `subVersion`
    /// set to now.
    pub fn to_subscription_data(&self) -> SubscriptionData {
        match &self.expression {
            Expression::Tag(tags) => SubscriptionData::new(self.topic.clone(), tags),
            Expression::Sql92(sql) => SubscriptionData::sql92(self.topic.clone(), sql),
        }
    }
}

/// A configuration value Java's `checkConfig` (or our own sanity rules) would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number or duration outside its valid range.
    #[error("{field} = {value} is out of range; valid: {valid}")]
    OutOfRange { field: &'static str, value: String, valid: String },
    /// The group name is unusable; `problem` says why.
    #[error("consumer group {group:?} is invalid: {problem}")]
    Group { group: String, problem: NameProblem },
    /// A subscribed topic name is unusable.
    #[error("subscription topic {topic:?} is invalid: {problem}")]
    Topic { topic: String, problem: NameProblem },
    /// The same topic is subscribed twice; Java keeps the last one silently, which hides typos.
    #[error("topic {topic:?} is subscribed more than once")]
    DuplicateSubscription { topic: String },
    /// An SQL92 subscription without a predicate; the broker would refuse it at every heartbeat.
    #[error("SQL92 subscription of topic {topic:?} has an empty expression")]
    EmptySql92 { topic: String },
    /// The client would give up on every long poll before the broker answers it.
    #[error(
        "pull_timeout = {pull_timeout:?} must be longer than broker_suspend_max = \
         {broker_suspend_max:?}"
    )]
    PullTimeoutNotAboveSuspend { pull_timeout: Duration, broker_suspend_max: Duration },
    /// POP hands each message to one member of the group: broadcasting has no meaning there.
    #[error("request_mode pop/broker needs message_model = clustering")]
    PopNeedsClustering,
}

/// What is wrong with a group or topic name (Java `Validators`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    #[error("it is blank")]
    Blank,
    #[error("it may only contain the characters of ^[%|a-zA-Z0-9_-]+$")]
    IllegalCharacters,
    #[error("it is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("\"DEFAULT_CONSUMER\" is reserved")]
    Reserved,
}

/// Everything a push consumer needs to know before it starts. Build it with
/// [`ConsumerConfig::new`] and adjust fields; every default is Java's (reference 4.11) unless
/// the field says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// The consumer group. Queues are shared among the live members of a group, and offsets,
    /// retries and the DLQ belong to it.
    pub group: String,
    /// Topics and their filter expressions. In clustering the consumer also subscribes to
    /// `%RETRY%<group>` by itself; do not list it here.
    pub subscriptions: Vec<Subscription>,
    /// Clustering shares queues; broadcasting gives every member every message.
    pub message_model: MessageModel,
    pub consume_mode: ConsumeMode,
    /// Where a newly assigned queue without a stored offset starts (reference 4.10).
    pub consume_from_where: ConsumeFromWhere,
    /// The instant [`ConsumeFromWhere::Timestamp`] searches for. `None` is Java's default: 30
    /// minutes before the consumer started (see [`ConsumerConfig::consume_timestamp_at`]).
    pub consume_timestamp: Option<EpochMillis>,
    pub allocate_strategy: AllocateStrategy,
    /// How many listener calls may run at once, across all queues. Java sizes a thread pool
    /// with `consumeThreadMin = consumeThreadMax = 20`; a semaphore only needs the maximum.
    pub consume_thread_max: u32,
    /// Concurrent only: stop pulling a queue while the offsets in its buffer span more than this,
    /// so one stuck message cannot make a later commit (and a restart) redeliver the world.
    pub consume_concurrently_max_span: u32,
    /// Stop pulling a queue while it buffers more than this many messages.
    pub pull_threshold_for_queue: u32,
    /// Stop pulling a queue while its buffered bodies exceed this many MiB.
    pub pull_threshold_size_for_queue_mib: u32,
    /// If set, a message budget for all queues together, split evenly over the owned queues at
    /// every rebalance; it then replaces `pull_threshold_for_queue`. Off by default.
    pub pull_threshold_for_topic: Option<u32>,
    /// Like `pull_threshold_for_topic`, in MiB; replaces `pull_threshold_size_for_queue_mib`.
    pub pull_threshold_size_for_topic_mib: Option<u32>,
    /// Pause between a successful pull and the next one of the same queue.
    pub pull_interval: Duration,
    /// At most this many messages per listener call.
    pub consume_message_batch_max_size: u32,
    /// At most this many messages per pull (the broker caps it further: 32 from memory).
    pub pull_batch_size: u32,
    /// How many times a failing message is retried before it goes to `%DLQ%<group>`. `None` is
    /// Java's -1: 16 for concurrent consumers, unlimited for orderly ones (see
    /// [`ConsumerConfig::effective_max_reconsume_times`]).
    pub max_reconsume_times: Option<i32>,
    /// Orderly: how long a queue pauses after a failed batch before it is consumed again.
    /// Clamped to 10 ms..=30 s when used, as Java does, rather than refused.
    pub suspend_current_queue_time: Duration,
    /// Concurrent: a message whose listener call started longer ago than this is sent back for
    /// retry (delay level 3) and dropped from the buffer, so it stops pinning the offset. The
    /// cleanup also runs at this period. Java counts it in minutes; shorter values are allowed
    /// here (tests use them).
    pub consume_timeout: Duration,
    /// How often routes of the subscribed topics are refreshed from the name server.
    pub poll_name_server_interval: Duration,
    /// How often every broker gets a heartbeat (and offline brokers are pruned).
    pub heartbeat_broker_interval: Duration,
    /// How often consumed offsets are written to the broker (or the local file).
    pub persist_consumer_offset_interval: Duration,
    /// How often queues are re-allocated even without a membership notification
    /// (`rocketmq.client.rebalance.waitInterval`).
    pub rebalance_interval: Duration,
    /// Orderly: how often every owned queue is locked again at its broker
    /// (`rocketmq.client.rebalance.lockInterval`); below 30 s, after which this client takes a
    /// lock as expired (the broker's expiry is 60 s).
    pub lock_interval: Duration,
    /// How long the broker holds a pull that found nothing (the long poll).
    pub broker_suspend_max: Duration,
    /// How long the client waits for a pull answer; longer than the suspend, or every idle
    /// long poll would time out.
    pub pull_timeout: Duration,
    /// Timeout of the small RPCs: routes, heartbeats, consumer lists, unregistration.
    pub mq_client_api_timeout: Duration,
    /// Access key and secret for a broker with authentication on (5.x `authenticationEnabled`,
    /// 4.9 `aclEnable`): every request is signed (ACL 1.0 signature, which both accept). A
    /// refusal names the access key. `None`: requests are not signed.
    pub credentials: Option<AclCredentials>,
    /// Part of the client id. Left at "DEFAULT" in clustering it becomes `<pid>#<nanoTime>`.
    pub instance_name: String,
    /// Appended to the client id when set (`unitName`).
    pub unit_name: Option<String>,
    /// Broadcasting: where offsets are kept. `None` is Java's `~/.rocketmq_offsets`.
    pub local_offset_store_dir: Option<PathBuf>,
    /// Shutdown: how long in-flight listener calls may take to finish before the consumer stops
    /// waiting. Ours; Java's `awaitTerminationMillisWhenShutdown` is 0 (no wait), which turns
    /// every in-flight message into a redelivery. 10 s leaves room for persisting offsets,
    /// unlocking and unregistering inside a typical 30 s termination grace period.
    pub shutdown_drain_timeout: Duration,
    /// Pull, POP, or the broker's choice; see [`RequestMode`].
    pub request_mode: RequestMode,
    /// POP: how long a popped message stays hidden from the group; unacked by then, the broker
    /// delivers it again (to any member). Java's range 5 s..=300 s, default 60 s.
    pub pop_invisible_time: Duration,
    /// POP: at most this many messages per pop (Java `popBatchNums`: 1..=32, default 32).
    pub pop_batch_size: u32,
    /// POP: stop popping a queue while this many of its messages wait for their ack (Java
    /// `popThresholdForQueue`, default 96). `pull_threshold_size_for_queue_mib` also applies.
    pub pop_threshold_for_queue: u32,
}

impl Default for ConsumerConfig {
    /// Java's no-argument constructor: the placeholder group, which [`validate`] refuses.
    ///
    /// [`validate`]: ConsumerConfig::validate
    fn default() -> Self {
        Self::new(DEFAULT_CONSUMER_GROUP)
    }
}

impl ConsumerConfig {
    /// Java's default `consumeThreadMax`.
    pub const DEFAULT_CONSUME_THREAD_MAX: u32 = 20;

    /// A configuration for `group` with Java's defaults and no subscriptions.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            subscriptions: Vec::new(),
            message_model: MessageModel::Clustering,
            consume_mode: ConsumeMode::Concurrently,
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp: None,
            allocate_strategy: AllocateStrategy::Avg,
            consume_thread_max: Self::DEFAULT_CONSUME_THREAD_MAX,
            consume_concurrently_max_span: 2000,
            pull_threshold_for_queue: 1000,
            pull_threshold_size_for_queue_mib: 100,
            pull_threshold_for_topic: None,
            pull_threshold_size_for_topic_mib: None,
            pull_interval: Duration::ZERO,
            consume_message_batch_max_size: 1,
            pull_batch_size: 32,
            max_reconsume_times: None,
            suspend_current_queue_time: Duration::from_secs(1),
            consume_timeout: Duration::from_secs(15 * 60),
            poll_name_server_interval: Duration::from_secs(30),
            heartbeat_broker_interval: Duration::from_secs(30),
            persist_consumer_offset_interval: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
            lock_interval: Duration::from_secs(20),
            broker_suspend_max: Duration::from_secs(15),
            pull_timeout: Duration::from_secs(30),
            mq_client_api_timeout: Duration::from_secs(3),
            credentials: None,
            instance_name: DEFAULT_INSTANCE_NAME.to_owned(),
            unit_name: None,
            local_offset_store_dir: None,
            shutdown_drain_timeout: Duration::from_secs(10),
            request_mode: RequestMode::Pull,
            pop_invisible_time: Duration::from_secs(60),
            pop_batch_size: 32,
            pop_threshold_for_queue: 96,
        }
    }

    /// Adds a subscription (builder style).
    pub fn subscribe(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    /// Java's `checkConfig`, field by field, in its order; the first problem is returned.
    ///
    /// Beyond Java: timer periods must be non-zero (a zero period would spin), the pull timeout
    /// must exceed the broker suspend time (Java's lite-pull consumer checks this too), topics
    /// follow the topic name rules, and no topic is subscribed twice.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_group(&self.group)?;
        if let Some(ts) = self.consume_timestamp {
            check("consume_timestamp", ts.0, 0..=i64::MAX)?;
        }
        if let AllocateStrategy::ConsistentHash { virtual_nodes } = self.allocate_strategy {
            check(
                "allocate_strategy.virtual_nodes",
                virtual_nodes,
                AllocateStrategy::VIRTUAL_NODES_RANGE,
            )?;
        }
        self.check_subscriptions()?;
        check("consume_thread_max", self.consume_thread_max, 1..=1000)?;
        check("consume_concurrently_max_span", self.consume_concurrently_max_span, 1..=65535)?;
        check("pull_threshold_for_queue", self.pull_threshold_for_queue, 1..=65535)?;
        if let Some(n) = self.pull_threshold_for_topic {
            check("pull_threshold_for_topic", n, 1..=6_553_500)?;
        }
        check(
            "pull_threshold_size_for_queue_mib",
            self.pull_threshold_size_for_queue_mib,
            1..=1024,
        )?;
        if let Some(n) = self.pull_threshold_size_for_topic_mib {
            check("pull_threshold_size_for_topic_mib", n, 1..=102_400)?;
        }
        check_duration("pull_interval", self.pull_interval, Duration::ZERO..=ms(65_535))?;
        check("consume_message_batch_max_size", self.consume_message_batch_max_size, 1..=1024)?;
        check("pull_batch_size", self.pull_batch_size, 1..=1024)?;
        if let Some(n) = self.max_reconsume_times {
            check("max_reconsume_times", n, 0..=MAX_RECONSUME_TIMES)?;
        }
        for (field, period) in [
            ("consume_timeout", self.consume_timeout),
            ("poll_name_server_interval", self.poll_name_server_interval),
            ("heartbeat_broker_interval", self.heartbeat_broker_interval),
            ("persist_consumer_offset_interval", self.persist_consumer_offset_interval),
            ("rebalance_interval", self.rebalance_interval),
            ("lock_interval", self.lock_interval),
            ("mq_client_api_timeout", self.mq_client_api_timeout),
        ] {
            check_duration(field, period, ms(1)..=Duration::MAX)?;
        }
        // A queue's lock counts as expired 30 s after its last renewal: renewing less often
        // pauses every orderly queue until the next renewal.
        check_duration("lock_interval", self.lock_interval, ms(1)..=LOCK_MAX_LIVE_TIME - ms(1))?;
        check_duration("pop_invisible_time", self.pop_invisible_time, ms(5_000)..=ms(300_000))?;
        check("pop_batch_size", self.pop_batch_size, 1..=32)?;
        check("pop_threshold_for_queue", self.pop_threshold_for_queue, 1..=65535)?;
        if self.request_mode != RequestMode::Pull
            && self.message_model == MessageModel::Broadcasting
        {
            return Err(ConfigError::PopNeedsClustering);
        }
        if self.pull_timeout <= self.broker_suspend_max {
            return Err(ConfigError::PullTimeoutNotAboveSuspend {
                pull_timeout: self.pull_timeout,
                broker_suspend_max: self.broker_suspend_max,
            });
        }
        Ok(())
    }

    fn check_subscriptions(&self) -> Result<(), ConfigError> {
        for (i, sub) in self.subscriptions.iter().enumerate() {
            check_topic(&sub.topic)?;
            if self.subscriptions[..i].iter().any(|earlier| earlier.topic == sub.topic) {
                return Err(ConfigError::DuplicateSubscription { topic: sub.topic.clone() });
            }
            if let Expression::Sql92(sql) = &sub.expression
                && sql.trim().is_empty()
            {
                return Err(ConfigError::EmptySql92 { topic: sub.topic.clone() });
            }
        }
        Ok(())
    }

    /// The retry limit in force for this consumer's mode: Java's `getMaxReconsumeTimes()`.
    /// Also the value sent as `maxReconsumeTimes` with send-backs.
    pub fn effective_max_reconsume_times(&self) -> i32 {
        effective_max_reconsume_times(self.max_reconsume_times, self.consume_mode)
    }

    /// The timestamp [`ConsumeFromWhere::Timestamp`] searches for, for a consumer started at
    /// `started`: the configured one, or Java's default of half an hour before the start.
    pub fn consume_timestamp_at(&self, started: EpochMillis) -> EpochMillis {
        self.consume_timestamp.unwrap_or(EpochMillis(started.0.saturating_sub(30 * 60 * 1000)))
    }
}

/// The largest retry limit a configuration may set. Past the 16th retry every one waits the
/// longest delay level (2 h on a stock broker), so 1,000 retries already span ~83 days; a larger
/// number only keeps a poison message out of the DLQ forever. Orderly consumers that want Java's
/// unlimited local retries leave the key unset.
pub const MAX_RECONSUME_TIMES: i32 = 1000;

/// The retry limit for `mode` when `configured` (None = Java's -1) is set: concurrent → 16
/// (the broker then dead-letters on the 17th failure), orderly → `i32::MAX`, i.e. retry forever.
pub fn effective_max_reconsume_times(configured: Option<i32>, mode: ConsumeMode) -> i32 {
    match (configured, mode) {
        (Some(n), _) => n,
        (None, ConsumeMode::Concurrently) => 16,
        (None, ConsumeMode::Orderly) => i32::MAX,
    }
}

/// The client id every broker knows this consumer by (reference 4.1): `ip@instance[@unit]`.
///
/// Allocation is by index in the sorted list of client ids, so two processes with the same id
/// would take the same queues and leave others unowned. Hence in clustering the default
/// instance name "DEFAULT" becomes `<pid>#<nanos>` (Java: `UtilAll.getPid() + "#" +
/// System.nanoTime()`). Broadcasting keeps "DEFAULT" because the local offset file lives under
/// the client id and must be found again after a restart. A blank unit name is left out.
/// IPv6 addresses are bracketed, as Java's `RemotingUtil.normalizeHostAddress` does.
pub fn client_id(
    ip: IpAddr,
    instance_name: &str,
    unit_name: Option<&str>,
    model: MessageModel,
    pid: u32,
    nanos: u64,
) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut id = if model == MessageModel::Clustering && instance_name == DEFAULT_INSTANCE_NAME {
        format!("{host}@{pid}#{nanos}")
    } else {
        format!("{host}@{instance_name}")
    };
    if let Some(unit) = unit_name.filter(|u| !u.trim().is_empty()) {
        id.push('@');
        id.push_str(unit);
    }
    id
}

/// Java `Validators.checkGroup` (5.x order: blank, characters, length) plus the reserved name.
fn check_group(group: &str) -> Result<(), ConfigError> {
    let problem = name_problem(group, GROUP_MAX_LEN).or_else(|| {
        // Java checks the reserved name separately in checkConfig; same outcome.
        (group == DEFAULT_CONSUMER_GROUP).then_some(NameProblem::Reserved)
    });
    match problem {
        Some(problem) => Err(ConfigError::Group { group: group.to_owned(), problem }),
        None => Ok(()),
    }
}

fn check_topic(topic: &str) -> Result<(), ConfigError> {
    match name_problem(topic, TOPIC_MAX_LEN) {
        Some(problem) => Err(ConfigError::Topic { topic: topic.to_owned(), problem }),
        None => Ok(()),
    }
}

/// Java's name rules: not blank, only `^[%|a-zA-Z0-9_-]+$`, at most `max` characters. The
/// character rule makes every valid name ASCII, so byte length is Java's `length()`.
fn name_problem(name: &str, max: usize) -> Option<NameProblem> {
    if name.trim().is_empty() {
        return Some(NameProblem::Blank);
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-');
    if !name.chars().all(legal) {
        return Some(NameProblem::IllegalCharacters);
    }
    (name.len() > max).then_some(NameProblem::TooLong { len: name.len(), max })
}

fn check<T>(field: &'static str, value: T, valid: RangeInclusive<T>) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy + Bounded,
{
    if valid.contains(&value) {
        return Ok(());
    }
    let valid = if *valid.end() == T::MAX {
        format!("{}..", valid.start())
    } else {
        format!("{}..={}", valid.start(), valid.end())
    };
    Err(ConfigError::OutOfRange { field, value: value.to_string(), valid })
}

fn check_duration(
    field: &'static str,
    value: Duration,
    valid: RangeInclusive<Duration>,
) -> Result<(), ConfigError> {
    if valid.contains(&value) {
        return Ok(());
    }
    let valid = if *valid.end() == Duration::MAX {
        format!("{:?}..", valid.start())
    } else {
        format!("{:?}..={:?}", valid.start(), valid.end())
    };
    Err(ConfigError::OutOfRange { field, value: format!("{value:?}"), valid })
}

/// Lets a range message say `1..` instead of printing the type's maximum.
trait Bounded {
    const MAX: Self;
}

impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}

impl Bounded for i32 {
    const MAX: Self = i32::MAX;
}

impl Bounded for i64 {
    const MAX: Self = i64::MAX;
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn valid() -> ConsumerConfig {
        ConsumerConfig::new("G").subscribe(Subscription::tag("T", "TagA || TagB"))
    }

    #[test]
    fn defaults_are_javas() {
        let c = ConsumerConfig::new("G");
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_mode, ConsumeMode::Concurrently);
        assert_eq!(c.consume_from_where, ConsumeFromWhere::LastOffset);
        assert_eq!(c.consume_timestamp, None);
        assert_eq!(c.allocate_strategy, AllocateStrategy::Avg);
        assert_eq!(c.consume_thread_max, 20);
        assert_eq!(c.consume_concurrently_max_span, 2000);
        assert_eq!(c.pull_threshold_for_queue, 1000);
        assert_eq!(c.pull_threshold_size_for_queue_mib, 100);
        assert_eq!(c.pull_threshold_for_topic, None);
        assert_eq!(c.pull_threshold_size_for_topic_mib, None);
        assert_eq!(c.pull_interval, Duration::ZERO);
        assert_eq!(c.consume_message_batch_max_size, 1);
        assert_eq!(c.pull_batch_size, 32);
        assert_eq!(c.max_reconsume_times, None);
        assert_eq!(c.suspend_current_queue_time, ms(1000));
        assert_eq!(c.consume_timeout, Duration::from_secs(15 * 60));
        assert_eq!(c.poll_name_server_interval, ms(30_000));
        assert_eq!(c.heartbeat_broker_interval, ms(30_000));
        assert_eq!(c.persist_consumer_offset_interval, ms(5_000));
        assert_eq!(c.rebalance_interval, ms(20_000));
        assert_eq!(c.lock_interval, ms(20_000));
        assert_eq!(c.broker_suspend_max, ms(15_000));
        assert_eq!(c.pull_timeout, ms(30_000));
        assert_eq!(c.mq_client_api_timeout, ms(3_000));
        assert_eq!(c.instance_name, "DEFAULT");
        assert_eq!(c.unit_name, None);
        assert_eq!(c.local_offset_store_dir, None);
        assert_eq!(
            AllocateStrategy::consistent_hash(),
            AllocateStrategy::ConsistentHash { virtual_nodes: 10 }
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn default_group_is_refused_like_java() {
        let err = ConsumerConfig::default().validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::Group { group: "DEFAULT_CONSUMER".into(), problem: NameProblem::Reserved }
        );
    }

    /// One row per numeric field: how to set it, its lowest and highest valid value.
    type Setter = fn(&mut ConsumerConfig, i64);

    #[test]
    fn every_numeric_range_edge() {
        let rows: &[(&str, Setter, i64, i64)] = &[
            ("consume_thread_max", |c, v| c.consume_thread_max = v as u32, 1, 1000),
            (
                "consume_concurrently_max_span",
                |c, v| c.consume_concurrently_max_span = v as u32,
                1,
                65535,
            ),
            ("pull_threshold_for_queue", |c, v| c.pull_threshold_for_queue = v as u32, 1, 65535),
            (
                "pull_threshold_size_for_queue_mib",
                |c, v| c.pull_threshold_size_for_queue_mib = v as u32,
                1,
                1024,
            ),
            (
                "pull_threshold_for_topic",
                |c, v| c.pull_threshold_for_topic = Some(v as u32),
                1,
                6_553_500,
            ),
            (
                "pull_threshold_size_for_topic_mib",
                |c, v| c.pull_threshold_size_for_topic_mib = Some(v as u32),
                1,
                102_400,
            ),
            (
                "consume_message_batch_max_size",
                |c, v| c.consume_message_batch_max_size = v as u32,
                1,
                1024,
            ),
            ("pull_batch_size", |c, v| c.pull_batch_size = v as u32, 1, 1024),
            (
                "allocate_strategy.virtual_nodes",
                |c, v| {
                    c.allocate_strategy =
                        AllocateStrategy::ConsistentHash { virtual_nodes: v as u32 }
                },
                1,
                10_000,
            ),
        ];
        for &(field, set, lo, hi) in rows {
            for (value, ok) in [(lo - 1, false), (lo, true), (hi, true), (hi + 1, false)] {
                let mut c = valid();
                set(&mut c, value);
                let result = c.validate();
                if ok {
                    assert_eq!(result, Ok(()), "{field} = {value}");
                } else {
                    let Err(ConfigError::OutOfRange { field: f, value: v, valid }) = result else {
                        panic!("{field} = {value}: expected OutOfRange, got {result:?}");
                    };
                    assert_eq!(f, field);
                    assert_eq!(v, value.to_string());
                    assert_eq!(valid, format!("{lo}..={hi}"));
                }
            }
        }
    }

    #[test]
    fn pull_interval_range_edges() {
        let table = [
            (Duration::ZERO, true),
            (ms(65_535), true),
            (ms(65_535) + Duration::from_nanos(1), false),
            (ms(65_536), false),
        ];
        for (interval, ok) in table {
            let mut c = valid();
            c.pull_interval = interval;
            let result = c.validate();
            assert_eq!(result.is_ok(), ok, "{interval:?}: {result:?}");
            if !ok {
                assert!(
                    matches!(result, Err(ConfigError::OutOfRange { field: "pull_interval", .. })),
                    "{result:?}"
                );
            }
        }
    }

    #[test]
    fn max_reconsume_times_range_and_effective_values() {
        let mut c = valid();
        let cases = [
            (Some(-1), false),
            (Some(0), true),
            (Some(1000), true),
            (Some(1001), false),
            (Some(i32::MAX), false),
        ];
        for (configured, ok) in cases {
            c.max_reconsume_times = configured;
            assert_eq!(c.validate().is_ok(), ok, "{configured:?}");
        }
        let table = [
            (None, ConsumeMode::Concurrently, 16),
            (None, ConsumeMode::Orderly, i32::MAX),
            (Some(0), ConsumeMode::Concurrently, 0),
            (Some(3), ConsumeMode::Orderly, 3),
        ];
        for (configured, mode, expected) in table {
            c.max_reconsume_times = configured;
            c.consume_mode = mode;
            assert_eq!(c.effective_max_reconsume_times(), expected, "{configured:?} {mode:?}");
        }
    }

    /// POP takes both consume modes (orderly: the broker's orderly POP) but not broadcasting.
    #[test]
    fn pop_request_modes_need_clustering_only() {
        for request in [RequestMode::Pop, RequestMode::Broker] {
            for mode in [ConsumeMode::Concurrently, ConsumeMode::Orderly] {
                let mut c = valid();
                (c.request_mode, c.consume_mode) = (request, mode);
                assert_eq!(c.validate(), Ok(()), "{request:?} {mode:?}");
                c.message_model = MessageModel::Broadcasting;
                assert_eq!(c.validate(), Err(ConfigError::PopNeedsClustering), "{request:?}");
            }
        }
    }

    #[test]
    fn error_names_field_value_and_range() {
        let mut c = valid();
        c.pull_batch_size = 1025;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "pull_batch_size = 1025 is out of range; valid: 1..=1024"
        );
        c = valid();
        c.pull_interval = ms(65_536);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "pull_interval = 65.536s is out of range; valid: 0ns..=65.535s"
        );
        c = valid();
        c.max_reconsume_times = Some(-2);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "max_reconsume_times = -2 is out of range; valid: 0..=1000"
        );
    }

    #[test]
    fn timer_periods_must_be_non_zero() {
        type Field = fn(&mut ConsumerConfig) -> &mut Duration;
        let fields: [(&str, Field); 7] = [
            ("consume_timeout", |c| &mut c.consume_timeout),
            ("poll_name_server_interval", |c| &mut c.poll_name_server_interval),
            ("heartbeat_broker_interval", |c| &mut c.heartbeat_broker_interval),
            ("persist_consumer_offset_interval", |c| &mut c.persist_consumer_offset_interval),
            ("rebalance_interval", |c| &mut c.rebalance_interval),
            ("lock_interval", |c| &mut c.lock_interval),
            ("mq_client_api_timeout", |c| &mut c.mq_client_api_timeout),
        ];
        for (field, get) in fields {
            let mut c = valid();
            *get(&mut c) = Duration::ZERO;
            assert!(
                matches!(c.validate(), Err(ConfigError::OutOfRange { field: f, .. }) if f == field),
                "{field}"
            );
            *get(&mut c) = ms(1);
            assert_eq!(c.validate(), Ok(()), "{field}");
        }
        // A short consume timeout (tests) and a zero drain are fine.
        let mut c = valid();
        c.consume_timeout = ms(1);
        c.shutdown_drain_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn lock_interval_stays_below_the_lock_lifetime() {
        for (interval, ok) in [(ms(20_000), true), (ms(29_999), true), (ms(30_000), false)] {
            let mut c = valid();
            c.lock_interval = interval;
            assert_eq!(c.validate().is_ok(), ok, "{interval:?}");
        }
        let mut c = valid();
        c.lock_interval = ms(60_000);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "lock_interval = 60s is out of range; valid: 1ms..=29.999s"
        );
    }

    #[test]
    fn suspend_time_is_not_refused_only_clamped_later() {
        for t in [Duration::ZERO, ms(9), Duration::from_secs(31)] {
            let mut c = valid();
            c.suspend_current_queue_time = t;
            assert_eq!(c.validate(), Ok(()));
        }
    }

    #[test]
    fn pull_timeout_must_exceed_the_long_poll() {
        let mut c = valid();
        c.pull_timeout = c.broker_suspend_max;
        assert!(matches!(c.validate(), Err(ConfigError::PullTimeoutNotAboveSuspend { .. })));
        c.pull_timeout += ms(1);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn group_rules() {
        let long = |n| "g".repeat(n);
        let table: Vec<(String, Option<NameProblem>)> = vec![
            ("G".into(), None),
            ("%|aZ09_-".into(), None),
            (long(120), None),
            (long(121), Some(NameProblem::TooLong { len: 121, max: 120 })),
            ("".into(), Some(NameProblem::Blank)),
            ("   ".into(), Some(NameProblem::Blank)),
            ("bad group".into(), Some(NameProblem::IllegalCharacters)),
            ("g.x".into(), Some(NameProblem::IllegalCharacters)),
            ("grüppe".into(), Some(NameProblem::IllegalCharacters)),
            ("DEFAULT_CONSUMER".into(), Some(NameProblem::Reserved)),
            ("default_consumer".into(), None),
        ];
        for (group, expected) in table {
            let mut c = valid();
            c.group = group.clone();
            let got = match c.validate() {
                Ok(()) => None,
                Err(ConfigError::Group { problem, .. }) => Some(problem),
                Err(other) => panic!("{group:?}: {other}"),
            };
            assert_eq!(got, expected, "{group:?}");
        }
    }

    #[test]
    fn subscription_rules() {
        let mut c = valid();
        c.subscriptions.push(Subscription::all("T"));
        assert_eq!(c.validate(), Err(ConfigError::DuplicateSubscription { topic: "T".into() }));

        let mut c = valid();
        c.subscriptions.push(Subscription::sql92("S", "  "));
        assert_eq!(c.validate(), Err(ConfigError::EmptySql92 { topic: "S".into() }));

        let mut c = valid();
        c.subscriptions.push(Subscription::all("t".repeat(128)));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Topic { problem: NameProblem::TooLong { len: 128, max: 127 }, .. })
        ));
        c.subscriptions[1] = Subscription::all("t".repeat(127));
        assert_eq!(c.validate(), Ok(()));

        // No subscriptions at all is allowed, as in Java (the retry topic is still consumed).
        assert_eq!(ConsumerConfig::new("G").validate(), Ok(()));
    }

    #[test]
    fn subscriptions_map_to_wire_form() {
        let tag = Subscription::tag("T", "TagA || TagB").to_subscription_data();
        assert_eq!(tag.tags_set, ["TagA", "TagB"]);
        let all = Subscription::all("T").to_subscription_data();
        assert!(all.is_sub_all());
        let sql = Subscription::sql92("T", "a > 1").to_subscription_data();
        assert_eq!(sql.expression_type, crate::protocol::body::ExpressionType::Sql92);
        assert_eq!(sql.sub_string, "a > 1");
    }

    #[test]
    fn consume_timestamp_default_is_half_an_hour_before_start() {
        let mut c = valid();
        assert_eq!(c.consume_timestamp_at(EpochMillis(10_000_000)), EpochMillis(8_200_000));
        c.consume_timestamp = Some(EpochMillis(5));
        assert_eq!(c.consume_timestamp_at(EpochMillis(10_000_000)), EpochMillis(5));
        c.consume_timestamp = Some(EpochMillis(-1));
        assert!(
            matches!(c.validate(), Err(ConfigError::OutOfRange { field, .. }) if field == "consume_timestamp")
        );
    }

    #[test]
    fn client_ids() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let cl = MessageModel::Clustering;
        let bc = MessageModel::Broadcasting;
        let table = [
            (v4, "DEFAULT", None, cl, "10.0.0.9@123#456"),
            (v4, "DEFAULT", None, bc, "10.0.0.9@DEFAULT"),
            (v4, "mine", None, cl, "10.0.0.9@mine"),
            (v4, "DEFAULT", Some("unitA"), cl, "10.0.0.9@123#456@unitA"),
            (v4, "mine", Some("  "), bc, "10.0.0.9@mine"),
            (v4, "default", None, cl, "10.0.0.9@default"),
            (v6, "DEFAULT", None, cl, "[::1]@123#456"),
        ];
        for (ip, instance, unit, model, expected) in table {
            assert_eq!(client_id(ip, instance, unit, model, 123, 456), expected);
        }
    }

    #[test]
    fn strategy_names() {
        assert_eq!(AllocateStrategy::Avg.name(), "AVG");
        assert_eq!(AllocateStrategy::AvgByCircle.name(), "AVG_BY_CIRCLE");
        assert_eq!(AllocateStrategy::consistent_hash().name(), "CONSISTENT_HASH");
    }
}
