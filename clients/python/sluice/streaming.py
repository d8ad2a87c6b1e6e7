"""A streamed response that pays for itself as it goes: Server-Sent Events whose chunks are
charged to a lease (``SL.CHARGE``) before they are sent, and a lease settled (``SL.RELEASE``)
however the stream ends.

:class:`TokenStreamResponse` is the Starlette response; :class:`sluice.fastapi.TokenStream`
acquires the lease for a request and answers 429 before any byte when it is denied. Each chunk
the generator yields is counted (``count``), charged as ``COST <unit> n`` and then sent as one
SSE event (``render``). When a charge is refused the stream ends with one ``event: error``
whose data is ``{"error": {"type": "rate_limited", ...}}`` (what OpenAI-compatible clients
raise on) and the generator is closed, not consumed further. On completion, a client that
disconnects, a refused charge, a failing generator or a cancelled task, the lease is released
exactly once with ``ACTUAL <unit> <tokens charged>``: the release runs in a task of its own,
shielded, so a cancellation cannot skip it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import (Any, AsyncGenerator, AsyncIterable, Callable, Dict, Generic, Mapping,
                    Optional, Set, TypeVar)

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from . import _common
from .decision import Decision
from .errors import LeaseNotFound, SluiceError, SluiceUnavailable
from .lease import AsyncLease

__all__ = ["TokenStreamResponse", "sse_event", "SSE_HEADERS"]

log = logging.getLogger("sluice")

T = TypeVar("T")

#: Fields every event stream gets: no caching, and no buffering in a proxy (nginx reads
#: ``X-Accel-Buffering``), so each event reaches the client when it is sent.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Settlements in flight: the event loop keeps only weak references to tasks.
_settling: Set["asyncio.Task[None]"] = set()


def sse_event(data: str, event: Optional[str] = None) -> bytes:
    """One Server-Sent Event: an ``event:`` line when named, a ``data:`` line per line of
    ``data``, and the blank line that ends it."""
    lines = [] if event is None else [f"event: {_LINE_BREAK.sub(' ', event)}"]
    lines += ["data: " + line for line in _LINE_BREAK.split(data)]
    return ("\n".join(lines) + "\n\n").encode()


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _stop_body(kind: str, message: str, decision: Optional[Decision],
               usage: Dict[str, int]) -> Dict[str, Any]:
    error: Dict[str, Any] = {"type": kind, "message": message}
    if decision is not None:
        error.update(resource=decision.resource, rule=decision.rule, limit=decision.limit,
                     remaining=max(0, decision.remaining),
                     retry_after_seconds=decision.retry_after_seconds)
    error["usage"] = usage
    return {"error": error}


class TokenStreamResponse(StreamingResponse, Generic[T]):
    """``text/event-stream`` of ``chunks``, each charged to ``lease`` before it is sent.

    ``count(chunk)`` is the chunk's tokens (default: 1 per chunk); a chunk of 0 tokens is sent
    without a charge. ``render(chunk)`` is the event's data: a string as is, anything else as
    JSON (default: the chunk itself). ``done``, when given, is sent as a last event after the
    generator is exhausted (OpenAI's ``"[DONE]"``). ``unit`` is what the charges name
    (``COST <unit> n``) and what the release settles. The lease must be held (allowed); the
    response releases it, do not release it yourself.

    The tokens charged (and so settled) are those of every chunk handed to the server: when
    the client goes away, at most the chunk being sent is charged without being received.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        lease: AsyncLease,
        chunks: AsyncIterable[T],
        *,
        count: Optional[Callable[[T], int]] = None,
        render: Optional[Callable[[T], Any]] = None,
        done: Optional[str] = None,
        unit: str = "output_tokens",
        status_code: int = 200,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        if not lease.allowed:
            raise ValueError("a denied lease cannot pay for a stream")
        _common.named_costs("COST", "unit", {unit: 0})  # a bad unit fails here, not mid-stream
        self.lease = lease
        self.unit = unit
        self._chunks = chunks
        self._count = count
        self._render = render
        self._done = done
        self._settlement: Optional["asyncio.Task[None]"] = None
        self._events = self._stream()
        super().__init__(self._events, status_code=status_code,
                         headers={**SSE_HEADERS, **(headers or {})})

    @property
    def charged(self) -> int:
        """Tokens charged so far: what the lease will be settled at."""
        return self.lease.charged.get(self.unit, 0)

    async def _stream(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._chunks:
                tokens = 1 if self._count is None else self._count(chunk)
                if tokens:
                    stop = await self._charge(tokens)
                    if stop is not None:
                        yield stop
                        return
                yield sse_event(_json(chunk if self._render is None else self._render(chunk)))
            if self._done is not None:
                yield sse_event(self._done)
        finally:
            await self.settle()

    async def _charge(self, tokens: int) -> Optional[bytes]:
        """Charges one chunk; None to send it, else the event that ends the stream."""
        usage = {self.unit: self.charged}
        try:
            decision = await self.lease.charge(costs={self.unit: tokens})
        except LeaseNotFound:
            log.warning("sluice: lease %s expired while its response streamed (after %d %s); "
                        "acquire it with a longer ttl_ms", self.lease.id, self.charged,
                        self.unit)
            body = _stop_body("rate_limit_lease_expired",
                              "The rate-limit lease of this stream expired", None, usage)
            return sse_event(_json(body), event="error")
        except SluiceError as exc:
            log.warning("sluice: charging lease %s failed: %s", self.lease.id, exc)
            kind = ("rate_limiter_unavailable" if isinstance(exc, SluiceUnavailable)
                    else "rate_limiter_error")
            body = _stop_body(kind, "The rate limiter could not be asked", None, usage)
            return sse_event(_json(body), event="error")
        if decision.allowed:
            return None
        if decision.unavailable or decision.storage_failure:
            body = _stop_body("rate_limiter_unavailable",
                              "The rate limiter is unavailable; try again shortly", decision,
                              usage)
        else:
            body = _stop_body("rate_limited", "Token limit reached while streaming", decision,
                              usage)
        return sse_event(_json(body), event="error")

    async def settle(self) -> None:
        """Releases the lease at the tokens charged and closes the generator, once; safe to
        call again and from any exit path. The work runs in a task of its own, awaited through
        a shield: a cancelled caller (a disconnect, a server shutting down) neither skips nor
        interrupts it, and the response's end waits for it."""
        if self._settlement is None:
            self._settlement = asyncio.get_running_loop().create_task(self._settle())
            _settling.add(self._settlement)
            self._settlement.add_done_callback(_settling.discard)
        await asyncio.shield(self._settlement)

    async def _settle(self) -> None:
        try:
            await self.lease.release(actual_costs={self.unit: self.charged})
        except LeaseNotFound:
            log.info("sluice: lease %s had expired; sluiced settled it at its usage",
                     self.lease.id)
        except SluiceError as exc:
            log.warning("sluice: could not settle lease %s: %s", self.lease.id, exc)
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - the stream is over; its generator's end is not
                log.exception("sluice: closing the stream's generator failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette leaves the body generator where a disconnect stopped it: close it
            # (its own finally settles), and settle in case it never started.
            try:
                await self._events.aclose()
            except RuntimeError:  # still running elsewhere: its finally settles
                pass
            await self.settle()
