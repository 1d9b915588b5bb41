//! Test doubles for the consumer core: a scripted broker behind [`BrokerApi`], a listener the
//! test answers call by call, and a [`Shared`] wired to both. Unit tests of the queue task and
//! the scheduler run on them under tokio's paused clock, with no socket and no cluster.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use super::broker_api::{BrokerApi, BrokerFuture};
use super::config::{ConsumeMode, ConsumerConfig, Subscription};
use super::listener::{ConsumeContext, ListenerFuture, MessageListener, MessageOutcome};
use super::offset_store::{BrokerAddrs, OffsetStore, RemoteOffsetStore};
use super::route::RouteTable;
use super::shared::{Clients, Shared};
use crate::client::{
    BrokerClient, ClientError, NameServerClient, PopResult, Producer, ProducerConfig, PullResult,
    PullStatus,
};
use crate::protocol::body::route::{BrokerData, QueueData, TopicRouteData};
use crate::protocol::body::{
    BatchAckMessageRequestBody, CheckClientRequestBody, HeartbeatData, LockBatchRequestBody,
    MessageQueueAssignment, QueryAssignmentRequestBody, UnlockBatchRequestBody,
};
use crate::protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ConsumerSendMsgBackRequestHeader,
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, PopMessageRequestHeader,
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::message::MessageExt;
use crate::protocol::{MessageQueue, QueueId, QueueOffset};
use crate::protocol::{RequestCode, ResponseCode};
use crate::remoting::{ConnectionPool, RemotingError};

pub(crate) const TOPIC: &str = "T";
pub(crate) const BROKER: &str = "broker-a";
pub(crate) const BROKER_ADDR: &str = "127.0.0.1:10911";
pub(crate) const GROUP: &str = "G";
pub(crate) const CLIENT_ID: &str = "127.0.0.1@test";

/// A pull the test answers (or leaves pending, as a long poll or a black-holed broker would).
pub(crate) struct PullCall {
    pub header: PullMessageRequestHeader,
    reply: oneshot::Sender<PullReply>,
}

enum PullReply {
    Answer(Result<PullResult, ClientError>),
    /// The pull panics inside the queue task (a bug there, simulated).
    Panic,
}

impl PullCall {
    /// Answers with messages at `offsets` (bodies of `body_len` bytes).
    pub fn found(self, offsets: std::ops::Range<i64>, max_offset: i64) {
        let messages = offsets.clone().map(message_at).collect();
        let _ = self.reply.send(PullReply::Answer(Ok(PullResult {
            status: PullStatus::Found,
            next_begin_offset: QueueOffset(offsets.end),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(max_offset),
            suggest_which_broker_id: 0,
            offset_delta: None,
            messages,
            undecodable: None,
        })));
    }

    /// Answers with messages at `offsets`, then a record that could not be decoded; the broker
    /// read up to `next_begin`.
    pub fn found_then_broken(
        self,
        offsets: std::ops::Range<i64>,
        next_begin: i64,
        max_offset: i64,
    ) {
        let broken = crate::protocol::message::decode_messages(bytes::Bytes::from_static(&[0; 8]))
            .expect_err("eight zero bytes are not a record");
        let _ = self.reply.send(PullReply::Answer(Ok(PullResult {
            status: PullStatus::Found,
            next_begin_offset: QueueOffset(next_begin),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(max_offset),
            suggest_which_broker_id: 0,
            offset_delta: None,
            messages: offsets.map(message_at).collect(),
            undecodable: Some(broken),
        })));
    }

    /// Makes the queue task that sent this pull panic.
    pub fn panic(self) {
        let _ = self.reply.send(PullReply::Panic);
    }

    /// Answers with a status and no messages (PULL_NOT_FOUND, PULL_OFFSET_MOVED, …).
    pub fn empty(self, status: PullStatus, next_begin: i64, max_offset: i64) {
        let _ = self.reply.send(PullReply::Answer(Ok(PullResult {
            status,
            next_begin_offset: QueueOffset(next_begin),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(max_offset),
            suggest_which_broker_id: 0,
            offset_delta: None,
            messages: Vec::new(),
            undecodable: None,
        })));
    }
}

