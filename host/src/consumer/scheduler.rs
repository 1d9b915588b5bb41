//! The consumer's one background task besides the queue tasks: route refresh, heartbeats,
//! offset persistence and rebalance, on Java's intervals (reference 4.1), plus shutdown.
//!
//! It owns the [`Rebalancer`], so starting and stopping queue tasks is never concurrent with
//! itself.

use std::sync::Arc;

use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use std::collections::BTreeSet;

use tokio::sync::{mpsc, watch};

use super::handler::SchedulerCommand;
use super::locking;
use super::policy;
use super::rebalance::Rebalancer;
use super::shared::Shared;
use crate::protocol::MessageQueue;
use crate::protocol::body::{ConsumeType, ConsumerData, HeartbeatData};
use crate::protocol::header::UnregisterClientRequestHeader;

/// Runs until `stop`, then shuts the consumer down in Java's order (reference 4.12), letting
/// running listener calls finish until the drain deadline.
///
/// `abort` is the queue tasks' root: cancelling it ends them at once, with no drain (a consumer
/// dropped without shutdown). It must not be `stop` or a parent of it: a graceful stop that
/// reached the queue tasks as a cancellation would abort the very calls it should drain.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<SchedulerCommand>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let cfg = &shared.config;
    let now = Instant::now();
    let mut routes =
        interval_at(now + cfg.poll_name_server_interval, cfg.poll_name_server_interval);
    let mut heartbeat =
        interval_at(now + cfg.heartbeat_broker_interval, cfg.heartbeat_broker_interval);
    let mut persist = interval_at(
        now + cfg.persist_consumer_offset_interval,
        cfg.persist_consumer_offset_interval,
    );
    let mut rebalance = interval_at(now + cfg.rebalance_interval, cfg.rebalance_interval);
    for t in [&mut routes, &mut heartbeat, &mut persist, &mut rebalance] {
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let queues_cancel = abort.child_token();
    let (mut rebalancer, owned_rx) = Rebalancer::new();
    let keeper = shared
        .needs_locks()
        .then(|| tokio::spawn(keep_locks(Arc::clone(&shared), owned_rx, stop.child_token())));
    // Start-up already fetched routes and sent a heartbeat; rebalance at once.
    rebalance_pass(&shared, &mut rebalancer, &queues_cancel).await;
    let mut missing = MissingRoutes::default();
    missing.schedule(&shared);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = routes.tick() => {
                refresh_routes(&shared).await;
                missing.schedule(&shared);
            }
            _ = sleep_until(missing.next.unwrap_or_else(Instant::now)), if missing.next.is_some() => {
                if refresh_missing_routes(&shared).await {
                    // The topic's broker may never have had a heartbeat from us (a consumer
                    // whose topics all lacked routes at start knew no broker): it lists only
                    // members it knows, and creates `%RETRY%<group>` on that heartbeat. So
                    // heartbeat first, then rebalance, and look for the rest (that retry
                    // topic) from 1 s again: progress resets the backoff.
                    send_heartbeats(&shared).await;
                    rebalance_pass(&shared, &mut rebalancer, &queues_cancel).await;
                    missing = MissingRoutes::default();
                }
                missing.schedule(&shared);
            }
            _ = heartbeat.tick() => send_heartbeats(&shared).await,
            _ = persist.tick() => persist_offsets(&shared, &rebalancer).await,
            _ = rebalance.tick() => rebalance_pass(&shared, &mut rebalancer, &queues_cancel).await,
            Some(command) = commands.recv() => match command {
                SchedulerCommand::ResetOffsets(table) => {
                    rebalancer.reset_offsets(&shared, table, &queues_cancel).await;
                }
            },
            _ = shared.rebalance_now.notified() => {
                rebalance_pass(&shared, &mut rebalancer, &queues_cancel).await;
                rebalance.reset();
            }
        }
    }
    // The keeper stops with `stop`; wait for it so it cannot renew a lock after the unlock.
    if let Some(keeper) = keeper {
        let _ = keeper.await;
    }
    shutdown(&shared, &mut rebalancer).await;
}

/// Orderly: renews the lock of every owned queue (Java: first after 1 s, then every
/// `lock_interval`, 20 s), in a task of its own.
///
/// Why not in the scheduler loop: a queue's lock lapses 30 s after its last renewal, and that
/// loop also waits on heartbeats, member lists, offset queries and queue removals — against a
/// black-holed broker each costs its whole timeout, and together they can outlast 30 s, pausing
/// healthy orderly queues on other brokers. Here a renewal waits only on lock requests, each
/// bounded by its 1 s timeout.
async fn keep_locks(
    shared: Arc<Shared>,
    mut owned: watch::Receiver<BTreeSet<MessageQueue>>,
    stop: CancellationToken,
) {
    let mut relock =
        interval_at(Instant::now() + Duration::from_secs(1), shared.config.lock_interval);
    relock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = relock.tick() => {
                let queues = owned.borrow_and_update().clone();
                if !queues.is_empty() {
                    locking::lock(&shared, &queues).await;
                }
            }
        }
    }
}

