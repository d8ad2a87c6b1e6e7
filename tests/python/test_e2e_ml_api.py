"""The seed article's scenarios against a real sluiced and a real uvicorn serving
examples/fastapi-ml-api with policies/ml-api.yaml."""

import time

import pytest

from conftest import BUILD, ML_POLICY, Uvicorn, support
from sluice import SluiceClient

PREDICT_BODY = {"data": [1, 2, 3]}


def post_n(http, path, n, **kwargs):
    return [http.post(path, **kwargs) for _ in range(n)]


def test_predict_allows_10_then_429(sluiced, api):
    # Approach 1 / 3: for i in {1..11}; curl -X POST /predict ...  -> 429 after 10.
    sluiced.fresh_window("predict", "127.0.0.1")
    with api.http() as http:
        responses = post_n(http, "/predict", 11, json=PREDICT_BODY)
    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert responses[0].json() == {"prediction": 0.95, "confidence": 0.87}
    denied = responses[-1]
    assert denied.json()["detail"]["error"] == "rate_limited"
    assert denied.json()["detail"]["resource"] == "predict"


def test_predict_batch_allows_5_per_300s_then_429(sluiced, api):
    # Approach 2: for i in {1..6}; curl -X POST /predict/batch -d '[{"features": [1,2,3]}]'
    sluiced.fresh_window("predict/batch", "127.0.0.1")
    with api.http() as http:
        responses = post_n(http, "/predict/batch", 6, json=[{"features": [1, 2, 3]}])
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[-1].headers["RateLimit-Policy"] == '"per_5_minutes";q=5;w=300'
    assert 0 < int(responses[-1].headers["Retry-After"]) <= 300


def test_premium_caller_gets_30_then_429(sluiced, api):
    # Approach 3: for i in {1..31}; curl ... -H "X-User-Tier: premium" /premium/predict
    sluiced.fresh_window("premium/predict", "127.0.0.1")
    with api.http() as http:
        responses = post_n(http, "/premium/predict", 31, json=PREDICT_BODY,
                           headers={"X-User-Tier": "premium"})
    assert [r.status_code for r in responses] == [200] * 30 + [429]
    assert responses[0].json() == {"result": "premium prediction", "status": "success"}
    assert responses[0].headers["RateLimit-Policy"] == '"per_minute";q=30;w=60'


