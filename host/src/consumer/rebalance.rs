//! The reconciler: turns "which queues should this client own" (the pure allocation in
//! [`super::allocate`]) into started and stopped queue tasks (reference 4.3).
//!
//! It is owned by the scheduler task, so its table of queue tasks needs no lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::allocate::allocate;
use super::locking;
use super::pop;
use super::queue_task::{QueueTaskHandle, StopReason, start_offset};
use super::shared::Shared;
use crate::protocol::MessageQueue;
use crate::protocol::body::{MessageModel, MessageRequestMode};

/// The queue tasks this client runs.
#[derive(Debug)]
pub(crate) struct Rebalancer {
    /// Each owned queue's task and whether it pulls or pops.
    owned: BTreeMap<MessageQueue, (QueueTaskHandle, MessageRequestMode)>,
    /// The owned pulled queues as the lock keeper sees them (an orderly POP queue has no lock:
    /// the broker serialises it). Updated on every change, and on removal before the unlock, so
    /// the keeper cannot renew the lock of a queue already given up.
    published: watch::Sender<BTreeSet<MessageQueue>>,
}

impl Rebalancer {
    /// A rebalancer that owns nothing yet, and the watch of what it owns.
    pub fn new() -> (Self, watch::Receiver<BTreeSet<MessageQueue>>) {
        let (published, owned) = watch::channel(BTreeSet::new());
        (Self { owned: BTreeMap::new(), published }, owned)
    }

    fn publish(&self) {
        let pulled = self
            .owned
            .iter()
            .filter(|(_, (_, mode))| *mode == MessageRequestMode::Pull)
            .map(|(q, _)| q.clone())
            .collect();
        self.published.send_replace(pulled);
    }

    /// Queues owned right now.
    pub fn owned(&self) -> BTreeSet<MessageQueue> {
        self.owned.keys().cloned().collect()
    }

    /// One pass over every subscribed topic. Returns true if the owned set changed.
    pub async fn rebalance(&mut self, shared: &Arc<Shared>, cancel: &CancellationToken) -> bool {
        let topics = shared.topics();
        let mut changed = false;
        let mut placed_all = true;
        for topic in &topics {
            let target = if pop::assign::decides(shared, topic) {
                pop::assign::assignment(shared, topic).await
            } else {
                self.target_for(shared, topic)
                    .await
                    .map(|set| set.into_iter().map(|q| (q, MessageRequestMode::Pull)).collect())
            };
            match target {
                Some(target) => {
                    let wanted: Vec<MessageQueue> = target.keys().cloned().collect();
                    changed |= self.reconcile(shared, topic, target, cancel).await;
                    placed_all &= wanted.iter().all(|q| self.owned.contains_key(q));
                }
                None => placed_all = false,
            }
        }
        shared.ready.store(placed_all, std::sync::atomic::Ordering::Relaxed);
        // Queues of topics no longer subscribed (reference 4.3 step 7).
        let stale: Vec<MessageQueue> =
            self.owned.keys().filter(|q| !topics.contains(&q.topic)).cloned().collect();
        for queue in stale {
            changed = true;
            self.remove(shared, &queue, StopReason::Removed).await;
        }
        changed
    }

