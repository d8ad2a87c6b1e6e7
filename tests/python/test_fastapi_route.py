"""sluice.fastapi.SluiceRoute: a route's leading RateLimit dependencies decided by the route
itself give the same answers as the dependencies, keep their order with other dependencies,
let the endpoint read a body the limiter read, and answer through the app's handlers."""

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fake_sluiced import FakeSluiced
from sluice import AsyncSluiceClient, LocalGrants
from sluice.fastapi import RateLimit, SluiceRoute, client_ip, header, json_cost

ALLOWED = [1, 10, 9, 30_000, 0, "per_minute", "free", 60_000, [["per_minute", 10, 9, 30_000, 60_000]]]
DENIED = [0, 10, 0, 30_000, 12_345, "per_minute", "free", 60_000,
          [["per_minute", 10, 0, 30_000, 60_000]]]


def build_app(socket_path, route_class, on_unavailable="open"):
    app = FastAPI()
    app.router.route_class = route_class

    @app.on_event("startup")
    async def startup():
        app.state.sluice = AsyncSluiceClient(socket_path, on_unavailable=on_unavailable)

    async def premium_only(request: Request):
        if request.headers.get("X-Tier") != "premium":
            raise HTTPException(403, "Premium access required")

    @app.post("/p", dependencies=[Depends(RateLimit("predict", x_ratelimit_headers=True))])
    def predict(data: dict):
        return {"ok": True}

    @app.post("/premium", dependencies=[Depends(premium_only), Depends(RateLimit("premium"))])
    def premium(data: dict):
        return {"ok": True}

    @app.post("/batch", dependencies=[Depends(RateLimit("batch", cost=json_cost(len)))])
    async def batch(items: list):
        return {"items": len(items)}

    @app.post("/two", dependencies=[Depends(RateLimit("a")), Depends(RateLimit("b"))])
    def two(data: dict):
        return {"ok": True}

    @app.post("/own", dependencies=[Depends(RateLimit("predict"))])
    def own(data: dict):
        return PlainTextResponse("made by the route", headers={"X-Own": "1"})

    return app


def answers(sock, route_class, requests, replies, on_unavailable="open"):
    """(responses, commands) of `requests` [(path, json, headers)] against a scripted server."""
    replies = iter(replies)
    with FakeSluiced(sock, lambda args: next(replies)) as fake, \
            TestClient(build_app(sock, route_class, on_unavailable)) as http:
        responses = [http.post(path, json=body, headers=headers or {})
                     for path, body, headers in requests]
    return responses, fake.commands


def shape(response):
    fields = {k: v for k, v in response.headers.items()
              if k.startswith(("ratelimit", "x-ratelimit", "retry-after"))}
    return response.status_code, fields, response.json()


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "s.sock")


@pytest.mark.parametrize("path,body,replies", [
    ("/p", {"a": 1}, [ALLOWED]),
    ("/p", {"a": 1}, [DENIED]),
    ("/batch", [1, 2, 3], [ALLOWED]),
    ("/two", {"a": 1}, [ALLOWED, ALLOWED]),
    ("/two", {"a": 1}, [ALLOWED, DENIED]),
])
def test_the_route_answers_as_the_dependency_does(sock, path, body, replies):
    plain, plain_commands = answers(sock, APIRoute, [(path, body, None)], replies)
    fast, fast_commands = answers(sock, SluiceRoute, [(path, body, None)], replies)
    assert shape(fast[0]) == shape(plain[0])
    assert fast_commands == plain_commands
    assert "ratelimit" in fast[0].headers


def test_fields_and_429_body(sock):
    (ok, denied), commands = answers(sock, SluiceRoute, [("/p", {"a": 1}, None)] * 2,
                                     [ALLOWED, DENIED])
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    assert ok.headers["ratelimit-policy"] == '"per_minute";q=10;w=60'
    assert ok.headers["x-ratelimit-remaining-requests"] == "9"
    assert denied.status_code == 429 and denied.headers["retry-after"] == "13"
    assert denied.json()["detail"]["error"] == "rate_limited"
    assert commands == [["SL.CHECK", "predict", "testclient"]] * 2


def test_a_dependency_before_the_limit_still_answers_first(sock):
    # The 403 comes before the limit: a caller without access spends no quota.
    (forbidden, ok), commands = answers(
        sock, SluiceRoute,
        [("/premium", {"a": 1}, None), ("/premium", {"a": 1}, {"X-Tier": "premium"})], [ALLOWED])
    assert forbidden.status_code == 403
    assert ok.status_code == 200 and "ratelimit" in ok.headers
    assert commands == [["SL.CHECK", "premium", "testclient"]]


def test_a_cost_read_from_the_body_leaves_the_body_to_the_endpoint(sock):
    (response,), commands = answers(sock, SluiceRoute, [("/batch", [1, 2, 3, 4], None)],
                                    [ALLOWED])
    assert response.status_code == 200 and response.json() == {"items": 4}
    assert commands == [["SL.CHECK", "batch", "testclient", "COST", "4"]]


