//! The 5.x POP RPCs of a push consumer (Java `MQClientAPIImpl.popMessageAsync`, `ackMessageAsync`,
//! `changeInvisibleTimeAsync`, `queryAssignment`); `docs/pop.md` has the protocol.

use std::time::Duration;

use super::{BrokerClient, ClientError, body_error, broker_error, call, call_ok, header_of};
use crate::protocol::body::{
    BatchAckMessageRequestBody, MessageQueueAssignment, QueryAssignmentRequestBody,
    QueryAssignmentResponseBody,
};
use crate::protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use crate::protocol::message::{MessageDecodeError, MessageExt, decode_messages_prefix, property};
use crate::protocol::pop::{OrderCounts, PopHandle, pop_handles};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// How a pop ended, from the response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopStatus {
    /// SUCCESS: messages in the body, each now invisible to the group until acked or timed out.
    Found,
    /// PULL_NOT_FOUND / POLLING_TIMEOUT: nothing to deliver after the long poll.
    NoNewMsg,
    /// POLLING_FULL: the broker holds too many long polls; ask again later.
    PollingFull,
}

impl PopStatus {
    fn from_code(code: ResponseCode) -> Option<Self> {
        match code {
            ResponseCode::Success => Some(Self::Found),
            ResponseCode::PullNotFound | ResponseCode::PollingTimeout => Some(Self::NoNewMsg),
            ResponseCode::PollingFull => Some(Self::PollingFull),
            _ => None,
        }
    }
}

/// A message as popped, with the handle that acks it.
#[derive(Debug, Clone)]
pub struct PoppedMessage {
    /// Its topic is the one popped (a retried message's retry topic is replaced, as Java
    /// does); `POP_CK` and `1ST_POP_TIME` are set in its properties.
    pub message: MessageExt,
    pub handle: PopHandle,
}

/// A decoded pop response.
#[derive(Debug)]
pub struct PopResult {
    pub status: PopStatus,
    pub messages: Vec<PoppedMessage>,
    /// A record after `messages` that could not be decoded: it and the rest of the response
    /// become visible again after the invisible time.
    pub undecodable: Option<MessageDecodeError>,
}

impl BrokerClient {
    /// POP_MESSAGE (200050) to `broker_name`'s master at `addr`. `timeout` must exceed the
    /// header's poll time (Java: poll time + 10 s).
    pub async fn pop(
        &self,
        addr: &str,
        broker_name: &str,
        header: &PopMessageRequestHeader,
        timeout: Duration,
    ) -> Result<PopResult, ClientError> {
        let request = RequestCode::PopMessage;
        let resp =
            call(self.pool(), addr, RemotingCommand::request(request, header), timeout).await?;
        let Some(status) = PopStatus::from_code(resp.response_code()) else {
            return Err(broker_error(addr, request, &resp));
        };
        if status != PopStatus::Found {
            return Ok(PopResult { status, messages: Vec::new(), undecodable: None });
        }
        let h: PopMessageResponseHeader = header_of(addr, request, &resp)?;
        let (mut messages, undecodable) = decode_messages_prefix(resp.body.clone());
        let info_error = |source| ClientError::PopInfo { addr: addr.to_owned(), source };
        let handles = pop_handles(&messages, &h, broker_name).map_err(info_error)?;
        // An orderly pop redelivers in place, with no retry topic to count retries: the broker
        // counts them per offset (Java `processPopResponse` sets them as reconsume times).
        let counts = match (header.order, h.order_count_info.as_deref()) {
            (Some(true), Some(text)) => Some(OrderCounts::parse(text).map_err(info_error)?),
            _ => None,
        };
        let first_pop = h.pop_time.0.to_string();
        let messages = messages
            .drain(..)
            .zip(handles)
            .map(|(mut message, handle)| {
                if let Some(times) = counts.as_ref().and_then(|c| {
                    c.reconsume_times(handle.mark, handle.queue_id, handle.queue_offset)
                }) {
                    message.reconsume_times = times;
                }
                message.properties.insert(property::POP_CK, handle.to_string());
                if message.properties.get(property::FIRST_POP_TIME).is_none() {
                    message.properties.insert(property::FIRST_POP_TIME, &first_pop);
                }
                message.topic.clone_from(&header.topic);
                PoppedMessage { message, handle }
            })
            .collect();
        Ok(PopResult { status, messages, undecodable })
    }

    /// ACK_MESSAGE (200051).
    pub async fn ack(
        &self,
        addr: &str,
        header: &AckMessageRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request(RequestCode::AckMessage, header);
        call_ok(self.pool(), addr, cmd, timeout).await.map(drop)
    }

    /// BATCH_ACK_MESSAGE (200151): the acks of many check points of one broker. A broker that
    /// does not know the code answers REQUEST_CODE_NOT_SUPPORTED (a [`ClientError::Broker`]).
    pub async fn batch_ack(
        &self,
        addr: &str,
        body: &BatchAckMessageRequestBody,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request_without_header(RequestCode::BatchAckMessage)
            .with_body(body.encode());
        call_ok(self.pool(), addr, cmd, timeout).await.map(drop)
    }

    /// CHANGE_MESSAGE_INVISIBLETIME (200053): the new check point.
    pub async fn change_invisible_time(
        &self,
        addr: &str,
        header: &ChangeInvisibleTimeRequestHeader,
        timeout: Duration,
    ) -> Result<ChangeInvisibleTimeResponseHeader, ClientError> {
        let request = RequestCode::ChangeMessageInvisibleTime;
        let resp =
            call_ok(self.pool(), addr, RemotingCommand::request(request, header), timeout).await?;
        header_of(addr, request, &resp)
    }

    /// QUERY_ASSIGNMENT (400): the queues of a topic this client should consume, each with its
    /// request mode.
    pub async fn query_assignment(
        &self,
        addr: &str,
        body: &QueryAssignmentRequestBody,
        timeout: Duration,
    ) -> Result<Vec<MessageQueueAssignment>, ClientError> {
        let request = RequestCode::QueryAssignment;
        let cmd = RemotingCommand::request_without_header(request).with_body(body.encode());
        let resp = call_ok(self.pool(), addr, cmd, timeout).await?;
        let body =
            QueryAssignmentResponseBody::decode(&resp.body).map_err(body_error(addr, request))?;
        Ok(body.message_queue_assignments)
    }
}
