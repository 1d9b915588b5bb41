//! Which POP tasks a topic needs, by the consumer's request mode (Java `RebalanceImpl` with
//! `clientRebalance = false`: QUERY_ASSIGNMENT instead of client-side allocation).

use std::collections::{BTreeMap, BTreeSet};

use crate::consumer::config::RequestMode;
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
    match shared.config.request_mode {
        RequestMode::Pop => {
            let queues = shared.routes.subscribe_queues(topic)?;
            Some(pop_all_queues(&queues))
        }
        RequestMode::Broker | RequestMode::Pull => query(shared, topic).await,
    }
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
}
