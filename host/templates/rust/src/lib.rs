//! {{name}}: an rmq-wasm listener. Edit `consume`; `rmq-wasm plugin build` makes {{name}}.wasm.
//!
//! Per message: the body contains the configured `word` (default "poison") → dead letter with a
//! reason; the tag is `retry-tag` (default "later") → retry later; otherwise → success.

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config, log};

struct Mine;

impl Listener for Mine {
    fn consume(ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let word = config::get_or("word", "poison");
        let retry_tag = config::get_or("retry-tag", "later");
        let outcomes: Vec<Outcome> = msgs
            .iter()
            .map(|m| {
                if m.body_contains(word.as_bytes()) {
                    Outcome::dead_letter(format!("body contains '{word}'"))
                } else if m.has_tag(&retry_tag) {
                    Outcome::retry()
                } else {
                    Outcome::Success
                }
            })
            .collect();
        log::debug(&format!("{} message(s) from {}", msgs.len(), ctx.queue.topic));
        Ok(outcomes)
    }
}

rmq_wasm_guest::export_listener!(Mine);

#[cfg(test)]
mod tests {
    use rmq_wasm_guest::testing::{self, message};
    use rmq_wasm_guest::{ConsumeContext, Outcome};

    #[test]
    fn accepts_retries_and_dead_letters() {
        testing::set_config([("word", "poison")]);
        let msgs = [
            message("orders", "a fine order"),
            message("orders", "a poison order"),
            message("orders", "not yet").with_tags("later"),
        ];
        let out = testing::consume::<super::Mine>(&ConsumeContext::default(), &msgs).unwrap();
        assert_eq!(
            out,
            [Outcome::Success, Outcome::dead_letter("body contains 'poison'"), Outcome::retry()]
        );
    }
}
