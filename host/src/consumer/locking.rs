//! Orderly consumption's broker-side queue locks (reference 2.9, 4.7): lock a queue before
//! pulling it, renew every lock periodically, release on removal and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::shared::Shared;
use crate::protocol::MessageQueue;
use crate::protocol::body::{LockBatchRequestBody, UnlockBatchRequestBody};

/// Java's LOCK/UNLOCK RPC timeout.
const LOCK_TIMEOUT: Duration = Duration::from_secs(1);

fn by_broker(queues: &BTreeSet<MessageQueue>) -> BTreeMap<String, BTreeSet<MessageQueue>> {
    let mut out: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
    for q in queues {
        out.entry(q.broker_name.clone()).or_default().insert(q.clone());
    }
    out
}

/// Locks `queues` on their masters, records which are held, and returns those.
pub(crate) async fn lock(
    shared: &Shared,
    queues: &BTreeSet<MessageQueue>,
) -> BTreeSet<MessageQueue> {
    let mut held = BTreeSet::new();
    for (broker, mqs) in by_broker(queues) {
        let Some(addr) = shared.routes.master_addr(&broker) else {
            for q in &mqs {
                shared.set_locked(q, false);
            }
            continue;
        };
        let body = LockBatchRequestBody {
            consumer_group: shared.group.to_string(),
            client_id: shared.client_id.clone(),
            only_this_broker: false,
            mq_set: mqs.clone(),
        };
        match shared.broker.lock_batch(&addr, &body, LOCK_TIMEOUT).await {
            Ok(locked) => {
                for q in &mqs {
                    let ok = locked.contains(q);
                    shared.set_locked(q, ok);
                    if ok {
                        held.insert(q.clone());
                    } else {
                        tracing::debug!(queue = %q, "queue lock held by another client");
                    }
                }
            }
            // A failed renewal leaves the old lock time: it expires on its own after 30 s.
            Err(e) => tracing::warn!(%addr, error = %e, "locking queues failed"),
        }
    }
    held
}

/// Releases `queues` (oneway while rebalancing, confirmed at shutdown, as Java does).
pub(crate) async fn unlock(shared: &Shared, queues: &BTreeSet<MessageQueue>, oneway: bool) {
    for (broker, mqs) in by_broker(queues) {
        for q in &mqs {
            shared.set_locked(q, false);
        }
        let Some(addr) = shared.routes.master_addr(&broker) else { continue };
        let body = UnlockBatchRequestBody {
            consumer_group: shared.group.to_string(),
            client_id: shared.client_id.clone(),
            only_this_broker: false,
            mq_set: mqs,
        };
        if let Err(e) = shared.broker.unlock_batch(&addr, &body, oneway, LOCK_TIMEOUT).await {
            tracing::warn!(%addr, error = %e, "unlocking queues failed");
        }
    }
}
