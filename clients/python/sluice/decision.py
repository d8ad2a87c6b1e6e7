"""Typed results of sluice's decision commands."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, cast

__all__ = ["Decision", "LimitState", "UNLIMITED", "NEVER", "STORAGE_RULE"]

#: ``limit`` and ``remaining`` of a decision for an unlimited tier.
UNLIMITED = -1
#: ``retry_after_ms`` when the request can never be allowed (its cost exceeds the limit).
NEVER = -1
#: ``rule`` of a decision the policy's ``on_storage_failure`` made because storage failed.
STORAGE_RULE = "(storage)"


_new = object.__new__


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


@dataclass(frozen=True)
class LimitState:
    """One enforced limit's answer inside a decision: its name, its limit after tier and
    warm-up, what is left of it, ms until it is full again, and its window in ms (for a
    concurrency limit: the default lease TTL)."""

    name: str
    limit: int
    remaining: int
    reset_after_ms: int
    window_ms: int

    @classmethod
    def from_reply(cls, item: Any) -> "LimitState":
        if not isinstance(item, (list, tuple)) or len(item) != 5:
            raise ValueError(f"malformed limit in a decision reply from sluiced: {item!r}")
        name, limit, remaining, reset_ms, window_ms = item
        return cls(_text(name), int(limit), int(remaining), int(reset_ms), int(window_ms))


def _limit_states(items: Any) -> Tuple[LimitState, ...]:
    if not isinstance(items, list):
        if not isinstance(items, tuple):
            raise ValueError(f"malformed limits in a decision reply from sluiced: {items!r}")
    # Every decision carries these, so the common shape (what hiredis returns: a list of
    # [str, int, int, int, int]) is built without a call per field.
    states = []
    for item in items:
        if type(item) is list and len(item) == 5:
            name, limit, remaining, reset_ms, window_ms = item
            if (type(name) is str and type(limit) is int and type(remaining) is int
                    and type(reset_ms) is int and type(window_ms) is int):
                state = _new(LimitState)  # what the frozen __init__ does, without its calls
                state.__dict__.update(name=name, limit=limit, remaining=remaining,
                                      reset_after_ms=reset_ms, window_ms=window_ms)
                states.append(state)
                continue
        states.append(LimitState.from_reply(item))
    return tuple(states)


@dataclass(frozen=True)
class Decision:
    """The engine's answer to ``SL.CHECK``, ``SL.PEEK`` or ``SL.ACQUIRE``.

    ``limit`` and ``remaining`` are in the deciding limit's unit (requests, tokens or items)
    and are :data:`UNLIMITED` (-1) for an unlimited tier. ``reset_after_ms`` is how long until
    the deciding limit is full again; ``retry_after_ms`` is 0 when allowed, the wait before
    the same request would be allowed when denied, and :data:`NEVER` (-1) when it never will.

    ``tier`` is the tier sluice applied (resolved from the API key, the subject or the
    policy's default), ``window_ms`` the deciding limit's window (0 when no limit decided),
    and ``limits`` every enforced limit's answer, deciding limit included, in policy order.
    They are empty when the daemon predates them.

    ``waited_ms`` and ``wait_outcome`` are set for a request made with ``wait=``: how long
    sluiced held it, and how the wait ended: ``""`` (decided at once), ``"admitted"``,
    ``"deadline"``, ``"queue_full"``, ``"over_max_wait"`` or ``"not_waitable"``
    (docs/protocol.md, "Waiting for capacity").

    ``unavailable`` is set when sluiced could not be reached and the client answered by
    itself according to its ``on_unavailable`` setting; ``storage_failure`` when sluiced's
    storage failed and the policy's ``on_storage_failure`` decided. Neither carries a quota.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after_ms: int
    retry_after_ms: int
    rule: str
    resource: str = ""
    unavailable: bool = False
    tier: str = ""
    window_ms: int = 0
    limits: Tuple[LimitState, ...] = ()
    waited_ms: int = 0
    wait_outcome: str = ""

    @property
    def denied(self) -> bool:
        return not self.allowed

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def storage_failure(self) -> bool:
        """Storage failed and the policy's ``on_storage_failure`` decided, not a limit."""
        return self.rule == STORAGE_RULE

    @property
    def has_quota(self) -> bool:
        """The decision reports a real limit (not unlimited, unreachable or a storage failure)."""
        return not (self.unavailable or self.unlimited or self.storage_failure)

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
    def from_reply(cls, reply: Sequence[Any], resource: str = "", extra_at: int = 6) -> "Decision":
        """Build from a decision reply: six fields, then (at ``extra_at``: 6, or 8 for
        ``SL.ACQUIRE``) the tier, the deciding window and the limits when the daemon sends them,
        then the time waited and the wait's outcome for a request with WAIT.
        """
        if not isinstance(reply, (list, tuple)) or len(reply) < 6:
            raise ValueError(f"malformed decision reply from sluiced: {reply!r}")
        allowed, limit, remaining, reset_ms, retry_ms, rule = reply[:6]
        tier, window_ms, limits = "", 0, cast(Tuple[LimitState, ...], ())
        if len(reply) >= extra_at + 3:
            tier, window_ms, items = reply[extra_at:extra_at + 3]
            tier = _text(tier)
            window_ms = int(window_ms)
            limits = _limit_states(items)
        waited_ms, wait_outcome = 0, ""
        if len(reply) >= extra_at + 5:
            waited_ms = int(reply[extra_at + 3])
            wait_outcome = _text(reply[extra_at + 4])
        # What the frozen dataclass's __init__ does (it sets each field through
        # object.__setattr__), in one step: this runs for every limited request.
        decision = _new(cls)
        decision.__dict__.update(
            allowed=bool(int(allowed)), limit=int(limit), remaining=int(remaining),
            reset_after_ms=int(reset_ms), retry_after_ms=int(retry_ms), rule=_text(rule),
            resource=resource, unavailable=False, tier=tier, window_ms=window_ms, limits=limits,
            waited_ms=waited_ms, wait_outcome=wait_outcome)
        return decision