def test_a_validation_error_is_answered_as_with_the_dependency(sock):
    # The route's handler raises it; the app's exception handler answers, without the fields,
    # as it does when the limit is a dependency.
    (plain,), _ = answers(sock, APIRoute, [("/batch", {"not": "a list"}, None)], [ALLOWED])
    (fast,), _ = answers(sock, SluiceRoute, [("/batch", {"not": "a list"}, None)], [ALLOWED])
    assert fast.status_code == 422
    assert shape(fast) == shape(plain)


def test_the_apps_exception_handler_answers_the_429(sock):
    app = build_app(sock, SluiceRoute)

    @app.exception_handler(HTTPException)
    async def own_format(request, exc):
        return JSONResponse({"error": exc.status_code}, status_code=exc.status_code,
                            headers=exc.headers)

    with FakeSluiced(sock, lambda args: DENIED), TestClient(app) as http:
        denied = http.post("/p", json={"a": 1})
    assert denied.status_code == 429 and denied.json() == {"error": 429}
    assert denied.headers["retry-after"] == "13"


def test_a_response_the_route_makes_gets_the_fields_too(sock):
    # As a dependency, FastAPI would send a Response object the route returns as it is.
    (plain,), _ = answers(sock, APIRoute, [("/own", {"a": 1}, None)], [ALLOWED])
    (fast,), _ = answers(sock, SluiceRoute, [("/own", {"a": 1}, None)], [ALLOWED])
    assert "ratelimit" not in plain.headers
    assert fast.status_code == 200 and fast.text == "made by the route"
    assert fast.headers["x-own"] == "1" and fast.headers["ratelimit"] == '"per_minute";r=9;t=30'


def test_unreachable_sluiced_failing_closed_is_503(tmp_path):
    app = build_app(str(tmp_path / "nothing.sock"), SluiceRoute, on_unavailable="closed")
    with TestClient(app) as http:
        response = http.post("/p", json={"a": 1})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "ratelimit" not in response.headers


def test_only_leading_limits_are_taken_over():
    app = FastAPI()
    app.router.route_class = SluiceRoute
    limit = RateLimit("x")

    async def other():
        return None

    @app.get("/a", dependencies=[Depends(limit), Depends(other)])
    def a():
        return {}

    @app.get("/b", dependencies=[Depends(other), Depends(limit)])
    def b():
        return {}

    @app.get("/c")
    def c(decision=Depends(limit)):
        return {}

    calls = {route.path: [d.call for d in route.dependant.dependencies]
             for route in app.routes if isinstance(route, SluiceRoute)}
    assert calls["/a"] == [other]
    assert calls["/b"] == [other, limit]
    assert calls["/c"] == [limit]


def request_with(headers):
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers,
                    "client": ("10.0.0.9", 5000)})


def test_a_header_extractor_reads_the_first_of_repeated_fields_and_follows_the_scope():
    key, tier = header("X-API-Key"), header("X-Tier", default="free")
    request = request_with([(b"x-api-key", b"first"), (b"x-tier", b"gold"),
                            (b"x-api-key", b"second")])
    assert key(request) == "first"  # as Starlette's Headers.get
    assert tier(request) == "gold"
    assert header("X-Absent")(request) is None
    # A scope given other fields is read afresh.
    request.scope["headers"] = [(b"x-api-key", b"changed")]
    assert key(request) == "changed" and tier(request) == "free"
    # Any iterable of pairs, as ASGI allows, not only a list.
    assert key(request_with(((b"x-api-key", b"t1"), (b"x-api-key", b"t2")))) == "t1"


def one_route_app(sock, route_class, limiter):
    """An app with POST /p limited by ``limiter``, its routes of ``route_class``."""
    app = FastAPI()
    app.router.route_class = route_class

    @app.on_event("startup")
    async def startup():
        app.state.sluice = AsyncSluiceClient(sock)

    @app.post("/p", dependencies=[Depends(limiter)])
    def predict(data: dict):
        return {"ok": True}

    return app


def test_a_limit_by_api_key_falls_back_to_the_client_address(sock):
    key = header("X-API-Key")
    replies = [ALLOWED] * 4
    for route_class in (APIRoute, SluiceRoute):
        app = one_route_app(sock, route_class, RateLimit("predict", subject=key, api_key=key))
        answered = iter(replies)
        with FakeSluiced(sock, lambda args: next(answered)) as fake, TestClient(app) as http:
            assert http.post("/p", json={}, headers={"X-API-Key": "k-1"}).status_code == 200
            assert http.post("/p", json={}, headers={"X-API-Key": ""}).status_code == 200
        # The key is the subject and is sent for the tier; without one, the client's address
        # is limited and no key is sent (the route and the dependency alike).
        assert fake.commands == [["SL.CHECK", "predict", "k-1", "KEY", "k-1"],
                                 ["SL.CHECK", "predict", "testclient"]], route_class


# -- subject, tier and API key read in one walk through the fields --------------------------

WALKS = [
    [],
    [(b"x-api-key", b"k-1")],
    [(b"x-api-key", b"")],
    [(b"x-api-key", b"first"), (b"x-user-tier", b"gold"), (b"x-api-key", b"second")],
    [(b"x-user-tier", b"")],
    [(b"host", b"h"), (b"x-user-tier", b"premium"), (b"x-user", b"u-7"),
     (b"x-user-tier", b"free"), (b"x-user", b"u-8")],
    [(b"host", b"h"), (b"x-user", b""), (b"x-api-key", b"k-2")],
]


