"""Leases from ``SL.ACQUIRE``: a reserved (estimated) cost, settled later with the real one.

A lease is how a token-metered or long-running request is limited: acquire with the
estimate (say ``max_tokens``), do the work, then release with the actual cost (the tokens
really generated). The engine refunds or charges the difference. Used as a context manager
the lease is released on exit with :attr:`actual` if it was set, else with the estimate; a
denied lease raises :class:`~sluice.RateLimited` on entry, so the block only runs when
allowed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Optional

from .decision import Decision
from .errors import RateLimited, SluiceError

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

    def release(self, actual: Optional[int] = None) -> bool:
        """Free the lease, settling ``actual`` (default: keep the estimate).

        Returns False when there was nothing to release (denied, already released, or
        answered without sluiced). Raises :class:`~sluice.LeaseNotFound` when the engine no
        longer holds it (expired).
        """
        if self.released:
            return False
        self.released = True
        done = self._client.release(self.id, actual)
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
            self.release(self.actual)
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

    async def release(self, actual: Optional[int] = None) -> bool:
        """See :meth:`Lease.release`."""
        if self.released:
            return False
        self.released = True
        done = await self._client.release(self.id, actual)
        if done:
            self._released(actual)
        return done

    async def settle(self) -> None:
        """Release with :attr:`actual` (or the estimate) unless already released; failures
        are logged, not raised, because this runs on exit paths."""
        try:
            await self.release(self.actual)
        except SluiceError as exc:
            log.warning("sluice: could not settle lease %s: %s", self.id, exc)

    async def __aenter__(self) -> "AsyncLease":
        self._check_entry()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.settle()
