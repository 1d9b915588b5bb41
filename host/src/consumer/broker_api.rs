//! The consumer core's seam to the brokers: every broker request the queue tasks, the scheduler,
//! the rebalance and the consume jobs make, behind one narrow trait.
//!
//! Why a trait: the core's behaviour under broker answers that a healthy cluster rarely gives
//! (OFFSET_MOVED backwards, a pull that never returns, a lock renewal that fails) decides whether
//! messages are lost, and such answers cannot be provoked on demand from a real broker. In
//! production the trait is [`BrokerClient`]; unit tests script a fake and run the core under
//! tokio's paused clock. Name-server lookups and the producer stay concrete: the core reads
//! routes from its [`RouteTable`](super::route::RouteTable), which tests fill directly.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::client::{BrokerClient, ClientError, PopResult, PullResult};
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
use crate::protocol::{MessageQueue, QueueOffset};

/// A broker call in flight.
pub(crate) type BrokerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// The broker requests of the consumer core. Each takes the broker address: which replica to
/// ask is the caller's policy (reference 4.2).
pub(crate) trait BrokerApi: Send + Sync + 'static {
    /// PULL_MESSAGE, long-polling; `timeout` exceeds the header's suspend time.
    fn pull<'a>(
        &'a self,
        addr: &'a str,
        header: &'a PullMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, PullResult>;

    /// CONSUMER_SEND_MSG_BACK.
    fn send_back<'a>(
        &'a self,
        addr: &'a str,
        header: &'a ConsumerSendMsgBackRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// QUERY_CONSUMER_OFFSET: `None` when the group has no offset for the queue.
    fn query_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a QueryConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, Option<QueueOffset>>;

    /// UPDATE_CONSUMER_OFFSET, oneway (the periodic persist).
    fn update_offset_oneway<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// UPDATE_CONSUMER_OFFSET, waiting for the answer.
    fn update_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// GET_MAX_OFFSET.
    fn max_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a GetMaxOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset>;

    /// GET_MIN_OFFSET: how far back a queue's messages go (what a new group starting at the
    /// max offset skips).
    fn min_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a GetMinOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset>;

    /// SEARCH_OFFSET_BY_TIMESTAMP.
    fn search_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a SearchOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset>;

    /// GET_CONSUMER_LIST_BY_GROUP.
    fn consumer_ids<'a>(
        &'a self,
        addr: &'a str,
        group: &'a str,
        timeout: Duration,
    ) -> BrokerFuture<'a, Vec<String>>;

    /// LOCK_BATCH_MQ: the subset of queues now held.
    fn lock_batch<'a>(
        &'a self,
        addr: &'a str,
        body: &'a LockBatchRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, BTreeSet<MessageQueue>>;

    /// UNLOCK_BATCH_MQ.
    fn unlock_batch<'a>(
        &'a self,
        addr: &'a str,
        body: &'a UnlockBatchRequestBody,
        oneway: bool,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// HEART_BEAT.
    fn heartbeat<'a>(
        &'a self,
        addr: &'a str,
        data: &'a HeartbeatData,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// UNREGISTER_CLIENT.
    fn unregister<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UnregisterClientRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// CHECK_CLIENT_CONFIG.
    fn check_client_config<'a>(
        &'a self,
        addr: &'a str,
        body: &'a CheckClientRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// POP_MESSAGE to `broker_name`'s master, long-polling; `timeout` exceeds the poll time.
    fn pop<'a>(
        &'a self,
        addr: &'a str,
        broker_name: &'a str,
        header: &'a PopMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, PopResult>;

    /// ACK_MESSAGE.
    fn ack<'a>(
        &'a self,
        addr: &'a str,
        header: &'a AckMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// BATCH_ACK_MESSAGE: many acks of one broker's check points in one request.
    fn batch_ack<'a>(
        &'a self,
        addr: &'a str,
        body: &'a BatchAckMessageRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// CHANGE_MESSAGE_INVISIBLETIME.
    fn change_invisible_time<'a>(
        &'a self,
        addr: &'a str,
        header: &'a ChangeInvisibleTimeRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()>;

    /// QUERY_ASSIGNMENT.
    fn query_assignment<'a>(
        &'a self,
        addr: &'a str,
        body: &'a QueryAssignmentRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, Vec<MessageQueueAssignment>>;

    /// Closes every connection (the last step of shutdown).
    fn close_all(&self);
}