    /// The queues of `topic` this client should own; `None` to leave the topic as it is (no
    /// route or no member list yet).
    async fn target_for(&self, shared: &Shared, topic: &str) -> Option<BTreeSet<MessageQueue>> {
        let mq_all = shared.routes.subscribe_queues(topic)?;
        if shared.config.message_model == MessageModel::Broadcasting {
            return Some(mq_all.into_iter().collect());
        }
        let addr = shared.routes.any_broker_of(topic)?;
        let cids = match shared
            .broker
            .consumer_ids(&addr, &shared.group, shared.config.mq_client_api_timeout)
            .await
        {
            Ok(cids) if !cids.is_empty() => cids,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(topic, error = %e, "no member list; skipping this topic");
                return None;
            }
        };
        let mut mq_all = mq_all;
        mq_all.sort();
        let mut cids = cids;
        cids.sort();
        let mine = allocate(
            shared.config.allocate_strategy,
            &shared.group,
            &shared.client_id,
            &mq_all,
            &cids,
        );
        Some(mine.into_iter().collect())
    }

    async fn reconcile(
        &mut self,
        shared: &Arc<Shared>,
        topic: &str,
        target: pop::assign::Assignment,
        cancel: &CancellationToken,
    ) -> bool {
        let mut changed = false;
        // Gone, or switched between pull and POP (the admin changed the request mode).
        let gone: Vec<MessageQueue> = self
            .owned
            .iter()
            .filter(|(q, (_, mode))| q.topic == topic && target.get(*q) != Some(mode))
            .map(|(q, _)| q.clone())
            .collect();
        for queue in gone {
            changed = true;
            tracing::info!(group = %shared.group, %queue, "queue rebalanced away");
            self.remove(shared, &queue, StopReason::Removed).await;
        }
        let mut skipped = Skipped::default();
        for (queue, mode) in target {
            if let Some((handle, _)) = self.owned.get(&queue) {
                if !handle.is_finished() {
                    continue;
                }
                // Java drops a process queue whose pulls stopped (isPullExpired) and re-adds
                // it; here a queue task only ends early by a bug (a panic): restart the queue
                // from its stored offset rather than leave it unconsumed until a restart.
                tracing::error!(group = %shared.group, %queue, "queue task ended unexpectedly; restarting the queue");
                self.remove(shared, &queue, StopReason::Removed).await;
            }
            if mode == MessageRequestMode::Pop {
                tracing::info!(group = %shared.group, %queue, "POP assignment");
                let handle = pop::task::spawn(Arc::clone(shared), queue.clone(), cancel);
                self.adopt_handle(shared, queue, handle, mode);
                changed = true;
                continue;
            }
            // Orderly: the broker lock comes first; a queue locked by another member is skipped
            // and retried at the next rebalance.
            if shared.needs_locks()
                && locking::lock(shared, &BTreeSet::from([queue.clone()])).await.is_empty()
            {
                continue;
            }
            // Java drops any stale in-memory offset before computing where to start.
            shared.offsets.remove(&queue);
            match start_offset(shared, &queue).await {
                Ok(start) => {
                    tracing::info!(group = %shared.group, %queue, start = %start.offset, "queue assigned");
                    skipped.add(start.skipped);
                    self.adopt(shared, queue, start.offset, cancel);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(group = %shared.group, %queue, error = %e, "cannot compute the start offset; retrying at the next rebalance");
                    // Held but unused, the lock would keep every other member off the queue
                    // for the broker's 60 s.
                    if shared.needs_locks() {
                        locking::unlock(shared, &BTreeSet::from([queue]), true).await;
                    }
                }
            }
        }
        skipped.report(shared, topic);
        changed
    }

    /// Starts the task of a newly owned queue and publishes its counters.
    fn adopt(
        &mut self,
        shared: &Arc<Shared>,
        queue: MessageQueue,
        start: crate::protocol::QueueOffset,
        cancel: &CancellationToken,
    ) {
        let handle = QueueTaskHandle::spawn(Arc::clone(shared), queue.clone(), start, cancel);
        self.adopt_handle(shared, queue, handle, MessageRequestMode::Pull);
    }

    /// Records a started task and publishes its counters.
    fn adopt_handle(
        &mut self,
        shared: &Shared,
        queue: MessageQueue,
        handle: QueueTaskHandle,
        mode: MessageRequestMode,
    ) {
        shared
            .stats
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.clone(), Arc::clone(&handle.stats));
        self.owned.insert(queue, (handle, mode));
        self.publish();
    }

    async fn remove(&mut self, shared: &Shared, queue: &MessageQueue, reason: StopReason) {
        let mut pulled = true;
        if let Some((handle, mode)) = self.owned.remove(queue) {
            self.publish();
            handle.stop(reason).await;
            pulled = mode == MessageRequestMode::Pull;
        }
        shared.stats.write().unwrap_or_else(PoisonError::into_inner).remove(queue);
        if reason == StopReason::Removed {
            shared.offsets.remove(queue);
            if shared.needs_locks() && pulled {
                locking::unlock(shared, &BTreeSet::from([queue.clone()]), true).await;
            }
        }
    }

    /// Admin offset reset (RESET_CONSUMER_CLIENT_OFFSET): each owned queue in `table` is
    /// stopped (pending results discarded, as Java drops the process queue), its offset set
    /// and committed, and restarted from there. Queues not owned only get the offset recorded
    /// and committed, for whichever member owns them next.
    pub async fn reset_offsets(
        &mut self,
        shared: &Arc<Shared>,
        table: BTreeMap<MessageQueue, crate::protocol::QueueOffset>,
        cancel: &CancellationToken,
    ) {
        for (queue, offset) in table {
            // A POP assignment has no client offset: the broker's consume offset is the one an
            // admin reset changes, and the broker applies it itself.
            if matches!(self.owned.get(&queue), Some((_, MessageRequestMode::Pop))) {
                continue;
            }
            let was_owned = match self.owned.remove(&queue) {
                Some((handle, _)) => {
                    self.publish();
                    handle.stop(StopReason::Removed).await;
                    true
                }
                None => false,
            };
            shared.offsets.update(&queue, offset, false);
            if let Err(e) = shared.offsets.persist(&queue).await {
                tracing::warn!(%queue, error = %e, "persisting the reset offset failed");
            }
            if !was_owned {
                shared.offsets.remove(&queue);
                continue;
            }
            tracing::info!(%queue, %offset, "queue restarted at the reset offset");
            self.adopt(shared, queue, offset, cancel);
        }
    }

    /// Stops every queue task for shutdown, letting in-flight consumption finish until
    /// `deadline`; their offsets stay in the store for the final persist.
    pub async fn stop_all(&mut self, shared: &Shared, deadline: tokio::time::Instant) {
        let handles: Vec<_> = std::mem::take(&mut self.owned).into_values().collect();
        self.publish();
        let stops = handles.into_iter().map(|(h, _)| h.stop(StopReason::Shutdown { deadline }));
        futures_join_all(stops).await;
        shared.stats.write().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Awaits every future concurrently (a tiny `join_all`, to avoid a dependency for one use).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl IntoIterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futs {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

/// What a new group skipped by starting at the last offset, over one topic's newly assigned
/// queues.
#[derive(Debug, Default)]
struct Skipped {
    messages: u64,
    queues: usize,
}

impl Skipped {
    fn add(&mut self, messages: u64) {
        if messages > 0 {
            self.messages += messages;
            self.queues += 1;
        }
    }

    /// Says once per consumer, at INFO, what was skipped and how to read it: a group that
    /// silently starts past the test data it was meant to consume looks like a broken listener.
    fn report(&self, shared: &Shared, topic: &str) {
        if self.messages == 0 {
            return;
        }
        let notice = format!(
            "group {} has no committed offset and starts at the last offset \
             (consume_from = \"last\", the default): skipped {} message(s) already in {topic} \
             ({} queue(s)); to read them, start a new group with consume_from = \"first\"",
            shared.group, self.messages, self.queues
        );
        if shared.skip_notice.set(notice.clone()).is_ok() {
            tracing::info!(group = %shared.group, topic, skipped = self.messages, "{notice}");
        }
    }
}
