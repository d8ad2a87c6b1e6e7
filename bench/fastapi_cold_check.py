#!/usr/bin/env python3
"""What the check of a granted request costs when its code and objects are not in the CPU's
caches, as on a loaded server.

The example's limiter (subject and API key from X-API-Key, tier from X-User-Tier) decides a
request that a local grant admits: ``_check_now`` and ``_fields_for``, what SluiceRoute runs
on every such request. No I/O: the grant is put in the client's book by hand, so every call
is the granted path. Timed in this process, per call, in two ways taking turns round by round:

* warm: calls back to back, the code and objects in the caches (what a microbenchmark sees);
* cold: before each call, ``--flush-mib`` MiB are written (every 64-byte line), more than a
  core's own caches hold (on the project's machine 48 KiB of L1 data and 2 MiB of L2 per
  core; its L3 is shared and larger), as what a request runs besides the check (HTTP parsing,
  FastAPI, pydantic, and the other workers on the same core) evicts them on a busy server; a
  fresh scope is built for each call (an ASGI server builds it just before the route runs,
  so it is warm there too).

Then the granted path's parts, each cold: the one walk through the fields, the client's
``_granted`` (the grant book's ``take`` in it), ``_fields_for``, and a call of a function doing
nothing (the timer's and a call's own cost). Medians of the rounds.

    /usr/bin/python3 bench/fastapi_cold_check.py [--rounds 15] [--calls 1000] [--flush-mib 8]
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients" / "python"))

from starlette.requests import Request  # noqa: E402

from sluice import AsyncSluiceClient, Decision, LimitState, LocalGrants  # noqa: E402
from sluice.fastapi import RateLimit, header  # noqa: E402
from sluice.grants import Grant  # noqa: E402

API_KEY = header("X-API-Key")
LIMITER = RateLimit("predict", subject=API_KEY, api_key=API_KEY, tier=header("X-User-Tier"))
KEY = ("predict", "caller-1", None, "caller-1", 1)


def fresh_scope() -> dict:
    """A scope as uvicorn gives the example's /predict under wrk."""
    return {"type": "http", "method": "POST", "path": "/predict", "app": None,
            "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"content-length", b"23"), (b"x-api-key", b"caller-1")]}


async def measure(args) -> None:
    client = AsyncSluiceClient("/nonexistent/sluice.sock", grants=LocalGrants())
    LIMITER.client = client
    loop = asyncio.get_running_loop()
    book = client._book(loop)
    book.take(KEY, loop.time())  # the book knows the kind of request
    decision = Decision(allowed=True, limit=10**12, remaining=10**12, reset_after_ms=60_000,
                        retry_after_ms=0, rule="per_minute", resource="predict",
                        limits=(LimitState("per_minute", 10**12, 10**12, 60_000, 60_000),))
    # A grant too large to run out or to ask for the next one: every call is the granted path.
    book.states[KEY].grant = Grant("bench", 10**15, loop.time() + 3600, decision, 1, used=0)
    buffer = bytearray(args.flush_mib * 1024 * 1024)
    dirt = b"\x01" * (len(buffer) // 64)

    def flush() -> None:
        buffer[::64] = dirt

    def check(request: Request) -> None:
        granted, _ = LIMITER._check_now(request)
        LIMITER._fields_for(granted)

    request = Request(fresh_scope())
    check(request)
    if LIMITER._check_now(request)[0] is not decision:
        raise SystemExit("the bench's grant did not admit the request: it measures nothing")
    scope = fresh_scope()
    parts = {
        "the one walk through the fields": lambda: LIMITER._read(scope),
        "the client's _granted (with the book's take)": lambda: client._granted(KEY),
        "_fields_for (the cached fields)": lambda: LIMITER._fields_for(decision),
        "a call doing nothing (the timer's own cost)": lambda: None,
    }
    results: dict = {"warm": [], "cold": [], **{name: [] for name in parts}}
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.calls):
            check(request)
        results["warm"].append((time.perf_counter() - start) / args.calls * 1e6)
        total = 0.0
        for _ in range(args.calls):
            flush()
            cold_request = Request(fresh_scope())
            start = time.perf_counter()
            check(cold_request)
            total += time.perf_counter() - start
        results["cold"].append(total / args.calls * 1e6)
        for name, call in parts.items():
            total = 0.0
            for _ in range(args.calls):
                flush()
                start = time.perf_counter()
                call()
                total += time.perf_counter() - start
            results[name].append(total / args.calls * 1e6)
    warm, cold = statistics.median(results["warm"]), statistics.median(results["cold"])
    print(f"the granted check (_check_now + _fields_for), median of {args.rounds} rounds of "
          f"{args.calls} calls; caches flushed with {args.flush_mib} MiB")
    print(f"  warm, back to back:       {warm:6.2f} µs per call")
    print(f"  cold, caches flushed:     {cold:6.2f} µs per call ({cold / warm:.1f}x warm)")
    print("its parts, each cold:")
    for name in parts:
        print(f"  {name:<46} {statistics.median(results[name]):6.2f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=1000, help="per round and way")
    parser.add_argument("--flush-mib", type=int, default=8,
                        help="MiB written before each cold call (more than L1 and L2 hold)")
    asyncio.run(measure(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