/// A message of [`TOPIC`] queue 0 at `offset`.
pub(crate) fn message_at(offset: i64) -> MessageExt {
    MessageExt {
        topic: TOPIC.to_owned(),
        body: bytes::Bytes::from(format!("m{offset}")),
        queue_id: QueueId(0),
        queue_offset: QueueOffset(offset),
        // Send-backs name a message by its commit-log offset: the same number, for reading.
        commit_log_offset: crate::protocol::CommitLogOffset(offset),
        ..Default::default()
    }
}

/// The queue every test consumes.
pub(crate) fn queue() -> MessageQueue {
    MessageQueue::new(TOPIC, BROKER, QueueId(0))
}

/// Everything the scripted broker was asked, in order, besides pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    SendBack {
        offset: i64,
        delay_level: i32,
    },
    UpdateOffset {
        queue_id: i32,
        offset: i64,
    },
    Lock(usize),
    Unlock(usize),
    Heartbeat,
    Unregister,
    /// POP: an ack of the message at this queue offset.
    Ack {
        offset: i64,
    },
    /// POP: one BATCH_ACK_MESSAGE to `broker`, acking these queue offsets.
    BatchAck {
        broker: String,
        offsets: Vec<i64>,
    },
    /// POP: the message at this queue offset hidden for `invisible` more.
    ChangeInvisible {
        offset: i64,
        invisible: Duration,
    },
}

/// A pop the test answers (or leaves pending, as a long poll would).
pub(crate) struct PopCall {
    pub header: PopMessageRequestHeader,
    pub reply: oneshot::Sender<Result<PopResult, ClientError>>,
}

/// A broker that hands every pull to the test and answers the rest itself.
pub(crate) struct ScriptedBroker {
    pulls: mpsc::Sender<PullCall>,
    calls: Mutex<Vec<Call>>,
    /// Lock requests fail (a broker that stopped answering them) while set.
    pub fail_locks: AtomicBool,
    /// Lock requests never return while set (a black-holed broker).
    pub hang_locks: AtomicBool,
    pub lock_requests: AtomicUsize,
    /// Offset queries fail while set (QUERY_CONSUMER_OFFSET answered with an error).
    pub fail_offset_queries: AtomicBool,
    /// Heartbeats never return while set: each costs the caller its whole timeout.
    pub hang_heartbeats: AtomicBool,
    /// BATCH_ACK_MESSAGE is answered REQUEST_CODE_NOT_SUPPORTED (and not recorded) while set.
    pub refuse_batch_ack: AtomicBool,
    /// What GET_MIN_OFFSET and GET_MAX_OFFSET answer for every queue (default 0..0: empty).
    pub queue_range: Mutex<std::ops::Range<i64>>,
    /// The group's offset as the broker stores it (the last update; `None`: not found).
    pub stored_offset: Mutex<Option<QueueOffset>>,
    /// Wakes tests waiting on [`calls`](Self::calls).
    changed: Notify,
    pops: mpsc::Sender<PopCall>,
    /// The stream of pops, for the test to take once.
    pub pop_calls: Mutex<Option<mpsc::Receiver<PopCall>>>,
    /// QUERY_ASSIGNMENT's answers (each query gets those of its topic).
    pub assignment: Mutex<Vec<MessageQueueAssignment>>,
}

impl ScriptedBroker {
    /// The broker and the stream of pulls it receives.
    pub fn new() -> (Arc<Self>, mpsc::Receiver<PullCall>) {
        let (pulls, rx) = mpsc::channel(16);
        let (pops, pop_rx) = mpsc::channel(16);
        let broker = Arc::new(Self {
            pops,
            pop_calls: Mutex::new(Some(pop_rx)),
            assignment: Mutex::default(),
            pulls,
            calls: Mutex::default(),
            fail_locks: AtomicBool::new(false),
            hang_locks: AtomicBool::new(false),
            lock_requests: AtomicUsize::new(0),
            hang_heartbeats: AtomicBool::new(false),
            refuse_batch_ack: AtomicBool::new(false),
            fail_offset_queries: AtomicBool::new(false),
            stored_offset: Mutex::new(None),
            queue_range: Mutex::new(0..0),
            changed: Notify::new(),
        });
        (broker, rx)
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
        self.changed.notify_waiters();
    }

