"""Native unit tests of the Python SDK: ``cd guest-sdk/python && python3 -m unittest``."""

import unittest

from rmq_wasm import (ConsumeContext, ListenerError, Outcome, OutgoingMessage, ProduceError,
                      config, delay_level, handler, log, producer)
from rmq_wasm import testing
from rmq_wasm.testing import message
from rmq_wasm.views import Message


def views(msgs):
    b = testing.batch(msgs)
    return [Message(r, b.data) for r in b.messages]


def retry_or_forward(ctx, msgs):
    """Retries messages tagged with the configured tag, forwards the rest."""
    tag = config.require("retry-tag")
    level = config.parse("delay", delay_level)
    out = []
    for m in msgs:
        if m.has_tag(tag):
            log.warn(f"retrying {m.msg_id}")
            out.append(Outcome.retry_after(level) if level else Outcome.retry())
            continue
        producer.send(m.forward_to("out"))
        out.append(Outcome.SUCCESS)
    return out


class LayoutTest(unittest.TestCase):
    def test_batches_are_laid_out_as_the_host_lays_them_out(self):
        # The same bytes and spans as guest-sdk/rust's testing.rs test of the same name.
        a = message("t", "b1", msg_id="U", tags="T", keys=["k1", "k2"],
                    properties=[("z", "1"), ("a", "2")], offset_msg_id="O1", born_host="h:1",
                    store_host="s:2")
        b = message("t", "b2", offset_msg_id="O2", born_host="h:1", store_host="s:3")
        out = testing.batch([a, b])
        self.assertEqual(out.data.decode(), "tO1a\x012\x02z\x011\x02Uk1 k2Tb1h:1s:2O2b2s:3")
        m, n = out.messages
        span = lambda s: (s.start, s.len)  # noqa: E731
        self.assertEqual([span(m.topic), span(m.offset_msg_id), span(m.msg_id)],
                         [(0, 1), (1, 2), (11, 1)])
        self.assertEqual(span(m.tags), (17, 1))
        self.assertEqual([span(n.topic), span(n.born_host), span(n.msg_id)],
                         [(0, 1), (20, 3), (26, 2)])
        self.assertEqual((span(n.store_host), n.tags, span(n.keys)), ((30, 3), None, (28, 0)))


class ViewTest(unittest.TestCase):
    def test_fields(self):
        good = message("t", "héllo", tags="TagA", keys=["k1", "k2"], properties={"é": "", "a": "1"},
                       msg_id="UNIQ", queue_offset=9, born_timestamp_ms=1_700_000_000_123,
                       store_timestamp_ms=5, born_host="1.2.3.4:5", store_host="6.7.8.9:10",
                       reconsume_times=2)
        bad = message("u", b"\xffa", offset_msg_id="OFF")
        m, b = views([good, bad])
        self.assertEqual((m.topic, m.msg_id, m.queue_offset, m.tags), ("t", "UNIQ", 9, "TagA"))
        self.assertTrue(m.has_tag("TagA") and not m.has_tag("TagB"))
        self.assertEqual(m.keys, ["k1", "k2"])
        self.assertTrue(m.has_key("k2") and not m.has_key("k3"))
        self.assertEqual(m.properties, [("a", "1"), ("é", "")])
        self.assertEqual((m.property("é"), m.property("b")), ("", None))
        self.assertEqual((m.body_text(), m.body_len), ("héllo", 6))
        self.assertTrue(m.body_contains("llo".encode()))
        self.assertEqual((m.born_timestamp_ms, m.store_timestamp_ms), (1_700_000_000_123, 5))
        self.assertEqual((m.born_host, m.store_host), ("1.2.3.4:5", "6.7.8.9:10"))
        self.assertTrue(m.is_redelivery)
        self.assertTrue(ConsumeContext(max_reconsume_times=2).is_last_attempt(m))
        self.assertEqual((b.tags, b.keys, b.msg_id, b.offset_msg_id), (None, [], "OFF", "OFF"))
        with self.assertRaises(UnicodeDecodeError):
            b.body_text()
        self.assertEqual(b.forward_to("o").body, b"\xffa")

    def test_body_json(self):
        m, bad = views([message("t", '{"id": 7}'), message("t", "not json")])
        self.assertEqual(m.body_json(), {"id": 7})
        with self.assertRaises(ValueError):
            bad.body_json()

    def test_forward_copies_payload_and_metadata(self):
        (m,) = views([message("in", "body", tags="T", keys=["k"], properties={"p": "v"})])
        self.assertEqual(m.forward_to("out"),
                         OutgoingMessage("out", b"body", "T", ["k"], [("p", "v")]))

    def test_delay_levels(self):
        for text, level in [("1", 1), ("3", 3), (" 10s ", 3), ("1m", 5), ("2h", 18)]:
            self.assertEqual(delay_level(text), level, text)
        for bad in ["0", "19", "15s", "", "-1"]:
            with self.assertRaises(ListenerError):
                delay_level(bad)


class FakeHostTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def batch(self):
        return [message("in", "a", msg_id="1", tags="X"),
                message("in", "b", msg_id="2", tags="Y", keys=["k"], properties={"p": "v"})]

    def test_listener_runs_through_the_export_adapter(self):
        testing.set_config({"retry-tag": "X", "delay": "30s"})
        out = testing.consume(handler(retry_or_forward), self.batch())
        self.assertEqual(out, [Outcome.retry_after(4), Outcome.SUCCESS])
        self.assertEqual(testing.sent(), [OutgoingMessage("out", b"b", "Y", ["k"], [("p", "v")])])
        self.assertEqual(testing.logs(), [("warn", "retrying 1")])
        self.assertEqual(config.all(), [("delay", "30s"), ("retry-tag", "X")])

    def test_config_errors_become_listener_errors(self):
        with self.assertRaisesRegex(ListenerError, "config key retry-tag is not set"):
            testing.consume(retry_or_forward, self.batch())
        testing.set_config({"retry-tag": "X", "delay": "19"})
        with self.assertRaisesRegex(ListenerError, "config delay = '19': invalid delay level"):
            testing.consume(retry_or_forward, self.batch())

    def test_produce_failures_reach_the_listener(self):
        testing.set_config({"retry-tag": "none"})

        def deny(m):
            raise ProduceError("denied", f"topic {m.topic} not allowed")

        testing.on_send(deny)
        with self.assertRaises(ProduceError) as e:
            testing.consume(retry_or_forward, self.batch())
        self.assertEqual((e.exception.kind, e.exception.is_transient), ("denied", False))
        self.assertEqual(testing.sent(), [])

    def test_missing_outcomes_are_retries_and_extra_ones_dropped(self):
        self.assertEqual(testing.consume(lambda c, m: [Outcome.SUCCESS], self.batch()),
                         [Outcome.SUCCESS, Outcome.retry()])
        self.assertEqual(testing.consume(lambda c, m: [Outcome.SUCCESS] * 3, self.batch()[:1]),
                         [Outcome.SUCCESS])

    def test_a_non_outcome_is_a_type_error(self):
        with self.assertRaisesRegex(TypeError, "Outcome"):
            testing.consume(lambda c, m: ["ok"], self.batch())

    def test_log_levels_are_checked(self):
        with self.assertRaisesRegex(ValueError, "not one of"):
            log.log("loud", "x")


if __name__ == "__main__":
    unittest.main()
