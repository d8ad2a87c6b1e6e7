"""FastAPI integration: a route dependency, a lease dependency and a whole-app middleware.

    from fastapi import Depends, FastAPI
    from sluice.fastapi import RateLimit

    app = FastAPI()

    @app.post("/predict", dependencies=[Depends(RateLimit("predict"))])
    def predict(data: dict): ...

Each limiter asks sluiced for a decision about one resource. It finds

* the **subject** (who is limited) with ``subject=``: the client IP by default, or
  ``header("X-API-Key")``, or any function of the request (a user id); a request for which
  it gives None or "" is limited by its client IP;
* the **tier** by sending the caller's API key (``api_key=``, default the ``X-API-Key``
  header) for the engine to look up in the policy's ``api_keys``, or explicitly with
  ``tier=`` (e.g. ``header("X-User-Tier")`` — only behind something that sets it);
* the **cost**: a constant, or a function of the request, e.g.
  ``json_cost(lambda body: len(body))`` for a batch. It counts against the resource's
  ``tokens`` / ``items`` limits; a ``requests`` limit takes 1 per request;
* optionally a **wait** (``wait=2.0`` seconds): a request that would be denied is held by
  sluiced until capacity returns or the wait runs out, instead of a 429 at once.

A generated response streamed as Server-Sent Events is limited by :class:`TokenStream`: it
reserves the input and the largest output with ``SL.ACQUIRE``, charges each chunk's tokens
with ``SL.CHARGE`` before sending it, ends the stream with an error event when a charge is
refused, and settles what was streamed with ``SL.RELEASE`` however the stream ends.

An allowed request gets ``RateLimit-Policy`` / ``RateLimit`` fields (and optionally the
``x-ratelimit-*`` family); a denied one is a 429 with those fields, ``Retry-After`` and a JSON
body. When sluiced is unreachable the client's ``on_unavailable`` decides: fail-open lets
the request through without fields, fail-closed answers ``unavailable_status`` (503) with
``Retry-After``.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the parameter types of a
# dependency's __call__ at import time, and a class instance has no globals to resolve
# string annotations in.
import asyncio
import dataclasses
import inspect
import weakref
from typing import (Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Dict,
                    Iterable, List, Mapping, Optional, Tuple, TypeVar, Union, cast, get_args)

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.routing import request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _common
from .aio import AsyncSluiceClient
from .decision import Decision
from .errors import SluiceError
from .headers import Unit, raw_headers, render_headers
from .lease import AsyncLease
from .streaming import TokenStreamResponse

__all__ = [
    "RateLimit",
    "RateLimitLease",
    "TokenStream",
    "TokenStreamResponse",
    "stream_tokens",
    "SluiceMiddleware",
    "SluiceRoute",
    "RateLimitExceeded",
    "client_ip",
    "header",
    "json_cost",
    "readiness",
]

MaybeAwaitable = Union[Any, Awaitable[Any]]
Extractor = Callable[[Request], MaybeAwaitable]
CostSpec = Union[int, Callable[[Request], MaybeAwaitable]]


# -- what to limit by -----------------------------------------------------------------------

def client_ip(request: Request) -> str:
    """The peer address as the ASGI server saw it (behind a proxy, configure the server's
    forwarded-allow-ips so this is the real client)."""
    return _address(request.scope)


def _address(scope: Scope) -> str:
    client = scope.get("client")  # read from the scope: no Address built per request
    return str(client[0]) if client else "unknown"


def header(name: str, default: Optional[str] = None) -> Callable[[Request], Optional[str]]:
    """An extractor returning request header ``name`` (or ``default`` when absent)."""
    raw_name = name.lower().encode("latin-1")

    def extract(request: Request) -> Optional[str]:
        # The scope's raw pairs, as Starlette's Headers.get reads them (ASGI servers send
        # lower-case names), without building a Headers object for every request. A walk
        # through the pairs costs less than building a dict of them, even once per request
        # for three extractors (bench/fastapi_extractors.py). No typing.cast() either: it is
        # a call at run time.
        for key, value in request.scope["headers"]:
            if key == raw_name:
                decoded: str = value.decode("latin-1")
                return decoded
        return default

    extract.__name__ = f"header({name!r})"
    _header_fields[extract] = (raw_name, default)
    return extract


# What each header() extractor reads: its field's raw name and its default. A limiter whose
# subject, tier and API key all come from these (or the client's address) reads them in one
# walk through the request's fields (_field_reader).
_header_fields: "weakref.WeakKeyDictionary[Callable[..., Any], Tuple[bytes, Optional[str]]]" = (
    weakref.WeakKeyDictionary()
)

# A request's subject, tier, API key and cost, normalized: what a check asks about.
_Values = Tuple[str, Optional[str], Optional[str], int]


def _field_reader(subject: Extractor, tier: Optional[Extractor], api_key: Optional[Extractor],
                  cost: CostSpec) -> Optional[Callable[[Scope], _Values]]:
    """For a limiter of a constant cost whose extractors are all header() (or client_ip for
    the subject, None for tier and API key): a function reading subject, tier and API key
    from the scope in one walk through its fields, normalized as _Limiter._normalized does (a
    subject None or "" is the client's address; a tier or key "" is None). None otherwise."""
    if not isinstance(cost, int):
        return None
    constant: int = cost
    plans: List[Tuple[Optional[bytes], Optional[str]]] = []
    for position, extractor in enumerate((subject, tier, api_key)):
        # No field: the subject is then the client's address, tier and key are None.
        no_field = extractor is client_ip if position == 0 else extractor is None
        if no_field:
            plans.append((None, None))
            continue
        try:
            plan = _header_fields.get(extractor) if extractor is not None else None
        except TypeError:  # an extractor that cannot be a weak key is not header()'s
            plan = None
        if plan is None:
            return None
        plans.append(plan)
    (subject_name, subject_default), (tier_name, tier_default), (key_name, key_default) = plans
    key_is_subject = key_name is not None and key_name == subject_name
    if tier_name is not None and tier_name in (subject_name, key_name):
        return None  # one field read as the tier and as something else: the general path
    wanted = frozenset(name for name, _ in plans if name is not None)

    def read(scope: Scope) -> _Values:
        # One walk; a field is compared with the names only when it is one of them, and the
        # first of a repeated field counts (as header() and Starlette's Headers.get).
        raw_subject = raw_tier = raw_key = None
        for name, value in scope["headers"]:
            if name in wanted:
                if name == subject_name:
                    if raw_subject is None:
                        raw_subject = value
                elif name == tier_name:
                    if raw_tier is None:
                        raw_tier = value
                elif raw_key is None:
                    raw_key = value
        if key_is_subject:
            raw_key = raw_subject
        subject = subject_default if raw_subject is None else raw_subject.decode("latin-1")
        tier = tier_default if raw_tier is None else raw_tier.decode("latin-1")
        key = key_default if raw_key is None else raw_key.decode("latin-1")
        return subject or _address(scope), tier or None, key or None, constant

    return read


def json_cost(fn: Callable[[Any], int], default: int = 1) -> Callable[[Request], Awaitable[int]]:
    """A cost computed from the JSON body, e.g. ``json_cost(lambda b: b["max_tokens"])``.

    Falls back to ``default`` when the body is not JSON or ``fn`` fails on it (the route's
    own validation then answers the client).
    """

    async def cost(request: Request) -> int:
        try:
            return int(fn(await request.json()))
        except Exception:  # noqa: BLE001 - any shape problem means "use the default"
            return default

    return cost


async def _resolve(value: Any, request: Request) -> Any:
    if callable(value):
        value = value(request)
        if inspect.isawaitable(value):
            value = await value
    return value


_PLAIN = (str, int, type(None))


def _all_plain(values: Tuple[Any, ...]) -> bool:
    """None of ``values`` is awaitable (strings, numbers and None are answered at once)."""
    for value in values:
        if type(value) not in _PLAIN and inspect.isawaitable(value):
            return False
    return True


async def _awaited(values: Tuple[Any, Any, Any, Any]) -> Tuple[Any, Any, Any, Any]:
    results = []
    for value in values:
        results.append(await value if inspect.isawaitable(value) else value)
    return results[0], results[1], results[2], results[3]


# -- the shared decision logic --------------------------------------------------------------

_default_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncSluiceClient]" = (
    weakref.WeakKeyDictionary()
)


