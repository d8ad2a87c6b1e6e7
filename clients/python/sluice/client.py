"""Blocking client for sluiced's decision socket (RESP2 over a Unix socket)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, List, Mapping, Optional, Tuple

from . import _common, _resp
from ._common import FailMode
from .decision import Decision
from .errors import SluiceError, SluiceUnavailable, error_from_response
from .lease import Lease

__all__ = ["SluiceClient"]

log = logging.getLogger("sluice")


class _Closed(ConnectionError):
    """The daemon closed the connection before replying."""


class _Pool:
    """Blocking Unix-socket connections, one request at a time each, kept for reuse. At most
    ``size`` exist; a caller waits up to the timeout for a free one."""

    def __init__(self, path: str, timeout: float, size: int) -> None:
        self.path = path
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: List[socket.socket] = []  # protected by _lock

    def call(self, data: bytes, wait: float = 0.0) -> Any:
        """One round trip; a request with WAIT may take ``wait`` seconds more than the timeout."""
        deadline = time.monotonic() + self.timeout + wait
        if not self._slots.acquire(timeout=self.timeout):
            raise TimeoutError("no free connection within the timeout")
        try:
            with self._lock:
                reused = self._idle.pop() if self._idle else None
            if reused is not None:
                try:
                    return self._round_trip(reused, data, deadline)
                except _Closed:
                    # A kept connection sluiced closed (a restart, an idle timeout) fails on
                    # use; a fresh one tells that apart from an outage.
                    pass
            return self._round_trip(self._connect(deadline), data, deadline)
        finally:
            self._slots.release()

    def _connect(self, deadline: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _round_trip(self, sock: socket.socket, data: bytes, deadline: float) -> Any:
        reader = _resp.Reader()
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(data)
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise _Closed("sluiced closed the connection")
                reader.feed(chunk)
                reply = reader.gets()
                if reply is not _resp.NO_REPLY:
                    break
        except (BrokenPipeError, ConnectionResetError) as exc:
            sock.close()
            raise _Closed(str(exc)) from None
        except BaseException:
            sock.close()  # a late reply must not be read as the next request's
            raise
        with self._lock:
            self._idle.append(sock)
        return reply

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


class SluiceClient:
    """Asks sluiced for rate-limit decisions. Thread-safe; share one per process.

    ``socket_path`` defaults to ``$SLUICE_SOCKET``, else ``./run/sluice.sock``. Connections
    are pooled (at most ``max_connections``; a caller waits up to ``timeout`` for a free
    one). Every call gives up after ``timeout`` seconds.

    ``on_unavailable`` decides what happens when sluiced cannot be reached:
    ``"open"`` (default) allows the request, ``"closed"`` denies it with
    ``retry_after_ms = unavailable_retry_after_ms``, ``"raise"`` raises
    :class:`~sluice.SluiceUnavailable`. Decisions made this way have ``unavailable=True``.
    Errors the engine reports (bad arguments, storage failure) always raise
    :class:`~sluice.SluiceError`.
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
        self._pool = _Pool(self.socket_path, timeout, max_connections)

    # -- plumbing ---------------------------------------------------------------------

    def _call(self, *args: Any, wait: float = 0.0) -> Any:
        try:
            reply = self._pool.call(_resp.encode(args), wait)
        except _resp.ProtocolError as exc:
            raise SluiceError("PROTOCOL", f"unreadable reply from sluiced: {exc}") from None
        except OSError as exc:
            reason = str(exc) or type(exc).__name__
            raise SluiceUnavailable(f"sluiced at {self.socket_path} unreachable: {reason}",
                                    reason) from None
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

    def _decide(self, command: str, resource: str, subject: str, tier: Optional[str],
                api_key: Optional[str], cost: Optional[int], wait: Optional[float] = None,
                costs: Optional[Mapping[str, int]] = None) -> Decision:
        args = _common.decision_args(command, resource, subject, tier, api_key, cost, wait=wait,
                                     costs=costs)
        try:
            reply = self._call(*args, wait=wait or 0.0)
        except SluiceUnavailable as exc:
            return self._fallback(exc, resource)
        return _common.parse_decision(reply, resource)

    def _charge(self, args: Tuple[Any, ...], resource: str) -> Decision:
        try:
            reply = self._call(*args)
        except SluiceUnavailable as exc:
            return self._fallback(exc, resource)
        return _common.parse_decision(reply, resource)

    def _release(self, args: Tuple[Any, ...]) -> bool:
        try:
            return bool(self._call(*args))
        except SluiceUnavailable:
            if self.on_unavailable == "raise":
                raise
            return False

    # -- decisions --------------------------------------------------------------------

    def check(self, resource: str, subject: str, *, tier: Optional[str] = None,
              api_key: Optional[str] = None, cost: Optional[int] = None,
              costs: Optional[Mapping[str, int]] = None,
              wait: Optional[float] = None) -> Decision:
        """Decide and consume: ``SL.CHECK``.

        ``subject`` is who is limited (client IP, user id, API key). The tier is ``tier``
        if given, else the policy's tier for ``api_key``, else for ``subject``, else the
        default tier. ``cost`` (1..10^12, default 1) is in the limits' unit (requests take 1
        whatever the cost). ``costs`` names units instead, e.g. ``{"input_tokens": 120,
        "output_tokens": 512}`` (at most eight, each 0..10^12): each limit takes the cost of
        its unit, a ``tokens`` limit input plus output tokens, a ``requests`` limit 1, and a
        limit whose unit is not named takes ``cost`` when given, else nothing.

        ``wait`` (seconds): a request that would be denied is held by sluiced, in a fair queue,
        until it is admitted or ``wait`` has passed; the decision then says how long it waited
        (``waited_ms``) and why the wait ended (``wait_outcome``). The call's timeout grows by
        ``wait``.
        """
        return self._decide("SL.CHECK", resource, subject, tier, api_key, cost, wait, costs)

    def peek(self, resource: str, subject: str, *, tier: Optional[str] = None,
             api_key: Optional[str] = None, cost: Optional[int] = None,
             costs: Optional[Mapping[str, int]] = None) -> Decision:
        """What :meth:`check` would answer, without consuming anything: ``SL.PEEK``."""
        return self._decide("SL.PEEK", resource, subject, tier, api_key, cost, None, costs)

    def acquire(self, resource: str, subject: str, *, tier: Optional[str] = None,
                api_key: Optional[str] = None, cost: Optional[int] = None,
                costs: Optional[Mapping[str, int]] = None,
                ttl_ms: Optional[int] = None, wait: Optional[float] = None) -> Lease:
        """Reserve ``cost`` or ``costs`` (estimates, as in :meth:`check`) and hold a lease:
        ``SL.ACQUIRE``.

        While the work streams, report usage with :meth:`Lease.charge`. Settle with
        :meth:`Lease.release` (``actual=`` / ``actual_costs=`` the real cost) or use the
        lease as a context manager. ``ttl_ms`` bounds how long the engine holds it (default:
        policy). ``wait`` (seconds) waits for a free slot as in :meth:`check`.
        """
        args = _common.decision_args("SL.ACQUIRE", resource, subject, tier, api_key, cost, ttl_ms,
                                     wait, costs)
        try:
            reply = self._call(*args, wait=wait or 0.0)
        except SluiceUnavailable as exc:
            return Lease(self, self._fallback(exc, resource), "", 0)
        decision = _common.parse_decision(reply, resource, acquire=True)
        lease_id, lease_ttl = _common.parse_lease(reply)
        return Lease(self, decision, lease_id if decision.allowed else "", lease_ttl)

    def charge(self, lease: "str | Lease", n: Optional[int] = None, *,
               costs: Optional[Mapping[str, int]] = None) -> Decision:
        """Report ``n`` more units (0..10^12), or ``costs`` by unit name, used by a lease
        (by id or object) while its response streams: ``SL.CHARGE``.

        Usage up to the lease's estimate is covered by its reservation; beyond it the charge
        consumes from every limit, all or nothing. ``allowed`` False means stop streaming: a
        refused charge consumes nothing and does not count as usage.
        :class:`~sluice.LeaseNotFound` when the engine no longer holds the lease. When
        sluiced is unreachable the client's ``on_unavailable`` answers, as for :meth:`check`.
        """
        if isinstance(lease, Lease):
            return lease.charge(n, costs=costs)
        return self._charge(_common.charge_args(lease, n, costs), "")

    def release(self, lease: "str | Lease", actual: Optional[int] = None, *,
                actual_costs: Optional[Mapping[str, int]] = None) -> bool:
        """Free a lease (by id or object), settling ``actual`` (0..10^12) and
        ``actual_costs`` (by unit name): ``SL.RELEASE``. A unit without an actual cost is
        settled at what the lease was charged, else at its estimate.

        True when the engine released it; :class:`~sluice.LeaseNotFound` when it no longer
        holds it. When sluiced is unreachable: False, or raises with ``on_unavailable="raise"``.
        """
        if isinstance(lease, Lease):
            return lease.release(actual, actual_costs=actual_costs)
        return self._release(_common.release_args(lease, actual, actual_costs))

    def ping(self) -> bool:
        """True when sluiced answers; never raises for an unreachable daemon."""
        try:
            return self._call("PING") in ("PONG", b"PONG", True)
        except SluiceError:
            return False

    def start(self) -> bool:
        """PING sluiced once at start-up: True when it answers. When it does not, logs one
        ERROR naming the socket path and what decisions will do (fail open or closed)."""
        try:
            self._call("PING")
            return True
        except SluiceError as exc:
            reason = exc.reason if isinstance(exc, SluiceUnavailable) else str(exc)
            log.error(_common.unreachable_at_start(self.socket_path, self.on_unavailable, reason))
            return False

    def ready(self) -> bool:
        """Readiness: sluiced answers PING (for a ``/readyz`` endpoint)."""
        return self.ping()

    def execute(self, *args: Any) -> Any:
        """Send any command (e.g. ``"SL.INFO"``) and return the raw reply."""
        return self._call(*args)

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "SluiceClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SluiceClient({self.socket_path!r}, on_unavailable={self.on_unavailable!r})"
