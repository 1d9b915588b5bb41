//! Produces every message to the topic named in config, then reports success.
//!
//! Config: `target-topic` (required); `tags` replaces the tag of the copies when set.
//! Each copy keeps keys, properties and body and gets a `ROUTED_FROM` property naming the source
//! topic. A send that times out or fails is retried (retry-later for that message); a send the
//! host denies or rejects as invalid will not get better, so that message goes to the DLQ.

use rmq_wasm_guest::{
    ConsumeContext, Listener, ListenerError, Message, Outcome, ProduceError, config,
};

struct Router;

impl Listener for Router {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let target = config::require("target-topic")?;
        let tags = config::get("tags");
        Ok(msgs
            .iter()
            .map(|m| {
                let mut copy = m.forward_to(&target).with_property("ROUTED_FROM", m.topic());
                if let Some(tags) = &tags {
                    copy.tags = Some(tags.clone());
                }
                match copy.send() {
                    Ok(receipt) => {
                        rmq_wasm_guest::debug!(
                            "routed {} to {} as {}",
                            m.msg_id(),
                            target,
                            receipt.msg_id
                        );
                        Outcome::Success
                    }
                    Err(e @ (ProduceError::Timeout | ProduceError::Failed(_))) => {
                        rmq_wasm_guest::warn!("routing {} failed, will retry: {e}", m.msg_id());
                        Outcome::retry()
                    }
                    Err(e) => Outcome::dead_letter(format!("router: {e}")),
                }
            })
            .collect())
    }
}

rmq_wasm_guest::export_listener!(Router);

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_wasm_guest::{SendReceipt, testing};

    #[test]
    fn forwards_with_origin_and_maps_send_errors() {
        testing::set_config([("target-topic", "out"), ("tags", "routed")]);
        testing::on_send(|m| match m.body.as_slice() {
            b"slow" => Err(ProduceError::Timeout),
            b"bad" => Err(ProduceError::Denied("no".into())),
            _ => Ok(SendReceipt::default()),
        });
        let msgs = [
            testing::message("in", "ok").with_key("k"),
            testing::message("in", "slow"),
            testing::message("in", "bad"),
        ];
        let out = testing::consume::<Router>(&ConsumeContext::default(), &msgs).unwrap();
        assert_eq!(out[0], Outcome::Success);
        assert_eq!(out[1], Outcome::retry());
        assert!(matches!(&out[2], Outcome::DeadLetter(Some(r)) if r.contains("denied")));
        let sent = testing::sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].topic, "out");
        assert_eq!(sent[0].tags.as_deref(), Some("routed"));
        assert_eq!(sent[0].keys, ["k"]);
        assert_eq!(sent[0].properties, [("ROUTED_FROM".to_string(), "in".to_string())]);
    }
}
