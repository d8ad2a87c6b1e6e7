#!/usr/bin/env python3
"""Latency a sluice check adds to a FastAPI route.

Starts sluiced (memory plugin, a limit high enough that every request is allowed) and one
uvicorn serving two trivial async routes, identical except that ``/limited`` depends on
``sluice.fastapi.RateLimit``. One HTTP/1.1 keep-alive client alternates between them, so
both see the same server, the same client and the same machine noise, and prints p50/p90/p99
of each and the difference. The same is then measured with the ASGI app called in this
process (no HTTP), which isolates the dependency's own cost from scheduling three processes.
Last, the dependency's own CPU per request (this thread's CPU time, /limited minus /plain) is
set side by side with the CPU of one redis-py EVALSHA of a fixed-window Lua script on a local
redis-server (the core of fastapi-limiter), started with scripts/redis-test-server.

    /usr/bin/python3 bench/fastapi_overhead.py [--build-dir build] [--requests 3000] [--rounds 5]

Targets: at most 150 µs added at p50 over HTTP; the dependency's CPU at most 30 µs at p50
and at most 0.25x the EVALSHA's (issue 15).
"""

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients" / "python"))

from fastapi import Depends, FastAPI  # noqa: E402

from sluice.fastapi import RateLimit  # noqa: E402

POLICY = """\
version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
resources:
  bench:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 1000000000, window: 1m}
"""

app = FastAPI()


@app.get("/plain")
async def plain() -> dict:
    return {"ok": True}


@app.get("/limited", dependencies=[Depends(RateLimit("bench", window="1m"))])
async def limited() -> dict:
    return {"ok": True}


def percentile(sorted_values, q):
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start within {timeout} s")


