"""The export edge: a listener function becomes componentize-py's ``Handler`` class."""

from typing import Callable, List

from . import _host
from .types import ConsumeContext, ListenerError, MessageQueue, Outcome
from .views import Message

Listener = Callable[[ConsumeContext, List[Message]], List[Outcome]]


def context(ctx) -> ConsumeContext:
    """The SDK's context for a WIT ``consume-context``."""
    q = ctx.queue
    mode = ctx.mode if isinstance(ctx.mode, str) else ctx.mode.name.lower()
    return ConsumeContext(ctx.consumer_group, MessageQueue(q.topic, q.broker_name, q.queue_id),
                          mode, ctx.max_reconsume_times)


def call(listener: Listener, ctx, batch) -> List[Outcome]:
    """Runs ``listener`` on a WIT batch: views over its ``data``, plain outcomes back."""
    data = batch.data
    outcomes = listener(context(ctx), [Message(r, data) for r in batch.messages])
    for o in outcomes:
        if not isinstance(o, Outcome):
            raise TypeError(f"a listener returns Outcome values, not {o!r}")
    return list(outcomes)


def handler(listener: Listener):
    """The ``Handler`` class componentize-py exports for ``listener``::

        Handler = rmq_wasm.handler(consume)

    A :class:`ListenerError` raised by the listener fails the whole batch (retried); any other
    exception traps the component (the host retries, then isolates the poison message)."""
    if not _host.IN_WASM:

        class NativeHandler:
            """Natively: the same calls, on plain values (``rmq_wasm.testing.consume``)."""

            def consume(self, ctx, batch) -> List[Outcome]:
                return call(listener, ctx, batch)

        NativeHandler.listener = staticmethod(listener)
        return NativeHandler

    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import types as wit

    def lower(o: Outcome):
        if o.kind == "success":
            return wit.MessageOutcome_Success()
        if o.kind == "retry-later":
            return wit.MessageOutcome_RetryLater(o.delay_level)
        return wit.MessageOutcome_DeadLetter(o.reason)

    class Handler(exports.Handler):
        def consume(self, ctx, batch):
            try:
                return [lower(o) for o in call(listener, ctx, batch)]
            except ListenerError as e:
                raise Err(wit.ListenerError(message=e.message)) from None

    Handler.listener = staticmethod(listener)
    return Handler
