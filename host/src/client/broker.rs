//! Broker RPCs a push consumer makes (reference 2.3–2.10), one typed method per request code.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{ClientError, body_error, broker_error, call, call_ok, expect_code, header_of};
use crate::protocol::body::{
    CheckClientRequestBody, GetConsumerListByGroupResponseBody, HeartbeatData,
    LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody,
};
use crate::protocol::header::{
    ConsumerSendMsgBackRequestHeader, GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    SearchOffsetRequestHeader, UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::message::{MessageDecodeError, MessageExt, decode_messages_prefix};
use crate::protocol::{MessageQueue, QueueOffset, RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::ConnectionPool;

/// How a pull ended, from the response code (reference 2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// SUCCESS: messages in the body.
    Found,
    /// PULL_NOT_FOUND: nothing new (after the long poll).
    NoNewMsg,
    /// PULL_RETRY_IMMEDIATELY: the range scanned held nothing matching the filter.
    NoMatchedMsg,
    /// PULL_OFFSET_MOVED: the requested offset is outside the queue; use `next_begin_offset`.
    OffsetIllegal,
}

impl PullStatus {
    /// The status for a response code, or `None` when the code is an error.
    pub fn from_code(code: ResponseCode) -> Option<Self> {
        match code {
            ResponseCode::Success => Some(Self::Found),
            ResponseCode::PullNotFound => Some(Self::NoNewMsg),
            ResponseCode::PullRetryImmediately => Some(Self::NoMatchedMsg),
            ResponseCode::PullOffsetMoved => Some(Self::OffsetIllegal),
            _ => None,
        }
    }
}

/// A decoded pull response.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub status: PullStatus,
    pub next_begin_offset: QueueOffset,
    pub min_offset: QueueOffset,
    pub max_offset: QueueOffset,
    /// Which replica to pull this queue from next time (0 = master).
    pub suggest_which_broker_id: i64,
    /// 5.x static topics: added to every message's queue offset already.
    pub offset_delta: Option<i64>,
    /// The stored messages (empty unless `Found`), unfiltered: with `undecodable`, those
    /// before the first record that could not be decoded.
    pub messages: Vec<MessageExt>,
    /// The first record of the body that could not be decoded; the records after it are not
    /// in `messages` either.
    pub undecodable: Option<MessageDecodeError>,
}

/// Broker calls over a shared connection pool. Every method takes the broker address, because
/// which replica to use is the caller's policy (reference 4.2).
#[derive(Debug, Clone)]
pub struct BrokerClient {
    pool: ConnectionPool,
}

