"""sluice.fastapi dependencies against a scripted server: exact fields on allowed and denied
answers, the lease settled with the route's actual cost, and fail-closed without a daemon."""

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fake_sluiced import Error, FakeSluiced
from sluice import AsyncLease, AsyncSluiceClient
from sluice.fastapi import RateLimit, RateLimitLease, SluiceMiddleware, json_cost


def build_app(socket_path, on_unavailable="open"):
    app = FastAPI()

    @app.on_event("startup")
    async def startup():
        app.state.sluice = AsyncSluiceClient(socket_path, on_unavailable=on_unavailable)

    @app.post("/p", dependencies=[Depends(RateLimit("predict", window="1m",
                                                    x_ratelimit_headers=True))])
    async def predict(data: dict):
        return {"ok": True}

    @app.post("/g")
    async def generate(body: dict, lease: AsyncLease = Depends(RateLimitLease(
            "generate", cost=json_cost(lambda b: b["max_tokens"]), unit="tokens"))):
        await lease.release(actual=12)
        return {"ok": True}

    @app.post("/unsettled")
    async def unsettled(body: dict, lease: AsyncLease = Depends(RateLimitLease(
            "generate", cost=json_cost(lambda b: b["max_tokens"])))):
        lease.actual = 3  # settled by the dependency after the response
        return {"ok": True}

    return app


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "s.sock")


def test_check_dependency_renders_fields_and_429(sock):
    replies = iter([[1, 10, 9, 30_000, 0, "per_minute"], [0, 10, 0, 30_000, 12_345, "per_minute"]])
    with FakeSluiced(sock, lambda args: next(replies)) as fake, \
            TestClient(build_app(sock)) as http:
        ok = http.post("/p", json={"a": 1})
        denied = http.post("/p", json={"a": 1})
    assert ok.status_code == 200
    assert ok.headers["ratelimit-policy"] == '"per_minute";q=10;w=60'
    assert ok.headers["ratelimit"] == '"per_minute";r=9;t=30'
    assert ok.headers["x-ratelimit-reset-requests"] == "30s"
    assert denied.status_code == 429
    assert denied.headers["retry-after"] == "13"
    assert denied.headers["ratelimit"] == '"per_minute";r=0;t=13'
    assert denied.json() == {"detail": {
        "error": "rate_limited", "message": "Too Many Requests", "resource": "predict",
        "rule": "per_minute", "limit": 10, "remaining": 0, "retry_after_seconds": 13}}
    assert fake.commands[0] == ["SL.CHECK", "predict", "testclient"]


def test_an_app_without_a_client_of_its_own_asks_the_socket_in_the_environment(
        sock, monkeypatch):
    # Nothing in app.state: the limiter's client is the process-wide one for $SLUICE_SOCKET.
    monkeypatch.setenv("SLUICE_SOCKET", sock)
    app = FastAPI()

    @app.post("/p", dependencies=[Depends(RateLimit("predict"))])
    async def predict(data: dict):
        return {"ok": True}

    with FakeSluiced(sock, lambda args: [1, 10, 9, 30_000, 0, "per_minute"]) as fake, \
            TestClient(app) as http:
        answer = http.post("/p", json={"a": 1})
    assert answer.status_code == 200
    assert answer.headers["ratelimit"] == '"per_minute";r=9;t=30'
    assert fake.commands[-1] == ["SL.CHECK", "predict", "testclient"]


def test_lease_dependency_reserves_estimate_and_settles_actual(sock):
    def respond(args):
        if args[0] == "SL.ACQUIRE":
            return [1, 20_000, 19_100, 1_000, 0, "tokens_per_minute", "77", 60_000]
        return 1

    with FakeSluiced(sock, respond) as fake, TestClient(build_app(sock)) as http:
        response = http.post("/g", json={"max_tokens": 900}, headers={"X-API-Key": "k"})
        unsettled = http.post("/unsettled", json={"max_tokens": 50})
    assert response.status_code == 200 and unsettled.status_code == 200
    assert response.headers["ratelimit-policy"] == \
        '"tokens_per_minute";q=20000;sluice-unit="tokens"'
    # Reserved 900, settled 12: the fields show the 888 tokens given back.
    assert response.headers["ratelimit"] == '"tokens_per_minute";r=19988;t=1'
    assert fake.commands == [
        ["SL.ACQUIRE", "generate", "testclient", "KEY", "k", "COST", "900"],
        ["SL.RELEASE", "77", "ACTUAL", "12"],
        ["SL.ACQUIRE", "generate", "testclient", "COST", "50"],
        ["SL.RELEASE", "77", "ACTUAL", "3"],
    ]


def test_engine_error_is_not_swallowed(sock):
    # A policy or argument error is a bug to see, not a reason to fail open.
    with FakeSluiced(sock, lambda args: Error("ERR unknown resource 'predict'")), \
            TestClient(build_app(sock), raise_server_exceptions=False) as http:
        assert http.post("/p", json={"a": 1}).status_code == 500


