//! Which POP tasks a topic needs, by the consumer's request mode (Java `RebalanceImpl` with
//! `clientRebalance = false`: QUERY_ASSIGNMENT instead of client-side allocation).

use std::collections::{BTreeMap, BTreeSet};

use crate::consumer::config::{ConsumeMode, RequestMode};
use crate::consumer::policy::is_retry_topic;
use crate::consumer::shared::Shared;
use crate::protocol::body::{MessageRequestMode, QueryAssignmentRequestBody};
use crate::protocol::{MessageQueue, QueueId};

/// The queues this client consumes, each with how.
pub(crate) type Assignment = BTreeMap<MessageQueue, MessageRequestMode>;

/// Whether `topic`'s assignment comes from here rather than client-side allocation: every topic
/// in broker mode, every topic but the group's retry topic (always pulled) in POP mode.
pub(crate) fn decides(shared: &Shared, topic: &str) -> bool {
    match shared.config.request_mode {
        RequestMode::Pull => false,
        RequestMode::Pop => !is_retry_topic(topic),
        RequestMode::Broker => true,
    }
}

/// The assignment of `topic`; `None` to leave the topic as it is (no route, or the broker did
/// not answer).
pub(crate) async fn assignment(shared: &Shared, topic: &str) -> Option<Assignment> {
    let orderly = shared.consume_mode() == ConsumeMode::Orderly;
    match shared.config.request_mode {
        RequestMode::Pop => {
            let queues = shared.routes.subscribe_queues(topic)?;
            Some(if orderly { pop_each_queue(&queues) } else { pop_all_queues(&queues) })
        }
        RequestMode::Broker | RequestMode::Pull => {
            let assigned = query(shared, topic).await?;
            if !orderly {
                return Some(assigned);
            }
            let queues = shared.routes.subscribe_queues(topic)?;
            Some(split_all_queue_pops(assigned, &queues))
        }
    }
}

/// Orderly POP: one assignment per queue. The broker serialises each queue for the whole group
/// (it hands out a queue's next messages only once the earlier ones are acked or visible
/// again), and an ack wakes only a pop suspended on that very queue ("all queue pop can not
/// notify specified queue pop", `PopMessageProcessor`): popping every queue on its own lets
/// each member take a queue up as soon as the group may, and keeps one queue's retry from
/// holding the others back.
pub(crate) fn pop_each_queue(queues: &[MessageQueue]) -> Assignment {
    queues.iter().map(|q| (q.clone(), MessageRequestMode::Pop)).collect()
}

/// The broker's assignment with every all-queues pop (queue id -1) replaced by that broker's
/// queues, for orderly POP.
fn split_all_queue_pops(assigned: Assignment, queues: &[MessageQueue]) -> Assignment {
    assigned
        .into_iter()
        .flat_map(|(queue, mode)| {
            if mode == MessageRequestMode::Pop && queue.queue_id == QueueId(-1) {
                let of_broker: Vec<_> =
                    queues.iter().filter(|q| q.broker_name == queue.broker_name).cloned().collect();
                of_broker.into_iter().map(|q| (q, MessageRequestMode::Pop)).collect::<Vec<_>>()
            } else {
                vec![(queue, mode)]
            }
        })
        .collect()
}

/// POP from every queue of each broker: one assignment per broker, queue id -1 (what a 5.3
/// broker assigns in POP mode with `popShareQueueNum` 0).
pub(crate) fn pop_all_queues(queues: &[MessageQueue]) -> Assignment {
    let brokers: BTreeSet<&str> = queues.iter().map(|q| q.broker_name.as_str()).collect();
    brokers
        .into_iter()
        .map(|b| (MessageQueue::new(&queues[0].topic, b, QueueId(-1)), MessageRequestMode::Pop))
        .collect()
}

/// QUERY_ASSIGNMENT to a broker of `topic`.
async fn query(shared: &Shared, topic: &str) -> Option<Assignment> {
    let addr = shared.routes.any_broker_of(topic)?;
    let body = QueryAssignmentRequestBody {
        topic: topic.to_owned(),
        consumer_group: shared.group.to_string(),
        client_id: shared.client_id.clone(),
        strategy_name: shared.config.allocate_strategy.name().to_owned(),
        message_model: shared.config.message_model,
    };
    match shared.broker.query_assignment(&addr, &body, shared.config.mq_client_api_timeout).await {
        Ok(list) => Some(list.into_iter().map(|a| (a.message_queue, a.mode)).collect()),
        Err(e) => {
            tracing::warn!(topic, %addr, error = %e, "QUERY_ASSIGNMENT failed; keeping the topic's queues as they are");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_mode_pops_every_broker_once() {
        let q = |b: &str, id| MessageQueue::new("T", b, QueueId(id));
        let queues = [q("b", 1), q("a", 0), q("a", 1), q("b", 0)];
        let got: Vec<_> = pop_all_queues(&queues).into_iter().collect();
        assert_eq!(
            got,
            [(q("a", -1), MessageRequestMode::Pop), (q("b", -1), MessageRequestMode::Pop)]
        );
    }

    #[test]
    fn orderly_pop_mode_pops_each_queue() {
        let q = |b: &str, id| MessageQueue::new("T", b, QueueId(id));
        let pop = MessageRequestMode::Pop;
        let queues = [q("b", 0), q("a", 0), q("a", 1)];
        let got: Vec<_> = pop_each_queue(&queues).into_iter().collect();
        assert_eq!(got, [(q("a", 0), pop), (q("a", 1), pop), (q("b", 0), pop)]);
        // The broker's answer: pop all of a, pull b's queue 0.
        let pull = MessageRequestMode::Pull;
        let assigned = Assignment::from([(q("a", -1), pop), (q("b", 0), pull)]);
        let got: Vec<_> = split_all_queue_pops(assigned, &queues).into_iter().collect();
        assert_eq!(got, [(q("a", 0), pop), (q("a", 1), pop), (q("b", 0), pull)]);
    }
}
