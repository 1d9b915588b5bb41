//! Typed calls on top of the connection pool: the name server, broker RPCs a consumer needs,
//! topic admin, and a producer.
//!
//! Each call builds its typed header, checks the response code, and decodes the typed response,
//! so nothing above this layer sees ext-field maps or raw bodies.

pub mod admin;
pub mod broker;
pub mod namesrv;
pub mod pop;
pub mod producer;

use std::time::Duration;

use crate::protocol::body::BodyError;
use crate::protocol::header::HeaderError;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::{ConnectionPool, RemotingError};

pub use admin::Admin;
pub use broker::{BrokerClient, PullResult, PullStatus};
pub use namesrv::NameServerClient;
pub use pop::{PopResult, PopStatus, PoppedMessage};
pub use producer::{Producer, ProducerConfig, QueueSelector, SendResult, SendStatus};

/// Java's `mqClientApiTimeout`: route, heartbeat, consumer list, unregister.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a typed call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Remoting(#[from] RemotingError),
    /// The peer answered with an error code.
    #[error("{request:?} to {addr} answered {code:?}: {remark}")]
    Broker { addr: String, request: RequestCode, code: ResponseCode, remark: String },
    #[error("{request:?} response from {addr} has a bad header: {source}")]
    Header { addr: String, request: RequestCode, source: HeaderError },
    #[error("{request:?} response from {addr} has a bad body: {source}")]
    Body { addr: String, request: RequestCode, source: BodyError },
    #[error("topic {0} has no route (unknown to every name server)")]
    NoRoute(String),
    /// The route lists the broker, but not its master (down, or not registered yet): what needs
    /// the master (send-back, offsets by time, sends) waits for the next route.
    #[error("broker {broker} has no master in the route of topic {topic}")]
    NoMaster { topic: String, broker: String },
    #[error("topic {0} has no writable queue on a master")]
    NoWritableQueue(String),
    #[error("cluster {0} has no master broker")]
    ClusterHasNoMaster(String),
    #[error(
        "topic {topic} has no route with {brokers} broker(s) × {queues} queues after {waited:?}"
    )]
    RouteNotReady { topic: String, brokers: usize, queues: i32, waited: Duration },
    #[error("no name server address is configured")]
    NoNameServer,
    /// A POP response whose check point info does not fit its messages.
    #[error("POP_MESSAGE response from {addr}: {source}")]
    PopInfo { addr: String, source: crate::protocol::pop::PopInfoError },
    #[error("message rejected before sending: {0}")]
    InvalidMessage(String),
}

impl ClientError {
    /// The response code, when the peer answered with one.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Sends `cmd` to `addr` and returns the response whatever its code.
pub(crate) async fn call(
    pool: &ConnectionPool,
    addr: &str,
    cmd: RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, ClientError> {
    Ok(pool.request(addr, cmd, timeout).await?)
}

/// Sends `cmd` and requires SUCCESS.
pub(crate) async fn call_ok(
    pool: &ConnectionPool,
    addr: &str,
    cmd: RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, ClientError> {
    let request = cmd.request_code();
    let resp = call(pool, addr, cmd, timeout).await?;
    expect_code(addr, request, resp, &[ResponseCode::Success])
}

/// Passes the response through if its code is one of `ok`, otherwise turns it into an error.
pub(crate) fn expect_code(
    addr: &str,
    request: RequestCode,
    resp: RemotingCommand,
    ok: &[ResponseCode],
) -> Result<RemotingCommand, ClientError> {
    if ok.contains(&resp.response_code()) {
        Ok(resp)
    } else {
        Err(broker_error(addr, request, &resp))
    }
}

pub(crate) fn broker_error(
    addr: &str,
    request: RequestCode,
    resp: &RemotingCommand,
) -> ClientError {
    ClientError::Broker {
        addr: addr.to_owned(),
        request,
        code: resp.response_code(),
        remark: resp.remark.clone().unwrap_or_default(),
    }
}

/// Decodes a typed response header, naming the call on failure.
pub(crate) fn header_of<H: crate::protocol::header::CommandHeader>(
    addr: &str,
    request: RequestCode,
    resp: &RemotingCommand,
) -> Result<H, ClientError> {
    resp.header().map_err(|source| ClientError::Header { addr: addr.to_owned(), request, source })
}

/// Wraps a body decode error with the call it came from.
pub(crate) fn body_error(
    addr: &str,
    request: RequestCode,
) -> impl FnOnce(BodyError) -> ClientError {
    let addr = addr.to_owned();
    move |source| ClientError::Body { addr, request, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_errors_say_what_is_missing() {
        let cases = [
            (
                ClientError::NoRoute("T".into()),
                "topic T has no route (unknown to every name server)",
            ),
            (
                ClientError::NoMaster { topic: "T".into(), broker: "broker-a".into() },
                "broker broker-a has no master in the route of topic T",
            ),
            (ClientError::NoWritableQueue("T".into()), "topic T has no writable queue on a master"),
            (ClientError::ClusterHasNoMaster("C".into()), "cluster C has no master broker"),
            (
                ClientError::RouteNotReady {
                    topic: "T".into(),
                    brokers: 2,
                    queues: 4,
                    waited: Duration::from_secs(10),
                },
                "topic T has no route with 2 broker(s) × 4 queues after 10s",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
