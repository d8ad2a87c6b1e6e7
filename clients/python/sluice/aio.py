"""asyncio client for sluiced's decision socket: one pipelined connection per event loop."""

from __future__ import annotations

import asyncio
import collections
import logging
import types
import weakref
from typing import Any, Awaitable, Coroutine, Deque, List, Mapping, Optional, Tuple, cast

from . import _common, _resp
from ._common import FailMode
from .decision import Decision
from .errors import SluiceError, SluiceUnavailable, error_from_response
from .grants import Grant, GrantBook, GrantKey, LocalGrants, grant_expiry
from .lease import AsyncLease

__all__ = ["AsyncSluiceClient"]

log = logging.getLogger("sluice")

_Loop = asyncio.AbstractEventLoop
# The named costs of a check decided alone, never from a grant: none.
_ALONE: Mapping[str, int] = types.MappingProxyType({})


class _Lost(ConnectionError):
    """The connection closed before a reply came: the request may be sent again."""


class _Connection(asyncio.Protocol):
    """One Unix-socket connection. Commands are queued as they come, without waiting for the
    replies before, and written together once per turn of the event loop (one system call for
    every call made in that turn); replies come back in order, so each goes to the oldest
    waiting future.

    One timer per connection, not one per call, watches the oldest unanswered command: if it
    waited longer than ``timeout``, sluiced has stopped answering, the commands behind it
    would wait as long, and the connection is dropped.
    """

    def __init__(self, loop: _Loop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: Optional[asyncio.Transport] = None
        self.reader = _resp.Reader()
        self.waiting: Deque["asyncio.Future[Any]"] = collections.deque()
        self.sent_at: Deque[float] = collections.deque()  # loop time each waiting call began
        self.unwritten: List[bytes] = []
        self.watchdog: Optional[asyncio.TimerHandle] = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport instance: uvloop's
        # (uvicorn[standard]'s event loop) derive from none of asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except _resp.ProtocolError as exc:
                self.close(SluiceError("PROTOCOL", f"unreadable reply from sluiced: {exc}"))
                return
            if reply is _resp.NO_REPLY:
                return
            if not self.waiting:
                self.close(SluiceError("PROTOCOL", f"reply without a request: {reply!r}"))
                return
            future = self.waiting.popleft()
            self.sent_at.popleft()
            if not future.done():  # else its caller gave up; the reply is dropped in order
                future.set_result(reply)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.close(_Lost(f"connection closed ({exc})" if exc else "connection closed"))

    def request(self, data: bytes) -> "asyncio.Future[Any]":
        """Queues one command; the future gets its reply."""
        future = self.loop.create_future()
        self.waiting.append(future)
        self.sent_at.append(self.loop.time())
        if not self.unwritten:
            self.loop.call_soon(self._write)
        self.unwritten.append(data)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._watch)
        return future

    def _write(self) -> None:
        if self.lost or self.transport is None:
            return  # close() has failed the waiting calls already
        data = self.unwritten[0] if len(self.unwritten) == 1 else b"".join(self.unwritten)
        self.unwritten.clear()
        self.transport.write(data)

    def _watch(self) -> None:
        self.watchdog = None
        if self.lost or not self.waiting:
            return
        deadline = self.sent_at[0] + self.timeout
        if self.loop.time() < deadline:
            self.watchdog = self.loop.call_at(deadline, self._watch)
            return
        # The oldest call has waited its whole timeout; so may every call as old as it.
        expired = asyncio.TimeoutError("no reply within the timeout")
        while self.waiting and self.sent_at[0] + self.timeout <= self.loop.time():
            future = self.waiting.popleft()
            self.sent_at.popleft()
            if not future.done():
                future.set_exception(expired)
        # The younger ones had time left: they may be sent again on a fresh connection.
        self.close(_Lost("closed after a timeout"))

    def close(self, error: Exception) -> None:
        """Fails every waiting request with ``error`` and drops the connection."""
        self.lost = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.unwritten.clear()
        self.sent_at.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class AsyncSluiceClient:
    """The asyncio twin of :class:`~sluice.SluiceClient`; same arguments and semantics.

    Each event loop gets one connection, opened on first use; concurrent calls are written to
    it back to back and their replies read in order (pipelining), so no call waits for a free
    connection. Every call is bounded by ``timeout`` seconds. A call that times out closes
    the connection (a daemon that stopped answering would otherwise hold up every call queued
    behind it); the next call opens a fresh one. ``max_connections`` is accepted for
    compatibility and has no effect.

    A call with ``wait=`` goes over a connection of its own (kept for the next such call):
    sluiced answers a connection's requests in order, so a held request on the shared
    connection would hold up every call pipelined behind it.

    ``grants=LocalGrants()`` lets :meth:`check` admit a busy caller's requests from local
    grants (see :mod:`sluice.grants`): one decision for up to a few hundred requests of the
    same kind, settled within ``ttl``; near a limit every request is decided by sluiced.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        timeout: float = _common.DEFAULT_TIMEOUT,
        max_connections: int = 64,
        on_unavailable: FailMode = "open",
        unavailable_retry_after_ms: int = 1000,
        grants: Optional[LocalGrants] = None,
    ) -> None:
        if grants is not None and not isinstance(grants, LocalGrants):
            raise ValueError(f"grants must be a LocalGrants or None; got {grants!r}")
        self._grant_options = grants
        # One book of grants per event loop, as connections are (a grant's lease, timer and
        # waiting requests belong to the loop that took it); the last loop's is at hand.
        self._books: weakref.WeakKeyDictionary[_Loop, GrantBook] = weakref.WeakKeyDictionary()
        self._last_loop: Optional["weakref.ReferenceType[_Loop]"] = None
        self._last_book: GrantBook = cast(GrantBook, None)  # read only when _last_loop is
        self._settling: "set[asyncio.Task[None]]" = set()
        self.socket_path = _common.socket_path_or_default(socket_path)
        self.on_unavailable = _common.check_fail_mode(on_unavailable)
        self.unavailable_retry_after_ms = unavailable_retry_after_ms
        self.timeout = timeout
        # Per event loop: its connection, and the connect in progress that callers share.
        self._connections: weakref.WeakKeyDictionary[_Loop, _Connection] = (
            weakref.WeakKeyDictionary())
        self._connecting: weakref.WeakKeyDictionary[_Loop, asyncio.Future[_Connection]] = (
            weakref.WeakKeyDictionary())
        # Per event loop: idle connections for calls with ``wait=``, one call at a time each.
        self._waiting_idle: weakref.WeakKeyDictionary[_Loop, List[_Connection]] = (
            weakref.WeakKeyDictionary())

    @property
    def grants(self) -> Optional[GrantBook]:
        """The running event loop's local grants; None when grants are off (or no loop runs)."""
        if self._grant_options is None:
            return None
        try:
            return self._book(asyncio.get_running_loop())
        except RuntimeError:
            return None

    def _book(self, loop: _Loop) -> GrantBook:
        """``loop``'s book of grants (grants are on); the last loop's is kept at hand."""
        last = self._last_loop
        if last is not None and last() is loop:
            return self._last_book
        book = self._books.get(loop)
        if book is None:
            book = self._books[loop] = GrantBook(cast(LocalGrants, self._grant_options))
        self._last_loop, self._last_book = weakref.ref(loop), book
        return book

    def _request(self, data: bytes) -> Awaitable[Any]:
        """The reply to one encoded command: a future when this loop's connection is open
        (the common case costs no coroutine), else a coroutine that connects first."""
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is not None and not connection.lost:
            return connection.request(data)
        return self._connect_and_request(loop, data)

    async def _connect_and_request(self, loop: _Loop, data: bytes) -> Any:
        connection = await self._connection(loop)
        return await connection.request(data)

    async def _connection(self, loop: _Loop) -> _Connection:
        connection = self._connections.get(loop)
        if connection is not None and not connection.lost:
            return connection
        pending = self._connecting.get(loop)
        if pending is None:  # the first caller connects; the others wait for the same result
            pending = self._connecting[loop] = loop.create_future()
            try:
                _, opened = await asyncio.wait_for(
                    loop.create_unix_connection(lambda: _Connection(loop, self.timeout),
                                                self.socket_path),
                    self.timeout)
                self._connections[loop] = opened
                pending.set_result(opened)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here, so an unawaited failure is not logged
                raise
            finally:
                del self._connecting[loop]
            return opened
        return await asyncio.shield(pending)

    async def _send_waiting(self, data: bytes, wait: float) -> Any:
        """A request with WAIT, on a connection no other call shares while it waits; its
        watchdog allows the wait on top of the timeout."""
        loop = asyncio.get_running_loop()
        idle = self._waiting_idle.setdefault(loop, [])
        while idle and idle[-1].lost:
            idle.pop()
        if idle:
            connection = idle.pop()
            connection.timeout = self.timeout + wait
        else:
            _, connection = await asyncio.wait_for(
                loop.create_unix_connection(lambda: _Connection(loop, self.timeout + wait),
                                            self.socket_path),
                self.timeout)
        reply = await connection.request(data)
        if not connection.lost:
            idle.append(connection)
        return reply

    async def _round_trip(self, data: bytes, wait: Optional[float] = None) -> Any:
        """The reply to one encoded command; raises SluiceUnavailable when sluiced cannot be
        reached or does not answer in time."""
        try:
            try:
                if wait is not None:
                    return await self._send_waiting(data, wait)
                return await self._request(data)
            except _Lost:
                # A connection sluiced closed (a restart, an idle timeout) fails on use; one
                # fresh connection tells that apart from an outage.
                if wait is not None:
                    return await self._send_waiting(data, wait)
                return await self._request(data)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _unavailable(self.socket_path, exc) from None

    async def _call(self, *args: Any, wait: Optional[float] = None) -> Any:
        reply = await self._round_trip(_resp.encode(args), wait)
        if isinstance(reply, _resp.ErrorReply):
            raise error_from_response(reply)
        return reply

    def _fallback(self, exc: SluiceUnavailable, resource: str) -> Decision:
        if self.on_unavailable == "raise":
            raise exc
        log.warning("sluice: %s; failing %s", exc.message, self.on_unavailable)
        return _common.unavailable_decision(
            self.on_unavailable, resource, self.unavailable_retry_after_ms
        )

    async def _decide(self, command: str, resource: str, subject: str, tier: Optional[str],
                      api_key: Optional[str], cost: Optional[int],
                      wait: Optional[float] = None,
                      costs: Optional[Mapping[str, int]] = None) -> Decision:
        # The hot path of every limited request: one coroutine between the caller and the
        # reply's future, none at all when a local grant admits it.
        book = self.grants
        if book is not None and command == "SL.CHECK" and wait is None and costs is None:
            key: GrantKey = (resource, subject, tier, api_key, cost or 1)
            granted = self._granted(key)
            if granted is not None:
                return granted
            return await self._without_grant(book, key)
        data = _resp.encode(_common.decision_args(command, resource, subject, tier, api_key,
                                                  cost, wait=wait, costs=costs))
        if wait is not None:
            try:
                reply = await self._round_trip(data, wait)
            except SluiceUnavailable as exc:
                return self._fallback(exc, resource)
            if isinstance(reply, _resp.ErrorReply):
                raise error_from_response(reply)
            return _common.parse_decision(reply, resource)
        try:
            try:
                reply = await self._request(data)
            except _Lost:
                reply = await self._request(data)
        except (OSError, asyncio.TimeoutError) as exc:
            return self._fallback(_unavailable(self.socket_path, exc), resource)
        if isinstance(reply, _resp.ErrorReply):
            raise error_from_response(reply)
        return _common.parse_decision(reply, resource)

    def _granted(self, key: GrantKey) -> Optional[Decision]:
        """A check of ``key`` admitted from a local grant, or None (grants are on); no
        coroutine, no I/O. The hot path of a busy caller: the last loop's book is looked up
        inline (a call less per request)."""
        loop = asyncio.get_running_loop()
        last = self._last_loop
        book = self._last_book if last is not None and last() is loop else self._book(loop)
        granted = book.take(key, loop.time())
        if book.wanted:
            self._refill(book, loop)
        return granted

    async def _without_grant(self, book: GrantBook, key: GrantKey) -> Decision:
        """A check of ``key`` that no grant admitted (``_granted`` counted it): a new grant
        when the caller's rate and the limits' headroom allow one, the grant on its way when
        one is being asked for, else decided alone."""
        loop = asyncio.get_running_loop()
        while True:
            size = book.size(key)
            if size >= 2:
                return await self._decide_with_grant(book, key, loop, size)
            pending = book.pending(key)
            if pending is None:
                break
            await asyncio.shield(pending)  # a grant is on its way: wait, then take from it
            granted = book.take(key, loop.time(), count=False)
            if granted is not None:
                return granted
        resource, subject, tier, api_key, cost = key
        decision = await self._decide("SL.CHECK", resource, subject, tier, api_key, cost,
                                      costs=_ALONE)
        book.noted(key, decision)
        return decision

    async def _decide_with_grant(self, book: GrantBook, key: GrantKey, loop: _Loop,
                                 size: int) -> Decision:
        """Decides one request by taking a grant of ``size`` for it and the requests like it
        to come; a grant that does not fit now leaves the request to be decided alone."""
        resource, subject, tier, api_key, cost = key
        refused: Optional[SluiceError] = None
        try:
            decision = await self._take_grant(book, key, loop, size, used=1,
                                              asked=self._asking(book, key, loop))
            if decision.allowed:
                return decision
        except SluiceUnavailable as exc:
            return self._fallback(exc, resource)
        except SluiceError as exc:
            refused = exc  # about the request (decided alone, it fails too) or the grant
        # The grant did not fit: this request alone (no named costs: not through the grants).
        decision = await self._decide("SL.CHECK", resource, subject, tier, api_key, cost,
                                      costs=_ALONE)
        if refused is not None:
            # The request itself is fine: sluiced refuses grants (older than grants, or a
            # lease_ttl_max below the grant's TTL). Decide every request alone from now on.
            log.warning("sluice: sluiced refused a local grant (%s); local grants are off",
                        refused)
            self._grant_options = None
            return decision
        book.noted(key, decision)
        return decision

    @staticmethod
    def _asking(book: GrantBook, key: GrantKey, loop: _Loop) -> "asyncio.Future[None]":
        """Marks a grant for ``key`` as asked for, at once (so no other is asked for
        meanwhile); the future is done when the asking is over."""
        asked: "asyncio.Future[None]" = loop.create_future()
        book.asking(key, asked)
        return asked

    async def _take_grant(self, book: GrantBook, key: GrantKey, loop: _Loop, size: int,
                          used: int, asked: "asyncio.Future[None]") -> Decision:
        """SL.ACQUIRE of ``size`` requests of ``key``; an allowed grant goes into the book,
        ``used`` of it already (1: by the request asking; 0: asked ahead of need)."""
        resource, subject, tier, api_key, cost = key
        ttl = book.options.ttl
        try:
            args = _common.decision_args("SL.ACQUIRE", resource, subject, tier, api_key,
                                         cost * size, ttl_ms=max(1, round(ttl * 2000)),
                                         costs={"requests": size})
            reply = await self._round_trip(_resp.encode(args))
            if isinstance(reply, _resp.ErrorReply):
                raise error_from_response(reply)
            decision = _common.parse_decision(reply, resource, acquire=True)
            lease, _ = _common.parse_lease(reply)
            if decision.allowed and lease:
                now = loop.time()
                grant = Grant(lease, size, grant_expiry(now, ttl, decision), decision, cost,
                              used=used)
                book.granted(key, grant)
                loop.call_at(grant.expires, self._grant_ended, key, grant)
            book.noted(key, decision)
            return decision
        finally:
            book.asking(key, None)
            asked.set_result(None)  # the requests waiting for it take from it, or go alone

    def _refill(self, book: GrantBook, loop: _Loop) -> None:
        """Asks for the next grant of each kind whose grant runs low, in the background."""
        for key in book.wanted:
            size = book.size(key)
            if size >= 2:
                asked = self._asking(book, key, loop)
                self._in_background(self._take_next_grant(book, key, loop, size, asked))
        book.wanted.clear()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` as a task this client keeps (``close()`` waits for it)."""
        task = asyncio.ensure_future(work)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _take_next_grant(self, book: GrantBook, key: GrantKey, loop: _Loop,
                               size: int, asked: "asyncio.Future[None]") -> None:
        try:
            await self._take_grant(book, key, loop, size, used=0, asked=asked)
        except SluiceError as exc:  # the requests to come decide for themselves
            log.debug("sluice: no next grant for %s: %s", key[0], exc)

    def _grant_ended(self, key: GrantKey, grant: Grant) -> None:
        """A grant's time is up: it admits no more, and what it did not use goes back."""
        book = self.grants
        if book is not None:
            book.ended(key, grant)
        if grant.unused > 0:
            self._in_background(self._settle_grant(grant))

    async def _settle_grant(self, grant: Grant) -> None:
        args = _common.release_args(grant.lease, grant.cost * grant.used,
                                    {"requests": grant.used})
        try:
            await self._call(*args)
        except SluiceError as exc:  # sluiced settles it at its estimate when its TTL ends
            log.warning("sluice: could not give back %d unused requests of a grant: %s",
                        grant.unused, exc)

    async def _charge(self, args: Tuple[Any, ...], resource: str) -> Decision:
        try:
            reply = await self._call(*args)
        except SluiceUnavailable as exc:
            return self._fallback(exc, resource)
        return _common.parse_decision(reply, resource)

    async def _release(self, args: Tuple[Any, ...]) -> bool:
        try:
            return bool(await self._call(*args))
        except SluiceUnavailable:
            if self.on_unavailable == "raise":
                raise
            return False

    async def check(self, resource: str, subject: str, *, tier: Optional[str] = None,
                    api_key: Optional[str] = None, cost: Optional[int] = None,
                    costs: Optional[Mapping[str, int]] = None,
                    wait: Optional[float] = None) -> Decision:
        """See :meth:`sluice.SluiceClient.check`."""
        return await self._decide("SL.CHECK", resource, subject, tier, api_key, cost, wait,
                                  costs)

    async def peek(self, resource: str, subject: str, *, tier: Optional[str] = None,
                   api_key: Optional[str] = None, cost: Optional[int] = None,
                   costs: Optional[Mapping[str, int]] = None) -> Decision:
        """See :meth:`sluice.SluiceClient.peek`."""
        return await self._decide("SL.PEEK", resource, subject, tier, api_key, cost, None,
                                  costs)

    async def acquire(self, resource: str, subject: str, *, tier: Optional[str] = None,
                      api_key: Optional[str] = None, cost: Optional[int] = None,
                      costs: Optional[Mapping[str, int]] = None,
                      ttl_ms: Optional[int] = None,
                      wait: Optional[float] = None) -> AsyncLease:
        """See :meth:`sluice.SluiceClient.acquire`; the lease is an async context manager."""
        args = _common.decision_args("SL.ACQUIRE", resource, subject, tier, api_key, cost, ttl_ms,
                                     wait, costs)
        try:
            reply = await self._call(*args, wait=wait)
        except SluiceUnavailable as exc:
            return AsyncLease(self, self._fallback(exc, resource), "", 0)
        decision = _common.parse_decision(reply, resource, acquire=True)
        lease_id, lease_ttl = _common.parse_lease(reply)
        return AsyncLease(self, decision, lease_id if decision.allowed else "", lease_ttl)

    async def charge(self, lease: "str | AsyncLease", n: Optional[int] = None, *,
                     costs: Optional[Mapping[str, int]] = None) -> Decision:
        """See :meth:`sluice.SluiceClient.charge`."""
        if isinstance(lease, AsyncLease):
            return await lease.charge(n, costs=costs)
        return await self._charge(_common.charge_args(lease, n, costs), "")

    async def release(self, lease: "str | AsyncLease", actual: Optional[int] = None, *,
                      actual_costs: Optional[Mapping[str, int]] = None) -> bool:
        """See :meth:`sluice.SluiceClient.release`."""
        if isinstance(lease, AsyncLease):
            return await lease.release(actual, actual_costs=actual_costs)
        return await self._release(_common.release_args(lease, actual, actual_costs))

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
            reason = exc.reason if isinstance(exc, SluiceUnavailable) else str(exc)
            log.error(_common.unreachable_at_start(self.socket_path, self.on_unavailable, reason))
            return False

    async def ready(self) -> bool:
        """See :meth:`sluice.SluiceClient.ready`."""
        return await self.ping()

    async def execute(self, *args: Any) -> Any:
        """Send any command and return the raw reply."""
        return await self._call(*args)

    async def close(self) -> None:
        """Gives back what this client's grants did not use, then closes this event loop's
        connections (the next call opens a new one)."""
        loop = asyncio.get_running_loop()
        settling = [task for task in self._settling if task.get_loop() is loop]
        if settling:  # this loop's grants being asked for ahead of need, or given back
            await asyncio.gather(*settling, return_exceptions=True)
        book = self._books.get(loop)
        if book is not None:
            for key, grant in book.outstanding():
                book.ended(key, grant)
                if grant.unused > 0:
                    await self._settle_grant(grant)
        loop = asyncio.get_running_loop()
        connection = self._connections.pop(loop, None)
        if connection is not None:
            connection.close(_Lost("client closed"))
        for idle in self._waiting_idle.pop(loop, []):
            idle.close(_Lost("client closed"))

    async def __aenter__(self) -> "AsyncSluiceClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSluiceClient({self.socket_path!r}, on_unavailable={self.on_unavailable!r})"


def _unavailable(socket_path: str, exc: BaseException) -> SluiceUnavailable:
    if isinstance(exc, SluiceUnavailable):
        return exc
    reason = str(exc) or type(exc).__name__
    return SluiceUnavailable(f"sluiced at {socket_path} unreachable: {reason}", reason)
