//! Requests the broker sends us (reference 2.11).
//!
//! The connection layer hands each request to [`ConsumerRequestHandler`], which exists before the
//! consumer's shared state does (the connection pool needs it first). So it only forwards: a
//! NOTIFY wakes the rebalance directly, everything else goes over a bounded channel to the
//! consumer's request task ([`serve`]), which owns a reference to the shared state and answers
//! through a oneshot. A full channel answers SYSTEM_BUSY rather than queueing without bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::listener::{ConsumeContext, ConsumeMode, ListenerError, MessageOutcome};
use super::shared::Shared;
use super::stats_window::{self, StatsWindows};
use crate::protocol::body::{
    CMResult, ConsumeMessageDirectlyResult, ConsumerRunningInfo, GetConsumerStatusBody,
    ProcessQueueInfo, ResetOffsetBody,
};
use crate::protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
    GetConsumerStatusRequestHeader, ResetOffsetRequestHeader,
};
use crate::protocol::message::decode_message;
use crate::protocol::{
    EpochMillis, MessageQueue, QueueOffset, RemotingCommand, RequestCode, ResponseCode,
};
use crate::remoting::connection::{HandlerFuture, HandlerReply, NotSupported, RequestHandler};

/// A forwarded request and where its answer goes.
pub(crate) type Forwarded = (RemotingCommand, oneshot::Sender<Result<HandlerReply, NotSupported>>);

/// Commands for the scheduler task, which owns the queue tasks.
#[derive(Debug)]
pub(crate) enum SchedulerCommand {
    /// Admin offset reset: restart these queues at these offsets.
    ResetOffsets(BTreeMap<MessageQueue, QueueOffset>),
}

/// Handles broker-initiated requests for one consumer.
#[derive(Debug)]
pub(crate) struct ConsumerRequestHandler {
    pub rebalance_now: Arc<Notify>,
    pub forward: mpsc::Sender<Forwarded>,
}

impl RequestHandler for ConsumerRequestHandler {
    fn handle<'a>(&'a self, addr: &'a str, request: RemotingCommand) -> HandlerFuture<'a> {
        Box::pin(async move {
            match request.request_code() {
                RequestCode::NotifyConsumerIdsChanged => {
                    tracing::debug!(addr, "consumer ids changed; rebalancing");
                    self.rebalance_now.notify_one();
                    Ok(HandlerReply::NoReply)
                }
                RequestCode::GetConsumerRunningInfo
                | RequestCode::ConsumeMessageDirectly
                | RequestCode::ResetConsumerClientOffset
                | RequestCode::GetConsumerStatusFromClient => {
                    let (tx, rx) = oneshot::channel();
                    let busy = RemotingCommand::response_to(
                        &request,
                        ResponseCode::SystemBusy,
                        Some("consumer request queue is full".into()),
                    );
                    if self.forward.try_send((request, tx)).is_err() {
                        return Ok(HandlerReply::Respond(busy));
                    }
                    rx.await.unwrap_or(Ok(HandlerReply::Respond(busy)))
                }
                _ => Err(NotSupported),
            }
        })
    }
}

/// The request task: answers forwarded requests until `cancel`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<Forwarded>,
    scheduler: mpsc::Sender<SchedulerCommand>,
    cancel: CancellationToken,
) {
    // The running-info TPS/RT windows, sampled on Java's schedule (the first sample now).
    let mut windows = StatsWindows::default();
    let mut sampling = tokio::time::interval(stats_window::MINUTE_SAMPLE_EVERY);
    sampling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (request, reply) = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sampling.tick() => {
                let topics = shared.topic_stats.iter().map(|(t, s)| (t.as_str(), s.snapshot()));
                windows.sample(EpochMillis::now().0, topics);
                continue;
            }
            next = requests.recv() => match next {
                Some(r) => r,
                None => return,
            },
        };
        let answer = answer(&shared, &windows, &scheduler, request).await;
        let _ = reply.send(answer);
    }
}

