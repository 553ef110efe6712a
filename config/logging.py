"""Log records that say which run and which delivery they belong to.

`log_context(run_id=..., delivery_id=...)` marks everything logged inside it, in
this thread or task, with those ids (a contextvar, so nested contexts add to the
outer one and concurrent tasks never see each other's ids). `ContextFilter`
copies them onto each record, where the JSON formatter writes them as fields and
the plain formatter appends them as `key=value`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# The ids a record may carry, in the order the plain format prints them.
CONTEXT_FIELDS = ("run_id", "delivery_id", "chunk")

# Outside any log_context block; never mutated.
_NO_CONTEXT: dict[str, object] = {}
_context: ContextVar[dict[str, object]] = ContextVar("paperboy_log_context", default=_NO_CONTEXT)

LOG_FORMATS = ("plain", "json")


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Add ids to every record logged inside the block; None values are left out."""
    _check_fields(ids)
    token = _context.set(
        {**_context.get(), **{key: value for key, value in ids.items() if value is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


def log_context_bind(**ids: object) -> None:
    """Add ids to the innermost open log_context block, for the rest of it.

    For an id that only exists inside the block, such as the run a service creates:
    the task opens `with log_context():`, the service binds `run_id` once the row
    exists, and every later line of the task carries it. Outside any block it does
    nothing, so an id can never stick to a worker's later tasks.
    """
    _check_fields(ids)
    current = _context.get()
    if current is _NO_CONTEXT:
        return
    current.update({key: value for key, value in ids.items() if value is not None})


def _check_fields(ids: dict[str, object]) -> None:
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")


def current_log_context() -> dict[str, object]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copy the current log context onto the record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        return True


class PlainFormatter(logging.Formatter):
    """The classic one-line format, with the record's context ids appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{key}={getattr(record, key)}"
            for key in CONTEXT_FIELDS
            if getattr(record, key, None) is not None
        )
        return f"{line} [{ids}]" if ids else line


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for settings: one console handler in the chosen format."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    formatters: dict[str, dict[str, Any]] = {
        "plain": {"()": PlainFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": formatters,
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["context"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }
