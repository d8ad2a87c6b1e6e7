#!/usr/bin/env python3
"""What sluice costs a FastAPI app end to end: requests/s and latency under wrk.

Starts sluiced (memory plugin) with a policy whose `predict` limit admits everything, and two
uvicorn servers with the same number of workers: the example app of examples/fastapi-ml-api
as shipped, and the same app with its limiter dependencies taken off the routes (the baseline:
same code, same routes, same request validation, no sluice). wrk then drives POST /predict
on each in turn, alternating which goes first, and the median of the rounds is reported with
the ratio sluice / baseline.

    /usr/bin/python3 bench/fastapi_e2e.py [--build-dir build] [--rounds 5] [--seconds 8]
                                          [--workers 4] [--connections 64]

Targets (issue 15): sluice at least 0.95x the baseline's requests/s, p99 latency within 10 %.
Everything runs on this machine, so the servers, wrk and sluiced share its cores: the figure
is the cost of sluice on a saturated host, sluiced's own CPU included.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "fastapi-ml-api"

# The example's policy, reduced to what POST /predict asks about, with a limit nothing reaches.
POLICY = """\
version: 1
default_tier: free
on_storage_failure: fail_closed
unknown_resource: deny
tiers:
  free: {multiplier: 1}
  premium: {multiplier: 5}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 1000000000, window: 1m}
"""

# The baseline: the example app, every route rebuilt without the dependencies that ask sluice.
BASELINE_MODULE = """\
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sluice.fastapi import RateLimit, RateLimitLease

import app as example

app = FastAPI(title=example.app.title)
for route in example.app.router.routes:
    if not isinstance(route, APIRoute):
        app.router.routes.append(route)
        continue
    kept = [d for d in route.dependencies
            if not isinstance(d.dependency, (RateLimit, RateLimitLease))]
    app.add_api_route(route.path, route.endpoint, methods=list(route.methods),
                      dependencies=kept, name=route.name)
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"features": [1.0, 2.0, 3.0]}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_socket(port: int, nodelay: bool) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    s.set_inheritable(True)
    return s


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout} s")


def post_predict(port: int) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", method="POST",
                                     data=b'{"features": [1]}',
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}
    except OSError:
        return 0, {}


