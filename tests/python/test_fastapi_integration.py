"""sluice.fastapi pieces the example app does not exercise — the whole-app middleware, body
costs, explicit clients — against a real sluiced, with the app served in-process."""

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from sluice import AsyncSluiceClient, Decision
from sluice.fastapi import RateLimit, SluiceMiddleware, header, json_cost


def make_app(sluiced, **middleware):
    app = FastAPI()

    @app.on_event("startup")
    async def connect():
        app.state.sluice = AsyncSluiceClient(sluiced.socket, on_unavailable="raise")

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    # generate counts tokens (a token bucket, burst 20000); the body lists token counts.
    @app.post("/tokens")
    async def tokens(body: list,
                     decision: Decision = Depends(RateLimit(
                         "generate", subject=header("X-User"), cost=json_cost(sum),
                         unit="tokens"))):
        return {"remaining": decision.remaining}

    @app.get("/anything")
    async def anything():
        return {"ok": True}

    if middleware:
        app.add_middleware(SluiceMiddleware, **middleware)
    return app


def test_middleware_limits_every_route_except_excluded(sluiced):
    # batch-predict allows 2 per minute; /healthz is excluded and never counted.
    app = make_app(sluiced, resource="batch-predict", subject=header("X-User"),
                   exclude=["/healthz"], x_ratelimit_headers=True)
    sluiced.fresh_window("batch-predict", "mw-user")
    with TestClient(app) as http:
        user = {"X-User": "mw-user"}
        first = http.get("/anything", headers=user)
        assert first.status_code == 200 and first.json() == {"ok": True}
        assert first.headers["ratelimit"] == '"per_minute";r=1;t=' + \
            first.headers["ratelimit"].split("t=")[1]
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert http.get("/anything", headers=user).status_code == 200
        denied = http.get("/anything", headers=user)
        assert denied.status_code == 429
        assert denied.json()["detail"]["error"] == "rate_limited"
        assert int(denied.headers["retry-after"]) >= 1
        assert all(http.get("/healthz", headers=user).status_code == 200 for _ in range(5))
        assert "ratelimit" not in http.get("/healthz", headers=user).headers


def test_middleware_resource_function_can_skip_requests(sluiced):
    app = make_app(sluiced, subject=header("X-User"),
                   resource=lambda request: "batch-predict" if request.url.path == "/anything"
                   else None)
    sluiced.fresh_window("batch-predict", "skip")
    with TestClient(app) as http:
        assert all(http.get("/healthz").status_code == 200 for _ in range(4))
        assert [http.get("/anything", headers={"X-User": "skip"}).status_code
                for _ in range(3)] == [200, 200, 429]


def test_cost_from_request_body(sluiced):
    # The cost is read from the JSON body: 20000 tokens empty the 20000-token burst at once.
    with TestClient(make_app(sluiced)) as http:
        user = {"X-User": "cost-user"}
        assert http.post("/tokens", json=[15_000, 5_000], headers=user).json() == \
            {"remaining": 0}
        # Refilling 1000 tokens takes 6 s at 10000 per minute.
        denied = http.post("/tokens", json=[1_000], headers=user)
        assert denied.status_code == 429
        assert 'sluice-unit="tokens"' in denied.headers["ratelimit-policy"]
        assert int(denied.headers["retry-after"]) >= 5
        # More than the whole burst can never pass: no Retry-After.
        too_big = http.post("/tokens", json=[20_000, 1], headers={"X-User": "other"})
        assert too_big.status_code == 429 and "retry-after" not in too_big.headers


def test_invalid_limiter_configuration_is_rejected_early():
    with pytest.raises(ValueError):
        RateLimit("predict", cost=0)
    with pytest.raises(ValueError):
        RateLimit("predict", window="a minute")