def _client_for(request_app: Any, explicit: Optional[AsyncSluiceClient]) -> AsyncSluiceClient:
    if explicit is not None:
        return explicit
    try:
        # Starlette's State keeps its values in a dict, _state; reading it skips State's
        # __getattr__ (a Python call raising AttributeError when unset) on every request, and
        # an app using the default client (none in its State) raises nothing either.
        state_client: Optional[AsyncSluiceClient] = request_app.state._state.get("sluice")
    except AttributeError:  # no app, or a State that is not Starlette's
        state_client = getattr(getattr(request_app, "state", None), "sluice", None)
    if state_client is not None:
        return state_client
    # A process-wide default from $SLUICE_SOCKET, one per event loop because asyncio
    # connections belong to the loop that opened them.
    loop = asyncio.get_running_loop()
    client = _default_clients.get(loop)
    if client is None:
        client = _default_clients[loop] = AsyncSluiceClient()
    return client


class RateLimitExceeded(HTTPException):
    """The 429 a denied request gets; ``decision`` is the engine's answer."""

    def __init__(self, decision: Decision, headers: Dict[str, str], cost: int) -> None:
        super().__init__(status_code=429, detail=_denial_body(decision, cost), headers=headers)
        self.decision = decision


def _denial_body(decision: Decision, cost: int) -> Dict[str, Any]:
    if decision.retry_after_ms < 0:
        message = f"Request cost {cost} exceeds the limit of {decision.limit}"
    else:
        message = "Too Many Requests"
    return {
        "error": "rate_limited",
        "message": message,
        "resource": decision.resource,
        "rule": decision.rule,
        "limit": decision.limit,
        "remaining": max(0, decision.remaining),
        "retry_after_seconds": decision.retry_after_seconds,
    }


