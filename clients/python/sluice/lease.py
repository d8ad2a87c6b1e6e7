"""Leases from ``SL.ACQUIRE``: a reserved (estimated) cost, settled later with the real one.

A lease is how a token-metered or long-running request is limited: acquire with the
estimate (say ``max_tokens``), do the work, then release with the actual cost (the tokens
really generated). The engine refunds or charges the difference. Used as a context manager
the lease is released on exit with :attr:`actual` if it was set, else with the estimate; a
denied lease raises :class:`~sluice.RateLimited` on entry, so the block only runs when
allowed.

A streamed response reports its usage as it goes: :meth:`Lease.charge` (``SL.CHARGE``) adds
units to the lease; usage up to the estimate is covered by the reservation, beyond it each
charge consumes from the limits and may be refused (``allowed`` False: stop streaming). A
lease that was charged and is released without an actual cost is settled at what it charged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

from . import _common
from .decision import Decision
from .errors import LeaseNotFound, RateLimited, SluiceError

if TYPE_CHECKING:
    from .aio import AsyncSluiceClient
    from .client import SluiceClient

__all__ = ["Lease", "AsyncLease"]

log = logging.getLogger("sluice")


class _LeaseBase:
    def __init__(self, decision: Decision, lease_id: str, ttl_ms: int) -> None:
        self.decision = decision
        #: The engine's lease id; empty when denied or answered without sluiced.
        self.id = lease_id
        #: How long the engine holds the lease before it expires by itself.
        self.ttl_ms = ttl_ms
        #: The real cost to settle on release; set it inside the ``with`` block.
        self.actual: Optional[int] = None
        #: The real cost per named unit to settle on release (``ACTUAL unit n``).
        self.actual_costs: Optional[Dict[str, int]] = None
        #: Units charged with :meth:`charge` and allowed, by unit name ...
        self.charged: Dict[str, int] = {}
        #: ... and without a unit (``charge(n)``).
        self.charged_cost = 0
        self.released = not lease_id
        #: Called with the settled cost after the engine released the lease (integrations
        #: use it to refresh what they report).
        self.on_release: Optional[Callable[[Optional[int]], None]] = None

    def _released(self, actual: Optional[int]) -> None:
        if self.on_release is not None:
            self.on_release(actual)

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def _charge_args(self, n: Optional[int],
                     costs: Optional[Mapping[str, int]]) -> Optional[Tuple[Any, ...]]:
        """SL.CHARGE's arguments, or None when the lease was answered without sluiced (fail
        open: there is no engine lease to charge)."""
        units = _common.charge_units(n, costs)
        if not self.decision.allowed:
            raise ValueError("a denied lease cannot be charged")
        if not self.id:
            return None
        if self.released:
            raise LeaseNotFound("NOLEASE", f"lease {self.id} was released already")
        return ("SL.CHARGE", self.id, *units)

    def _unavailable_charge(self) -> Decision:
        return _common.unavailable_decision("open", self.decision.resource, 0)

    def _count(self, decision: Decision, n: Optional[int],
               costs: Optional[Mapping[str, int]]) -> Decision:
        # A refused charge consumed nothing and is not part of the lease's usage.
        if decision.allowed:
            if costs is None:
                self.charged_cost += n or 0
            else:
                for unit, amount in costs.items():
                    self.charged[unit] = self.charged.get(unit, 0) + amount
        return decision

    def _check_entry(self) -> None:
        if not self.decision.allowed:
            raise RateLimited(self.decision)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<{type(self).__name__} {self.id or '-'} {state} {self.decision!r}>"


class Lease(_LeaseBase):
    """A lease held through the blocking :class:`~sluice.SluiceClient`."""

    def __init__(self, client: "SluiceClient", decision: Decision, lease_id: str, ttl_ms: int):
        super().__init__(decision, lease_id, ttl_ms)
        self._client = client

    def charge(self, n: Optional[int] = None, *,
               costs: Optional[Mapping[str, int]] = None) -> Decision:
        """Report ``n`` more units (or ``costs``, units by name) used while the response
        streams: ``SL.CHARGE``. The decision's ``allowed`` is False when the limits refuse
        them: stop streaming (a refused charge consumes nothing and is not counted in
        :attr:`charged`). Raises :class:`~sluice.LeaseNotFound` for a released or expired
        lease; a lease answered without sluiced (fail open) is allowed without asking.
        """
        args = self._charge_args(n, costs)
        if args is None:
            return self._count(self._unavailable_charge(), n, costs)
        return self._count(self._client._charge(args, self.decision.resource), n, costs)

    def release(self, actual: Optional[int] = None, *,
                actual_costs: Optional[Mapping[str, int]] = None) -> bool:
        """Free the lease, settling ``actual`` and ``actual_costs`` (units by name). A unit
        without an actual cost is settled at what :meth:`charge` reported, else at the
        estimate.

        Returns False when there was nothing to release (denied, already released, or
        answered without sluiced). Raises :class:`~sluice.LeaseNotFound` when the engine no
        longer holds it (expired).
        """
        if self.released:
            return False
        args = _common.release_args(self.id, actual, actual_costs)
        self.released = True
        done = self._client._release(args)
        if done:
            self._released(actual)
        return done

    def __enter__(self) -> "Lease":
        self._check_entry()
        return self

    def settle(self) -> None:
        """Release with :attr:`actual` (or the estimate) unless already released.

        Failures are logged, not raised: this runs on exit paths, where raising would hide
        the block's own exception or result, and the engine expires a lost lease by itself.
        """
        try:
            self.release(self.actual, actual_costs=self.actual_costs)
        except SluiceError as exc:
            log.warning("sluice: could not settle lease %s: %s", self.id, exc)

    def __exit__(self, *exc_info: object) -> None:
        self.settle()


class AsyncLease(_LeaseBase):
    """A lease held through the asyncio :class:`~sluice.AsyncSluiceClient`."""

    def __init__(
        self, client: "AsyncSluiceClient", decision: Decision, lease_id: str, ttl_ms: int
    ):
        super().__init__(decision, lease_id, ttl_ms)
        self._client = client

    async def charge(self, n: Optional[int] = None, *,
                     costs: Optional[Mapping[str, int]] = None) -> Decision:
        """See :meth:`Lease.charge`."""
        args = self._charge_args(n, costs)
        if args is None:
            return self._count(self._unavailable_charge(), n, costs)
        return self._count(await self._client._charge(args, self.decision.resource), n, costs)

    async def release(self, actual: Optional[int] = None, *,
                      actual_costs: Optional[Mapping[str, int]] = None) -> bool:
        """See :meth:`Lease.release`."""
        if self.released:
            return False
        args = _common.release_args(self.id, actual, actual_costs)
        self.released = True
        done = await self._client._release(args)
        if done:
            self._released(actual)
        return done

    async def settle(self) -> None:
        """Release with :attr:`actual` (or the estimate) unless already released; failures
        are logged, not raised, because this runs on exit paths."""
        try:
            await self.release(self.actual, actual_costs=self.actual_costs)
        except SluiceError as exc:
            log.warning("sluice: could not settle lease %s: %s", self.id, exc)

    async def __aenter__(self) -> "AsyncLease":
        self._check_entry()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.settle()