def sluiced_answers(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def parse_wrk(output: str) -> dict:
    """requests/s and latency percentiles (µs) from `wrk --latency` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise SystemExit(f"wrk printed no Requests/sec:\n{output}")
    result = {"rps": float(rps.group(1))}
    for pct, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output,
                                       re.MULTILINE):
        result[f"p{pct}"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non2xx"] = int(errors.group(1)) if errors else 0
    return result


def run_wrk(port: int, args, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}/predict"],
        check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.environ.get("SLUICE_BUILD_DIR", REPO / "build"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8, help="per wrk run")
    parser.add_argument("--workers", type=int, default=4, help="uvicorn workers per app")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--nagle", action="store_true",
                        help="leave Nagle's algorithm on, as uvicorn does (each request then "
                             "waits for a delayed ACK, about 40 ms)")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (scripts/install-deps installs Debian's wrk)")
    sluiced = Path(args.build_dir) / "bin" / "sluiced"
    if not sluiced.exists():
        raise SystemExit(f"{sluiced} not found; build sluiced first or pass --build-dir")

    work = Path(tempfile.mkdtemp(prefix="sluice-e2e-"))
    (work / "policy.yaml").write_text(POLICY)
    (work / "baseline_app.py").write_text(BASELINE_MODULE)
    (work / "post.lua").write_text(WRK_SCRIPT)
    sock = work / "sluice.sock"
    env = dict(os.environ, SLUICE_SOCKET=str(sock), HEAVY_MODEL_LOAD_SECONDS="0",
               PYTHONPATH=os.pathsep.join([str(REPO / "clients" / "python"), str(EXAMPLE)]))
    env.pop("SLUICE_ADMIN_SOCKET", None)
    ports = {"baseline": free_port(), "sluice": free_port()}
    procs: list[subprocess.Popen] = []
    listeners: list[socket.socket] = []
    load_before = os.getloadavg()[0]
    try:
        procs.append(subprocess.Popen(
            [str(sluiced), "--policy", str(work / "policy.yaml"), "--socket", str(sock),
             "--admin-socket", str(work / "admin.sock"), "--storage", "memory",
             "--state-dir", str(work)], stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("SLUICED_LOG", os.devnull), "w")))
        wait_until(lambda: sluiced_answers(sock), 15, "sluiced")
        for name, module, app_dir in (("baseline", "baseline_app:app", work),
                                      ("sluice", "app:app", EXAMPLE)):
            # uvicorn (h11) writes a response's head and body separately and leaves Nagle's
            # algorithm on: with wrk's delayed ACKs every request would then wait about 40 ms,
            # the same for both apps, and the figures would measure that wait rather than the
            # apps. The listening socket is made here with TCP_NODELAY, which the connections
            # accepted from it inherit, and handed to uvicorn (--fd).
            listener = listening_socket(ports[name], nodelay=not args.nagle)
            listeners.append(listener)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", module, "--app-dir", str(app_dir),
                 "--fd", str(listener.fileno()),
                 "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
                env=env, cwd=work, pass_fds=(listener.fileno(),)))
        for name, port in ports.items():
            wait_until(lambda: post_predict(port)[0] == 200, 60, f"uvicorn ({name})")
        # The two apps differ only in sluice: the baseline's answer has no RateLimit field.
        if "ratelimit" in post_predict(ports["baseline"])[1]:
            raise SystemExit("the baseline app still asks sluice")
        if "ratelimit" not in post_predict(ports["sluice"])[1]:
            raise SystemExit("the example app's /predict carried no RateLimit field")

        for port in ports.values():  # warm every worker up
            run_wrk(port, argparse.Namespace(**{**vars(args), "seconds": 2}), work / "post.lua")
        results: dict[str, list[dict]] = {"baseline": [], "sluice": []}
        for i in range(args.rounds):
            order = ("baseline", "sluice") if i % 2 == 0 else ("sluice", "baseline")
            for name in order:
                result = run_wrk(ports[name], args, work / "post.lua")
                results[name].append(result)
                print(f"round {i + 1} {name:<9} {result['rps']:>9.0f} req/s  "
                      f"p50 {result['p50'] / 1000:6.2f} ms  p99 {result['p99'] / 1000:6.2f} ms"
                      + (f"  non-2xx {result['non2xx']}" if result["non2xx"] else ""),
                      flush=True)
    finally:
        # The apps first, sluiced last: requests wrk left in flight still ask sluice.
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for listener in listeners:
            listener.close()
        shutil.rmtree(work, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print()
    print(f"POST /predict, uvicorn --workers {args.workers}, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.seconds}s, {args.rounds} alternating rounds; medians")
    print(f"{'app':<28}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    for name, label in (("baseline", "without a limiter"), ("sluice", "with sluice (example)")):
        print(f"{label:<28}{median(name, 'rps'):>10.0f}" + "".join(
            f"{median(name, key) / 1000:>10.2f}" for key in ("p50", "p90", "p99")))
    ratios = [s["rps"] / b["rps"] for s, b in zip(results["sluice"], results["baseline"])]
    rps_ratio = statistics.median(ratios)
    p99_ratio = median("sluice", "p99") / median("baseline", "p99")
    failures = sum(r["non2xx"] for rs in results.values() for r in rs)
    print("requests/s ratio per round: " + ", ".join(f"{r:.3f}" for r in ratios))
    print(f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    verdict = "meets" if rps_ratio >= 0.95 else "misses"
    print(f"sluice / baseline requests/s: {rps_ratio:.3f} ({verdict} the 0.95 target)")
    verdict = "meets" if p99_ratio <= 1.10 else "misses"
    print(f"sluice / baseline p99 latency: {p99_ratio:.3f} ({verdict} the 1.10 target)")
    if failures:
        print(f"non-2xx answers: {failures} (a limit or sluice failed; the figures are void)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