def _unavailable_body(decision: Decision) -> Dict[str, Any]:
    # Unreachable daemon or failed storage: no quota is known, so none is claimed.
    return {
        "error": "rate_limiter_unavailable",
        "message": "The rate limiter is unavailable; try again shortly",
        "resource": decision.resource,
        "retry_after_seconds": decision.retry_after_seconds,
    }


class _Limiter:
    def __init__(
        self,
        resource: Any,
        *,
        client: Optional[AsyncSluiceClient] = None,
        subject: Extractor = client_ip,
        api_key: Optional[Extractor] = header("X-API-Key"),
        tier: Optional[Extractor] = None,
        cost: CostSpec = 1,
        unit: Unit = "requests",
        window: Optional[Union[int, float, str]] = None,
        policy_name: Optional[str] = None,
        ietf_headers: bool = True,
        x_ratelimit_headers: bool = False,
        unavailable_status: int = 503,
        wait: Optional[float] = None,
    ) -> None:
        if isinstance(cost, int) and (isinstance(cost, bool) or cost < 1):
            raise ValueError(f"cost must be an integer >= 1 or a function; got {cost!r}")
        self.resource = resource
        self.client = client
        self.subject = subject
        self.api_key = api_key
        self.tier = tier
        self.cost = cost
        self._cost_is_function = callable(cost)
        # Extractors and cost are fixed when the limiter is made: the usual ones (fields of
        # the request, a constant cost) are read in one walk on every request.
        self._read = _field_reader(subject, tier, api_key, cost)
        if unit not in get_args(Unit):
            raise ValueError(f"unit must be one of {', '.join(get_args(Unit))}; got {unit!r}")
        self.unit = unit
        self.window_ms = _window_ms(window)
        self.policy_name = policy_name
        self.ietf_headers = ietf_headers
        self.x_ratelimit_headers = x_ratelimit_headers
        self.unavailable_status = unavailable_status
        _common.wait_ms(wait)  # a bad value fails when the route is declared
        self.wait = wait
        self.ttl_ms: Optional[int] = None
        self._last_fields: Optional[
            Tuple[Decision, Dict[str, str], List[Tuple[bytes, bytes]]]] = None

    def _values(self, request: Request) -> Tuple[Any, Any, Any, Any]:
        """Subject, tier, API key and cost as the extractors give them (maybe awaitables)."""
        return (self.subject(request),
                self.tier(request) if self.tier is not None else None,
                self.api_key(request) if self.api_key is not None else None,
                self.cost(request) if callable(self.cost) else self.cost)

    @staticmethod
    def _normalized(request: Request, values: Tuple[Any, Any, Any, Any]
                    ) -> Tuple[str, Optional[str], Optional[str], int]:
        subject, tier, api_key, cost = values
        subject = subject or client_ip(request)
        if type(cost) is not int or cost < 1:
            cost = max(1, int(cast(int, cost)))
        return str(subject), tier or None, api_key or None, cost

    async def _check(self, request: Request,
                     resource: Optional[str] = None) -> Tuple[Decision, int]:
        """SL.CHECK for this request: (decision, cost)."""
        checked = self._check_now(request, resource)
        return checked if type(checked) is tuple else await cast(_Checking, checked)

    def _check_now(self, request: Request, resource: Optional[str] = None,
                   values: Optional[Tuple[str, Optional[str], Optional[str], int]] = None
                   ) -> Union[Tuple[Decision, int], "_Checking"]:
        """(decision, cost) at once when a local grant admits the request, else what to await
        for them. ``values``: subject, tier, API key and cost already read and normalized.
        This runs on every limited request: the usual values (strings, a constant cost) are
        checked inline, and a granted request costs no coroutine and as few calls as it can."""
        read = self._read
        if read is not None and values is None:  # fields of the request, a constant cost
            values = read(request.scope)
        if values is None:
            subject = self.subject(request)
            tier = self.tier(request) if self.tier is not None else None
            # Limited by API key (subject=api_key=header("X-API-Key")): the field is read once.
            api_key = subject if self.api_key is self.subject else \
                self.api_key(request) if self.api_key is not None else None
            # None or "" from the subject's extractor: the client's address, as _normalized.
            subject = subject or client_ip(request)
            cost = cast(Callable[[Request], Any], self.cost)(request) \
                if self._cost_is_function else self.cost
            if not (type(subject) is str and subject and type(cost) is int and cost >= 1
                    and (tier is None or type(tier) is str)
                    and (api_key is None or type(api_key) is str)):
                return self._check_values(request, resource, (subject, tier, api_key, cost))
            tier, api_key = tier or None, api_key or None
        else:
            subject, tier, api_key, cost = values
        client = self.client or _client_for(request.scope.get("app"), None)
        if client._grant_options is not None and self.wait is None:  # most often no I/O
            granted = client._granted((resource or self.resource, subject, tier, api_key, cost))
            if granted is not None:
                return granted, cost
        return self._decide(client, resource, subject, tier, api_key, cost)

    async def _check_values(self, request: Request, resource: Optional[str],
                            values: Tuple[Any, Any, Any, Any]) -> Tuple[Decision, int]:
        """The check of a request whose extractors gave awaitables or unusual values."""
        if not _all_plain(values):
            values = await _awaited(values)
        checked = self._check_now(request, resource, self._normalized(request, values))
        return checked if type(checked) is tuple else await cast(_Checking, checked)

    async def _decide(self, client: AsyncSluiceClient, resource: Optional[str], subject: str,
                      tier: Optional[str], api_key: Optional[str],
                      cost: int) -> Tuple[Decision, int]:
        """Asks sluiced (or waits for a grant on its way); a grant was tried already."""
        resource = resource or self.resource
        book = client.grants
        try:
            if book is not None and self.wait is None:
                return await client._without_grant(
                    book, (resource, subject, tier, api_key, cost)), cost
            return await client._decide("SL.CHECK", resource, subject, tier, api_key, cost,
                                        self.wait), cost
        except SluiceError as exc:
            raise _caller_error(exc) from None

    async def _acquire(self, request: Request, costs: Optional[Mapping[str, int]] = None
                       ) -> Tuple[AsyncLease, int]:
        """SL.ACQUIRE for this request: (lease, estimated cost); with ``costs`` (units by
        name) instead of the limiter's cost."""
        values = self._values(request)
        if not _all_plain(values):
            values = await _awaited(values)
        subject, tier, api_key, cost = self._normalized(request, values)
        client = _client_for(request.scope.get("app"), self.client)
        try:
            if costs is not None:
                return await client.acquire(self.resource, subject, tier=tier, api_key=api_key,
                                            costs=costs, ttl_ms=self.ttl_ms,
                                            wait=self.wait), cost
            return await client.acquire(self.resource, subject, tier=tier, api_key=api_key,
                                        cost=cost, ttl_ms=self.ttl_ms, wait=self.wait), cost
        except SluiceError as exc:
            raise _caller_error(exc) from None

    def headers_for(self, decision: Decision) -> Dict[str, str]:
        return self._fields_for(decision)[0]

    def _fields_for(self, decision: Decision
                    ) -> Tuple[Dict[str, str], List[Tuple[bytes, bytes]]]:
        """The fields of ``decision``, as text and as ASGI's raw pairs. The requests a local
        grant admits share its decision: its fields are rendered once (the last decision's
        are kept)."""
        last = self._last_fields
        if last is not None and last[0] is decision:
            return last[1], last[2]
        headers = render_headers(decision, window_ms=self.window_ms, unit=self.unit,
                                 name=self.policy_name, ietf=self.ietf_headers,
                                 x_ratelimit_fields=self.x_ratelimit_headers)
        raw = raw_headers(headers)
        self._last_fields = (decision, headers, raw)
        return headers, raw

    def _raise_if_denied(self, decision: Decision, headers: Dict[str, str], cost: int) -> None:
        if decision.allowed:
            return
        if decision.unavailable or decision.storage_failure:
            raise HTTPException(self.unavailable_status, detail=_unavailable_body(decision),
                                headers=headers)
        raise RateLimitExceeded(decision, headers, cost)