    /// Every non-pull call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits (bounded by the test's own timeout) until a recorded call satisfies `pred`.
    pub async fn wait_for(&self, pred: impl Fn(&[Call]) -> bool) {
        loop {
            let notified = self.changed.notified();
            if pred(&self.calls()) {
                return;
            }
            notified.await;
        }
    }
}

impl BrokerApi for ScriptedBroker {
    fn pull<'a>(
        &'a self,
        _addr: &'a str,
        header: &'a PullMessageRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, PullResult> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let call = PullCall { header: header.clone(), reply };
            if self.pulls.send(call).await.is_err() {
                return std::future::pending().await;
            }
            // A dropped reply is a pull the test never answers: it stays pending.
            match answer.await {
                Ok(PullReply::Answer(result)) => result,
                Ok(PullReply::Panic) => panic!("scripted pull panic"),
                Err(_) => std::future::pending().await,
            }
        })
    }

    fn send_back<'a>(
        &'a self,
        _addr: &'a str,
        header: &'a ConsumerSendMsgBackRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::SendBack { offset: header.offset.0, delay_level: header.delay_level });
        Box::pin(async { Ok(()) })
    }

    fn query_offset<'a>(
        &'a self,
        _addr: &'a str,
        _header: &'a QueryConsumerOffsetRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, Option<QueueOffset>> {
        let stored = *self.stored_offset.lock().unwrap_or_else(PoisonError::into_inner);
        let fail = self.fail_offset_queries.load(Ordering::SeqCst);
        Box::pin(async move {
            if fail {
                return Err(ClientError::NoRoute("offset query refused".into()));
            }
            Ok(stored)
        })
    }

    fn update_offset_oneway<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.update_offset(addr, header, timeout)
    }

    fn update_offset<'a>(
        &'a self,
        _addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::UpdateOffset {
            queue_id: header.queue_id.0,
            offset: header.commit_offset.0,
        });
        *self.stored_offset.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(header.commit_offset);
        Box::pin(async { Ok(()) })
    }

    fn max_offset<'a>(
        &'a self,
        _addr: &'a str,
        _header: &'a GetMaxOffsetRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        let max = self.queue_range.lock().unwrap_or_else(PoisonError::into_inner).end;
        Box::pin(async move { Ok(QueueOffset(max)) })
    }

    fn min_offset<'a>(
        &'a self,
        _addr: &'a str,
        _header: &'a GetMinOffsetRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        let min = self.queue_range.lock().unwrap_or_else(PoisonError::into_inner).start;
        Box::pin(async move { Ok(QueueOffset(min)) })
    }

    fn search_offset<'a>(
        &'a self,
        _addr: &'a str,
        _header: &'a SearchOffsetRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        Box::pin(async { Ok(QueueOffset(0)) })
    }

    fn consumer_ids<'a>(
        &'a self,
        _addr: &'a str,
        _group: &'a str,
        _timeout: Duration,
    ) -> BrokerFuture<'a, Vec<String>> {
        Box::pin(async { Ok(vec![CLIENT_ID.to_owned()]) })
    }

    fn lock_batch<'a>(
        &'a self,
        _addr: &'a str,
        body: &'a LockBatchRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, BTreeSet<MessageQueue>> {
        self.lock_requests.fetch_add(1, Ordering::SeqCst);
        self.record(Call::Lock(body.mq_set.len()));
        let hang = self.hang_locks.load(Ordering::SeqCst);
        let fail = self.fail_locks.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                return Err(black_holed(RequestCode::LockBatchMq, timeout).await);
            }
            if fail {
                return Err(ClientError::NoRoute("lock refused".into()));
            }
            Ok(body.mq_set.clone())
        })
    }

    fn unlock_batch<'a>(
        &'a self,
        _addr: &'a str,
        body: &'a UnlockBatchRequestBody,
        _oneway: bool,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::Unlock(body.mq_set.len()));
        Box::pin(async { Ok(()) })
    }

    fn heartbeat<'a>(
        &'a self,
        _addr: &'a str,
        _data: &'a HeartbeatData,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::Heartbeat);
        let hang = self.hang_heartbeats.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                return Err(black_holed(RequestCode::HeartBeat, timeout).await);
            }
            Ok(())
        })
    }

    fn unregister<'a>(
        &'a self,
        _addr: &'a str,
        _header: &'a UnregisterClientRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::Unregister);
        Box::pin(async { Ok(()) })
    }

    fn check_client_config<'a>(
        &'a self,
        _addr: &'a str,
        _body: &'a CheckClientRequestBody,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn pop<'a>(
        &'a self,
        _addr: &'a str,
        _broker_name: &'a str,
        header: &'a PopMessageRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, PopResult> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            if self.pops.send(PopCall { header: header.clone(), reply }).await.is_err() {
                return std::future::pending().await;
            }
            match answer.await {
                Ok(result) => result,
                Err(_) => std::future::pending().await,
            }
        })
    }

    fn ack<'a>(
        &'a self,
        _addr: &'a str,
        header: &'a AckMessageRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        self.record(Call::Ack { offset: header.offset.0 });
        Box::pin(async { Ok(()) })
    }

    fn batch_ack<'a>(
        &'a self,
        addr: &'a str,
        body: &'a BatchAckMessageRequestBody,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        if self.refuse_batch_ack.load(Ordering::SeqCst) {
            return Box::pin(async move {
                Err(ClientError::Broker {
                    addr: addr.to_owned(),
                    request: RequestCode::BatchAckMessage,
                    code: ResponseCode::RequestCodeNotSupported,
                    remark: "request type 200151 not supported".into(),
                })
            });
        }
        let offsets = body
            .acks
            .iter()
            .flat_map(|a| a.bit_set.iter().map(move |i| a.start_offset + i64::from(i)))
            .collect();
        self.record(Call::BatchAck { broker: body.broker_name.clone(), offsets });
        Box::pin(async { Ok(()) })
    }

    fn change_invisible_time<'a>(
        &'a self,
        _addr: &'a str,
        header: &'a ChangeInvisibleTimeRequestHeader,
        _timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        let invisible = Duration::from_millis(u64::try_from(header.invisible_time).unwrap_or(0));
        self.record(Call::ChangeInvisible { offset: header.offset.0, invisible });
        Box::pin(async { Ok(()) })
    }

    fn query_assignment<'a>(
        &'a self,
        _addr: &'a str,
        body: &'a QueryAssignmentRequestBody,
        _timeout: Duration,
    ) -> BrokerFuture<'a, Vec<MessageQueueAssignment>> {
        let all = self.assignment.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let answer = all.into_iter().filter(|a| a.message_queue.topic == body.topic).collect();
        Box::pin(async move { Ok(answer) })
    }

    fn close_all(&self) {}
}

