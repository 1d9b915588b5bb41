//! Requests the broker sends us (reference 2.11).

use std::sync::Arc;

use tokio::sync::Notify;

use crate::protocol::{RemotingCommand, RequestCode};
use crate::remoting::connection::{HandlerFuture, HandlerReply, NotSupported, RequestHandler};

/// Handles broker-initiated requests for one consumer.
#[derive(Debug)]
pub(crate) struct ConsumerRequestHandler {
    pub rebalance_now: Arc<Notify>,
}

impl RequestHandler for ConsumerRequestHandler {
    fn handle<'a>(&'a self, addr: &'a str, request: RemotingCommand) -> HandlerFuture<'a> {
        Box::pin(async move {
            match request.request_code() {
                RequestCode::NotifyConsumerIdsChanged => {
                    tracing::debug!(addr, "consumer ids changed; rebalancing");
                    self.rebalance_now.notify_one();
                    Ok(HandlerReply::NoReply)
                }
                _ => Err(NotSupported),
            }
        })
    }
}
