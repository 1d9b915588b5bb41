"""The host's ``log`` import: lines go to the host's tracing, tagged with plugin, group, topic and
queue. The host caps line length (4 KiB) and rate (256 a call, 1000 a second per listener)."""

from . import _host

LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    """Logs ``message`` at ``level`` (one of :data:`LEVELS`)."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if _host.IN_WASM:
        _host.wit_log.log(getattr(_host.wit_log.Level, level.upper()), message)
    else:
        _host.FAKE.logs.append((level, message))


def trace(message: str) -> None:
    log("trace", message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)
