"""Plain types for the ``rmq:listener`` world, free of componentize-py's bindings (so listener
logic runs in native unit tests); :mod:`rmq_wasm.adapter` converts at the edge."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

# The broker's default ``messageDelayLevel`` table, level 1 first.
DELAY_LABELS = ("1s", "5s", "10s", "30s", "1m", "2m", "3m", "4m", "5m", "6m", "7m", "8m", "9m",
                "10m", "20m", "30m", "1h", "2h")


class ListenerError(Exception):
    """The listener failed the whole batch; the host retries every message of it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def delay_level(text: str) -> int:
    """A delay level from a number (``"3"``) or a label of the default table (``"10s"``,
    ``"1m"``, ``"2h"``); :class:`ListenerError` when it is neither."""
    s = str(text).strip()
    if s.isdigit() and 1 <= int(s) <= 18:
        return int(s)
    if s in DELAY_LABELS:
        return DELAY_LABELS.index(s) + 1
    raise ListenerError(f"invalid delay level {s!r}: expected 1..=18 or one of "
                        "1s 5s 10s 30s 1m .. 10m 20m 30m 1h 2h")


@dataclass(frozen=True)
class Outcome:
    """What to do with one message: ``Outcome.SUCCESS``, ``Outcome.retry()``,
    ``Outcome.retry_after(level)`` or ``Outcome.dead_letter(reason)``."""

    kind: str  # "success" | "retry-later" | "dead-letter"
    delay_level: Optional[int] = None
    reason: Optional[str] = None

    @staticmethod
    def retry() -> "Outcome":
        """Deliver again later, at the broker's next level (3 + reconsume times)."""
        return Outcome("retry-later")

    @staticmethod
    def retry_after(level: int) -> "Outcome":
        """Deliver again after delay level ``level`` (1..=18; the host clamps others)."""
        return Outcome("retry-later", delay_level=level)

    @staticmethod
    def dead_letter(reason: Optional[str] = None) -> "Outcome":
        """Send to ``%DLQ%<group>`` now; ``reason`` is recorded in the DLQ copy."""
        return Outcome("dead-letter", reason=reason)

    @property
    def is_success(self) -> bool:
        return self.kind == "success"


Outcome.SUCCESS = Outcome("success")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MessageQueue:
    """RocketMQ's ``MessageQueue``: the topic, broker and queue a message lives in."""

    topic: str
    broker_name: str = ""
    queue_id: int = 0


@dataclass(frozen=True)
class ConsumeContext:
    """Per-call context. ``mode`` is ``"concurrently"`` or ``"orderly"``."""

    consumer_group: str = ""
    queue: MessageQueue = MessageQueue("")
    mode: str = "concurrently"
    max_reconsume_times: int = 16

    @property
    def is_orderly(self) -> bool:
        return self.mode == "orderly"

    def is_last_attempt(self, msg) -> bool:
        """Whether a retry of ``msg`` would send it to the DLQ instead."""
        return msg.reconsume_times >= self.max_reconsume_times


@dataclass
class OutgoingMessage:
    """A message to send through the host's producer (``producer.send``)."""

    topic: str
    body: bytes = b""
    tags: Optional[str] = None
    keys: List[str] = field(default_factory=list)
    properties: List[Tuple[str, str]] = field(default_factory=list)

    def with_property(self, name: str, value: str) -> "OutgoingMessage":
        """Sets a user property (replacing an earlier one with the same name)."""
        self.properties = [(k, v) for k, v in self.properties if k != name] + [(name, value)]
        return self


@dataclass(frozen=True)
class SendReceipt:
    """The broker's answer to a send. ``status``: ``"ok"``, ``"flush-disk-timeout"``,
    ``"flush-slave-timeout"`` or ``"slave-not-available"``."""

    msg_id: str
    queue: MessageQueue
    queue_offset: int
    offset_msg_id: str = ""
    status: str = "ok"


class ProduceError(Exception):
    """Why a send failed. ``kind``: ``"invalid"`` (unacceptable message), ``"denied"`` (topic
    not granted, quota used up), ``"timeout"`` or ``"failed"`` (broker or network)."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail

    @property
    def is_transient(self) -> bool:
        """Whether a later attempt may succeed (timeout, failed): retry rather than dead-letter."""
        return self.kind in ("timeout", "failed")
