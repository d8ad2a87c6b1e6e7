"""Typed results of sluice's decision commands."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

__all__ = ["Decision", "UNLIMITED", "NEVER"]

#: ``limit`` and ``remaining`` of a decision for an unlimited tier.
UNLIMITED = -1
#: ``retry_after_ms`` when the request can never be allowed (its cost exceeds the limit).
NEVER = -1


@dataclass(frozen=True)
class Decision:
    """The engine's answer to ``SL.CHECK``, ``SL.PEEK`` or ``SL.ACQUIRE``.

    ``limit`` and ``remaining`` are in the deciding limit's unit (requests, tokens or items)
    and are :data:`UNLIMITED` (-1) for an unlimited tier. ``reset_after_ms`` is how long until
    the deciding limit is full again; ``retry_after_ms`` is 0 when allowed, the wait before
    the same request would be allowed when denied, and :data:`NEVER` (-1) when it never will.

    ``unavailable`` is set when sluiced could not be reached and the client answered by
    itself according to its ``on_unavailable`` setting; such a decision carries no quota.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after_ms: int
    retry_after_ms: int
    rule: str
    resource: str = ""
    unavailable: bool = False

    @property
    def denied(self) -> bool:
        return not self.allowed

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def retry_after_seconds(self) -> Optional[int]:
        """Whole seconds to wait before retrying (rounded up, at least 1), or None.

        None when allowed or when retrying can never help.
        """
        if self.allowed or self.retry_after_ms < 0:
            return None
        return max(1, math.ceil(self.retry_after_ms / 1000))

    @property
    def reset_after_seconds(self) -> int:
        """Whole seconds until the deciding limit is full again (rounded up)."""
        return max(0, math.ceil(self.reset_after_ms / 1000))

    def __bool__(self) -> bool:  # ``if client.check(...):`` reads naturally
        return self.allowed

    @classmethod
    def from_reply(cls, reply: Sequence[Any], resource: str = "") -> "Decision":
        """Build from the first six elements of a decision reply."""
        if not isinstance(reply, (list, tuple)) or len(reply) < 6:
            raise ValueError(f"malformed decision reply from sluiced: {reply!r}")
        allowed, limit, remaining, reset_ms, retry_ms, rule = reply[:6]
        if isinstance(rule, bytes):
            rule = rule.decode("utf-8", "replace")
        return cls(
            allowed=bool(int(allowed)),
            limit=int(limit),
            remaining=int(remaining),
            reset_after_ms=int(reset_ms),
            retry_after_ms=int(retry_ms),
            rule=rule or "",
            resource=resource,
        )
