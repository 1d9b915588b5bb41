//! The POP task against a scripted broker and listener, under tokio's paused clock: how each
//! outcome is settled, what is never acked, and flow control by messages waiting for their ack.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::{PopResult, PopStatus, PoppedMessage};
use crate::consumer::config::{ConsumeMode, RequestMode};
use crate::consumer::listener::MessageOutcome;
use crate::consumer::queue_task::QueueTaskHandle;
use crate::consumer::testing::{
    BROKER, Call, PopCall, ScriptedBroker, ScriptedListener, TOPIC, message_at, next, shared,
};
use crate::protocol::pop::{PopHandle, TopicMark};
use crate::protocol::{EpochMillis, MessageQueue, QueueId, QueueOffset};

fn all_queues() -> MessageQueue {
    MessageQueue::new(TOPIC, BROKER, QueueId(-1))
}

/// A message at `offset`, retried `reconsume` times, popped `age` ago with 60 s invisibility.
fn popped(offset: i64, reconsume: i32, age: Duration) -> PoppedMessage {
    let mut message = message_at(offset);
    message.reconsume_times = reconsume;
    let handle = PopHandle {
        ck_queue_offset: QueueOffset(0),
        pop_time: EpochMillis(EpochMillis::now().0 - age.as_millis() as i64),
        invisible_time: Duration::from_secs(60),
        revive_qid: 0,
        mark: TopicMark::Normal,
        broker_name: BROKER.into(),
        queue_id: QueueId(0),
        queue_offset: QueueOffset(offset),
    };
    PoppedMessage { message, handle }
}

fn answer(call: PopCall, messages: Vec<PoppedMessage>) {
    let status = if messages.is_empty() { PopStatus::NoNewMsg } else { PopStatus::Found };
    let _ = call.reply.send(Ok(PopResult { status, messages, undecodable: None }));
}

struct Fixture {
    broker: Arc<ScriptedBroker>,
    pops: tokio::sync::mpsc::Receiver<PopCall>,
    task: QueueTaskHandle,
}

fn start(
    configure: impl FnOnce(&mut crate::consumer::ConsumerConfig),
) -> (Fixture, tokio::sync::mpsc::Receiver<crate::consumer::testing::ListenerCall>) {
    start_with(ConsumeMode::Concurrently, all_queues(), configure)
}

/// A POP task on `queue` for a consumer in `mode`.
fn start_with(
    mode: ConsumeMode,
    queue: MessageQueue,
    configure: impl FnOnce(&mut crate::consumer::ConsumerConfig),
) -> (Fixture, tokio::sync::mpsc::Receiver<crate::consumer::testing::ListenerCall>) {
    let (broker, _pulls) = ScriptedBroker::new();
    let (listener, calls) = ScriptedListener::new();
    let pops = broker.pop_calls.lock().unwrap().take().unwrap();
    let shared = shared(mode, Arc::clone(&broker), listener, |c| {
        c.request_mode = RequestMode::Pop;
        configure(c);
    });
    let task = super::task::spawn(shared, queue, &CancellationToken::new());
    (Fixture { broker, pops, task }, calls)
}

