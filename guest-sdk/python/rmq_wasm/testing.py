"""A fake host for native unit tests of listener logic (no Wasm, no cluster).

``message(...)`` describes a consumed message; :func:`consume` lays a list of them out exactly as
the host lays out a batch (:func:`batch`) and runs the listener through the same adapter the
component exports, so the listener reads them through the same :class:`~rmq_wasm.Message` views
it gets in Wasm::

    testing.set_config({"word": "poison"})
    assert testing.consume(app.consume, [testing.message("t", b"poison!")]) == [
        Outcome.dead_letter("body contains 'poison'")]
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _host
from .adapter import call
from .types import ConsumeContext, Outcome, OutgoingMessage, ProduceError, SendReceipt

__all__ = ["Batch", "Span", "TestMessage", "batch", "consume", "logs", "message", "on_send",
           "reset", "sent", "set_config", "ProduceError"]


@dataclass(frozen=True)
class Span:
    start: int
    len: int


@dataclass(frozen=True)
class Record:
    """A WIT ``message`` record, field for field (what componentize-py hands the listener)."""

    queue_offset: int
    born_timestamp: int
    store_timestamp: int
    reconsume_times: int
    topic: Span
    msg_id: Span
    offset_msg_id: Span
    keys: Span
    tags: Optional[Span]
    properties: Span
    body: Span
    born_host: Span
    store_host: Span


@dataclass(frozen=True)
class Batch:
    messages: List[Record]
    data: bytes


@dataclass
class TestMessage:
    """What a producer sent plus what the broker and the consumer add."""

    topic: str
    body: bytes = b""
    tags: Optional[str] = None
    keys: List[str] = field(default_factory=list)
    properties: List[Tuple[str, str]] = field(default_factory=list)
    msg_id: str = ""  # UNIQ_KEY; empty: the offset msg id stands in, as on the host
    offset_msg_id: str = ""
    queue_offset: int = 0
    born_timestamp_ms: int = 0
    store_timestamp_ms: int = 0
    born_host: str = ""
    store_host: str = ""
    reconsume_times: int = 0


def message(topic: str, body: Union[bytes, str] = b"", *, properties: Union[Dict[str, str],
            Sequence[Tuple[str, str]]] = (), keys: Sequence[str] = (), **fields) -> TestMessage:
    """A test message on ``topic`` (a ``str`` body is UTF-8 encoded); any other field of
    :class:`TestMessage` by keyword."""
    body = body.encode() if isinstance(body, str) else bytes(body)
    props = list(properties.items()) if isinstance(properties, dict) else list(properties)
    return TestMessage(topic, body, keys=list(keys), properties=props, **fields)


def batch(msgs: Sequence[TestMessage]) -> Batch:
    """``msgs`` as the host's batch, byte for byte (``host/src/wasm/convert.rs::batch``): each
    message appends topic, offset msg id, user properties sorted by name, ``UNIQ_KEY``, keys,
    tags, body, born host, store host to one buffer; a topic or host equal to the previous
    message's is written once and its span shared."""
    data = bytearray()

    def span(b: bytes) -> Span:
        s = Span(len(data), len(b))
        data.extend(b)
        return s

    last: Dict[str, Tuple[str, Span]] = {}

    def once(name: str, value: str) -> Span:
        prev = last.get(name)
        if prev is not None and prev[0] == value:
            return prev[1]
        s = span(value.encode())
        last[name] = (value, s)
        return s

    records = []
    for m in msgs:
        topic = once("topic", m.topic)
        offset_id = span(m.offset_msg_id.encode())
        props = "".join(f"{k}\x01{v}\x02" for k, v in sorted(m.properties, key=lambda p: p[0]))
        properties = span(props.encode())
        msg_id = span(m.msg_id.encode()) if m.msg_id else offset_id
        keys = span(" ".join(m.keys).encode())
        tags = None if m.tags is None else span(m.tags.encode())
        body = span(m.body)
        born = once("born_host", m.born_host)
        store = once("store_host", m.store_host)
        records.append(Record(m.queue_offset, m.born_timestamp_ms, m.store_timestamp_ms,
                              m.reconsume_times, topic, msg_id, offset_id, keys, tags,
                              properties, body, born, store))
    return Batch(records, bytes(data))


def consume(listener, msgs: Sequence[TestMessage],
            ctx: Optional[ConsumeContext] = None) -> List[Outcome]:
    """Runs ``listener`` (a function, or a class from ``rmq_wasm.handler``) on ``msgs`` laid out
    as the host lays out a batch; like the host, a short answer is padded with
    ``Outcome.retry()`` and extra outcomes are dropped. A ``ListenerError`` propagates."""
    fn = getattr(listener, "listener", listener)
    ctx = ctx or ConsumeContext("test-group")
    outcomes = call(fn, ctx, batch(msgs))[: len(msgs)]
    return outcomes + [Outcome.retry()] * (len(msgs) - len(outcomes))


def reset() -> None:
    """Clears config, logs, sent messages and the send hook."""
    _host.FAKE.__init__()


def set_config(pairs: Dict[str, str]) -> None:
    """Replaces the listener's config."""
    _host.FAKE.config = dict(pairs)


def on_send(hook: Callable[[OutgoingMessage], SendReceipt]) -> None:
    """Decides every later send: return a receipt, or raise :class:`ProduceError`."""
    _host.FAKE.send_hook = hook


def logs() -> List[Tuple[str, str]]:
    """``(level, line)`` logged so far, oldest first."""
    return list(_host.FAKE.logs)


def sent() -> List[OutgoingMessage]:
    """Messages successfully sent so far, oldest first."""
    return list(_host.FAKE.sent)
