"""The host's ``producer`` import: sends are granted per listener (``produce_topics``), bounded per
call and per second, and counted; failures raise :class:`ProduceError`."""

from . import _host
from .types import MessageQueue, OutgoingMessage, ProduceError, SendReceipt


def send(msg: OutgoingMessage) -> SendReceipt:
    """Sends ``msg`` and waits for the broker's answer."""
    if not _host.IN_WASM:
        return _fake_send(msg)
    from componentize_py_types import Err

    p = _host.wit_producer
    out = p.OutgoingMessage(topic=msg.topic, tags=msg.tags, keys=list(msg.keys),
                            properties=list(msg.properties), body=bytes(msg.body))
    try:
        r = p.send(out)
    except Err as e:
        err = e.value
        kind = type(err).__name__.rsplit("_", 1)[-1].lower()
        raise ProduceError(kind, getattr(err, "value", None) or "") from None
    q = MessageQueue(r.queue.topic, r.queue.broker_name, r.queue.queue_id)
    status = r.status.name.lower().replace("_", "-")
    return SendReceipt(r.msg_id, q, r.queue_offset, r.offset_msg_id, status)


def _fake_send(msg: OutgoingMessage) -> SendReceipt:
    fake = _host.FAKE
    if fake.send_hook is not None:
        receipt = fake.send_hook(msg)  # raises ProduceError to fail the send
    else:
        n = len(fake.sent)
        receipt = SendReceipt(f"FAKE{n:016X}", MessageQueue(msg.topic, "fake-broker", 0), n)
    fake.sent.append(msg)
    return receipt
