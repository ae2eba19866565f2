"""structlog configuration: JSON lines (production) or a coloured console (development).

Call :func:`configure_logging` once at process start; get loggers with :func:`get_logger` and
bind context (``actor``, ``symbol``, ``seq``) on them or with
``structlog.contextvars.bind_contextvars``. Every JSON line has ``timestamp`` (ISO 8601, UTC),
``level``, ``event`` and the bound keys. Records of the standard ``logging`` module (nats-py,
asyncpg, uvicorn) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import msgspec
import structlog

__all__ = ["configure_logging", "get_logger"]

_json_encoder = msgspec.json.Encoder()


def _serialize(obj: Any, **_: Any) -> str:
    try:
        return _json_encoder.encode(obj).decode()
    except TypeError:
        return _json_encoder.encode({k: str(v) for k, v in obj.items()}).decode()


def configure_logging(
    fmt: Literal["json", "console"] = "json",
    level: str = "INFO",
    **context: Any,
) -> None:
    """Configure structlog and the standard ``logging`` root for this process (to stderr).

    Args:
        fmt: ``json`` or ``console``.
        level: minimum level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).
        context: key/values bound to every line of the process (e.g. ``actor="matcher"``).

    Raises:
        ValueError: unknown ``fmt`` or ``level``.
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be json or console, not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_serialize)
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)


def get_logger(name: str | None = None, **bind: Any) -> Any:
    """A structlog logger (``BoundLogger``) with ``bind`` keys on each line.

    Works before :func:`configure_logging` too (structlog's default console output).
    """
    log = structlog.get_logger(name)
    return log.bind(**bind) if bind else log