/// How the test answers a listener call.
pub(crate) enum Reply {
    Outcomes(Vec<MessageOutcome>),
    /// The listener panics.
    Panic,
}

/// What a caller sees from a black-holed broker: its own timeout, after waiting it out.
async fn black_holed(code: RequestCode, timeout: Duration) -> ClientError {
    tokio::time::sleep(timeout).await;
    RemotingError::Timeout { addr: BROKER_ADDR.to_owned(), code, after: timeout }.into()
}

/// A listener call the test answers.
pub(crate) struct ListenerCall {
    pub offsets: Vec<i64>,
    pub reply: oneshot::Sender<Reply>,
}

impl ListenerCall {
    /// Every message consumed.
    pub fn succeed(self) {
        self.answer(MessageOutcome::Success);
    }

    /// Every message gets `outcome`.
    pub fn answer(self, outcome: MessageOutcome) {
        let outcomes = vec![outcome; self.offsets.len()];
        let _ = self.reply.send(Reply::Outcomes(outcomes));
    }

    /// Each message gets the outcome `outcome` gives its offset.
    pub fn answer_each(self, outcome: impl Fn(i64) -> MessageOutcome) {
        let outcomes = self.offsets.iter().map(|o| outcome(*o)).collect();
        let _ = self.reply.send(Reply::Outcomes(outcomes));
    }