@pytest.mark.parametrize("mode,status", [("open", 200), ("closed", 503)])
def test_missing_daemon_fails_open_or_closed(tmp_path, mode, status):
    with TestClient(build_app(str(tmp_path / "none.sock"), mode)) as http:
        response = http.post("/p", json={"a": 1})
    assert response.status_code == status
    assert "ratelimit" not in response.headers
    if mode == "closed":
        assert response.headers["retry-after"] == "1"
        assert response.json()["detail"]["error"] == "rate_limiter_unavailable"


@pytest.mark.parametrize("mode,status", [("open", 200), ("closed", 503)])
def test_middleware_without_daemon_fails_open_or_closed(tmp_path, mode, status):
    app = FastAPI()

    @app.get("/x")
    async def x():
        return {"ok": True}

    client = AsyncSluiceClient(str(tmp_path / "none.sock"), on_unavailable=mode)
    app.add_middleware(SluiceMiddleware, resource="api", client=client)
    with TestClient(app) as http:
        response = http.get("/x")
    assert response.status_code == status
    if mode == "closed":
        assert response.headers["retry-after"] == "1"
        assert response.json()["detail"]["error"] == "rate_limiter_unavailable"
    else:
        assert response.json() == {"ok": True} and "ratelimit" not in response.headers


TWO_LIMITS = [1, 10, 9, 30_000, 0, "per_minute", "free", 60_000,
              [["per_minute", 10, 9, 30_000, 60_000], ["per_day", 500, 480, 3_600_000, 86_400_000]]]


def test_fields_come_from_the_reply_for_every_limit(sock):
    # No window= on the limiter: w comes from the reply, one item per limit, deciding first.
    app = FastAPI()

    @app.on_event("startup")
    async def startup():
        app.state.sluice = AsyncSluiceClient(sock)

    @app.post("/p", dependencies=[Depends(RateLimit("predict", x_ratelimit_headers=True))])
    async def predict():
        return {"ok": True}

    with FakeSluiced(sock, lambda args: TWO_LIMITS), TestClient(app) as http:
        ok = http.post("/p")
    assert ok.headers["ratelimit-policy"] == '"per_minute";q=10;w=60, "per_day";q=500;w=86400'
    assert ok.headers["ratelimit"] == '"per_minute";r=9;t=30, "per_day";r=480;t=3600'
    assert ok.headers["x-ratelimit-limit-requests"] == "10"


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_storage_failure_fail_closed_is_503_without_quota_fields(sock, mode):
    # The policy's fail_closed denied because storage failed: not a quota of zero.
    storage = [0, 0, 0, 0, 1_000, "(storage)", "free", 0, []]
    with FakeSluiced(sock, lambda args: storage), TestClient(build_app(sock, mode)) as http:
        response = http.post("/p", json={"a": 1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "ratelimit-policy" not in response.headers and "ratelimit" not in response.headers
    assert not any(h.startswith("x-ratelimit") for h in response.headers)
    assert response.json()["detail"]["error"] == "rate_limiter_unavailable"


def test_storage_failure_fail_open_passes_without_fields(sock):
    storage = [1, -1, -1, 0, 0, "(storage)", "free", 0, []]
    with FakeSluiced(sock, lambda args: storage), TestClient(build_app(sock)) as http:
        response = http.post("/p", json={"a": 1})
    assert response.status_code == 200
    assert "ratelimit" not in response.headers
    assert "x-ratelimit-limit-requests" not in response.headers


def test_middleware_storage_failure_is_503(sock):
    app = FastAPI()

    @app.get("/x")
    async def x():
        return {"ok": True}

    client = AsyncSluiceClient(sock)
    app.add_middleware(SluiceMiddleware, resource="api", client=client)
    storage = [0, 0, 0, 0, 1_000, "(storage)", "free", 0, []]
    with FakeSluiced(sock, lambda args: storage), TestClient(app) as http:
        response = http.get("/x")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "ratelimit" not in response.headers


def test_readiness_endpoint(sock, tmp_path):
    from sluice.fastapi import readiness

    def app_for(path):
        app = FastAPI()
        app.get("/readyz")(readiness(AsyncSluiceClient(path, on_unavailable="closed")))
        return app

    with FakeSluiced(sock, lambda args: "PONG"), TestClient(app_for(sock)) as http:
        up = http.get("/readyz")
    assert up.status_code == 200 and up.json() == {"status": "ready", "sluice": sock}
    missing = str(tmp_path / "none.sock")
    with TestClient(app_for(missing)) as http:
        down = http.get("/readyz")
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert down.json() == {"status": "unavailable", "sluice": missing, "on_unavailable": "closed"}


def test_unknown_unit_is_refused_when_the_limiter_is_built():
    # unit is a Literal for type checkers; at run time a typo fails at import, not per request.
    with pytest.raises(ValueError, match="unit must be one of requests, tokens, items"):
        RateLimit("predict", unit="token")


def test_example_routes_skip_response_validation():
    # A `-> dict` annotation makes FastAPI validate every response (a cost on every request
    # the seed's code does not pay): the example's routes have no response model.
    import importlib.util

    from fastapi.routing import APIRoute
    from conftest import EXAMPLE_DIR

    spec = importlib.util.spec_from_file_location("ml_api_example", EXAMPLE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes = [r for r in module.app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 10
    assert [r.path for r in routes if r.response_model is not None] == []