def plain_limiters():
    key, tier = header("X-API-Key"), header("X-User-Tier")
    user = header("X-User", default="anon")
    return [RateLimit("r", subject=key, api_key=key, tier=tier),  # the example's
            RateLimit("r"),  # the client's address, the default X-API-Key
            RateLimit("r", subject=user, tier=header("X-User-Tier", default="free"),
                      api_key=None, cost=3),
            RateLimit("r", subject=header("X-User"), api_key=key, tier=tier),
            # The key's own extractor on the subject's field, with a default of its own.
            RateLimit("r", subject=key, api_key=header("X-API-Key", default="none"))]


@pytest.mark.parametrize("fields", WALKS)
@pytest.mark.parametrize("client", [("10.0.0.9", 5000), None])
def test_one_walk_reads_what_the_extractors_read(fields, client):
    for limiter in plain_limiters():
        request = Request({"type": "http", "method": "POST", "path": "/", "headers": fields,
                           "client": client})
        assert limiter._read is not None
        expected = limiter._normalized(request, limiter._values(request))
        assert limiter._read(request.scope) == expected, (fields, limiter.subject)


def test_only_fields_and_a_constant_cost_are_read_in_one_walk():
    def own(request):
        return "someone"

    assert RateLimit("r", subject=own)._read is None
    assert RateLimit("r", tier=own)._read is None
    assert RateLimit("r", api_key=own)._read is None
    assert RateLimit("r", tier=client_ip)._read is None  # the address is the subject's only
    assert RateLimit("r", cost=json_cost(len))._read is None
    assert RateLimit("r", cost=lambda request: 2)._read is None
    # One field as the tier and as the subject or key: left to the extractors themselves.
    assert RateLimit("r", subject=header("X-A"), tier=header("X-A"))._read is None
    assert RateLimit("r", api_key=header("X-A"), tier=header("x-a"))._read is None
    assert RateLimit("r", subject=header("X-User"), api_key=None)._read is not None


@pytest.mark.parametrize("fields", [{}, {"X-API-Key": "k-1", "X-User-Tier": "gold"},
                                    {"X-API-Key": "", "X-User-Tier": ""}])
def test_the_route_sends_what_the_dependency_sends_for_fields_it_reads(sock, fields):
    key, tier = header("X-API-Key"), header("X-User-Tier")
    sent = []
    for route_class in (APIRoute, SluiceRoute):
        app = one_route_app(sock, route_class, RateLimit("p", subject=key, api_key=key,
                                                         tier=tier))
        with FakeSluiced(sock, lambda args: ALLOWED) as fake, TestClient(app) as http:
            response = http.post("/p", json={}, headers=fields)
        assert response.status_code == 200 and "ratelimit" in response.headers
        sent.append(fake.commands)
    assert sent[0] == sent[1] and len(sent[0]) == 1


def test_a_limit_of_fields_is_read_in_one_walk_not_by_its_extractors(sock):
    # Subject, tier and key of header() fields are read by the limiter's one walk, made when
    # the limiter is; the extractors themselves are not called on a request.
    app = build_app(sock, SluiceRoute)
    limiter = next(route.dependencies[0].dependency for route in app.routes
                   if getattr(route, "path", "") == "/p")

    def extractor_called(request):
        raise AssertionError("the limit read its fields through an extractor")

    limiter.subject = limiter.api_key = extractor_called
    replies = iter([ALLOWED, DENIED])
    with FakeSluiced(sock, lambda args: next(replies)) as fake, TestClient(app) as http:
        ok, denied = http.post("/p", json={"a": 1}), http.post("/p", json={"a": 1})
    assert ok.status_code == 200 and ok.headers["ratelimit"] == '"per_minute";r=9;t=30'
    assert denied.status_code == 429 and denied.headers["retry-after"] == "13"
    assert fake.commands == [["SL.CHECK", "predict", "testclient"]] * 2


def test_a_client_and_a_wait_set_after_the_route_are_used(tmp_path, sock):
    # The route is built when the app declares it; the limiter's client, resource and wait
    # are read on every request.
    limiter = RateLimit("p", subject=header("X-API-Key"))
    app = one_route_app(str(tmp_path / "nothing.sock"), SluiceRoute, limiter)
    with FakeSluiced(sock, lambda args: ALLOWED) as fake, TestClient(app) as http:
        limiter.client = AsyncSluiceClient(sock, grants=LocalGrants())
        assert http.post("/p", json={}, headers={"X-API-Key": "k"}).status_code == 200
        limiter.wait = 1.5
        limiter.resource = "q"
        assert http.post("/p", json={}, headers={"X-API-Key": "k"}).status_code == 200
    assert fake.commands[0][:3] == ["SL.CHECK", "p", "k"]
    assert fake.commands[-1] == ["SL.CHECK", "q", "k", "KEY", "k", "WAIT", "1500"]