def test_premium_api_key_is_resolved_by_the_policy(sluiced, api):
    # The policy maps premium-user-key to premium: 5x on /predict (50 per minute).
    headers = {"X-API-Key": "premium-user-key"}
    sluiced.fresh_window("predict", "premium-user-key")
    with api.http() as http:
        first = http.post("/predict", json=PREDICT_BODY, headers=headers)
        assert first.status_code == 200
        assert first.headers["RateLimit-Policy"] == '"per_minute";q=50;w=60'
        assert http.post("/premium/predict", json=PREDICT_BODY, headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-User-Tier": "free"}, {"X-API-Key": "unknown-key"}])
def test_free_caller_on_premium_route_gets_403_without_spending_quota(sluiced, api, headers):
    with api.http() as http:
        response = http.post("/premium/predict", json=PREDICT_BODY, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"detail": "Premium access required"}
    with sluiced.client() as client:
        subject = headers.get("X-API-Key", "127.0.0.1")
        # PEEK answers what a CHECK would: remaining after this one request, so 29 of 30.
        assert client.peek("premium/predict", subject).remaining == 29


def test_fields_on_allowed_and_denied_responses(sluiced, api):
    # /limiter/predict: 20 per 60 s. Every answer carries the IETF fields (the x-ratelimit
    # family only on the token routes); the denial adds Retry-After, consistent with
    # RateLimit's t.
    headers = {"X-API-Key": "fields-test-key"}
    sluiced.fresh_window("limiter/predict", "fields-test-key")
    body = {"features": [1, 2, 3]}
    with api.http() as http:
        responses = post_n(http, "/limiter/predict", 21, json=body, headers=headers)
    assert [r.status_code for r in responses] == [200] * 20 + [429]

    first = responses[0].headers
    assert first["RateLimit-Policy"] == '"per_minute";q=20;w=60'
    name, r, t = first["RateLimit"].split(";")
    assert name == '"per_minute"' and r == "r=19"
    assert 0 < int(t.removeprefix("t=")) <= 60
    assert not any(name.lower().startswith("x-ratelimit") for name in first)
    assert "Retry-After" not in first
    assert responses[19].headers["RateLimit"].startswith('"per_minute";r=0;')

    denied = responses[20]
    retry = int(denied.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert denied.headers["RateLimit"] == f'"per_minute";r=0;t={retry}'
    assert denied.headers["RateLimit-Policy"] == '"per_minute";q=20;w=60'
    assert denied.headers["content-type"] == "application/json"
    detail = denied.json()["detail"]
    assert detail["rule"] == "per_minute" and detail["limit"] == 20
    assert detail["retry_after_seconds"] == retry


def test_model_info_is_not_limited(sluiced, api):
    with api.http() as http:
        responses = [http.get("/model-info") for _ in range(30)]
    assert all(r.status_code == 200 for r in responses)
    assert "RateLimit" not in responses[-1].headers


def test_batch_predict_and_resource_based_limits(sluiced, api):
    with api.http() as http:
        sluiced.fresh_window("batch-predict", "127.0.0.1")
        assert [r.status_code for r in post_n(http, "/batch-predict", 3, json=PREDICT_BODY)] \
            == [200, 200, 429]
        sluiced.fresh_window("models/batch-process", "127.0.0.1")
        statuses = [r.status_code for r in post_n(http, "/models/batch-process", 3, json=[1, 2])]
        assert statuses == [200, 200, 429]
        light = post_n(http, "/models/lightweight/predict", 5, json=PREDICT_BODY)
        assert all(r.status_code == 200 for r in light)
        assert light[0].headers["RateLimit-Policy"] == '"per_minute";q=100;w=60'


def test_heavy_model_is_limited_harder_during_warm_up(sluiced, api):
    # The policy starts models/heavy cold at a fifth of 10 per minute; READY lifts it.
    with api.http() as http:
        warming = post_n(http, "/models/heavy/predict", 3, json=PREDICT_BODY)
        assert [r.status_code for r in warming] == [200, 200, 429]
        assert warming[0].json()["limit_now"] == 2
        with sluiced.client(admin=True) as admin:
            admin.execute("SL.WARMUP", "models/heavy", "READY")
        warm = http.post("/models/heavy/predict", json=PREDICT_BODY)
        assert warm.status_code == 200 and warm.json()["limit_now"] == 10


def test_generate_settles_actual_tokens_not_the_estimate(sluiced, api):
    # A 15000-token reservation that produces 100 tokens must cost 100. Were the estimate
    # kept, the 20000-token burst would have 5000 left and the second call would be refused.
    headers = {"X-API-Key": "tokens-test-key"}
    body = {"prompt": "x" * 100, "max_tokens": 15_000}
    with api.http() as http:
        first = http.post("/generate", json=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["usage"] == {"reserved_tokens": 15_000, "completion_tokens": 100}
        assert first.headers["x-ratelimit-limit-tokens"] == first.headers["RateLimit-Policy"] \
            .split(";q=")[1].split(";")[0]
        assert 'sluice-unit="tokens"' in first.headers["RateLimit-Policy"]
        # The fields report the budget after settlement, not after the reservation.
        assert int(first.headers["x-ratelimit-remaining-tokens"]) >= 20_000 - 100

        with sluiced.client() as client:
            remaining = client.peek("generate", "tokens-test-key").remaining
        assert remaining >= 20_000 - 100 - 1, remaining  # PEEK counts its own cost of 1

        second = http.post("/generate", json=body, headers=headers)
        assert second.status_code == 200, second.text

        # A reservation larger than the whole burst can never fit: 429 without Retry-After.
        huge = http.post("/generate", json={"prompt": "y", "max_tokens": 25_000},
                         headers=headers)
        assert huge.status_code == 429
        assert "Retry-After" not in huge.headers
        assert "x-ratelimit-remaining-tokens" in huge.headers
        assert "exceeds the limit" in huge.json()["detail"]["message"]


def test_request_values_the_engine_rejects_are_a_400(sluiced, api):
    # A subject longer than the engine accepts comes from the caller: 400, not 500.
    with api.http() as http:
        response = http.post("/predict", json=PREDICT_BODY, headers={"X-API-Key": "k" * 600})
    assert response.status_code == 400
    assert response.json()["detail"]["error"] == "invalid_rate_limit_arguments"
    assert "512" in response.json()["detail"]["message"]


def test_app_reports_the_heavy_model_ready_when_loaded(sluiced, workdir):
    # The app's startup "loads" the model, then sends SL.WARMUP models/heavy READY on the
    # admin socket: the reduced warm-up limit (2) gives way to the full one (10).
    from conftest import Uvicorn

    server = Uvicorn(workdir, sluiced, HEAVY_MODEL_LOAD_SECONDS="0.2",
                     SLUICE_ADMIN_SOCKET=sluiced.admin_socket).start()
    try:
        deadline = time.monotonic() + 10
        with server.http() as http:
            while True:
                response = http.post("/models/heavy/predict", json=PREDICT_BODY)
                if response.status_code == 200 and response.json()["limit_now"] == 10:
                    break
                assert time.monotonic() < deadline, response.text
                time.sleep(0.1)
    finally:
        server.stop()


def test_a_live_policy_apply_shows_in_the_very_next_response(workdir):
    # The app reads no policy file: tiers, limits and windows come with each decision. APPLY
    # rewrites the daemon's policy file, so this daemon serves a copy of it.
    policy = ML_POLICY.read_text()
    predict = "- {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}"
    assert predict in policy
    changed = policy.replace(predict, predict.replace("limit: 10, window: 1m",
                                                      "limit: 7, window: 2m"), 1)
    changed = changed.replace("  premium-user-key: premium\n",
                              "  premium-user-key: premium\n  new-premium-key: premium\n")
    with support.Sluiced(BUILD, policy_yaml=policy) as daemon:
        server = Uvicorn(workdir, daemon, HEAVY_MODEL_LOAD_SECONDS="3600").start()
        try:
            with server.http() as http:
                before = http.post("/predict", json=PREDICT_BODY)
                assert before.headers["RateLimit-Policy"] == '"per_minute";q=10;w=60'
                new_key = {"X-API-Key": "new-premium-key"}
                assert http.post("/premium/predict", json=PREDICT_BODY,
                                 headers=new_key).status_code == 403
                with SluiceClient(daemon.admin_socket, on_unavailable="raise") as admin:
                    admin.execute("SL.POLICY", "APPLY", changed)
                after = http.post("/predict", json=PREDICT_BODY)
                assert after.headers["RateLimit-Policy"] == '"per_minute";q=7;w=120'
                # The tier sluice resolves decides the 403: a key added live is premium at once.
                assert http.post("/premium/predict", json=PREDICT_BODY,
                                 headers=new_key).status_code == 200
        finally:
            server.stop()


def test_unknown_claimed_tier_is_a_400(sluiced, api):
    with api.http() as http:
        response = http.post("/predict", json=PREDICT_BODY, headers={"X-User-Tier": "gold"})
    assert response.status_code == 400
    assert "gold" in response.json()["detail"]["message"]


def test_readyz_follows_sluiced(sluiced, api):
    with api.http() as http:
        assert http.get("/readyz").status_code == 200
        sluiced.stop()
        try:
            assert http.get("/readyz").status_code == 503
        finally:
            sluiced.start()
        assert http.get("/readyz").status_code == 200
