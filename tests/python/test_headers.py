"""Unit tests of the HTTP field rendering in sluice.headers (pure functions, no daemon)."""

import pytest

from sluice import Decision
from sluice.headers import (format_duration, ratelimit, ratelimit_policy, raw_headers,
                            render_headers, retry_after, sf_string, x_ratelimit)


def decision(allowed=True, limit=10, remaining=7, reset_ms=42_000, retry_ms=0, rule="per_minute",
             **extra):
    return Decision(allowed, limit, remaining, reset_ms, retry_ms, rule, "predict", **extra)


def test_allowed_renders_ietf_fields_without_retry_after():
    # An allowed decision advertises its policy and the live counter, never Retry-After.
    headers = render_headers(decision(), window_ms=60_000)
    assert headers == {
        "RateLimit-Policy": '"per_minute";q=10;w=60',
        "RateLimit": '"per_minute";r=7;t=42',
    }


def test_denied_rounds_retry_after_up_and_uses_it_as_effective_window():
    # 1.2 s to wait must be announced as 2 s: waiting 1 s would be refused again.
    d = decision(allowed=False, remaining=0, reset_ms=59_000, retry_ms=1_200)
    assert retry_after(d) == "2"
    assert ratelimit(d) == '"per_minute";r=0;t=2'
    assert render_headers(d)["Retry-After"] == "2"


def test_retry_after_is_at_least_one_second():
    # Retry-After is whole seconds; 0 would invite an immediate, refused retry.
    assert retry_after(decision(allowed=False, remaining=0, retry_ms=1)) == "1"


def test_never_allowed_has_no_retry_after_and_reports_reset():
    # A cost larger than the limit can never pass: retrying later must not be suggested.
    d = decision(allowed=False, remaining=10, retry_ms=-1, reset_ms=0)
    assert retry_after(d) is None
    assert "Retry-After" not in render_headers(d)
    assert ratelimit(d) == '"per_minute";r=10;t=0'


def test_window_is_whole_seconds_rounded_up_and_optional():
    # The draft allows only integer seconds > 0 for w, and w is optional.
    assert ratelimit_policy(decision(), window_ms=500) == '"per_minute";q=10;w=1'
    assert ratelimit_policy(decision(), window_ms=300_000) == '"per_minute";q=10;w=300'
    assert ratelimit_policy(decision()) == '"per_minute";q=10'


def test_quota_units():
    # Registered units go in qu (requests is the default and is omitted); others in a
    # vendor parameter, which the draft allows.
    assert ratelimit_policy(decision(), unit="concurrent-requests") == \
        '"per_minute";q=10;qu="concurrent-requests"'
    assert ratelimit_policy(decision(), unit="tokens") == '"per_minute";q=10;sluice-unit="tokens"'


def test_policy_name_override_and_fallback_to_resource():
    assert ratelimit(decision(), name="free") == '"free";r=7;t=42'
    assert ratelimit(decision(rule="")) == '"predict";r=7;t=42'


def test_sf_string_escapes_quotes_backslashes_and_non_ascii():
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    assert sf_string("café") == '"caf?"'


def test_unlimited_and_unavailable_decisions_carry_no_quota_fields():
    # No quota to advertise: an unlimited tier, or an answer made without sluiced.
    assert render_headers(decision(limit=-1, remaining=-1), x_ratelimit_fields=True) == {}
    opened = decision(limit=-1, remaining=-1, unavailable=True)
    assert render_headers(opened, x_ratelimit_fields=True) == {}
    closed = decision(allowed=False, limit=-1, remaining=-1, retry_ms=1000, unavailable=True)
    assert render_headers(closed) == {"Retry-After": "1"}


def test_negative_remaining_is_never_rendered():
    # Settling a larger actual cost can overdraw a budget; fields carry non-negative integers.
    d = decision(remaining=-5)
    assert ratelimit(d) == '"per_minute";r=0;t=42'
    assert x_ratelimit(d)["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize("ms,text", [
    (0, "0ms"), (250, "250ms"), (1000, "1s"), (1500, "1.5s"), (60_000, "1m0s"),
    (90_000, "1m30s"), (360_000, "6m0s"), (3_600_000, "1h0m0s"), (3_723_450, "1h2m3.45s"),
])
def test_format_duration_matches_go_style(ms, text):
    assert format_duration(ms) == text


def test_x_ratelimit_family_for_requests_and_tokens():
    assert x_ratelimit(decision()) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "42s",
    }
    tokens = Decision(False, 4000, 100, 30_000, 1_500, "tokens_per_minute", "generate")
    assert x_ratelimit(tokens, unit="tokens") == {
        "x-ratelimit-limit-tokens": "4000",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "1.5s",
    }


def test_render_headers_can_select_families():
    d = decision()
    assert set(render_headers(d, ietf=False, x_ratelimit_fields=True)) == {
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests"}
    assert render_headers(d, ietf=False) == {}


def test_decision_from_reply_parses_engine_array():
    d = Decision.from_reply([0, 10, 0, 41_000, 41_000, b"per_minute"], "predict")
    assert (d.allowed, d.limit, d.remaining, d.retry_after_seconds, d.rule) == \
        (False, 10, 0, 41, "per_minute")
    with pytest.raises(ValueError):
        Decision.from_reply([1, 2, 3], "predict")


def _reply(limits):
    return [1, 10, 7, 5_000, 0, "per_minute", "free", 60_000, limits]


def test_decision_limits_read_the_same_whatever_their_types():
    # The common shape (hiredis: str and int) takes a fast path; bytes and numeric strings
    # take the general one; both must give equal decisions.
    fast = Decision.from_reply(_reply([["per_minute", 10, 7, 5_000, 60_000],
                                       ["per_day", 1000, 900, 86_000_000, 86_400_000]]))
    slow = Decision.from_reply(_reply([[b"per_minute", "10", "7", "5000", "60000"],
                                       (b"per_day", 1000, 900, 86_000_000, 86_400_000)]))
    assert fast == slow
    assert [lim.name for lim in fast.limits] == ["per_minute", "per_day"]
    assert fast.limits[1].remaining == 900 and fast.tier == "free" and fast.window_ms == 60_000
    with pytest.raises(AttributeError):  # still frozen
        fast.limits[0].remaining = 3  # type: ignore[misc]
    for bad in ([["per_minute", 10, 7, 5_000]], "per_minute", [["per_minute", "x", 7, 1, 1]]):
        with pytest.raises(ValueError):
            Decision.from_reply(_reply(bad))


def test_ietf_fields_list_the_deciding_limit_first_wherever_it_is():
    d = Decision.from_reply([0, 1000, 0, 9_000, 9_000, "per_day", "free", 86_400_000,
                             [["per_minute", 10, 4, 5_000, 60_000],
                              ["per_day", 1000, 0, 9_000, 86_400_000]]])
    headers = render_headers(d)
    assert headers["RateLimit-Policy"] == '"per_day";q=1000;w=86400, "per_minute";q=10;w=60'
    assert headers["RateLimit"] == '"per_day";r=0;t=9, "per_minute";r=4;t=5'
    assert headers["Retry-After"] == "9"


def test_raw_headers_are_lower_case_latin1_pairs():
    assert raw_headers({"RateLimit": '"a";r=1;t=2', "Retry-After": "3"}) == [
        (b"ratelimit", b'"a";r=1;t=2'), (b"retry-after", b"3")]