async fn answer(
    shared: &Shared,
    windows: &StatsWindows,
    scheduler: &mpsc::Sender<SchedulerCommand>,
    request: RemotingCommand,
) -> Result<HandlerReply, NotSupported> {
    let error = |code: ResponseCode, remark: String| {
        Ok(HandlerReply::Respond(RemotingCommand::response_to(&request, code, Some(remark))))
    };
    match request.request_code() {
        RequestCode::GetConsumerRunningInfo => {
            let header: GetConsumerRunningInfoRequestHeader = match request.header() {
                Ok(h) => h,
                Err(e) => return error(ResponseCode::SystemError, e.to_string()),
            };
            if header.consumer_group != *shared.group {
                return error(
                    ResponseCode::SystemError,
                    format!("the consumer group [{}] not online", header.consumer_group),
                );
            }
            let info = running_info(shared, windows);
            Ok(HandlerReply::Respond(
                RemotingCommand::response_to(&request, ResponseCode::Success, None)
                    .with_body(info.encode()),
            ))
        }
        RequestCode::ConsumeMessageDirectly => {
            let header: ConsumeMessageDirectlyResultRequestHeader = match request.header() {
                Ok(h) => h,
                Err(e) => return error(ResponseCode::SystemError, e.to_string()),
            };
            let msg = match decode_message(&request.body) {
                Ok(m) => m,
                Err(e) => {
                    return error(ResponseCode::SystemError, format!("bad message body: {e}"));
                }
            };
            let result = consume_directly(shared, &header, msg).await;
            Ok(HandlerReply::Respond(
                RemotingCommand::response_to(&request, ResponseCode::Success, None)
                    .with_body(result.encode()),
            ))
        }
        RequestCode::ResetConsumerClientOffset => {
            let header: ResetOffsetRequestHeader = match request.header() {
                Ok(h) => h,
                Err(e) => return error(ResponseCode::SystemError, e.to_string()),
            };
            if header.group != *shared.group {
                return Ok(HandlerReply::NoReply);
            }
            match ResetOffsetBody::decode(&request.body) {
                Ok(body) => {
                    let table: BTreeMap<MessageQueue, QueueOffset> = body
                        .offset_table
                        .into_iter()
                        .filter(|(q, _)| q.topic == header.topic)
                        .collect();
                    tracing::info!(group = %shared.group, topic = %header.topic, queues = table.len(), "broker asked to reset offsets");
                    if scheduler.send(SchedulerCommand::ResetOffsets(table)).await.is_err() {
                        tracing::warn!("consumer is shutting down; offset reset ignored");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bad reset-offset body"),
            }
            // Oneway in Java; answer anyway if the broker asked for a reply.
            Ok(HandlerReply::Respond(RemotingCommand::response_to(
                &request,
                ResponseCode::Success,
                None,
            )))
        }
        RequestCode::GetConsumerStatusFromClient => {
            let header: GetConsumerStatusRequestHeader = match request.header() {
                Ok(h) => h,
                Err(e) => return error(ResponseCode::SystemError, e.to_string()),
            };
            let body = GetConsumerStatusBody {
                message_queue_table: shared
                    .offsets
                    .snapshot()
                    .into_iter()
                    .filter(|(q, _)| q.topic == header.topic)
                    .collect(),
                consumer_table: BTreeMap::new(),
            };
            Ok(HandlerReply::Respond(
                RemotingCommand::response_to(&request, ResponseCode::Success, None)
                    .with_body(body.encode()),
            ))
        }
        _ => Err(NotSupported),
    }
}

/// Runs the listener on one message for an admin tool (`mqadmin consumeMessage`). Nothing is
/// committed or sent back: it is a diagnostic, as in Java.
async fn consume_directly(
    shared: &Shared,
    header: &ConsumeMessageDirectlyResultRequestHeader,
    msg: crate::protocol::message::MessageExt,
) -> ConsumeMessageDirectlyResult {
    let queue = MessageQueue::new(
        msg.topic.clone(),
        header.broker_name.clone().unwrap_or_default(),
        msg.queue_id,
    );
    let mode = shared.consume_mode();
    let ctx = ConsumeContext { group: Arc::clone(&shared.group), queue, mode };
    let mut msgs = vec![msg];
    super::consume::prepare_for_listener(&shared.consume.retry_topic, &mut msgs);
    let started = Instant::now();
    let result = shared.consume.listener.consume(&ctx, &msgs).await;
    let spent = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (consume_result, remark) = match result {
        Ok(outcomes) => match outcomes.first() {
            Some(MessageOutcome::Success) => (CMResult::Success, None),
            Some(MessageOutcome::RetryLater { .. }) => (CMResult::Later, None),
            Some(MessageOutcome::DeadLetter { reason, .. }) => {
                (CMResult::Later, Some(format!("dead-letter: {reason}")))
            }
            None => (CMResult::ReturnNull, None),
        },
        Err(ListenerError::Failed(e)) => (CMResult::ThrowException, Some(e)),
        Err(e) => (CMResult::ThrowException, Some(e.to_string())),
    };
    ConsumeMessageDirectlyResult {
        order: mode == ConsumeMode::Orderly,
        auto_commit: true,
        consume_result: Some(consume_result),
        remark,
        spent_time_mills: spent,
    }
}

/// Our state as the admin tools show it: the owned queues from their live counters, the
/// per-topic rates from the last minute's (and hour's) windows, as Java reports them.
fn running_info(shared: &Shared, windows: &StatsWindows) -> ConsumerRunningInfo {
    let cfg = &shared.config;
    let mut properties = BTreeMap::new();
    properties.insert(
        ConsumerRunningInfo::PROP_NAMESERVER_ADDR.to_owned(),
        shared.namesrv.addrs().join(";"),
    );
    properties.insert(
        ConsumerRunningInfo::PROP_THREADPOOL_CORE_SIZE.to_owned(),
        cfg.consume_thread_max.to_string(),
    );
    properties.insert(
        ConsumerRunningInfo::PROP_CONSUME_ORDERLY.to_owned(),
        (cfg.consume_mode == ConsumeMode::Orderly).to_string(),
    );
    properties
        .insert(ConsumerRunningInfo::PROP_CONSUME_TYPE.to_owned(), "CONSUME_PASSIVELY".into());
    properties.insert(
        ConsumerRunningInfo::PROP_CONSUMER_START_TIMESTAMP.to_owned(),
        shared.started_at.0.to_string(),
    );
    properties.insert(ConsumerRunningInfo::PROP_CLIENT_VERSION.to_owned(), "V4_9_4".into());
    for (k, v) in [
        ("messageModel", cfg.message_model.to_string()),
        ("consumeFromWhere", cfg.consume_from_where.to_string()),
        ("allocateMessageQueueStrategy", cfg.allocate_strategy.name().to_owned()),
        ("consumeMessageBatchMaxSize", cfg.consume_message_batch_max_size.to_string()),
        ("pullBatchSize", cfg.pull_batch_size.to_string()),
        ("pullThresholdForQueue", cfg.pull_threshold_for_queue.to_string()),
        ("maxReconsumeTimes", shared.consume.max_reconsume_times.to_string()),
    ] {
        properties.insert(k.to_owned(), v);
    }

    let stats = shared.stats.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut mq_table = BTreeMap::new();
    for (queue, s) in stats.iter() {
        let snap = s.snapshot();
        mq_table.insert(
            queue.clone(),
            ProcessQueueInfo {
                commit_offset: snap.committed_offset,
                cached_msg_count: i32::try_from(snap.cached_count).unwrap_or(i32::MAX),
                cached_msg_size_in_mib: i32::try_from(snap.cached_bytes / (1024 * 1024))
                    .unwrap_or(i32::MAX),
                locked: shared.is_locked(queue),
                last_pull_timestamp: EpochMillis(s.last_pull_ms.load(Ordering::Relaxed)),
                last_consume_timestamp: EpochMillis(s.last_consume_ms.load(Ordering::Relaxed)),
                ..Default::default()
            },
        );
    }
    let topics = shared.topic_stats.iter().map(|(t, s)| (t.as_str(), s.snapshot()));
    let status_table = windows.status(EpochMillis::now().0, topics);
    ConsumerRunningInfo {
        properties,
        subscription_set: shared.subscription_list(),
        mq_table,
        status_table,
        ..Default::default()
    }
}
