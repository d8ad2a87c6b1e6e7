"""What the example app does while sluiced is down: fail-open lets requests through without
quota fields, fail-closed answers 503 with Retry-After; both recover when it is back."""

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

        # Nobody counts while sluiced is down: fail-open serves even past the limit.
        assert all(open_http.post("/predict", json=PREDICT_BODY).status_code == 200
                   for _ in range(12))

        sluiced.start()
        for http in (open_http, closed_http):
            back = http.post("/predict", json=PREDICT_BODY)
            assert back.status_code == 200
            assert back.headers["RateLimit-Policy"] == '"per_minute";q=10;w=60'
