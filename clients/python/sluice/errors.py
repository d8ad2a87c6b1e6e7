"""Exceptions raised by the sluice client.

Every error the engine sends is a RESP error whose first word is a stable upper-case code
(``ERR``, ``WRONGARGS``, ``NOPERM``, ``STORAGE``, ``INVALID``, ``NOLEASE``, ...). The client
keeps that code in :attr:`SluiceError.code` and the rest of the engine's sentence in
:attr:`SluiceError.message`, so callers can branch on the code and show the message as is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .decision import Decision

__all__ = [
    "SluiceError",
    "SluiceUnavailable",
    "LeaseNotFound",
    "RateLimited",
    "error_from_response",
]


class SluiceError(Exception):
    """An error reported by sluiced, or a failure to talk to it.

    ``code`` is the engine's upper-case error prefix (``"WRONGARGS"``, ``"STORAGE"``, ...);
    ``message`` is the engine's sentence without that prefix.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}" if message else code)
        self.code = code
        self.message = message


class SluiceUnavailable(SluiceError):
    """sluiced could not be reached (socket missing, refused, or no answer within the timeout).

    Raised only when the client is configured with ``on_unavailable="raise"``; otherwise the
    client answers with a fail-open or fail-closed :class:`~sluice.Decision` instead.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__("UNAVAILABLE", message)
        #: Why, without the socket path (e.g. "[Errno 2] No such file or directory").
        self.reason = reason or message


class LeaseNotFound(SluiceError):
    """``SL.RELEASE`` named a lease the engine does not hold (unknown, released or expired)."""


class RateLimited(SluiceError):
    """A lease or check was denied; ``decision`` says by which rule and for how long."""

    def __init__(self, decision: "Decision") -> None:
        if decision.retry_after_ms < 0:
            wait = "the cost can never fit the limit"
        else:
            wait = f"retry after {decision.retry_after_ms} ms"
        super().__init__(
            "RATELIMITED",
            f"{decision.resource or 'resource'} denied by rule '{decision.rule}' "
            f"(limit {decision.limit}, remaining {decision.remaining}); {wait}",
        )
        self.decision = decision


# The clients keep the engine's error text whole (sluice/_resp.py), so the code is always the
# first word.
_CODE_RE = re.compile(r"^([A-Z][A-Z0-9_]*)(?: (.*))?$", re.S)


def error_from_response(exc: Union[Exception, str]) -> SluiceError:
    """Turn an error reply's full text (or an exception carrying it) into a SluiceError."""
    text = str(exc)
    match = _CODE_RE.match(text)
    if match:
        code, message = match.group(1), match.group(2) or ""
    else:
        code, message = "ERR", text
    if code == "NOLEASE":
        return LeaseNotFound(code, message)
    return SluiceError(code, message)
