#!/usr/bin/env python3
"""What reading a request's subject, tier and API key costs, in nanoseconds per request.

Every limited request runs the limiter's extractors. This bench times, side by side in one
process, the ways the example app has read them:

* ``wrappers``: the example before 2026-12-06: ``caller()`` (the API key, else the client's
  address) and ``claimed_tier()`` wrapping ``header()`` extractors, and the key read again;
* ``direct``: the example now: ``subject=api_key, api_key=api_key, tier=header(...)``, the key
  read once, the fallback to the address inline (as ``_Limiter._check_now`` does it);
* ``dict``: as ``direct``, but with the request's fields first read into a dict (once per
  request, kept in the scope) instead of a walk through the pairs for each field;
* ``one walk``: the limiter's own reader since 2026-12-06 (``RateLimit(...)._read``): one
  walk through the pairs for all three, the fallback to the address included.

Each variant builds a fresh ``Request`` on a fresh scope, as a server does per request; the
cost of that alone is measured too and taken off. Rounds alternate the variants; the minimum
over rounds is printed (the run least disturbed by the host), with the median beside it.

    /usr/bin/python3 bench/fastapi_extractors.py [--fields 4] [--rounds 15] [--number 100000]
                                                 [--with-key]

--with-key sends an X-API-Key too (the last field), as a real caller does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any, Callable, Dict, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))

from starlette.requests import Request  # noqa: E402

from sluice.fastapi import RateLimit, client_ip, header  # noqa: E402

# What wrk sends with the e2e bench's script, then what an HTTP client library adds.
FIELDS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"),
          (b"content-type", b"application/json"), (b"content-length", b"30"),
          (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"),
          (b"connection", b"keep-alive"), (b"authorization", b"Bearer abcdef"),
          (b"x-request-id", b"5f2b8c1e"), (b"traceparent", b"00-4bf92f35-00f067aa-01"),
          (b"cookie", b"session=1"), (b"accept-language", b"en")]


def dict_header(name: str) -> Callable[[Request], Optional[str]]:
    """header(), reading from a dict of the request's fields kept in its scope."""
    raw_name = name.lower().encode("latin-1")

    def extract(request: Request) -> Optional[str]:
        scope = request.scope
        kept = scope.get("bench.fields")
        if kept is None or kept[0] is not scope["headers"]:
            pairs = scope["headers"]
            kept = scope["bench.fields"] = (pairs, dict(reversed(pairs)))
        value = kept[1].get(raw_name)
        return None if value is None else value.decode("latin-1")

    return extract


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=4,
                        help=f"request fields, 1..{len(FIELDS)}")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=100_000, help="requests per timing")
    parser.add_argument("--with-key", action="store_true",
                        help="send an X-API-Key too (after the other fields)")
    args = parser.parse_args()
    if not 1 <= args.fields <= len(FIELDS):
        parser.error(f"--fields must be 1 to {len(FIELDS)}")
    scope: Dict[str, Any] = {"type": "http", "method": "POST", "path": "/predict",
                             "client": ("127.0.0.1", 50000),
                             "headers": FIELDS[:args.fields]
                             + ([(b"x-api-key", b"caller-17")] if args.with_key else [])}

    api_key, user_tier = header("X-API-Key"), header("X-User-Tier")
    dict_key, dict_tier = dict_header("X-API-Key"), dict_header("X-User-Tier")
    read = RateLimit("predict", subject=api_key, api_key=api_key, tier=user_tier)._read
    assert read is not None

    def caller(request: Request) -> str:
        return api_key(request) or client_ip(request)

    def claimed_tier(request: Request) -> Optional[str]:
        return user_tier(request) or None

    def nothing() -> None:
        Request(dict(scope))

    def wrappers() -> None:
        request = Request(dict(scope))
        caller(request), claimed_tier(request), api_key(request)

    def direct() -> None:
        request = Request(dict(scope))
        subject, tier = api_key(request), user_tier(request)
        key, subject = subject, subject or client_ip(request)

    def from_dict() -> None:
        request = Request(dict(scope))
        subject, tier = dict_key(request), dict_tier(request)
        key, subject = subject, subject or client_ip(request)

    def one_walk() -> None:
        request = Request(dict(scope))
        read(request.scope)

    variants = {"request alone": nothing, "wrappers": wrappers, "direct": direct,
                "dict": from_dict, "one walk": one_walk}
    times: Dict[str, list] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(timeit.timeit(fn, number=args.number) / args.number * 1e9)
    base_min = min(times["request alone"])
    base_median = statistics.median(times["request alone"])
    key = "and an X-API-Key" if args.with_key else "and no X-API-Key"
    print(f"subject, tier and API key of a request with {args.fields} fields {key} "
          f"(ns per request, beyond building the Request; {args.rounds} rounds)")
    print(f"{'':<10}{'min':>8}{'median':>8}")
    for name in ("wrappers", "direct", "dict", "one walk"):
        print(f"{name:<10}{min(times[name]) - base_min:8.0f}"
              f"{statistics.median(times[name]) - base_median:8.0f}")
    for name in ("dict", "one walk"):
        ratio = (min(times[name]) - base_min) / (min(times["direct"]) - base_min)
        print(f"{name} / direct (min): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