impl BrokerApi for BrokerClient {
    fn pull<'a>(
        &'a self,
        addr: &'a str,
        header: &'a PullMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, PullResult> {
        Box::pin(BrokerClient::pull(self, addr, header, timeout))
    }

    fn send_back<'a>(
        &'a self,
        addr: &'a str,
        header: &'a ConsumerSendMsgBackRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::send_back(self, addr, header, timeout))
    }

    fn query_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a QueryConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, Option<QueueOffset>> {
        Box::pin(BrokerClient::query_offset(self, addr, header, timeout))
    }

    fn update_offset_oneway<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::update_offset_oneway(self, addr, header, timeout))
    }

    fn update_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::update_offset(self, addr, header, timeout))
    }

    fn max_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a GetMaxOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        Box::pin(BrokerClient::max_offset(self, addr, header, timeout))
    }

    fn min_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a GetMinOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        Box::pin(BrokerClient::min_offset(self, addr, header, timeout))
    }

    fn search_offset<'a>(
        &'a self,
        addr: &'a str,
        header: &'a SearchOffsetRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, QueueOffset> {
        Box::pin(BrokerClient::search_offset(self, addr, header, timeout))
    }

    fn consumer_ids<'a>(
        &'a self,
        addr: &'a str,
        group: &'a str,
        timeout: Duration,
    ) -> BrokerFuture<'a, Vec<String>> {
        Box::pin(BrokerClient::consumer_ids(self, addr, group, timeout))
    }

    fn lock_batch<'a>(
        &'a self,
        addr: &'a str,
        body: &'a LockBatchRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, BTreeSet<MessageQueue>> {
        Box::pin(BrokerClient::lock_batch(self, addr, body, timeout))
    }

    fn unlock_batch<'a>(
        &'a self,
        addr: &'a str,
        body: &'a UnlockBatchRequestBody,
        oneway: bool,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::unlock_batch(self, addr, body, oneway, timeout))
    }

    fn heartbeat<'a>(
        &'a self,
        addr: &'a str,
        data: &'a HeartbeatData,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::heartbeat(self, addr, data, timeout))
    }

    fn unregister<'a>(
        &'a self,
        addr: &'a str,
        header: &'a UnregisterClientRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::unregister(self, addr, header, timeout))
    }

    fn check_client_config<'a>(
        &'a self,
        addr: &'a str,
        body: &'a CheckClientRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::check_client_config(self, addr, body, timeout))
    }

    fn pop<'a>(
        &'a self,
        addr: &'a str,
        broker_name: &'a str,
        header: &'a PopMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, PopResult> {
        Box::pin(BrokerClient::pop(self, addr, broker_name, header, timeout))
    }

    fn ack<'a>(
        &'a self,
        addr: &'a str,
        header: &'a AckMessageRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::ack(self, addr, header, timeout))
    }

    fn batch_ack<'a>(
        &'a self,
        addr: &'a str,
        body: &'a BatchAckMessageRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(BrokerClient::batch_ack(self, addr, body, timeout))
    }

    fn change_invisible_time<'a>(
        &'a self,
        addr: &'a str,
        header: &'a ChangeInvisibleTimeRequestHeader,
        timeout: Duration,
    ) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            BrokerClient::change_invisible_time(self, addr, header, timeout).await.map(drop)
        })
    }

    fn query_assignment<'a>(
        &'a self,
        addr: &'a str,
        body: &'a QueryAssignmentRequestBody,
        timeout: Duration,
    ) -> BrokerFuture<'a, Vec<MessageQueueAssignment>> {
        Box::pin(BrokerClient::query_assignment(self, addr, body, timeout))
    }

    fn close_all(&self) {
        self.pool().close_all();
    }
}
