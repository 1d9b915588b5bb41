"""The host's ``config`` import: the listener's own ``[listener.config]`` table."""

from typing import Callable, List, Optional, Tuple, TypeVar

from . import _host
from .types import ListenerError

T = TypeVar("T")


def get(key: str) -> Optional[str]:
    """The value configured for ``key``, or None."""
    if _host.IN_WASM:
        return _host.wit_config.get(key)
    return _host.FAKE.config.get(key)


def all() -> List[Tuple[str, str]]:  # noqa: A001 (the WIT name)
    """Every configured pair, sorted by key."""
    if _host.IN_WASM:
        return list(_host.wit_config.all())
    return sorted(_host.FAKE.config.items())


def get_or(key: str, default: str) -> str:
    value = get(key)
    return default if value is None else value


def require(key: str) -> str:
    """The value for ``key``; :class:`ListenerError` naming the key when it is not set."""
    value = get(key)
    if value is None:
        raise ListenerError(f"config key {key} is not set")
    return value


def parse(key: str, convert: Callable[[str], T]) -> Optional[T]:
    """``convert(value)`` for ``key`` (e.g. ``int``, ``rmq_wasm.delay_level``), None when not
    set; :class:`ListenerError` naming the key and value when it does not convert."""
    value = get(key)
    if value is None:
        return None
    try:
        return convert(value)
    except (ValueError, ListenerError) as e:
        raise ListenerError(f"config {key} = {value!r}: {e}") from None
