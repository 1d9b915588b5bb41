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

Built on the Python SDK (guest-sdk/python, module rmq_wasm).
"""

from typing import List

import rmq_wasm
from rmq_wasm import ConsumeContext, ListenerError, Message, Outcome, ProduceError, config, log, producer


def consume(ctx: ConsumeContext, msgs: List[Message]) -> List[Outcome]:
    routes = {k[len("route."):]: v for k, v in config.all() if k.startswith("route.")}
    default_topic = config.get("default-topic")
    retry_field = config.get_or("retry-field", "retry")
    try:
        delay = config.parse("delay-level", int)
        max_kib = config.parse("max-body-kib", int)
    except ListenerError as e:
        raise ListenerError(f"py-json-router: {e.message}") from None
    max_body = (256 if max_kib is None else max_kib) * 1024

    outcomes = [one(m, routes, default_topic, retry_field, delay, max_body) for m in msgs]
    routed = sum(o.is_success for o in outcomes)
    retried = sum(o.kind == "retry-later" for o in outcomes)
    log.info(
        f"py-json-router: {len(msgs)} from {ctx.queue.topic}#{ctx.queue.queue_id}: "
        f"{routed} routed, {retried} retried, {len(msgs) - routed - retried} dead-lettered"
    )
    return outcomes


def one(msg: Message, routes, default_topic, retry_field, delay, max_body) -> Outcome:
    if msg.body_len > max_body:
        return Outcome.dead_letter(f"py-json-router: body of {msg.body_len} bytes is over the limit")
    try:
        event = msg.body_json()
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError both
        return Outcome.dead_letter(f"py-json-router: invalid JSON: {e}")
    if not isinstance(event, dict):
        return Outcome.dead_letter("py-json-router: JSON body is not an object")
    if event.get(retry_field):
        return Outcome.retry_after(delay) if delay is not None else Outcome.retry()

    kind = str(event.get("kind", ""))
    topic = routes.get(kind, default_topic)
    if topic is None:
        return Outcome.dead_letter(f"py-json-router: no route for kind {kind!r}")
    out = msg.forward_to(topic)
    if "key" in event:
        out.keys.append(str(event["key"]))
    out.properties += [("EVENT_KIND", kind), ("ROUTED_FROM", msg.topic)]
    try:
        producer.send(out)
    except ProduceError as e:
        if e.is_transient:
            log.warn(f"py-json-router: send of {msg.msg_id} failed ({e}), retrying")
            return Outcome.retry()
        return Outcome.dead_letter(f"py-json-router: send refused: {e}")
    return Outcome.SUCCESS


Handler = rmq_wasm.handler(consume)
