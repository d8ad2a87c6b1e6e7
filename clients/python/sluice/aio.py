"""asyncio client for sluiced's decision socket (redis-py's ``redis.asyncio``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Dict, Optional

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import DefaultParser, UnixDomainSocketConnection
from redis.backoff import NoBackoff
from redis.asyncio.retry import Retry

from . import _common
from ._common import FailMode
from .decision import Decision
from .errors import SluiceError, SluiceUnavailable, error_from_response
from .lease import AsyncLease

__all__ = ["AsyncSluiceClient"]

log = logging.getLogger("sluice")


if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout
else:  # redis.asyncio depends on async_timeout on older Pythons
    from async_timeout import timeout as _deadline


# DefaultParser is hiredis's C parser when installed. redis-py is untyped (Any to mypy),
# hence the ignore on subclassing it.
class _EngineErrorParser(DefaultParser):  # type: ignore[misc]
    # Keep the engine's error text whole; see client._EngineErrorParser.
    EXCEPTION_CLASSES: Dict[str, Any] = {}


class _LeanConnectionPool(aioredis.ConnectionPool):  # type: ignore[misc]
    """redis-py's asyncio pool without its per-call probe, waiting (bounded) when full.

    redis-py 4.x checks every pooled connection with ``can_read(timeout=0)``, which arms a
    timer and runs a read through the event loop: tens of microseconds on each decision, a
    cost a rate limiter pays on every request. A connection sluiced has closed is seen
    instead from its stream's EOF flag, which the event loop sets when the close arrives;
    one that closes in between fails on use and is retried once on a fresh connection.
    """

    def __init__(self, *, wait_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wait_timeout = wait_timeout
        self._slots: Optional[asyncio.Semaphore] = None

    async def get_connection(self, command_name: Any, *keys: Any, **options: Any) -> Any:
        if self._slots is None:  # created here so it belongs to the running loop
            self._slots = asyncio.Semaphore(self.max_connections)
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait_timeout)
            except asyncio.TimeoutError:
                raise redis.ConnectionError("No connection available.") from None
        else:
            await self._slots.acquire()  # returns without suspending
        try:
            connection = (self._available_connections.pop() if self._available_connections
                          else self.make_connection())
        except BaseException:
            self._slots.release()
            raise
        self._in_use_connections.add(connection)
        try:
            reader = getattr(connection, "_reader", None)
            if reader is not None and reader.at_eof():
                await connection.disconnect()
            await connection.connect()
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if self._slots is not None:
            self._slots.release()


class AsyncSluiceClient:
    """The asyncio twin of :class:`~sluice.SluiceClient`; same arguments and semantics.

    Use one per event loop (connections belong to the loop that opened them). Every call
    is bounded by ``timeout`` seconds, including waiting for a pooled connection.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        timeout: float = _common.DEFAULT_TIMEOUT,
        max_connections: int = 64,
        on_unavailable: FailMode = "open",
        unavailable_retry_after_ms: int = 1000,
    ) -> None:
        self.socket_path = _common.socket_path_or_default(socket_path)
        self.on_unavailable = _common.check_fail_mode(on_unavailable)
        self.unavailable_retry_after_ms = unavailable_retry_after_ms
        self.timeout = timeout
        self._pool = _LeanConnectionPool(
            connection_class=UnixDomainSocketConnection,
            path=self.socket_path,
            parser_class=_EngineErrorParser,
            max_connections=max_connections,
            wait_timeout=timeout,
            retry_on_error=[redis.ConnectionError],
            retry=Retry(NoBackoff(), 1),
            # No per-socket timeout: redis-py 4.x wraps every send in asyncio.wait_for (a
            # new task per command). One deadline around the whole call bounds it instead.
            socket_timeout=None,
            decode_responses=True,
        )
        self._redis = aioredis.Redis(connection_pool=self._pool)

    async def _call(self, *args: Any) -> Any:
        try:
            async with _deadline(self.timeout):
                return await self._redis.execute_command(*args)
        except redis.ResponseError as exc:
            raise error_from_response(exc) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError, asyncio.TimeoutError) as exc:
            raise SluiceUnavailable(
                f"sluiced at {self.socket_path} unreachable: {str(exc) or type(exc).__name__}"
            ) from None

    def _fallback(self, exc: SluiceUnavailable, resource: str) -> Decision:
        if self.on_unavailable == "raise":
            raise exc
        log.warning("sluice: %s; failing %s", exc.message, self.on_unavailable)
        return _common.unavailable_decision(
            self.on_unavailable, resource, self.unavailable_retry_after_ms
        )

    async def _decide(self, command: str, resource: str, subject: str, tier: Optional[str],
                      api_key: Optional[str], cost: int) -> Decision:
        args = _common.decision_args(command, resource, subject, tier, api_key, cost)
        try:
            reply = await self._call(*args)
        except SluiceUnavailable as exc:
            return self._fallback(exc, resource)
        return _common.parse_decision(reply, resource)

    async def check(self, resource: str, subject: str, *, tier: Optional[str] = None,
                    api_key: Optional[str] = None, cost: int = 1) -> Decision:
        """See :meth:`sluice.SluiceClient.check`."""
        return await self._decide("SL.CHECK", resource, subject, tier, api_key, cost)

    async def peek(self, resource: str, subject: str, *, tier: Optional[str] = None,
                   api_key: Optional[str] = None, cost: int = 1) -> Decision:
        """See :meth:`sluice.SluiceClient.peek`."""
        return await self._decide("SL.PEEK", resource, subject, tier, api_key, cost)

    async def acquire(self, resource: str, subject: str, *, tier: Optional[str] = None,
                      api_key: Optional[str] = None, cost: int = 1,
                      ttl_ms: Optional[int] = None) -> AsyncLease:
        """See :meth:`sluice.SluiceClient.acquire`; the lease is an async context manager."""
        args = _common.decision_args("SL.ACQUIRE", resource, subject, tier, api_key, cost, ttl_ms)
        try:
            reply = await self._call(*args)
        except SluiceUnavailable as exc:
            return AsyncLease(self, self._fallback(exc, resource), "", 0)
        decision = _common.parse_decision(reply, resource, acquire=True)
        lease_id, lease_ttl = _common.parse_lease(reply)
        return AsyncLease(self, decision, lease_id if decision.allowed else "", lease_ttl)

    async def release(self, lease: "str | AsyncLease", actual: Optional[int] = None) -> bool:
        """See :meth:`sluice.SluiceClient.release`."""
        if isinstance(lease, AsyncLease):
            return await lease.release(actual)
        args = _common.release_args(lease, actual)
        try:
            return bool(await self._call(*args))
        except SluiceUnavailable:
            if self.on_unavailable == "raise":
                raise
            return False

    async def ping(self) -> bool:
        """True when sluiced answers; never raises for an unreachable daemon."""
        try:
            return (await self._call("PING")) in ("PONG", b"PONG", True)
        except SluiceError:
            return False

    async def start(self) -> bool:
        """See :meth:`sluice.SluiceClient.start`; call it from the app's start-up."""
        try:
            await self._call("PING")
            return True
        except SluiceError as exc:
            log.error(_common.unreachable_at_start(self.socket_path, self.on_unavailable,
                                                   exc.message))
            return False

    async def ready(self) -> bool:
        """See :meth:`sluice.SluiceClient.ready`."""
        return await self.ping()

    async def execute(self, *args: Any) -> Any:
        """Send any command and return the raw reply."""
        return await self._call(*args)

    async def close(self) -> None:
        await self._pool.disconnect()

    async def __aenter__(self) -> "AsyncSluiceClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSluiceClient({self.socket_path!r}, on_unavailable={self.on_unavailable!r})"
