#!/usr/bin/env python3
"""Latency a sluice check adds to a FastAPI route.

Starts sluiced (memory plugin, a limit high enough that every request is allowed) and one
uvicorn serving two trivial async routes, identical except that ``/limited`` depends on
``sluice.fastapi.RateLimit``. One HTTP/1.1 keep-alive client alternates between them, so
both see the same server, the same client and the same machine noise, and prints p50/p90/p99
of each and the difference.

    /usr/bin/python3 bench/fastapi_overhead.py [--build-dir build] [--requests 3000] [--rounds 5]

Target: at most 150 µs added at p50.
"""

import argparse
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


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.environ.get("SLUICE_BUILD_DIR", REPO / "build"))
    parser.add_argument("--requests", type=int, default=3000, help="per route and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; the median of their p50 differences resists noise")
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()

    sluiced = Path(args.build_dir) / "bin" / "sluiced"
    if not sluiced.exists():
        raise SystemExit(f"{sluiced} not found; build sluiced first or pass --build-dir")
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    (work / "bench.yaml").write_text(POLICY)
    sock = work / "sluice.sock"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(sluiced), "--policy", str(work / "bench.yaml"), "--socket", str(sock),
             "--admin-socket", str(work / "admin.sock"), "--storage", "memory",
             "--audit-log", str(work / "audit.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(sock.exists, 15, "sluiced")
        env = dict(os.environ, SLUICE_SOCKET=str(sock),
                   PYTHONPATH=str(REPO / "clients" / "python"))
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
        samples = {"/plain": [], "/limited": []}
        round_added = []
        load_before = os.getloadavg()[0]
        with httpx.Client(base_url=base, timeout=10) as http:
            if "RateLimit" not in http.get("/limited").headers:
                raise SystemExit("/limited carried no RateLimit field: sluice was not consulted")
            for i in range(args.warmup):
                http.get("/plain")
                http.get("/limited")
            for _ in range(args.rounds):
                this_round = {"/plain": [], "/limited": []}
                for i in range(args.requests):
                    for path in ("/plain", "/limited") if i % 2 else ("/limited", "/plain"):
                        start = time.perf_counter_ns()
                        response = http.get(path)
                        elapsed = time.perf_counter_ns() - start
                        if response.status_code != 200:
                            raise SystemExit(f"{path} answered {response.status_code}")
                        this_round[path].append(elapsed / 1000)
                round_added.append(statistics.median(this_round["/limited"])
                                   - statistics.median(this_round["/plain"]))
                for path, values in this_round.items():
                    samples[path].extend(values)
        load_after = os.getloadavg()[0]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    rows = {}
    for path, values in samples.items():
        values.sort()
        rows[path] = [percentile(values, q) for q in (0.5, 0.9, 0.99)] + [statistics.fmean(values)]
    added = [lim - plain for lim, plain in zip(rows["/limited"], rows["/plain"])]
    print(f"FastAPI overhead of sluice.fastapi.RateLimit ({args.rounds} rounds x "
          f"{args.requests} requests per route, one keep-alive client, alternating; "
          f"load average {load_before:.1f} -> {load_after:.1f})")
    print(f"{'route':<28}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for label, row in (("without sluice (/plain)", rows["/plain"]),
                       ("with RateLimit (/limited)", rows["/limited"]), ("added", added)):
        print(f"{label:<28}" + "".join(f"{v:>10.0f}" for v in row))
    median_added = statistics.median(round_added)
    print("p50 added per round: " + ", ".join(f"{v:.0f}" for v in round_added) + " µs")
    verdict = "meets" if median_added <= 150 else "misses"
    print(f"p50 added, median of rounds: {median_added:.0f} µs ({verdict} the 150 µs target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
