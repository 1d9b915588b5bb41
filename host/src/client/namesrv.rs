//! Name-server calls: topic routes and cluster info.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{ClientError, DEFAULT_RPC_TIMEOUT, body_error, broker_error, call};
use crate::protocol::body::{ClusterInfo, TopicRouteData};
use crate::protocol::header::GetRouteInfoRequestHeader;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::ConnectionPool;

/// Talks to a list of name servers, sticking to the last one that answered and failing over
/// to the next on a transport error (Java picks one and keeps it until it fails).
#[derive(Debug, Clone)]
pub struct NameServerClient {
    pool: ConnectionPool,
    addrs: Arc<[String]>,
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

impl NameServerClient {
    /// `addrs` as in Java's `namesrvAddr`: `host:port` entries (a `;`-separated string can be
    /// split with [`NameServerClient::parse_addrs`]).
    pub fn new(pool: ConnectionPool, addrs: Vec<String>) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        Ok(Self {
            pool,
            addrs: addrs.into(),
            current: Arc::default(),
            timeout: DEFAULT_RPC_TIMEOUT,
        })
    }

    /// Splits Java's `namesrvAddr` form, `"a:9876;b:9876"`.
    pub fn parse_addrs(list: &str) -> Vec<String> {
        list.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// The name-server addresses.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Sends to the current name server, trying each of the others once on transport errors.
    async fn call_any(
        &self,
        cmd: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..self.addrs.len() {
            let idx = (start + i) % self.addrs.len();
            let addr = &self.addrs[idx];
            match call(&self.pool, addr, cmd.clone(), self.timeout).await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((addr.clone(), resp));
                }
                Err(e) => {
                    tracing::debug!(addr, error = %e, "name server call failed; trying the next");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(ClientError::NoNameServer))
    }

    /// GET_ROUTEINFO_BY_TOPIC. `Ok(None)` when no broker serves the topic (TOPIC_NOT_EXIST),
    /// which is normal for `%RETRY%<group>` until the first heartbeat creates it.
    pub async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>, ClientError> {
        let request = RequestCode::GetRouteInfoByTopic;
        let header =
            GetRouteInfoRequestHeader { topic: topic.to_owned(), accept_standard_json_only: None };
        let (addr, resp) = self.call_any(RemotingCommand::request(request, &header)).await?;
        match resp.response_code() {
            ResponseCode::Success => {
                let mut route =
                    TopicRouteData::decode(&resp.body).map_err(body_error(&addr, request))?;
                route.normalize();
                Ok(Some(route))
            }
            ResponseCode::TopicNotExist => Ok(None),
            _ => Err(broker_error(&addr, request, &resp)),
        }
    }

    /// GET_BROKER_CLUSTER_INFO: every registered broker, by cluster.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let request = RequestCode::GetBrokerClusterInfo;
        let (addr, resp) = self.call_any(RemotingCommand::request_without_header(request)).await?;
        if resp.response_code() != ResponseCode::Success {
            return Err(broker_error(&addr, request, &resp));
        }
        ClusterInfo::decode(&resp.body).map_err(body_error(&addr, request))
    }
}
