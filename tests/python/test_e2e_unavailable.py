"""What the example app does while sluiced is down: fail-open lets requests through without
quota fields, fail-closed answers 503 with Retry-After; both recover when it is back."""

import subprocess
import time

PREDICT_BODY = {"data": [1, 2, 3]}


def test_fail_open_and_fail_closed_when_sluiced_is_stopped(sluiced, api, api_fail_closed):
    with api.http() as open_http, api_fail_closed.http() as closed_http:
        assert open_http.post("/predict", json=PREDICT_BODY).status_code == 200
        assert closed_http.post("/predict", json=PREDICT_BODY).status_code == 200

        sluiced.stop()
        start = time.monotonic()
        opened = open_http.post("/predict", json=PREDICT_BODY)
        closed = closed_http.post("/predict", json=PREDICT_BODY)
        assert time.monotonic() - start < 2.0  # the short client timeout, not a hang

        assert opened.status_code == 200
        assert opened.json() == {"prediction": 0.95, "confidence": 0.87}
        assert "RateLimit" not in opened.headers and "Retry-After" not in opened.headers

        assert closed.status_code == 503
        assert closed.headers["Retry-After"] == "1"
        assert closed.json()["detail"]["error"] == "rate_limiter_unavailable"

        # Without sluiced no tier is known, so premium access cannot be granted either way.
        premium = open_http.post("/premium/predict", json=PREDICT_BODY,
                                 headers={"X-User-Tier": "premium"})
        assert premium.status_code == 503 and premium.headers["Retry-After"] == "1"

        # Nobody counts while sluiced is down: fail-open serves even past the limit.
        assert all(open_http.post("/predict", json=PREDICT_BODY).status_code == 200
                   for _ in range(12))

        sluiced.start()
        for http in (open_http, closed_http):
            back = http.post("/predict", json=PREDICT_BODY)
            assert back.status_code == 200
            assert back.headers["RateLimit-Policy"] == '"per_minute";q=10;w=60'


def test_redis_down_under_fail_closed_is_503_without_quota_fields(workdir):
    # policies/ml-api.yaml is fail_closed: with the Redis plugin and Redis stopped, sluiced
    # denies with rule (storage). That is an outage, not a quota of zero.
    from conftest import BUILD, ML_POLICY, REPO, Uvicorn, support

    redis_sock = str(workdir / "redis.sock")
    script = str(REPO / "scripts" / "redis-test-server")
    subprocess.run([script, "start", redis_sock], check=True, capture_output=True)
    redis_running = True
    try:
        daemon = support.Sluiced(BUILD, policy=ML_POLICY, extra_args=[
            "--storage", "redis", "--storage-config", f"url=unix://{redis_sock}",
            "--storage-config", "command_timeout_ms=100"])
        with daemon:
            server = Uvicorn(workdir, daemon, HEAVY_MODEL_LOAD_SECONDS="3600").start()
            try:
                with server.http() as http:
                    served = http.post("/predict", json=PREDICT_BODY)
                    assert served.status_code == 200
                    assert served.headers["RateLimit-Policy"] == '"per_minute";q=10;w=60'
                    subprocess.run([script, "stop", redis_sock], check=True, capture_output=True)
                    redis_running = False
                    down = http.post("/predict", json=PREDICT_BODY)
            finally:
                server.stop()
    finally:
        if redis_running:
            subprocess.run([script, "stop", redis_sock], capture_output=True)
    assert down.status_code == 503, down.text
    assert down.headers["Retry-After"] == "1"
    assert "RateLimit-Policy" not in down.headers and "RateLimit" not in down.headers
    assert not any(name.lower().startswith("x-ratelimit") for name in down.headers)
    assert "q=0" not in str(down.headers)
    assert down.json()["detail"]["error"] == "rate_limiter_unavailable"


def test_start_up_logs_the_missing_socket_once(workdir, daemon):
    # A wrong SLUICE_SOCKET must not silently turn limiting off: one ERROR names the path and
    # says requests are allowed without limits.
    from conftest import Uvicorn

    missing = str(workdir / "no-such-dir" / "sluice.sock")
    server = Uvicorn(workdir, daemon, HEAVY_MODEL_LOAD_SECONDS="3600")
    server.env["SLUICE_SOCKET"] = missing
    server.start()
    try:
        with server.http() as http:
            assert http.post("/predict", json=PREDICT_BODY).status_code == 200
            assert http.get("/readyz").status_code == 503
    finally:
        server.stop()
    errors = [line for line in server.log.read_text().splitlines()
              if missing in line and "ALLOWED WITHOUT LIMITS (fail open)" in line]
    assert len(errors) == 1, server.log.read_text()