#[tokio::test(start_paused = true)]
async fn outcomes_settle_by_ack_invisible_time_or_dlq() {
    let (mut f, mut calls) = start(|c| c.max_reconsume_times = Some(3));
    let pop = next(&mut f.pops).await;
    assert_eq!(pop.header.queue_id, QueueId(-1));
    assert_eq!(pop.header.max_msg_nums, 32);
    assert_eq!(pop.header.invisible_time, 60_000);
    let fresh = Duration::ZERO;
    answer(
        pop,
        vec![popped(0, 0, fresh), popped(1, 0, fresh), popped(2, 2, fresh), popped(3, 3, fresh)],
    );
    let outcomes = [
        MessageOutcome::Success,
        MessageOutcome::RetryLater { delay_level: Some(1) },
        MessageOutcome::RetryLater { delay_level: None },
        MessageOutcome::RetryLater { delay_level: None },
    ];
    for outcome in outcomes {
        next(&mut calls).await.answer(outcome);
    }
    f.broker.wait_for(|calls| calls.len() >= 5).await;
    let mut got = f.broker.calls();
    got.sort_by_key(|c| format!("{c:?}"));
    let mut expected = vec![
        // Delay level 1 is the broker's 1 s; no level: Java's POP table by reconsume times.
        Call::ChangeInvisible { offset: 1, invisible: Duration::from_secs(1) },
        Call::ChangeInvisible { offset: 2, invisible: Duration::from_secs(60) },
        // Retries exhausted: dead-lettered through the broker, then acked.
        Call::SendBack { offset: 3, delay_level: -1 },
        // The success and the dead letter (one a listener call here): a batch ack each.
        Call::BatchAck { broker: BROKER.into(), offsets: vec![0] },
        Call::BatchAck { broker: BROKER.into(), offsets: vec![3] },
    ];
    expected.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(got, expected);
    let stats = &f.task.stats;
    assert_eq!(stats.pop_acks.load(Ordering::Relaxed), 2);
    assert_eq!(stats.pop_retries.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_message_past_its_invisible_time_is_never_acked() {
    let (mut f, mut calls) = start(|_| {});
    let stats = Arc::clone(&f.task.stats);
    // Popped 61 s ago with 60 s invisibility: the broker has handed it out again already.
    answer(
        next(&mut f.pops).await,
        vec![popped(0, 0, Duration::from_secs(61)), popped(1, 0, Duration::ZERO)],
    );
    let call = next(&mut calls).await;
    assert_eq!(call.offsets, [1], "only the live message reaches the listener");
    call.succeed();
    f.broker.wait_for(|calls| !calls.is_empty()).await;
    assert_eq!(f.broker.calls(), [Call::BatchAck { broker: BROKER.into(), offsets: vec![1] }]);
    assert_eq!(stats.pop_expired.load(Ordering::Relaxed), 1);
    assert_eq!(stats.pop_acks.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn no_pop_while_the_threshold_of_unacked_messages_is_reached() {
    let (mut f, mut calls) = start(|c| c.pop_threshold_for_queue = 3);
    let first = next(&mut f.pops).await;
    assert_eq!(first.header.max_msg_nums, 3, "the batch is capped by the threshold");
    answer(first, (0..3).map(|o| popped(o, 0, Duration::ZERO)).collect());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut calls).await);
    }
    // Three messages wait for their ack: no pop for as long as they do.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(f.pops.try_recv().is_err(), "popped while at the threshold");
    held.pop().unwrap().succeed();
    let again = next(&mut f.pops).await;
    assert_eq!(again.header.max_msg_nums, 1, "one slot freed");
    assert!(f.task.stats.flow_control_pauses.load(Ordering::Relaxed) >= 1);
}

/// The acks of a batch go in one BATCH_ACK_MESSAGE; a retried message is not in it.
#[tokio::test(start_paused = true)]
async fn a_batch_is_acked_in_one_request() {
    let (mut f, mut calls) = start(|c| c.consume_message_batch_max_size = 4);
    answer(next(&mut f.pops).await, (0..4).map(|o| popped(o, 0, Duration::ZERO)).collect());
    let call = next(&mut calls).await;
    assert_eq!(call.offsets, [0, 1, 2, 3]);
    call.answer_each(|offset| {
        if offset == 2 {
            MessageOutcome::RetryLater { delay_level: None }
        } else {
            MessageOutcome::Success
        }
    });
    f.broker.wait_for(|calls| calls.len() >= 2).await;
    assert_eq!(
        f.broker.calls(),
        [
            Call::ChangeInvisible { offset: 2, invisible: Duration::from_secs(10) },
            Call::BatchAck { broker: BROKER.into(), offsets: vec![0, 1, 3] },
        ]
    );
    assert_eq!(f.task.stats.pop_acks.load(Ordering::Relaxed), 3);
}

/// A broker that refuses BATCH_ACK_MESSAGE (REQUEST_CODE_NOT_SUPPORTED) gets one ACK_MESSAGE a
/// message instead: nothing stays unacked.
#[tokio::test(start_paused = true)]
async fn a_broker_refusing_batch_ack_gets_single_acks() {
    let (mut f, mut calls) = start(|c| c.consume_message_batch_max_size = 3);
    f.broker.refuse_batch_ack.store(true, Ordering::SeqCst);
    answer(next(&mut f.pops).await, (0..3).map(|o| popped(o, 0, Duration::ZERO)).collect());
    let call = next(&mut calls).await;
    assert_eq!(call.offsets, [0, 1, 2]);
    call.succeed();
    f.broker.wait_for(|calls| calls.len() >= 3).await;
    let mut got = f.broker.calls();
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(got, [Call::Ack { offset: 0 }, Call::Ack { offset: 1 }, Call::Ack { offset: 2 }]);
    assert_eq!(f.task.stats.pop_acks.load(Ordering::Relaxed), 3);
    assert_eq!(f.task.stats.pop_settle_failures.load(Ordering::Relaxed), 0);
}

/// An orderly POP task on queue 0, consuming one message a listener call.
fn start_orderly(
    configure: impl FnOnce(&mut crate::consumer::ConsumerConfig),
) -> (Fixture, tokio::sync::mpsc::Receiver<crate::consumer::testing::ListenerCall>) {
    start_with(ConsumeMode::Orderly, MessageQueue::new(TOPIC, BROKER, QueueId(0)), |c| {
        c.consume_message_batch_max_size = 1;
        configure(c);
    })
}

/// As an orderly pop hands it out: revive queue 999, reconsume times from `orderCountInfo`.
fn popped_orderly(offset: i64, reconsume: i32) -> PoppedMessage {
    let mut p = popped(offset, reconsume, Duration::ZERO);
    p.handle.revive_qid = crate::protocol::pop::POP_ORDER_REVIVE_QUEUE;
    p
}

/// One pop at a time per queue, its messages to the listener one after the other in offset
/// order, the next pop only once all are acked.
#[tokio::test(start_paused = true)]
async fn orderly_pop_consumes_a_queue_serially_in_offset_order() {
    let (mut f, mut calls) = start_orderly(|_| {});
    let pop = next(&mut f.pops).await;
    assert_eq!(pop.header.order, Some(true));
    assert_eq!(pop.header.queue_id, QueueId(0));
    answer(pop, vec![popped_orderly(2, 0), popped_orderly(0, 0), popped_orderly(1, 0)]);
    for offset in 0..3 {
        let call = next(&mut calls).await;
        assert_eq!(call.offsets, [offset]);
        // Nothing else is consumed, and nothing popped, while this message is.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(calls.try_recv().is_err(), "a later message overtook offset {offset}");
        assert!(f.pops.try_recv().is_err(), "popped again before the pop was settled");
        call.succeed();
        f.broker.wait_for(|c| c.len() as i64 > offset).await;
    }
    let again = next(&mut f.pops).await;
    assert_eq!(again.header.order, Some(true));
    assert_eq!(
        f.broker.calls(),
        (0..3)
            .map(|o| Call::BatchAck { broker: BROKER.into(), offsets: vec![o] })
            .collect::<Vec<_>>()
    );
    assert_eq!(f.task.stats.pop_acks.load(Ordering::Relaxed), 3);
}

/// A failure hides the message and everything behind it for the orderly pause (the broker then
/// redelivers them in order, counting the redelivery); the queue is not popped before; once the
/// broker's count reaches the limit, the message goes to the DLQ and the queue moves on.
#[tokio::test(start_paused = true)]
async fn orderly_pop_retries_in_place_then_dead_letters_after_the_max() {
    let pause = Duration::from_secs(2);
    let (mut f, mut calls) = start_orderly(|c| {
        c.max_reconsume_times = Some(2);
        c.suspend_current_queue_time = pause;
    });
    answer(
        next(&mut f.pops).await,
        vec![popped_orderly(0, 0), popped_orderly(1, 0), popped_orderly(2, 0)],
    );
    next(&mut calls).await.succeed();
    let failing = next(&mut calls).await;
    assert_eq!(failing.offsets, [1]);
    let failed_at = tokio::time::Instant::now();
    failing.answer(MessageOutcome::RETRY);
    f.broker.wait_for(|c| c.len() >= 3).await;
    let mut got = f.broker.calls();
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        got,
        [
            Call::BatchAck { broker: BROKER.into(), offsets: vec![0] },
            Call::ChangeInvisible { offset: 1, invisible: pause },
            Call::ChangeInvisible { offset: 2, invisible: pause },
        ]
    );
    assert!(calls.try_recv().is_err(), "offset 2 overtook the failed offset 1");
    // The broker redelivers from offset 1 once the pause is over: no pop before.
    let redelivery = next(&mut f.pops).await;
    assert!(failed_at.elapsed() >= pause, "popped {:?} after the failure", failed_at.elapsed());
    // Its count reached the limit (2 of 2): this failure is the last.
    answer(redelivery, vec![popped_orderly(1, 2), popped_orderly(2, 1)]);
    let last = next(&mut calls).await;
    assert_eq!(last.offsets, [1]);
    last.answer(MessageOutcome::RETRY);
    let after = next(&mut calls).await;
    assert_eq!(after.offsets, [2], "the queue moves on past the dead letter");
    after.succeed();
    f.broker.wait_for(|c| c.len() >= 6).await;
    assert_eq!(
        f.broker.calls()[3..],
        [
            Call::SendBack { offset: 1, delay_level: -1 },
            Call::BatchAck { broker: BROKER.into(), offsets: vec![1] },
            Call::BatchAck { broker: BROKER.into(), offsets: vec![2] },
        ]
    );
    assert_eq!(f.task.stats.pop_retries.load(Ordering::Relaxed), 1);
}
