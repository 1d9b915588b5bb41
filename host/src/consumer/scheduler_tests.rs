//! The scheduler (rebalance, locks, shutdown) against a scripted broker and listener, under
//! tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{ConsumeMode, RequestMode};
use super::scheduler;
use super::testing::{BROKER, Call, ScriptedBroker, ScriptedListener, TOPIC, next, queue, shared};
use crate::protocol::body::{MessageQueueAssignment, MessageRequestMode};
use crate::protocol::{MessageQueue, QueueId};

#[tokio::test(start_paused = true)]
async fn broker_mode_follows_the_assignment_from_pull_to_pop() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let mut pops = broker.pop_calls.lock().unwrap().take().unwrap();
    let assign = |queue: MessageQueue, mode| {
        *broker.assignment.lock().unwrap() =
            vec![MessageQueueAssignment { message_queue: queue, mode, attachments: None }];
    };
    assign(queue(), MessageRequestMode::Pull);
    let (listener, _calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |c| {
        c.request_mode = RequestMode::Broker;
    });
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    assert_eq!(next(&mut pulls).await.header.queue_id, QueueId(0), "PULL: the assigned queue");

    // The admin switched the group to POP: the next rebalance replaces the pull task.
    let all_queues = MessageQueue::new(TOPIC, BROKER, QueueId(-1));
    assign(all_queues.clone(), MessageRequestMode::Pop);
    shared.rebalance_now.notify_one();
    assert_eq!(next(&mut pops).await.header.queue_id, QueueId(-1), "POP: every queue");
    let owned: Vec<MessageQueue> = shared.stats.read().unwrap().keys().cloned().collect();
    assert_eq!(owned, [all_queues]);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("shutdown ends").unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_running_call_finish_commits_it_then_unregisters() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |c| {
        c.shutdown_drain_timeout = Duration::from_secs(10);
    });
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    next(&mut pulls).await.found(0..1, 1);
    let call = next(&mut calls).await;
    // What PushConsumer::shutdown does, while the listener is still working.
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    call.succeed();
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("shutdown ends").unwrap();
    let calls = broker.calls();
    let committed = calls.iter().position(|c| *c == Call::UpdateOffset { queue_id: 0, offset: 1 });
    let unregistered = calls.iter().position(|c| *c == Call::Unregister);
    assert!(committed.is_some(), "the drained call's offset was committed: {calls:?}");
    assert!(committed < unregistered, "committed before unregistering: {calls:?}");
}

