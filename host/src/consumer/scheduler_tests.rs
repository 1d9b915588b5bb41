//! The scheduler (rebalance, locks, shutdown) against a scripted broker and listener, under
//! tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::ConsumeMode;
use super::scheduler;
use super::testing::{Call, ScriptedBroker, ScriptedListener, next, shared};

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
