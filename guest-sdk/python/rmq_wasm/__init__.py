"""Guest SDK for rmq-wasm listener components written in Python (componentize-py).

A listener is a function ``consume(ctx, messages) -> list[Outcome]`` over :class:`Message` views
of the batch the host hands over; ``Handler = rmq_wasm.handler(consume)`` in the app module
exports it (componentize-py looks for a class ``Handler``). While it runs it may :mod:`log`,
read its own :mod:`config` and send through the host's :mod:`producer`. Off Wasm (native unit
tests) the host imports are served by the fake host of :mod:`rmq_wasm.testing`.

The same concepts and names as the Rust SDK (``guest-sdk/rust``) and the JavaScript one
(``guest-sdk/js``).
"""

from . import config, log, producer
from .adapter import handler
from .types import (
    ConsumeContext,
    ListenerError,
    MessageQueue,
    Outcome,
    OutgoingMessage,
    ProduceError,
    SendReceipt,
    delay_level,
)
from .views import Message

__all__ = [
    "ConsumeContext",
    "ListenerError",
    "Message",
    "MessageQueue",
    "Outcome",
    "OutgoingMessage",
    "ProduceError",
    "SendReceipt",
    "config",
    "delay_level",
    "handler",
    "log",
    "producer",
]
