//! Retries messages matching a configured condition, with a delay level.
//!
//! Config (at least one condition):
//! - `tag`: retry messages with this tag;
//! - `body-contains`: retry messages whose body contains this text (compared as bytes, so a
//!   body need not be valid UTF-8);
//! - `delay-level`: 1..=18 or a label (`10s`, `1m`, ...); unset = the broker's default;
//! - `dead-letter-after`: once a matching message was redelivered this often, send it to the DLQ
//!   instead of retrying again.
//!
//! Everything else succeeds. A config error fails the batch (`listener-error`).

use rmq_wasm_guest::{
    ConsumeContext, DelayLevel, Listener, ListenerError, Message, Outcome, config,
};

struct Filter;

impl Listener for Filter {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let tag = config::get("tag");
        let needle = config::get("body-contains");
        if tag.is_none() && needle.is_none() {
            return Err("filter: configure `tag` and/or `body-contains`".into());
        }
        let delay: Option<DelayLevel> = config::parse("delay-level")?;
        let dead_letter_after: Option<u32> = config::parse("dead-letter-after")?;

        Ok(msgs
            .iter()
            .map(|m| {
                let matches = tag.as_deref().is_some_and(|t| m.has_tag(t))
                    || needle.as_deref().is_some_and(|n| m.body_contains(n.as_bytes()));
                match (matches, dead_letter_after) {
                    (false, _) => Outcome::Success,
                    (true, Some(limit)) if m.reconsume_times() >= limit => {
                        Outcome::dead_letter(format!(
                            "filter: still matching after {} redeliveries",
                            m.reconsume_times()
                        ))
                    }
                    (true, _) => Outcome::RetryLater(delay),
                }
            })
            .collect())
    }
}

rmq_wasm_guest::export_listener!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_wasm_guest::testing;

    #[test]
    fn retries_matching_messages() {
        testing::set_config([("tag", "hold"), ("body-contains", "later"), ("delay-level", "1m")]);
        let msgs = [
            testing::message("t", "now").with_tags("hold"),
            testing::message("t", "do it later"),
            testing::message("t", "now").with_tags("go"),
        ];
        let out = testing::consume::<Filter>(&ConsumeContext::default(), &msgs).unwrap();
        let retry = Outcome::retry_after(DelayLevel::new(5).unwrap());
        assert_eq!(out, vec![retry.clone(), retry, Outcome::Success]);
    }

    #[test]
    fn dead_letters_after_limit_and_requires_a_condition() {
        let ctx = ConsumeContext::default();
        assert!(testing::consume::<Filter>(&ctx, &[testing::message("t", "")]).is_err());
        testing::set_config([("tag", "x"), ("dead-letter-after", "2")]);
        let msgs = [
            testing::message("t", "").with_tags("x").with_reconsume_times(1),
            testing::message("t", "").with_tags("x").with_reconsume_times(2),
        ];
        let out = testing::consume::<Filter>(&ctx, &msgs).unwrap();
        assert_eq!(out[0], Outcome::retry());
        assert!(matches!(&out[1], Outcome::DeadLetter(Some(r)) if r.contains("after 2")));
    }
}
