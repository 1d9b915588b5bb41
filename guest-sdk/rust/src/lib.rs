//! Guest SDK for rmq-wasm listener components.
//!
//! A listener is a WebAssembly component implementing the `rmq:listener@0.2.0` world
//! (`wit/listener.wit` at the repository root): the host hands it a batch of RocketMQ messages and
//! it answers with one [`Outcome`] per message, or a [`ListenerError`] for the whole batch. While
//! it runs it may [`log`], read its own [`config`] and send messages through the host's
//! [`producer`].
//!
//! ```no_run
//! use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome};
//!
//! struct DropEmpty;
//!
//! impl Listener for DropEmpty {
//!     fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
//!         Ok(msgs
//!             .iter()
//!             .map(|m| if m.body().is_empty() { Outcome::dead_letter("empty body") } else { Outcome::Success })
//!             .collect())
//!     }
//! }
//!
//! rmq_wasm_guest::export_listener!(DropEmpty);
//! ```
//!
//! Layering: everything a listener touches is a plain Rust type from [`types`] (testable
//! natively, no Wasm needed); the wit-bindgen types live in [`bindings`] and are converted at the
//! edge (`convert`). On `wasm32` the host functions call the component's imports; on any other
//! target they talk to an in-process fake host that tests drive through [`testing`].
//!
//! A panic in a listener aborts the component: the host sees a trap and treats the batch like a
//! failed one (retry, then isolate the poison message). Return a [`ListenerError`] for failures the
//! listener understands.

mod convert;
mod host;
pub mod types;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use host::{config, log, producer};
pub use types::{
    ConsumeContext, ConsumeMode, DelayLevel, Level, ListenerError, Message, MessageQueue, Outcome,
    OutgoingMessage, ProduceError, SendReceipt, SendStatus,
};

/// The wit-bindgen output for the `listener` world, as generated (types named as in the WIT).
///
/// Listeners rarely need it: [`Listener`] and the [`types`] cover the world. It is public for
/// the export macro and for code that wants the raw WIT types.
#[allow(unsafe_code, missing_docs, missing_debug_implementations, clippy::all, rust_2018_idioms)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "listener",
        pub_export_macro: true,
        export_macro_name: "__export_listener_world",
        default_bindings_module: "::rmq_wasm_guest::bindings",
    });
}

/// A listener: the logic a RocketMQ `MessageListener` would hold.
///
/// `consume` is called once per batch, with a fresh component instance per call by default; in
/// the host's opt-in warm mode (`instance_reuse = N`) one instance serves up to N calls, statics
/// included, so keep no per-batch state in statics. Return one [`Outcome`] per message, in order; like
/// Java's `ackIndex`, the host retries messages without an outcome and ignores extra ones.
pub trait Listener {
    /// Handle one batch of messages from one message queue.
    ///
    /// A [`Message`] borrows the batch the host handed over; copy what must outlive the call.
    fn consume(ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError>;
}

#[doc(hidden)]
pub mod __export {
    use std::marker::PhantomData;

    use crate::bindings::exports::rmq::listener::handler::Guest;
    use crate::bindings::rmq::listener::types as wit;
    use crate::{ConsumeContext, Listener, Message};

    /// Implements the generated `Guest` trait for any [`Listener`]: the context becomes the
    /// SDK's plain type, each message a [`Message`] view of the batch (no copy), and the outcomes
    /// go back as WIT types.
    #[derive(Debug)]
    pub struct Adapter<L>(PhantomData<fn() -> L>);

    impl<L: Listener> Guest for Adapter<L> {
        fn consume(
            ctx: wit::ConsumeContext,
            batch: wit::Batch,
        ) -> Result<Vec<wit::MessageOutcome>, wit::ListenerError> {
            let ctx = ConsumeContext::from(ctx);
            let msgs: Vec<Message<'_>> =
                batch.messages.iter().map(|m| Message::new(m, &batch.data)).collect();
            L::consume(&ctx, &msgs)
                .map(|outcomes| outcomes.into_iter().map(Into::into).collect())
                .map_err(Into::into)
        }
    }

    pub use crate::bindings::__export_listener_world;
}

/// Exports a [`Listener`] implementation as the component's `rmq:listener/handler` export.
///
/// Use it once, at the crate root of a `cdylib` built for `wasm32-wasip2`. On other targets no
/// Wasm export glue is generated: it defines a hidden `__rmq_wasm_listener_export` function that
/// runs the listener through [`testing::consume`], so a plugin crate also builds and unit-tests
/// natively.
#[macro_export]
macro_rules! export_listener {
    ($listener:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __RmqWasmListenerExport = $crate::__export::Adapter<$listener>;
            $crate::__export::__export_listener_world!(
                __RmqWasmListenerExport with_types_in $crate::bindings
            );
        };

        /// The exported listener, run natively through the SDK's fake host.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __rmq_wasm_listener_export(
            ctx: &$crate::ConsumeContext,
            msgs: &[$crate::testing::TestMessage],
        ) -> ::std::result::Result<::std::vec::Vec<$crate::Outcome>, $crate::ListenerError> {
            $crate::testing::consume::<$listener>(ctx, msgs)
        }
    };
}

/// Logs a formatted line at `trace` level through the host ([`log::trace`]).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Trace, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `debug` level through the host ([`log::debug`]).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `info` level through the host ([`log::info`]).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `warn` level through the host ([`log::warn`]).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `error` level through the host ([`log::error`]).
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Error, &::std::format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use crate::{ConsumeContext, Listener, ListenerError, Message, Outcome};

    struct DeadLetterEmpty;

    impl Listener for DeadLetterEmpty {
        fn consume(
            _: &ConsumeContext,
            msgs: &[Message<'_>],
        ) -> Result<Vec<Outcome>, ListenerError> {
            Ok(msgs
                .iter()
                .map(|m| {
                    if m.body().is_empty() {
                        Outcome::dead_letter("empty")
                    } else {
                        Outcome::Success
                    }
                })
                .collect())
        }
    }

    crate::export_listener!(DeadLetterEmpty);

    #[test]
    fn export_macro_natively_runs_the_listener() {
        let out = __rmq_wasm_listener_export(
            &ConsumeContext::default(),
            &[crate::testing::message("t", ""), crate::testing::message("t", "x")],
        );
        assert_eq!(out, Ok(vec![Outcome::dead_letter("empty"), Outcome::Success]));
    }
}