    /// The listener panics in this call.
    pub fn panic(self) {
        let _ = self.reply.send(Reply::Panic);
    }
}

/// A listener that hands every call to the test. A call whose reply is dropped fails as a
/// whole (the listener reported an error).
pub(crate) struct ScriptedListener {
    calls: mpsc::Sender<ListenerCall>,
}

impl ScriptedListener {
    pub fn new() -> (Arc<Self>, mpsc::Receiver<ListenerCall>) {
        let (calls, rx) = mpsc::channel(64);
        (Arc::new(Self { calls }), rx)
    }
}

impl MessageListener for ScriptedListener {
    fn consume<'a>(
        &'a self,
        _ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let offsets = messages.iter().map(|m| m.queue_offset.0).collect();
            let failed = || super::listener::ListenerError::Failed("test dropped the call".into());
            self.calls.send(ListenerCall { offsets, reply }).await.map_err(|_| failed())?;
            match answer.await.map_err(|_| failed())? {
                Reply::Outcomes(outcomes) => Ok(outcomes),
                Reply::Panic => panic!("scripted listener panic"),
            }
        })
    }
}

/// The next item of a test channel; panics (failing the test) if none comes within a minute of
/// the paused clock, i.e. when the code under test stopped making progress.
pub(crate) async fn next<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("nothing arrived within 60 s")
        .expect("sender gone")
}

/// Waits until `cond` holds, checking every millisecond of the (paused) clock; panics after
/// 60 s.
pub(crate) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Broker addresses for the offset store: the one scripted broker.
struct OneBroker;

impl BrokerAddrs for OneBroker {
    fn master_or_any(&self, _broker_name: &str) -> Option<String> {
        Some(BROKER_ADDR.to_owned())
    }
}

/// A route of [`TOPIC`] with one queue on [`BROKER`].
fn route() -> TopicRouteData {
    TopicRouteData {
        queue_datas: vec![QueueData {
            broker_name: BROKER.to_owned(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "c".into(),
            broker_name: BROKER.to_owned(),
            broker_addrs: [(0, BROKER_ADDR.to_owned())].into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A consumer context for `mode` over the scripted broker and listener. Its name-server and
/// producer clients point at a closed port: the core under test must not need them.
pub(crate) fn shared(
    mode: ConsumeMode,
    broker: Arc<ScriptedBroker>,
    listener: Arc<ScriptedListener>,
    configure: impl FnOnce(&mut ConsumerConfig),
) -> Arc<Shared> {
    let mut config = ConsumerConfig::new(GROUP);
    config.consume_mode = mode;
    config.subscriptions.push(Subscription::all(TOPIC));
    configure(&mut config);
    let pool = ConnectionPool::default();
    let namesrv = NameServerClient::new(pool.clone(), vec!["127.0.0.1:1".into()])
        .expect("a valid name server address");
    let producer =
        Producer::new(namesrv.clone(), BrokerClient::new(pool.clone()), ProducerConfig::default());
    let routes = Arc::new(RouteTable::default());
    routes.apply(TOPIC, Some(route()));
    let offsets: OffsetStore = RemoteOffsetStore::new(
        GROUP,
        Arc::clone(&broker) as Arc<dyn BrokerApi>,
        Arc::new(OneBroker),
    )
    .into();
    Arc::new(Shared::new(
        config,
        CLIENT_ID.to_owned(),
        Clients { namesrv, broker, producer },
        routes,
        offsets,
        listener,
        Arc::new(Notify::new()),
    ))
}