async fn rebalance_pass(
    shared: &Arc<Shared>,
    rebalancer: &mut Rebalancer,
    cancel: &CancellationToken,
) {
    if rebalancer.rebalance(shared, cancel).await {
        // Java's messageQueueChanged: tell the brokers at once.
        send_heartbeats(shared).await;
    }
}

/// When to look again for subscribed topics that have no route yet, sooner than the 30 s poll.
///
/// Why: a new group's `%RETRY%<group>` topic is created by the broker on the group's first
/// heartbeat (or send-back), and with the poll alone its queues were first assigned up to 30 s
/// later, so a new group's retries did not come back for that long. A missing route is asked for
/// again after 1 s, then 2, 4, … up to the poll interval ([`policy::missing_route_delay`]).
#[derive(Debug, Default)]
struct MissingRoutes {
    next: Option<Instant>,
    attempts: u32,
}

impl MissingRoutes {
    fn schedule(&mut self, shared: &Shared) {
        if shared.topics().iter().all(|t| shared.routes.has_route(t)) {
            *self = Self::default();
            return;
        }
        let delay =
            policy::missing_route_delay(self.attempts, shared.config.poll_name_server_interval);
        self.next = Some(Instant::now() + delay);
        self.attempts = self.attempts.saturating_add(1);
    }
}

/// Refreshes the subscribed topics that have no route; returns whether one now has.
async fn refresh_missing_routes(shared: &Shared) -> bool {
    let mut found = false;
    for topic in shared.topics() {
        if shared.routes.has_route(&topic) {
            continue;
        }
        match shared.routes.refresh(&shared.namesrv, &topic).await {
            Ok(_) => found |= shared.routes.has_route(&topic),
            Err(e) => tracing::debug!(topic, error = %e, "route lookup failed"),
        }
    }
    found
}

/// Refreshes the route of every subscribed topic (a missing `%RETRY%` route is normal until the
/// broker creates it on our first heartbeat).
pub(crate) async fn refresh_routes(shared: &Shared) {
    for topic in shared.topics() {
        if let Err(e) = shared.routes.refresh(&shared.namesrv, &topic).await {
            tracing::warn!(topic, error = %e, "route refresh failed");
        }
    }
}

/// The heartbeat body: this client's one consumer group with all its subscriptions.
pub(crate) fn heartbeat_data(shared: &Shared) -> HeartbeatData {
    HeartbeatData {
        client_id: shared.client_id.clone(),
        consumer_data_set: vec![ConsumerData {
            group_name: shared.group.to_string(),
            consume_type: ConsumeType::Passively,
            message_model: shared.config.message_model,
            consume_from_where: shared.config.consume_from_where,
            subscription_data_set: shared.subscription_list(),
            unit_mode: false,
        }],
        ..Default::default()
    }
}

/// Heartbeats every known broker address (masters and slaves).
pub(crate) async fn send_heartbeats(shared: &Shared) {
    let data = heartbeat_data(shared);
    for addr in shared.routes.all_broker_addrs() {
        if let Err(e) =
            shared.broker.heartbeat(&addr, &data, shared.config.mq_client_api_timeout).await
        {
            tracing::warn!(%addr, error = %e, "heartbeat failed");
        }
    }
}

async fn persist_offsets(shared: &Shared, rebalancer: &Rebalancer) {
    let owned = rebalancer.owned();
    if let Err(e) = shared.offsets.persist_all(&owned).await {
        tracing::warn!(error = %e, "persisting offsets failed");
    }
}

/// Java's shutdown order: stop consuming (draining in flight until the deadline), persist every
/// offset — synchronously here, so it has landed before we leave — then unregister.
async fn shutdown(shared: &Shared, rebalancer: &mut Rebalancer) {
    let owned = rebalancer.owned();
    let deadline = Instant::now() + shared.config.shutdown_drain_timeout;
    rebalancer.stop_all(shared, deadline).await;
    if let Err(e) = shared.offsets.persist_all_confirmed(&owned).await {
        tracing::warn!(group = %shared.group, error = %e, "final offset commit failed");
    }
    if shared.needs_locks() {
        locking::unlock(shared, &owned, false).await;
    }
    let header = UnregisterClientRequestHeader {
        client_id: shared.client_id.clone(),
        producer_group: None,
        consumer_group: Some(shared.group.to_string()),
    };
    for addr in shared.routes.all_broker_addrs() {
        if let Err(e) =
            shared.broker.unregister(&addr, &header, shared.config.mq_client_api_timeout).await
        {
            tracing::warn!(%addr, error = %e, "unregister failed");
        }
    }
    shared.broker.close_all();
}
