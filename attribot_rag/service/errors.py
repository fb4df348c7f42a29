"""What the service's errors become over HTTP: one table, used by the JSON error handlers
and by the ``error`` event of a stream that already started."""

from __future__ import annotations

from ..errors import AttribotError, ContextTooLongError
from .limits import LimitExceededError, QueueFullError, RequestTimeoutError


class NoIndexError(Exception):
    """/v1/ask on an app built without a passage index (answered 404)."""


class NotStreamableError(Exception):
    """A streaming request the stream cannot serve, e.g. one that brings its own answer
    (answered 422)."""


# What each expected error becomes: (status, kind). An error is matched by its own class
# or its nearest listed base class (as the app dispatches handlers), so ContextTooLongError
# gets its 422 although it is an AttribotError (400).
EXPECTED_ERRORS: dict[type[Exception], tuple[int, str]] = {
    LimitExceededError: (422, "limit_exceeded"),
    ContextTooLongError: (422, "context_too_long"),
    AttribotError: (400, "invalid_input"),
    NoIndexError: (404, "no_index"),
    NotStreamableError: (422, "invalid_input"),
    QueueFullError: (503, "busy"),
    RequestTimeoutError: (504, "timeout"),
}


def error_status(exc: Exception) -> tuple[int, str]:
    """(status, kind) of an expected error; (500, "internal") for anything else."""
    for cls in type(exc).__mro__:
        if cls in EXPECTED_ERRORS:
            return EXPECTED_ERRORS[cls]
    return 500, "internal"
