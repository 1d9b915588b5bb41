//! Topic administration the tests and the demo need (reference 2.13).

use std::time::Duration;

use tokio::time::Instant;

use super::{BrokerClient, ClientError, NameServerClient};
use crate::protocol::body::{SetMessageRequestModeRequestBody, TopicRouteData, perm};
use crate::protocol::header::CreateTopicRequestHeader;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: String,
    pub read_queues: i32,
    pub write_queues: i32,
    /// Permission bits ([`perm`]); read + write by default.
    pub perm: i32,
    /// Marks the topic ordered on the broker (only affects admin views).
    pub order: bool,
}

impl TopicSpec {
    /// A read/write topic with `queues` read and write queues.
    pub fn new(topic: impl Into<String>, queues: i32) -> Self {
        Self {
            topic: topic.into(),
            read_queues: queues,
            write_queues: queues,
            perm: perm::READ | perm::WRITE,
            order: false,
        }
    }
}

/// Topic admin through the name server and brokers.
#[derive(Debug, Clone)]
pub struct Admin {
    namesrv: NameServerClient,
    broker: BrokerClient,
}

impl Admin {
    pub fn new(namesrv: NameServerClient, broker: BrokerClient) -> Self {
        Self { namesrv, broker }
    }

    /// UPDATE_AND_CREATE_TOPIC (17) on one broker.
    pub async fn create_topic_on(
        &self,
        broker_addr: &str,
        spec: &TopicSpec,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let header = CreateTopicRequestHeader {
            topic: spec.topic.clone(),
            default_topic: "TBW102".into(),
            read_queue_nums: spec.read_queues,
            write_queue_nums: spec.write_queues,
            perm: spec.perm,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: 0,
            order: spec.order,
            attributes: None,
            force: None,
        };
        let cmd = RemotingCommand::request(RequestCode::UpdateAndCreateTopic, &header);
        self.broker
            .request_expecting(broker_addr, cmd, &[ResponseCode::Success], timeout)
            .await
            .map(drop)
    }

    /// SET_MESSAGE_REQUEST_MODE (401) on one broker: PULL or POP for a topic and group, which
    /// QUERY_ASSIGNMENT then reports to the group's `request_mode = "broker"` members.
    pub async fn set_message_request_mode(
        &self,
        broker_addr: &str,
        body: &SetMessageRequestModeRequestBody,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let cmd = RemotingCommand::request_without_header(RequestCode::SetMessageRequestMode)
            .with_body(body.encode());
        self.broker
            .request_expecting(broker_addr, cmd, &[ResponseCode::Success], timeout)
            .await
            .map(drop)
    }

    /// Creates the topic on every master of `cluster` and waits (until `deadline`) for the
    /// name server to report a route with the requested queue counts: the broker registers the
    /// change asynchronously, so a route read straight after creation can be stale.
    pub async fn create_topic(
        &self,
        cluster: &str,
        spec: &TopicSpec,
        deadline: Duration,
    ) -> Result<TopicRouteData, ClientError> {
        let info = self.namesrv.cluster_info().await?;
        let masters: Vec<String> =
            info.master_addrs(cluster).into_iter().map(str::to_owned).collect();
        if masters.is_empty() {
            return Err(ClientError::ClusterHasNoMaster(cluster.to_owned()));
        }
        for addr in &masters {
            self.create_topic_on(addr, spec, super::DEFAULT_RPC_TIMEOUT).await?;
        }
        self.wait_for_route(&spec.topic, masters.len(), spec.read_queues, deadline).await
    }

    /// Polls the route until `brokers` brokers each serve `read_queues` readable queues.
    pub async fn wait_for_route(
        &self,
        topic: &str,
        brokers: usize,
        read_queues: i32,
        deadline: Duration,
    ) -> Result<TopicRouteData, ClientError> {
        let until = Instant::now() + deadline;
        let mut backoff = Duration::from_millis(20);
        loop {
            let route = self.namesrv.route(topic).await?;
            if let Some(route) = route {
                let ready = route.queue_datas.iter().filter(|q| q.read_queue_nums == read_queues);
                if ready.count() >= brokers {
                    return Ok(route);
                }
            }
            if Instant::now() >= until {
                return Err(ClientError::RouteNotReady {
                    topic: topic.to_owned(),
                    brokers,
                    queues: read_queues,
                    waited: deadline,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}