#[tokio::test(start_paused = true)]
async fn lock_renewal_does_not_wait_behind_a_black_holed_heartbeat() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, _calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Orderly, Arc::clone(&broker), listener, |c| {
        // A black-holed broker costs every request its whole timeout; a long one makes the
        // heartbeats alone fill the scheduler's time.
        c.mq_client_api_timeout = Duration::from_secs(45);
    });
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    let _first = next(&mut pulls).await;
    assert!(shared.is_locked(&queue()));
    broker.hang_heartbeats.store(true, Ordering::SeqCst);
    let locks_before = broker.lock_requests.load(Ordering::SeqCst);
    // Two minutes: lock renewals (every 20 s) must go on, and the queue must stay locked.
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(shared.is_locked(&queue()), "the queue lock expired while heartbeats hung");
    }
    let renewals = broker.lock_requests.load(Ordering::SeqCst) - locks_before;
    assert!(renewals >= 5, "only {renewals} lock renewals in 120 s");
    stop.cancel();
    broker.hang_heartbeats.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(300), run).await.expect("shutdown ends").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lock_taken_for_a_queue_that_cannot_start_is_released() {
    let (broker, _pulls) = ScriptedBroker::new();
    let (listener, _calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Orderly, Arc::clone(&broker), listener, |_| {});
    broker.fail_offset_queries.store(true, Ordering::SeqCst);
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    // The queue is locked, its start offset cannot be read: the lock must not stay held (and
    // block every other member for the broker's 60 s) until the next rebalance.
    broker.wait_for(|c| c.contains(&Call::Lock(1))).await;
    tokio::time::timeout(Duration::from_secs(5), broker.wait_for(|c| c.contains(&Call::Unlock(1))))
        .await
        .expect("the lock is released");
    assert!(!shared.is_locked(&queue()));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("shutdown ends").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_queue_task_that_died_is_restarted_by_the_next_rebalance() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, _calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |_| {});
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    next(&mut pulls).await.panic();
    // The rebalance (every 20 s) notices the dead task and starts the queue again.
    let again = next(&mut pulls).await;
    assert_eq!(again.header.queue_id, queue().queue_id);
    stop.cancel();
    drop(again);
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("shutdown ends").unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_orderly_queue_whose_lock_cannot_be_renewed_stops_within_the_lock_lifetime() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, _calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Orderly, Arc::clone(&broker), listener, |_| {});
    let (_commands, command_rx) = mpsc::channel(1);
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
    next(&mut pulls).await.empty(crate::client::PullStatus::NoNewMsg, 0, 0);
    // The broker stops granting locks: renewals fail from now on.
    broker.fail_locks.store(true, Ordering::SeqCst);
    let failing_since = tokio::time::Instant::now();
    // Pulls go on while the last granted lock is fresh, and stop once it is older than the
    // client's 30 s lock lifetime: another member may own the queue by then.
    let mut last_pull = failing_since;
    // At most 100 s of pulls: a queue that never stops fails the assertion below, not the run.
    for _ in 0..100 {
        let Ok(Some(pull)) = tokio::time::timeout(Duration::from_secs(40), pulls.recv()).await
        else {
            break;
        };
        last_pull = tokio::time::Instant::now();
        // A long poll: the broker holds each pull a second before answering "nothing new".
        tokio::time::sleep(Duration::from_secs(1)).await;
        pull.empty(crate::client::PullStatus::NoNewMsg, 0, 0);
    }
    assert!(!shared.is_locked(&queue()), "the lock is no longer trusted");
    let pulled_for = last_pull - failing_since;
    assert!(
        pulled_for <= Duration::from_secs(32),
        "pulled for {pulled_for:?} after the locks started failing"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("shutdown ends").unwrap();
}

/// A new group starting at the last offset (the default) says what it skipped and how to read
/// it; one that has an offset, or starts at the first, says nothing.
#[tokio::test(start_paused = true)]
async fn a_new_group_starting_at_the_last_offset_says_what_it_skipped() {
    use crate::protocol::body::ConsumeFromWhere;
    for (from, stored, notice) in [
        (ConsumeFromWhere::LastOffset, None, true),
        (ConsumeFromWhere::LastOffset, Some(9), false),
        (ConsumeFromWhere::FirstOffset, None, false),
    ] {
        let (broker, mut pulls) = ScriptedBroker::new();
        *broker.queue_range.lock().unwrap() = 5..22;
        *broker.stored_offset.lock().unwrap() = stored.map(crate::protocol::QueueOffset);
        let (listener, _calls) = ScriptedListener::new();
        let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |c| {
            c.consume_from_where = from;
        });
        let (_commands, command_rx) = mpsc::channel(1);
        let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
        let run =
            tokio::spawn(scheduler::run(Arc::clone(&shared), command_rx, stop.clone(), abort));
        let first = next(&mut pulls).await;
        let expected_start = match (stored, notice) {
            (Some(offset), _) => offset,
            (None, true) => 22,
            (None, false) => 0,
        };
        assert_eq!(first.header.queue_offset.0, expected_start, "{from:?} {stored:?}");
        match shared.skip_notice.get() {
            Some(text) if notice => {
                assert!(text.contains("skipped 17 message(s) already in T (1 queue(s))"), "{text}");
                assert!(text.contains("consume_from = \"first\""), "{text}");
            }
            None if !notice => {}
            other => panic!("{from:?} {stored:?}: notice {other:?}"),
        }
        stop.cancel();
        drop(first);
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("shutdown ends").unwrap();
    }
}
