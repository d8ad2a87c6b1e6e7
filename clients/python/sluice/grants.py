"""Local grants: the asyncio client takes several requests' worth of a busy caller's quota in
one decision and admits them itself, so most of that caller's requests need no round trip.

A grant is an ``SL.ACQUIRE`` lease of ``COST requests k`` (and k times the request's cost):
every limit of the resource counts the k requests at once, as it would count them one by one.
The client admits up to k requests of exactly that kind (resource, subject, tier, API key
and cost) from it until the grant runs out or ``ttl`` passes, whichever is first, and then
settles it with ``SL.RELEASE ... ACTUAL requests <used>``, which gives back what it did not
use. No limit ever admits more than it allows; what changes:

* a grant is sized from the caller's own recent rate (what it asked in the last ``ttl``) and
  takes at most ``1/share`` of what its limits have left, so near a limit there are no
  grants and every request is decided alone, exactly;
* another worker's request can be refused while this worker holds unused units of a grant,
  for at most ``ttl`` (then they are given back);
* a policy change, ``SL.RESET`` or a warm-up step reaches a caller served from a grant within
  ``ttl``; the fields of a request admitted from a grant are those of the grant's decision;
* a grant is used at most until the first window of its limits ends (the soonest
  ``reset_after_ms``), so no grant spills into the next fixed window; a sliding window may
  count a granted request up to ``ttl`` earlier than it was admitted;
* a concurrency limit counts the k requests in flight until the grant is settled.

Denials are never decided locally: only sluiced refuses.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .decision import Decision

__all__ = ["LocalGrants", "GrantBook", "Grant"]

#: What requests of one kind share: resource, subject, tier, API key and cost.
GrantKey = Tuple[str, str, Optional[str], Optional[str], int]


@dataclass(frozen=True)
class LocalGrants:
    """How the asyncio client takes grants (``AsyncSluiceClient(grants=LocalGrants())``).

    ``ttl``: seconds a grant is used at most (sluiced holds its lease twice as long, so its
    settlement arrives in time). ``max_requests``: the largest grant (taking one costs the app
    a round trip's CPU, as much as a hundred or so requests admitted from it; a larger grant
    costs less per request and holds more back from other workers). ``share``: a grant takes
    at most this fraction (1/share) of what the least-filled limit has left. ``max_keys``:
    kinds of request the client keeps track of at once.
    """

    ttl: float = 0.25
    max_requests: int = 1024
    share: int = 16
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, (int, float)) \
                or not 0.001 <= self.ttl <= 60:
            raise ValueError(f"ttl must be 0.001 to 60 seconds; got {self.ttl!r}")
        for name, low in (("max_requests", 2), ("share", 1), ("max_keys", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


class Grant:
    """One lease of ``size`` requests; ``used`` of them admitted so far."""

    __slots__ = ("lease", "size", "used", "expires", "decision", "cost", "refill_at")

    def __init__(self, lease: str, size: int, expires: float, decision: Decision,
                 cost: int, used: int = 1) -> None:
        self.lease = lease
        self.size = size
        self.used = used  # 1: the request that took the grant; 0: taken ahead of need
        self.expires = expires
        self.decision = decision
        self.cost = cost
        # When this many are used, the next grant is asked for, so that it is there when
        # this one runs out and no request waits for it. Half: on a busy event loop the
        # answer takes a few turns of the loop, each admitting a request per connection.
        self.refill_at = max(1, size - size // 2)

    @property
    def unused(self) -> int:
        return self.size - self.used


class _State:
    """What the book knows of one kind of request."""

    __slots__ = ("grant", "next", "remaining", "period_start", "seen", "seen_before",
                 "pending")

    def __init__(self, now: float) -> None:
        self.grant: Optional[Grant] = None
        self.next: Optional[Grant] = None  # taken ahead, used when `grant` runs out
        self.remaining = 0  # the least any limit had left at the last decision; 0 = unknown
        self.period_start = now
        self.seen = 0  # requests since period_start
        self.seen_before = 0  # requests in the period before
        self.pending: "Optional[asyncio.Future[None]]" = None  # a grant being asked for


class GrantBook:
    """The grants of one client, and what sizes them. Pure bookkeeping: the client does the
    I/O and passes the time in (``now``, seconds of the event loop's clock)."""

    def __init__(self, options: LocalGrants) -> None:
        self.options = options
        self.states: Dict[GrantKey, _State] = {}
        #: Kinds whose grant is running low: the client asks for their next grant.
        self.wanted: List[GrantKey] = []
        self.live: Dict[str, Tuple[GrantKey, Grant]] = {}  # by lease
        # The next grant is asked for ahead of need only far from the limit (four times the
        # headroom a grant needs): near it, one grant at a time keeps what is held back small.
        self._far = 4 * options.share

    def take(self, key: GrantKey, now: float, count: bool = True) -> Optional[Decision]:
        """Counts one request of ``key`` (unless ``count`` is False: the same request again);
        its decision when a grant admits it, else None (the caller decides it with sluiced)."""
        state = self.states.get(key)
        if state is None:
            if len(self.states) >= self.options.max_keys and not self._forget_idle(now):
                return None
            state = self.states[key] = _State(now)
        if count:
            ttl = self.options.ttl
            if now - state.period_start >= ttl:
                state.seen_before = state.seen if now - state.period_start < 2 * ttl else 0
                state.seen = 0
                state.period_start = now
            state.seen += 1
        grant = state.grant
        if grant is not None:
            if grant.used < grant.size and now < grant.expires:
                grant.used += 1
                if grant.used == grant.refill_at and state.next is None \
                        and state.pending is None and state.remaining >= self._far * grant.size:
                    self.wanted.append(key)
                return grant.decision
            state.grant = None  # used up or expired: its settlement is the client's timer's
        grant = state.next
        if grant is not None:
            state.next = None
            if now < grant.expires:
                state.grant = grant
                grant.used += 1
                return grant.decision
        return None

    def size(self, key: GrantKey) -> int:
        """How many requests a grant for ``key`` should take now; below 2, none (decide the
        request alone)."""
        state = self.states.get(key)
        if state is None or state.pending is not None:
            return 0
        # The caller's requests per ttl. A grant asked for ahead of need is used only once the
        # current one runs out, yet its ttl runs from now: it takes what the rest of its life
        # will use, so that it is used up rather than cut short and given back in part.
        demand = max(state.seen, state.seen_before)
        current = state.grant
        if current is not None:
            demand -= current.size - current.used
        # remaining may count the cost's unit (tokens): a grant takes cost per request of it.
        headroom = state.remaining // (self.options.share * key[4])
        return min(self.options.max_requests, demand, headroom)

    def asking(self, key: GrantKey, pending: "Optional[asyncio.Future[None]]") -> None:
        """A grant for ``key`` is being asked for (``pending`` is done when the asking is
        over), or no longer (None)."""
        state = self.states.get(key)
        if state is not None:
            state.pending = pending

    def pending(self, key: GrantKey) -> "Optional[asyncio.Future[None]]":
        """Done when the grant being asked for ``key`` has come (or was refused)."""
        state = self.states.get(key)
        return state.pending if state is not None else None

    def noted(self, key: GrantKey, decision: Decision) -> None:
        """Remember what the limits have left after ``decision`` (sizes the next grant)."""
        state = self.states.get(key)
        if state is None:
            return
        state.remaining = least_remaining(decision)

    def granted(self, key: GrantKey, grant: Grant) -> None:
        """``grant`` came for ``key``: in use at once, or next when one is in use."""
        self.live[grant.lease] = (key, grant)
        state = self.states.get(key)
        if state is None:
            return
        current = state.grant
        if current is None or current.used >= current.size:
            state.grant = grant
        elif state.next is None:
            state.next = grant
        # else (one grant is asked for at a time, so never): held until its time is up

    def ended(self, key: GrantKey, grant: Grant) -> None:
        """``grant`` has expired: requests of ``key`` no longer use it."""
        self.live.pop(grant.lease, None)
        state = self.states.get(key)
        if state is not None:
            if state.grant is grant:
                state.grant = None
            if state.next is grant:
                state.next = None

    def outstanding(self) -> List[Tuple[GrantKey, Grant]]:
        """Every grant whose time is not up yet, in use or not."""
        return list(self.live.values())

    def _forget_idle(self, now: float) -> bool:
        """Drops what is known of kinds without a live grant; True when room was made."""
        idle = [key for key, s in self.states.items()
                if (s.grant is None or now >= s.grant.expires) and s.next is None
                and s.pending is None]
        for key in idle:
            del self.states[key]
        return len(self.states) < self.options.max_keys


def least_remaining(decision: Decision) -> int:
    """What the least-filled limit has left after ``decision``; 0 when not a limit's answer
    (a denial, an unlimited tier, a fallback), which means: no grant."""
    if not decision.allowed or decision.unavailable or decision.storage_failure:
        return 0
    if decision.limits:
        return max(0, min(limit.remaining for limit in decision.limits))
    return max(0, decision.remaining)


def grant_expiry(now: float, ttl: float, decision: Decision) -> float:
    """When a grant taken at ``now`` stops admitting: after ``ttl``, or when the first of its
    limits' windows ends, whichever is sooner."""
    resets = [limit.reset_after_ms for limit in decision.limits if limit.reset_after_ms > 0]
    if not resets and decision.reset_after_ms > 0:
        resets = [decision.reset_after_ms]
    return now + min([ttl] + [ms / 1000 for ms in resets])
