//! Logs its config and every message it sees; reconsume-aware.
//!
//! Config: `succeed-after` (default 0): a message is retried (`retry-later`, delay level
//! `delay-level`, default 1 = 1 s) until it was redelivered this many times, so tests can watch
//! `reconsume-times` grow. Every other key is only echoed.

use rmq_wasm_guest::{
    ConsumeContext, DelayLevel, Listener, ListenerError, Message, Outcome, config, info,
};

struct ConfigEcho;

impl Listener for ConfigEcho {
    fn consume(ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        for (key, value) in config::all() {
            info!("config {key} = {value}");
        }
        let succeed_after: u32 = config::parse("succeed-after")?.unwrap_or(0);
        let delay: DelayLevel = config::parse("delay-level")?.unwrap_or(DelayLevel::MIN);
        info!(
            "batch of {} from {}@{}#{} ({:?}, group {}, max reconsume {})",
            msgs.len(),
            ctx.queue.topic,
            ctx.queue.broker_name,
            ctx.queue.queue_id,
            ctx.mode,
            ctx.consumer_group,
            ctx.max_reconsume_times
        );
        Ok(msgs
            .iter()
            .map(|m| {
                info!(
                    "msg {} offset {} reconsume {} tags {:?} keys {:?} body {} bytes",
                    m.msg_id(),
                    m.queue_offset(),
                    m.reconsume_times(),
                    m.tags(),
                    m.keys().collect::<Vec<_>>(),
                    m.body().len()
                );
                if m.reconsume_times() < succeed_after {
                    Outcome::retry_after(delay)
                } else {
                    Outcome::Success
                }
            })
            .collect())
    }
}

rmq_wasm_guest::export_listener!(ConfigEcho);

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_wasm_guest::testing;

    #[test]
    fn echoes_config_and_retries_until_count() {
        testing::set_config([("succeed-after", "2"), ("colour", "blue")]);
        let msgs = [
            testing::message("t", "a").with_reconsume_times(1),
            testing::message("t", "b").with_reconsume_times(2),
        ];
        let out = testing::consume::<ConfigEcho>(&ConsumeContext::default(), &msgs).unwrap();
        assert_eq!(out, [Outcome::retry_after(DelayLevel::MIN), Outcome::Success]);
        let logs = testing::logs();
        assert!(logs.iter().any(|(_, l)| l == "config colour = blue"));
        assert!(logs.iter().any(|(_, l)| l.contains("reconsume 2")));
    }
}
