"""Zero-copy views of the host's batch.

The host hands a batch over as fixed-size records whose text and body are spans
(``start``, ``len``) of one ``data`` buffer (``wit/listener.wit``): a :class:`Message` reads a
field only when asked, so a listener that looks at tags never decodes bodies."""

import json
from typing import Any, Iterator, List, Optional, Tuple

from .types import OutgoingMessage

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"


class Message:
    """One consumed message, read in place from the batch's ``data``."""

    __slots__ = ("_r", "_data")

    def __init__(self, record, data: bytes):
        self._r = record
        self._data = data

    def _bytes(self, span) -> bytes:
        return self._data[span.start : span.start + span.len]

    def _text(self, span) -> str:
        return self._bytes(span).decode("utf-8", "replace")

    @property
    def topic(self) -> str:
        """The message's topic (the original one for redelivered messages)."""
        return self._text(self._r.topic)

    @property
    def queue_offset(self) -> int:
        return self._r.queue_offset

    @property
    def msg_id(self) -> str:
        """``UNIQ_KEY``, or the offset msg id when the message has none."""
        return self._text(self._r.msg_id)

    @property
    def offset_msg_id(self) -> str:
        """Broker-generated id (store host + commit-log offset)."""
        return self._text(self._r.offset_msg_id)

    @property
    def keys(self) -> List[str]:
        """``KEYS`` split on spaces; [] when there are none."""
        return [k for k in self._text(self._r.keys).split(" ") if k]

    def has_key(self, key: str) -> bool:
        return key in self.keys

    @property
    def tags(self) -> Optional[str]:
        return None if self._r.tags is None else self._text(self._r.tags)

    def has_tag(self, tag: str) -> bool:
        return self.tags == tag

    @property
    def properties(self) -> List[Tuple[str, str]]:
        """User properties, sorted by name (RocketMQ system properties excluded)."""
        pairs = (p.split(NAME_VALUE_SEPARATOR, 1) for p in
                 self._text(self._r.properties).split(PROPERTY_SEPARATOR) if p)
        return [(p[0], p[1]) for p in pairs if len(p) == 2]

    @property
    def body(self) -> bytes:
        return self._bytes(self._r.body)

    @property
    def body_len(self) -> int:
        """The body's length, without copying it."""
        return self._r.body.len

    def body_text(self) -> str:
        """The body as UTF-8 (``UnicodeDecodeError`` when it is not)."""
        return self.body.decode("utf-8")

    def body_json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not UTF-8 JSON)."""
        return json.loads(self.body_text())

    def body_contains(self, needle: bytes) -> bool:
        return needle in self.body

    @property
    def reconsume_times(self) -> int:
        """Deliveries before this one (0 on first delivery)."""
        return self._r.reconsume_times

    @property
    def is_redelivery(self) -> bool:
        return self._r.reconsume_times > 0

    @property
    def born_timestamp_ms(self) -> int:
        """Producer clock, ms since the Unix epoch."""
        return self._r.born_timestamp

    @property
    def store_timestamp_ms(self) -> int:
        """Broker clock, ms since the Unix epoch."""
        return self._r.store_timestamp

    @property
    def born_host(self) -> str:
        return self._text(self._r.born_host)

    @property
    def store_host(self) -> str:
        return self._text(self._r.store_host)

    def forward_to(self, topic: str) -> OutgoingMessage:
        """An outgoing copy for ``topic``: same tags, keys, properties and body."""
        return OutgoingMessage(topic=topic, body=self.body, tags=self.tags, keys=self.keys,
                               properties=self.properties)

    # Defined last: inside the class body, this name shadows the `property` decorator.
    def property(self, name: str) -> Optional[str]:
        """The user property ``name`` (the last one if set twice), or None."""
        found = None
        for k, v in self.properties:
            if k == name:
                found = v
        return found

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, queue_offset={self.queue_offset}, "
                f"msg_id={self.msg_id!r}, tags={self.tags!r}, body_len={self.body_len})")


def messages(batch) -> Iterator[Message]:
    """The views of every message of ``batch`` (a WIT ``batch``: ``messages``, ``data``)."""
    data = batch.data
    return (Message(r, data) for r in batch.messages)
