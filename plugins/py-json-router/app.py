"""rmq-wasm listener in Python (componentize-py): routes JSON events by their "kind".

Config:
  route.<kind>   topic for events whose "kind" is <kind>
  default-topic  topic for other kinds (unset: such events are dead-lettered)
  retry-field    (default "retry") a truthy field of this name means retry-later
  delay-level    (optional, 1..=18) delay level for those retries
  max-body-kib   (default 256) larger bodies are dead-lettered without parsing

Outcomes: body not UTF-8 JSON object -> dead-letter with the reason; retry field set ->
retry-later; routed -> success, the copy carries EVENT_KIND and ROUTED_FROM properties and the
event's "key" (if any) as an extra key; send timeout/failure -> retry-later; send denied/invalid
-> dead-letter. A malformed config fails the whole batch (listener-error).
"""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, log, producer
from wit_world.imports.types import (
    Batch,
    ConsumeContext,
    ListenerError,
    MessageOutcome,
    MessageOutcome_DeadLetter,
    MessageOutcome_RetryLater,
    MessageOutcome_Success,
    Span,
)


# A message's text and body are spans of the batch's `data`; these decode them.
def _bytes(data: bytes, span: Span) -> bytes:
    """The raw bytes of `span` (a message body)."""
    return data[span.start : span.start + span.len]


def _text(data: bytes, span: Span) -> str:
    """The text of `span` (the host guarantees UTF-8)."""
    return _bytes(data, span).decode("utf-8")


def _keys(data: bytes, span: Span) -> List[str]:
    """`KEYS` split on its single-space separator; [] when there are none."""
    return [k for k in _text(data, span).split(" ") if k]


def _properties(data: bytes, span: Span) -> List[Tuple[str, str]]:
    """User properties from RocketMQ's encoding (`name U+0001 value U+0002`, repeated), in order."""
    pairs = (p.split("\x01", 1) for p in _text(data, span).split("\x02") if p)
    return [(name, value) for name, value in pairs]


def _int_config(key: str, default: Optional[int]) -> Optional[int]:
    text = config.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise Err(ListenerError(message=f"py-json-router: config {key} = {text!r} is not an integer"))


class Handler(exports.Handler):
    def consume(self, ctx: ConsumeContext, batch: Batch) -> List[MessageOutcome]:
        routes = {k[len("route."):]: v for k, v in config.all() if k.startswith("route.")}
        default_topic = config.get("default-topic")
        retry_field = config.get("retry-field") or "retry"
        delay = _int_config("delay-level", None)
        max_body = (_int_config("max-body-kib", 256) or 0) * 1024

        outcomes: List[MessageOutcome] = []
        tally = {"routed": 0, "retried": 0, "dead": 0}
        for msg in batch.messages:
            outcome = self._one(msg, batch.data, routes, default_topic, retry_field, delay, max_body)
            if isinstance(outcome, MessageOutcome_Success):
                tally["routed"] += 1
            elif isinstance(outcome, MessageOutcome_RetryLater):
                tally["retried"] += 1
            else:
                tally["dead"] += 1
            outcomes.append(outcome)
        log.log(
            log.Level.INFO,
            f"py-json-router: {len(batch.messages)} from {ctx.queue.topic}#{ctx.queue.queue_id}: "
            f"{tally['routed']} routed, {tally['retried']} retried, {tally['dead']} dead-lettered",
        )
        return outcomes

    def _one(self, msg, data, routes, default_topic, retry_field, delay, max_body) -> MessageOutcome:
        if msg.body.len > max_body:
            return MessageOutcome_DeadLetter(f"py-json-router: body of {msg.body.len} bytes is over the limit")
        body = _bytes(data, msg.body)
        try:
            event = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return MessageOutcome_DeadLetter(f"py-json-router: invalid JSON: {e}")
        if not isinstance(event, dict):
            return MessageOutcome_DeadLetter("py-json-router: JSON body is not an object")
        if event.get(retry_field):
            return MessageOutcome_RetryLater(delay)

        kind = str(event.get("kind", ""))
        topic = routes.get(kind, default_topic)
        if topic is None:
            return MessageOutcome_DeadLetter(f"py-json-router: no route for kind {kind!r}")
        keys = _keys(data, msg.keys)
        if "key" in event:
            keys.append(str(event["key"]))
        out = producer.OutgoingMessage(
            topic=topic,
            tags=None if msg.tags is None else _text(data, msg.tags),
            keys=keys,
            properties=_properties(data, msg.properties)
            + [("EVENT_KIND", kind), ("ROUTED_FROM", _text(data, msg.topic))],
            body=body,
        )
        try:
            producer.send(out)
        except Err as e:
            err = e.value
            if isinstance(err, (producer.ProduceError_Timeout, producer.ProduceError_Failed)):
                msg_id = _text(data, msg.msg_id)
                log.log(log.Level.WARN, f"py-json-router: send of {msg_id} failed ({err}), retrying")
                return MessageOutcome_RetryLater(None)
            return MessageOutcome_DeadLetter(f"py-json-router: send refused: {err}")
        return MessageOutcome_Success()