# What _check_now gives when it cannot answer at once.
_Checking = Coroutine[Any, Any, Tuple[Decision, int]]


def _set_headers(response: Response, headers: Dict[str, str],
                 raw: List[Tuple[bytes, bytes]]) -> None:
    """``headers`` (``raw``: the same as ASGI pairs) on FastAPI's sub-response."""
    if response.raw_headers:  # another dependency set fields: replace any of the same name
        response.headers.update(headers)
    else:  # the usual case: FastAPI's fresh sub-response, appended without lookups
        response.raw_headers.extend(raw)


def _caller_error(exc: SluiceError) -> Exception:
    """Arguments taken from the request (an unknown tier, a key longer than the engine
    accepts) are the caller's error, a 400, not a server failure; other errors stay."""
    if exc.code != "WRONGARGS":
        return exc
    return HTTPException(400, detail={"error": "invalid_rate_limit_arguments",
                                      "message": exc.message})


def _window_ms(window: Optional[Union[int, float, str]]) -> Optional[int]:
    """Seconds (number) or a duration text like "1m", "300s", "500ms" -> milliseconds."""
    if window is None:
        return None
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        return int(window * 1000)
    text = str(window).strip()
    units = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for suffix, factor in units:
        number = text[: -len(suffix)]
        if text.endswith(suffix) and number.replace(".", "", 1).isdigit():
            return int(float(number) * factor)
    raise ValueError(f"window must be seconds or a duration like '1m', '300s'; got {window!r}")