impl BrokerClient {
    /// Calls over `pool`; the pool's request handler receives broker-initiated requests.
    pub fn new(pool: ConnectionPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// HEART_BEAT (34).
    pub async fn heartbeat(
        &self,
        addr: &str,
        data: &HeartbeatData,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request_without_header(RequestCode::HeartBeat)
            .with_body(data.encode());
        call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
    }

    /// UNREGISTER_CLIENT (35).
    pub async fn unregister(
        &self,
        addr: &str,
        header: &UnregisterClientRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request(RequestCode::UnregisterClient, header);
        call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38): the client ids of the group's live members.
    pub async fn consumer_ids(
        &self,
        addr: &str,
        group: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ClientError> {
        let request = RequestCode::GetConsumerListByGroup;
        let header = GetConsumerListByGroupRequestHeader { consumer_group: group.to_owned() };
        let resp =
            call_ok(&self.pool, addr, RemotingCommand::request(request, &header), timeout).await?;
        let body = GetConsumerListByGroupResponseBody::decode(&resp.body)
            .map_err(body_error(addr, request))?;
        Ok(body.consumer_id_list)
    }

    /// QUERY_CONSUMER_OFFSET (14). `Ok(None)` when the group has no offset (QUERY_NOT_FOUND).
    pub async fn query_offset(
        &self,
        addr: &str,
        header: &QueryConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<Option<QueueOffset>, ClientError> {
        let request = RequestCode::QueryConsumerOffset;
        let resp =
            call(&self.pool, addr, RemotingCommand::request(request, header), timeout).await?;
        match resp.response_code() {
            ResponseCode::Success => {
                Ok(Some(header_of::<OffsetResponseHeader>(addr, request, &resp)?.offset))
            }
            ResponseCode::QueryNotFound => Ok(None),
            _ => Err(broker_error(addr, request, &resp)),
        }
    }

    /// UPDATE_CONSUMER_OFFSET (15) as Java sends it from the periodic persist: oneway.
    pub async fn update_offset_oneway(
        &self,
        addr: &str,
        header: &UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request(RequestCode::UpdateConsumerOffset, header);
        Ok(self.pool.oneway(addr, cmd, timeout).await?)
    }

    /// UPDATE_CONSUMER_OFFSET (15), waiting for the broker's answer.
    pub async fn update_offset(
        &self,
        addr: &str,
        header: &UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request(RequestCode::UpdateConsumerOffset, header);
        call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
    }

    /// PULL_MESSAGE (11). `timeout` must exceed the header's suspend time (Java: 30 s vs 15 s).
    pub async fn pull(
        &self,
        addr: &str,
        header: &PullMessageRequestHeader,
        timeout: Duration,
    ) -> Result<PullResult, ClientError> {
        let request = RequestCode::PullMessage;
        let resp =
            call(&self.pool, addr, RemotingCommand::request(request, header), timeout).await?;
        let Some(status) = PullStatus::from_code(resp.response_code()) else {
            return Err(broker_error(addr, request, &resp));
        };
        let h: PullMessageResponseHeader = header_of(addr, request, &resp)?;
        // The good prefix and the first broken record: the caller delivers the one and
        // isolates the other, rather than failing (and retrying forever) the whole pull.
        let (mut messages, undecodable) = if status == PullStatus::Found {
            decode_messages_prefix(resp.body.clone())
        } else {
            (Vec::new(), None)
        };
        if let Some(delta) = h.offset_delta {
            for m in &mut messages {
                m.queue_offset = QueueOffset(m.queue_offset.0 + delta);
            }
        }
        Ok(PullResult {
            status,
            next_begin_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            suggest_which_broker_id: h.suggest_which_broker_id,
            offset_delta: h.offset_delta,
            messages,
            undecodable,
        })
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub async fn search_offset(
        &self,
        addr: &str,
        header: &SearchOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<QueueOffset, ClientError> {
        self.offset_call(
            addr,
            RemotingCommand::request(RequestCode::SearchOffsetByTimestamp, header),
            timeout,
        )
        .await
    }

    /// GET_MAX_OFFSET (30): one past the last message in the queue.
    pub async fn max_offset(
        &self,
        addr: &str,
        header: &GetMaxOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<QueueOffset, ClientError> {
        self.offset_call(addr, RemotingCommand::request(RequestCode::GetMaxOffset, header), timeout)
            .await
    }

    /// GET_MIN_OFFSET (31).
    pub async fn min_offset(
        &self,
        addr: &str,
        header: &GetMinOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<QueueOffset, ClientError> {
        self.offset_call(addr, RemotingCommand::request(RequestCode::GetMinOffset, header), timeout)
            .await
    }

    async fn offset_call(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<QueueOffset, ClientError> {
        let request = cmd.request_code();
        let resp = call_ok(&self.pool, addr, cmd, timeout).await?;
        Ok(header_of::<OffsetResponseHeader>(addr, request, &resp)?.offset)
    }

    /// LOCK_BATCH_MQ (41): returns the subset of queues this client now holds.
    pub async fn lock_batch(
        &self,
        addr: &str,
        body: &LockBatchRequestBody,
        timeout: Duration,
    ) -> Result<BTreeSet<MessageQueue>, ClientError> {
        let request = RequestCode::LockBatchMq;
        let cmd = RemotingCommand::request_without_header(request).with_body(body.encode());
        let resp = call_ok(&self.pool, addr, cmd, timeout).await?;
        let locked =
            LockBatchResponseBody::decode(&resp.body).map_err(body_error(addr, request))?;
        Ok(locked.lock_ok_mq_set)
    }

    /// UNLOCK_BATCH_MQ (42): oneway while rebalancing, synchronous at shutdown (Java).
    pub async fn unlock_batch(
        &self,
        addr: &str,
        body: &UnlockBatchRequestBody,
        oneway: bool,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request_without_header(RequestCode::UnlockBatchMq)
            .with_body(body.encode());
        if oneway {
            Ok(self.pool.oneway(addr, cmd, timeout).await?)
        } else {
            call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
        }
    }

    /// CONSUMER_SEND_MSG_BACK (36): hands a failed message back for a delayed retry or the DLQ.
    pub async fn send_back(
        &self,
        addr: &str,
        header: &ConsumerSendMsgBackRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request(RequestCode::ConsumerSendMsgBack, header);
        call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
    }

    /// CHECK_CLIENT_CONFIG (46): whether the broker accepts a SQL92 subscription (Java checks
    /// before subscribing with one; the broker says no when `enablePropertyFilter` is off).
    pub async fn check_client_config(
        &self,
        addr: &str,
        body: &CheckClientRequestBody,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request_without_header(RequestCode::CheckClientConfig)
            .with_body(body.encode());
        call_ok(&self.pool, addr, cmd, timeout).await.map(drop)
    }

    /// Any request with a raw body whose response must be one of `ok` (used by the producer and
    /// admin calls).
    pub(crate) async fn request_expecting(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        ok: &[ResponseCode],
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let request = cmd.request_code();
        let resp = call(&self.pool, addr, cmd, timeout).await?;
        expect_code(addr, request, resp, ok)
    }
}
