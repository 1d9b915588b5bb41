//! POP consumption (RocketMQ 5.x): the broker, not the client, decides which member gets which
//! message, so a group can run more members than the topic has queues, and a slow or dead
//! member cannot stall a queue — its unacked messages become visible again. Protocol, Java's
//! behaviour and our choices: `docs/pop.md`.
//!
//! `assign` turns a topic's request mode into the POP assignments the rebalancer starts; `task`
//! is one per assignment (pop, flow control, consume jobs); `settle` consumes a batch and acks,
//! retries (invisible-time change) or dead-letters each message; `orderly` consumes an orderly
//! pop (`order = true`, one queue) serially and lets the broker redeliver in place; `policy`
//! holds the numbers and decisions.

pub(crate) mod assign;
pub(crate) mod orderly;
pub(crate) mod policy;
pub(crate) mod settle;
pub(crate) mod task;

#[cfg(test)]
mod tests;
