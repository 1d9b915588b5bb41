//! The listener contract: what the consumer calls with a batch of messages, and what it gets back.
//!
//! One trait serves native Rust listeners and the Wasm sandbox alike. A call returns a decision
//! per message (a generalised Java `ackIndex`), or fails as a whole. The three ways a call can
//! end stay distinct all the way to metrics: per-message outcomes, a listener-reported error, and
//! an abort by the sandbox (trap, fuel, timeout, memory) — none of them is fatal to the host.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::protocol::MessageQueue;
use crate::protocol::message::MessageExt;

pub use super::config::ConsumeMode;

/// Property of the DLQ copy of a [`MessageOutcome::DeadLetter`] message: the listener's reason
/// (its other properties are added as given).
pub const DLQ_REASON: &str = "DLQ_REASON";

/// Property of the DLQ copy of a [`MessageOutcome::DeadLetter`] message: where it was consumed
/// from, `<topic>@<broker>/<queue>:<offset>` (after retries, a `%RETRY%` queue), so `dlq list`
/// can point at the stored original.
pub const DLQ_CONSUMED_AT: &str = "RMQ_WASM_CONSUMED_AT";

/// What the listener decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Consumed: its offset may be committed.
    Success,
    /// Consume again later. Concurrently: sent back with this delay level (`None` lets the broker
    /// pick `3 + reconsume times`, Java's default). Orderly: the queue is suspended and the
    /// message redelivered; the level is ignored.
    RetryLater { delay_level: Option<i32> },
    /// Give up on it now: it goes to `%DLQ%<group>` with these extra properties (reason first).
    DeadLetter { reason: String, properties: Vec<(String, String)> },
}

impl MessageOutcome {
    /// A retry with the broker's default delay.
    pub const RETRY: Self = Self::RetryLater { delay_level: None };

    /// True for [`MessageOutcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

/// Why a sandboxed call was stopped by the host rather than returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortKind {
    /// The guest trapped (unreachable, out-of-bounds, …) or panicked.
    Trap,
    /// The call used up its fuel budget.
    FuelExhausted,
    /// The call ran past its wall-clock timeout.
    Timeout,
    /// The guest tried to grow memory (or tables/instances) past its cap.
    ResourceLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The listener could not be instantiated (e.g. a reload left no usable version).
    Unavailable,
}

impl AbortKind {
    /// A stable lowercase name for metrics labels and DLQ properties.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::FuelExhausted => "fuel",
            Self::Timeout => "timeout",
            Self::ResourceLimit => "memory",
            Self::StackOverflow => "stack",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for AbortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call that failed as a whole: every message of the batch is retried (Java's
/// RECONSUME_LATER; orderly: SUSPEND_CURRENT_QUEUE_A_MOMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    /// The listener itself reported an error.
    #[error("listener failed: {0}")]
    Failed(String),
    /// The host stopped the call.
    #[error("listener aborted ({kind}): {detail}")]
    Aborted { kind: AbortKind, detail: String },
}

/// What a listener is told besides the messages.
#[derive(Debug, Clone)]
pub struct ConsumeContext {
    pub group: Arc<str>,
    /// The queue the messages came from (all messages of one call share it).
    pub queue: MessageQueue,
    pub mode: ConsumeMode,
}

/// The future a listener returns; boxed so listeners can be trait objects.
pub type ListenerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<MessageOutcome>, ListenerError>> + Send + 'a>>;

/// A message listener. Implementations must be cheap to call concurrently: the consumer calls
/// one listener from many queues at once, up to the consume concurrency bound.
pub trait MessageListener: Send + Sync + 'static {
    /// Consumes a batch (never empty; at most `consume_message_batch_max_size` messages).
    ///
    /// Returns one outcome per message, in order. A shorter list is padded with
    /// [`MessageOutcome::RETRY`] — like Java's ackIndex, nothing is committed that the listener
    /// did not explicitly accept; extra outcomes are ignored.
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a>;
}

/// Normalises a listener's answer to exactly one outcome per message (see
/// [`MessageListener::consume`]).
pub fn outcomes_for(
    count: usize,
    result: Result<Vec<MessageOutcome>, ListenerError>,
) -> Vec<MessageOutcome> {
    match result {
        Ok(mut outcomes) => {
            outcomes.resize(count, MessageOutcome::RETRY);
            outcomes
        }
        Err(_) => vec![MessageOutcome::RETRY; count],
    }
}

/// A listener made from an async closure: handy for tests and small embeddings.
pub struct FnListener<F>(pub F);

impl<F> fmt::Debug for FnListener<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnListener")
    }
}

impl<F, Fut> MessageListener for FnListener<F>
where
    F: Fn(ConsumeContext, Vec<MessageExt>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<MessageOutcome>, ListenerError>> + Send + 'static,
{
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        Box::pin((self.0)(ctx.clone(), messages.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_answers_are_padded_with_retries_and_errors_retry_everything() {
        let padded = outcomes_for(3, Ok(vec![MessageOutcome::Success]));
        assert_eq!(
            padded,
            vec![MessageOutcome::Success, MessageOutcome::RETRY, MessageOutcome::RETRY]
        );
        let trimmed = outcomes_for(1, Ok(vec![MessageOutcome::Success; 4]));
        assert_eq!(trimmed, vec![MessageOutcome::Success]);
        let failed = outcomes_for(2, Err(ListenerError::Failed("boom".into())));
        assert_eq!(failed, vec![MessageOutcome::RETRY; 2]);
    }
}