def readiness(
        client: Optional[AsyncSluiceClient] = None,
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """An endpoint for a readiness probe: 200 when sluiced answers PING, else 503.

        app.get("/readyz")(readiness())
    """

    async def ready(request: Request) -> JSONResponse:
        sluice = _client_for(request.scope.get("app"), client)
        if await sluice.ready():
            return JSONResponse({"status": "ready", "sluice": sluice.socket_path})
        return JSONResponse({"status": "unavailable", "sluice": sluice.socket_path,
                             "on_unavailable": sluice.on_unavailable},
                            status_code=503, headers={"Retry-After": "1"})

    return ready


# -- route dependencies ---------------------------------------------------------------------

class RateLimit(_Limiter):
    """Route dependency: ``SL.CHECK`` for ``resource``; returns the :class:`Decision`.

    Use as ``dependencies=[Depends(RateLimit("predict"))]`` or as a parameter
    ``decision: Decision = Depends(RateLimit("predict"))``. The fields describe every limit
    sluice reports, with its window; ``window`` (seconds or "1m") overrides the deciding
    limit's ``w=``. ``unit`` ("requests", "tokens", "items") names the cost unit in them.
    """

    async def __call__(self, request: Request, response: Response) -> Decision:
        checked = self._check_now(request)
        decision, cost = checked if type(checked) is tuple else await cast(_Checking, checked)
        headers, fields = self._fields_for(decision)
        if not decision.allowed:
            self._raise_if_denied(decision, headers, cost)
        _set_headers(response, headers, fields)
        return decision


class RateLimitLease(_Limiter):
    """Route dependency for estimated costs: ``SL.ACQUIRE`` with the estimate, yields the
    :class:`~sluice.AsyncLease`; the route settles the real cost with
    ``await lease.release(actual=n)`` (or sets ``lease.actual``). Released in the route, the
    response's fields show the budget left after settlement. A lease the route did not
    release is released when the response is done, with ``lease.actual`` or the estimate.
    ``ttl_ms`` bounds how long the engine holds it.
    """

    def __init__(self, resource: str, *, ttl_ms: Optional[int] = None, **options: Any) -> None:
        super().__init__(resource, **options)
        self.ttl_ms = ttl_ms

    async def __call__(self, request: Request, response: Response) -> AsyncIterator[AsyncLease]:
        lease, cost = await self._acquire(request)
        decision = lease.decision
        headers, fields = self._fields_for(decision)
        self._raise_if_denied(decision, headers, cost)
        _set_headers(response, headers, fields)

        def report_settled(actual: Optional[int]) -> None:
            # The fields were rendered after reserving the estimate; once the route settles
            # a smaller (or larger) actual cost, show the budget it really left.
            if actual is None or not decision.has_quota:
                return
            remaining = min(decision.limit, decision.remaining + cost - actual)
            response.headers.update(
                self.headers_for(dataclasses.replace(decision, remaining=remaining)))

        lease.on_release = report_settled
        try:
            yield lease
        finally:
            await lease.settle()


# -- the same dependencies, decided before FastAPI's dependency machinery -------------------

class SluiceRoute(APIRoute):
    """A route class that decides a route's :class:`RateLimit` dependencies itself, before
    FastAPI's dependency machinery runs, instead of as dependencies: the same declarations,
    the same answers (fields on the response, the 429 or 503 through the app's exception
    handlers), less CPU per request. For every dependency FastAPI solves per request it
    inspects the callable and builds a sub-response, which costs more than sluice's own
    decision; on a saturated server that is a few per cent of its requests/s.

        app = FastAPI()
        app.router.route_class = SluiceRoute   # before the routes are declared
        # or: router = APIRouter(route_class=SluiceRoute)

        @app.post("/predict", dependencies=[Depends(RateLimit("predict"))])
        def predict(data: dict): ...

    Only the route's leading ``dependencies=`` that are :class:`RateLimit` are taken over, in
    their order; a dependency listed before them (an access check that must answer 403 before
    quota is spent, say) keeps them all where they were, and a ``RateLimit`` the endpoint
    takes as a parameter (to read its :class:`Decision`) stays a dependency. The fields go on
    the route's responses; an error the app's exception handlers answer (a validation error)
    has none, as with the dependency. A cost or subject read from the body is read once: the
    route's own handler gets the same body. A route that returns a ``Response`` object gets
    the fields too (as a dependency, it would not).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self._limiters: Tuple[RateLimit, ...] = ()
        super().__init__(path, endpoint, **kwargs)
        limiters: List[RateLimit] = []
        # FastAPI puts the route's own dependencies= first in the dependant, in order, and
        # without a parameter name; the endpoint's parameters follow.
        for sub in self.dependant.dependencies:
            if sub.name is not None or not isinstance(sub.call, RateLimit):
                break
            limiters.append(sub.call)
        if not limiters:
            return
        del self.dependant.dependencies[:len(limiters)]
        self._limiters = tuple(limiters)
        self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self._limiters:
            return handler
        return _limited(self._limiters, handler)


def _limited(limiters: Tuple["RateLimit", ...],
             handler: Callable[[Request], Coroutine[Any, Any, Response]]
             ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """FastAPI's handler of the route, with its limits decided first on the same request
    (a body read by a limiter is read once) and their fields added to the response it
    returns."""
    if len(limiters) == 1:
        return _limited_by_one(limiters[0], handler)

    async def limited(request: Request) -> Response:
        merged: Dict[str, str] = {}
        for limiter in limiters:
            decision, cost = await limiter._check(request)
            headers = limiter.headers_for(decision)
            limiter._raise_if_denied(decision, headers, cost)
            if merged:  # as dependencies: a later limit's fields replace an earlier one's
                merged = {k: v for k, v in merged.items() if k.lower() not in
                          {name.lower() for name in headers}}
            merged.update(headers)
        fields = raw_headers(merged)
        response = await handler(request)
        if fields:
            response.raw_headers.extend(fields)
        return response

    return limited


def _limited_by_one(limiter: "RateLimit",
                    handler: Callable[[Request], Coroutine[Any, Any, Response]]
                    ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """:func:`_limited` for the usual route, with one limit: what runs on every request."""
    async def limited(request: Request) -> Response:
        checked = limiter._check_now(request)
        decision, cost = checked if type(checked) is tuple else await cast(_Checking, checked)
        headers, fields = limiter._fields_for(decision)
        if not decision.allowed:
            limiter._raise_if_denied(decision, headers, cost)  # the app's handlers answer
        response = await handler(request)
        if fields:
            response.raw_headers.extend(fields)
        return response

    return limited


# -- streamed responses ---------------------------------------------------------------------

T = TypeVar("T")


class TokenStream(_Limiter):
    """Streams a generated response as Server-Sent Events under token limits. Call it in the
    route with the request and the model's chunks; it returns the response:

        stream = TokenStream("generate", subject=header("X-API-Key"))

        @app.post("/v1/completions")
        async def complete(body: Body, request: Request):
            return await stream(request, model.generate(body.prompt),
                                input_tokens=len(tokenize(body.prompt)),
                                max_output_tokens=body.max_tokens,
                                count=lambda chunk: chunk.tokens,
                                render=lambda chunk: {"text": chunk.text})

    It acquires a lease reserving ``COST input_tokens <input_tokens> COST output_tokens
    <max_output_tokens>``; a denial is the usual 429 (or 503 failing closed) with its fields,
    before any byte of the stream. Then each chunk is charged (``SL.CHARGE <lease> COST
    output_tokens n``) before it is sent; a refused charge ends the stream with an
    ``event: error`` carrying ``{"error": {"type": "rate_limited", ...}}`` and closes the
    generator. However the stream ends (done, refused, client gone, task cancelled), the lease
    is released once with ``ACTUAL output_tokens <tokens charged>``. The response carries the
    ``RateLimit`` fields of the reservation. See :class:`~sluice.streaming.TokenStreamResponse`
    for ``count``, ``render`` and ``done``.

    ``input_unit`` / ``output_unit`` are the unit names the policy's limits count (``cost:``);
    a ``tokens`` limit takes their sum. ``ttl_ms`` bounds the lease: give a stream longer
    than the policy's ``lease_ttl`` a longer one. The other options are :class:`RateLimit`'s
    (``cost`` excepted: the costs are the call's).
    """

    def __init__(self, resource: str, *, input_unit: str = "input_tokens",
                 output_unit: str = "output_tokens", ttl_ms: Optional[int] = None,
                 unit: Unit = "tokens", **options: Any) -> None:
        if "cost" in options:
            raise TypeError("TokenStream takes its costs per call (input_tokens, "
                            "max_output_tokens), not cost=")
        if input_unit == output_unit:
            raise ValueError("input_unit and output_unit must differ")
        _common.named_costs("COST", "units", {input_unit: 0, output_unit: 0})
        super().__init__(resource, unit=unit, **options)
        self.input_unit = input_unit
        self.output_unit = output_unit
        self.ttl_ms = ttl_ms

    async def __call__(
        self,
        request: Request,
        chunks: AsyncIterable[T],
        *,
        max_output_tokens: int,
        input_tokens: int = 0,
        count: Optional[Callable[[T], int]] = None,
        render: Optional[Callable[[T], Any]] = None,
        done: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> TokenStreamResponse[T]:
        costs = {self.input_unit: input_tokens, self.output_unit: max_output_tokens}
        _common.named_costs("COST", "costs", costs)  # a bad count is the route's bug: raise
        try:
            lease, _ = await self._acquire(request, costs)
            fields = self.headers_for(lease.decision)
            self._raise_if_denied(lease.decision, fields, input_tokens + max_output_tokens)
        except BaseException:
            await _close(chunks)  # never started: closing it lets it free what it holds
            raise
        return TokenStreamResponse(lease, chunks, count=count, render=render, done=done,
                                   unit=self.output_unit, headers={**fields, **(headers or {})})


async def _close(chunks: AsyncIterable[Any]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def stream_tokens(
    request: Request,
    resource: str,
    chunks: AsyncIterable[T],
    *,
    max_output_tokens: int,
    input_tokens: int = 0,
    count: Optional[Callable[[T], int]] = None,
    render: Optional[Callable[[T], Any]] = None,
    done: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    **options: Any,
) -> TokenStreamResponse[T]:
    """``TokenStream(resource, **options)(request, chunks, ...)`` in one call, for a route
    that streams once; a route called often keeps its :class:`TokenStream`."""
    return await TokenStream(resource, **options)(
        request, chunks, max_output_tokens=max_output_tokens, input_tokens=input_tokens,
        count=count, render=render, done=done, headers=headers)


# -- whole-app middleware -------------------------------------------------------------------

class SluiceMiddleware(_Limiter):
    """ASGI middleware limiting every HTTP request of an app against one resource.

    ``resource`` is a name, or a function of the request returning a name or None (None:
    not limited here). ``exclude`` lists paths never limited (health checks, docs). The
    cost cannot read the body here; use :class:`RateLimit` on the route for body costs.

        app.add_middleware(SluiceMiddleware, resource="api", exclude=["/healthz"])
    """

    def __init__(self, app: ASGIApp, resource: Any, *, exclude: Iterable[str] = (),
                 **options: Any) -> None:
        super().__init__(resource, **options)
        self.app = app
        self.exclude = frozenset(exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        resource = await _resolve(self.resource, request)
        if not resource:
            await self.app(scope, receive, send)
            return
        try:
            decision, cost = await self._check(request, resource=resource)
        except HTTPException as exc:
            await JSONResponse({"detail": exc.detail}, status_code=exc.status_code)(
                scope, receive, send)
            return
        headers = self.headers_for(decision)
        if not decision.allowed:
            if decision.unavailable or decision.storage_failure:
                status, body = self.unavailable_status, _unavailable_body(decision)
            else:
                status, body = 429, _denial_body(decision, cost)
            # Same body shape as the dependency's HTTPException, so clients parse one format.
            await JSONResponse({"detail": body}, status_code=status, headers=headers)(
                scope, receive, send)
            return
        if not headers:
            await self.app(scope, receive, send)
            return
        raw: List[Tuple[bytes, bytes]] = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