async def _asgi_get(path: str) -> tuple:
    """One GET through the ASGI app in this process: no HTTP parsing, no uvicorn."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"host", b"bench")], "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    start: dict = {}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)

    await app(scope, receive, send)
    return start["status"], {k.decode().lower() for k, _ in start["headers"]}


async def measure(get, args) -> tuple:
    """Alternate /plain and /limited; returns (all samples per route, p50 added per round)."""
    status, headers = await get("/limited")
    if status != 200 or "ratelimit" not in headers:
        raise SystemExit("/limited carried no RateLimit field: sluice was not consulted")
    for _ in range(args.warmup):
        await get("/plain")
        await get("/limited")
    samples = {"/plain": [], "/limited": []}
    round_added = []
    for _ in range(args.rounds):
        this_round = {"/plain": [], "/limited": []}
        for i in range(args.requests):
            for path in ("/plain", "/limited") if i % 2 else ("/limited", "/plain"):
                begin = time.perf_counter_ns()
                status, _ = await get(path)
                elapsed = time.perf_counter_ns() - begin
                if status != 200:
                    raise SystemExit(f"{path} answered {status}")
                this_round[path].append(elapsed / 1000)
        round_added.append(statistics.median(this_round["/limited"])
                           - statistics.median(this_round["/plain"]))
        for path, values in this_round.items():
            samples[path].extend(values)
    return samples, round_added


async def measure_cpu(args) -> list:
    """The dependency's own CPU per request, in process: this thread's CPU time (waiting for
    sluiced's reply costs none) of /limited minus /plain, the median of each round's p50s."""
    added = []
    for _ in range(args.rounds):
        cpu = {"/plain": [], "/limited": []}
        for i in range(args.requests):
            for path in ("/plain", "/limited") if i % 2 else ("/limited", "/plain"):
                begin = time.thread_time_ns()
                await _asgi_get(path)
                cpu[path].append((time.thread_time_ns() - begin) / 1000)
        added.append(statistics.median(cpu["/limited"]) - statistics.median(cpu["/plain"]))
    return added


# fastapi-limiter's core: one fixed window per key in a Lua script, called with EVALSHA.
FIXED_WINDOW_LUA = """
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if current > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return 0
"""


def evalsha_cpu(work: Path, count: int) -> list:
    """CPU (this thread) and wall time of one redis-py EVALSHA of a fixed-window script on a
    local redis-server over a Unix socket: sorted CPU µs, sorted wall µs."""
    import redis

    script = REPO / "scripts" / "redis-test-server"
    sock = str(work / "redis.sock")
    subprocess.run([str(script), "start", sock], check=True, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(unix_socket_path=sock)
        sha = client.script_load(FIXED_WINDOW_LUA)
        cpu, wall = [], []
        for i in range(count + 200):
            begin_cpu, begin = time.thread_time_ns(), time.perf_counter_ns()
            client.evalsha(sha, 1, "bench:s", 60000, 10**9)
            if i >= 200:  # the first calls connect and warm up
                cpu.append((time.thread_time_ns() - begin_cpu) / 1000)
                wall.append((time.perf_counter_ns() - begin) / 1000)
        client.close()
    finally:
        subprocess.run([str(script), "stop", sock], stdout=subprocess.DEVNULL)
    return [sorted(cpu), sorted(wall)]


def report(title: str, samples: dict, round_added: list) -> float:
    rows = {}
    for path, values in samples.items():
        values.sort()
        rows[path] = [percentile(values, q) for q in (0.5, 0.9, 0.99)] + [statistics.fmean(values)]
    added = [lim - plain for lim, plain in zip(rows["/limited"], rows["/plain"])]
    print(title)
    print(f"{'route':<28}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for label, row in (("without sluice (/plain)", rows["/plain"]),
                       ("with RateLimit (/limited)", rows["/limited"]), ("added", added)):
        print(f"{label:<28}" + "".join(f"{v:>10.0f}" for v in row))
    median_added = statistics.median(round_added)
    print("p50 added per round: " + ", ".join(f"{v:.0f}" for v in round_added) + " µs")
    print(f"p50 added, median of rounds: {median_added:.0f} µs")
    return median_added


async def client_round_trips(sock: str, count: int) -> dict:
    """p50/p99 of one decision: the asyncio client, the blocking client, and the floor — the
    same SL.CHECK written and read on a bare asyncio stream, no client library."""
    from sluice import AsyncSluiceClient, SluiceClient

    async def timed(call) -> list:
        for _ in range(200):  # connect and warm up first
            await call()
        values = []
        for _ in range(count):
            begin = time.perf_counter_ns()
            await call()
            values.append((time.perf_counter_ns() - begin) / 1000)
        return sorted(values)

    results = {}
    async with AsyncSluiceClient(sock) as client:
        results["AsyncSluiceClient.check"] = await timed(lambda: client.check("bench", "s"))
    with SluiceClient(sock) as blocking:
        async def blocking_check() -> None:
            blocking.check("bench", "s")
        results["SluiceClient.check"] = await timed(blocking_check)
    reader, writer = await asyncio.open_unix_connection(sock)
    request = b"*3\r\n$8\r\nSL.CHECK\r\n$5\r\nbench\r\n$1\r\ns\r\n"

    async def raw() -> None:
        writer.write(request)
        await reader.readuntil(b"per_minute\r\n")
    results["bare asyncio stream"] = await timed(raw)
    writer.close()
    return results


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.environ.get("SLUICE_BUILD_DIR", REPO / "build"))
    parser.add_argument("--requests", type=int, default=3000, help="per route and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; the median of their p50 differences resists noise")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--round-trips-only", action="store_true",
                        help="only the one-decision table (no uvicorn, no FastAPI)")
    args = parser.parse_args()

    sluiced = Path(args.build_dir) / "bin" / "sluiced"
    if not sluiced.exists():
        raise SystemExit(f"{sluiced} not found; build sluiced first or pass --build-dir")
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    (work / "bench.yaml").write_text(POLICY)
    sock = work / "sluice.sock"
    os.environ["SLUICE_SOCKET"] = str(sock)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    load_before = os.getloadavg()[0]
    try:
        procs.append(subprocess.Popen(
            [str(sluiced), "--policy", str(work / "bench.yaml"), "--socket", str(sock),
             "--admin-socket", str(work / "admin.sock"), "--storage", "memory",
             "--state-dir", str(work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(sock.exists, 15, "sluiced")
        # First, while sluiced is the only other process: uvicorn, even idle, shares the cores.
        round_trips = asyncio.run(client_round_trips(str(sock), args.requests))
        if not args.round_trips_only:
            env = dict(os.environ, PYTHONPATH=str(REPO / "clients" / "python"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "fastapi_overhead:app", "--app-dir",
                 str(Path(__file__).resolve().parent), "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning", "--no-access-log"], env=env))
            base = f"http://127.0.0.1:{port}"

            def up():
                try:
                    return httpx.get(base + "/plain", timeout=0.5).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, 30, "uvicorn")
            with httpx.Client(base_url=base, timeout=10) as http:
                async def http_get(path: str) -> tuple:
                    response = http.get(path)
                    return response.status_code, {k.lower() for k in response.headers}

                over_http = asyncio.run(measure(http_get, args))
            in_process = asyncio.run(measure(_asgi_get, args))
            cpu_added = asyncio.run(measure_cpu(args))
            evalsha = evalsha_cpu(work, args.requests)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    what = f"{args.rounds} rounds x {args.requests} requests per route, alternating"
    if not args.round_trips_only:
        added = report(f"Over HTTP: uvicorn, one keep-alive httpx client ({what})", *over_http)
        print()
        report(f"In process: the ASGI app called directly, same sluiced ({what})", *in_process)
        print()
    print(f"One decision, no FastAPI ({args.requests} calls each)")
    print(f"{'client':<28}{'p50 µs':>10}{'p99 µs':>10}")
    for label, values in round_trips.items():
        print(f"{label:<28}{percentile(values, 0.5):>10.0f}{percentile(values, 0.99):>10.0f}")
    if not args.round_trips_only:
        cpu_p50 = statistics.median(cpu_added)
        evalsha_p50 = percentile(evalsha[0], 0.5)
        print()
        print("CPU per request in this process (thread CPU time; waiting costs none)")
        print("RateLimit dependency, p50 per round: "
              + ", ".join(f"{v:.1f}" for v in cpu_added) + f" µs; median {cpu_p50:.1f} µs")
        print(f"redis-py EVALSHA of a fixed-window script, local redis-server: CPU p50 "
              f"{evalsha_p50:.1f} µs (wall p50 {percentile(evalsha[1], 0.5):.0f} µs)")
        ratio = cpu_p50 / evalsha_p50 if evalsha_p50 > 0 else float("inf")
        print(f"dependency / EVALSHA: {ratio:.2f}")
    print()
    print(f"load average {load_before:.1f} -> {load_after:.1f} ({os.cpu_count()} cores)")
    if not args.round_trips_only:
        verdict = "meets" if added <= 150 else "misses"
        print(f"over HTTP, p50 added: {added:.0f} µs ({verdict} the 150 µs target)")
        verdict = "meets" if cpu_p50 <= 30 and ratio <= 0.25 else "misses"
        print(f"dependency CPU p50 {cpu_p50:.1f} µs, {ratio:.2f}x EVALSHA ({verdict} the "
              "30 µs and 0.25x targets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
