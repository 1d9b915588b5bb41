//! The push consumer: Java's `DefaultMQPushConsumer` rebuilt as small owned parts.
//!
//! - [`config`]: settings with Java's defaults and ranges; [`allocate`], [`policy`] and
//!   [`process_queue`]: pure policies and the per-queue buffer, table-tested;
//! - [`offset_store`]: remote (clustering) and local-file (broadcasting) offsets;
//! - `route`: the route cache; `scheduler`: the one background task (routes, heartbeats, offset
//!   persistence, rebalance, shutdown) which owns `rebalance`, the reconciler of
//! - `queue_task`: one task per owned queue (pull → buffer → consume jobs → commit);
//! - [`listener`]: the contract with native and Wasm listeners; [`push`]: the public handle.

pub(crate) mod allocate;
mod broker_api;
pub mod config;
mod consume;
mod handler;
pub mod listener;
mod locking;
pub(crate) mod offset_store;
pub(crate) mod policy;
mod pop;
pub(crate) mod process_queue;
pub mod push;
mod queue_task;
#[cfg(test)]
mod queue_task_tests;
mod rebalance;
pub(crate) mod route;
mod scheduler;
#[cfg(test)]
mod scheduler_tests;
mod shared;
pub mod stats;
mod stats_window;
#[cfg(test)]
mod testing;
mod throttle;

pub use config::{ConsumerConfig, Subscription};
pub use listener::{ConsumeContext, ConsumeMode, MessageListener, MessageOutcome};
pub use push::{ConsumerError, ConsumerProbe, PushConsumer};
