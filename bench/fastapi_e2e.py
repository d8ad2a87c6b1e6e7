#!/usr/bin/env python3
"""What sluice costs a FastAPI app end to end: requests/s and latency under wrk.

Starts sluiced (memory plugin) with a policy whose `predict` limit admits everything, and two
uvicorn servers with the same number of workers: the example app of examples/fastapi-ml-api
as shipped, and the same app with its limiter dependencies taken off the routes (the baseline:
same code, same routes, same request validation, no sluice). wrk then drives POST /predict
on each in turn, each app first, second, ... equally often, and the median of the rounds is
reported with the ratio sluice / baseline, and what each request cost in CPU: the app's
workers, sluiced and wrk, read from /proc before and after each run. When apps run one after
another (not --together), each limited app's run also reads how many decisions sluiced made
per request (SL.STATS on its admin socket): with local grants, one grant admits many.

    /usr/bin/python3 bench/fastapi_e2e.py [--build-dir build] [--rounds 5] [--seconds 8]
                                          [--workers 4] [--connections 64] [--accept shared]
                                          [--servers kept] [--aa] [--x-ratelimit] [--split]
                                          [--keys N] [--other CHECKOUT] [--perf-stat]
                                          [--together] [--http h11|httptools]
                                          [--loop asyncio|uvloop] [--apps NAME,...]
                                          [--perf-record DIR]
    /usr/bin/python3 bench/fastapi_e2e.py --from-log RUN.log [RUN.log ...]

--x-ratelimit adds a third app: the example with the x-ratelimit-* family on /predict too (it
sends only the IETF fields there), for what three more response fields cost. --split adds two
more, to tell apart what the cost is made of: the example with /predict's check replaced by
its first decision, kept (every request then costs the route class, the wrapper and the two
fields, but no check), and the same without the fields. --keys N spreads
the requests over N callers (API keys): with many callers each sending a request now and then,
no caller gets local grants and every request is a round trip to sluiced. --other CHECKOUT
adds the example as another checkout of sluice has it (its client and example app, e.g. a
`git worktree` of an earlier commit), measured in the same rounds: two versions of the client
compared side by side, each against the same baseline. --perf-stat also reads, per request,
the app's system CPU and, with `perf stat` (the kernel's software counters, which a VM
without hardware counters still has), its context switches and page faults: work that does
not show in bench/fastapi_instructions.py's count. --perf-record DIR samples the app's
processes with `perf record` (the kernel's cpu-clock timer, 2,000 times a second) during each
run and prints, pooled over the rounds, each app's CPU per request by binary (the Python
interpreter, the kernel, libc) and the functions whose share differs most from the
baseline's. --apps runs only some of the apps the other options add (--split --apps
baseline,sluice,kept: the example beside its kept decision, three apps instead of four).

How connections reach the workers matters more than anything the app does. `uvicorn --workers
4` shares one listening socket: whichever worker is awake accepts, and wrk's 64 connections,
opened at once, land unevenly — all 64 on one worker in some runs, and that worker's single
event loop then caps the app at a third of what four balanced workers serve. The requests/s of
a round were decided by that draw (ratios between 0.6 and 1.0 from one round to the next). By
default each worker is therefore one uvicorn process with a listening socket of its own on the
same port (SO_REUSEPORT), and the kernel spreads connections over them by their addresses, as
`gunicorn --reuse-port` or a load balancer would; `--accept shared` measures uvicorn's
`--workers` instead. Each run prints how many connections each worker held.

A worker process is faster or slower than another running the same code by a few per cent,
for as long as it lives (its hash seed and memory layout differ): the same baseline started
twice and measured in alternating rounds came out 6 % apart in one run (1.4 % in another). So
each app's workers are started afresh for every run (and warmed up for 2 s), and that
difference becomes noise that the median of many rounds averages out, rather than a bias
that alternating cannot remove; `--servers kept` starts them once, as earlier versions did.
`--aa` measures the baseline a second time under another name: its ratio to the baseline
shows the bench's own error, and every ratio comes with a bootstrap interval of its median.
Ratios of single rounds spread about ±10 %: 25 rounds give the median to about ±3 %, and
`--from-log` pools the rounds of several runs' saved output (same apps in each) into one
summary.

--together runs the apps at the same time instead, each under its own wrk, workers started
afresh every round: the host's slow spells then fall on all of them alike, and on the shared
cores the app that needs more CPU per request serves fewer requests. Its A/A ratio is
tighter than the alternating rounds' (1.002, interval 0.976-1.026 over 21 rounds, against
1.014-1.045 and intervals of ±3-5 % over 30); its latencies are those of an overloaded host (three apps' 12
workers on two cores) and are compared with each other only. --http and --loop choose
uvicorn's HTTP parser and event loop: h11 and asyncio by default (uvicorn's pure-Python
setup, which every earlier figure in docs/benchmarks.md measured), httptools and uvloop being
what `uvicorn[standard]` runs.

Targets (issue 15): sluice at least 0.95x the baseline's requests/s, p99 latency within 10 %.
Everything runs on this machine, so the servers, wrk and sluiced share its cores: the figure
is the cost of sluice on a saturated host, sluiced's own CPU included.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import shutil
import signal
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
sys.path.insert(0, str(REPO / "clients" / "python"))
from sluice import SluiceClient  # noqa: E402 - this checkout's client, for SL.STATS

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

# No documentation routes of its own: the example's are copied below, and a second set in
# front would cost every request four more route matches (Starlette tries routes in order).
app = FastAPI(title=example.app.title, openapi_url=None, docs_url=None, redoc_url=None)
for route in example.app.router.routes:
    if not isinstance(route, APIRoute):
        app.router.routes.append(route)
        continue
    kept = [d for d in route.dependencies
            if not isinstance(d.dependency, (RateLimit, RateLimitLease))]
    app.add_api_route(route.path, route.endpoint, methods=list(route.methods),
                      dependencies=kept, name=route.name)
"""

# The example with the x-ratelimit-* family on /predict too (--x-ratelimit): three fields more.
X_RATELIMIT_MODULE = """\
from sluice.fastapi import RateLimit

import app as example

for route in example.app.router.routes:
    for depends in getattr(route, "dependencies", []):
        if isinstance(depends.dependency, RateLimit):
            depends.dependency.x_ratelimit_headers = True
app = example.app
"""

# The example with /predict's decision taken once and kept (--split): no check per request.
# With FIELDS = False, no RateLimit fields either: what is left is the route class and its
# wrapper. The limiter's own methods are replaced, for this measurement only.
KEPT_DECISION_MODULE = """\
import app as example

FIELDS = {fields}
for route in example.app.router.routes:
    if getattr(route, "path", "") != "/predict":
        continue
    limiter = route._limiters[0]
    check, kept = limiter._check_now, []

    def kept_check(request, resource=None, values=None):
        if kept:
            return kept[0]
        checked = check(request, resource, values)
        if type(checked) is tuple:
            kept.append(checked)
        return checked

    limiter._check_now = kept_check
    if not FIELDS:
        limiter._fields_for = lambda decision: ({{}}, [])
app = example.app
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"features": [1.0, 2.0, 3.0]}'
wrk.headers["Content-Type"] = "application/json"
"""

# --keys N: each request from one of N callers (X-API-Key), drawn at random.
WRK_KEYS_SCRIPT = WRK_SCRIPT + """\
request = function()
  wrk.headers["X-API-Key"] = "caller-" .. math.random(1, %d)
  return wrk.format()
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_socket(port: int, nodelay: bool, reuseport: bool = False) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


def sluiced_decisions(admin: Path) -> int:
    """How many decisions sluiced has made since it started (SL.STATS's latency count, over
    its admin socket): a grant counts once, however many requests it admits."""
    with SluiceClient(str(admin), timeout=5) as client:
        return int(json.loads(client.execute("SL.STATS", "1"))["latency"]["count"])


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


def cpu_seconds(pids: list[int], system_only: bool = False) -> float:
    """User + system CPU time the processes have used so far (or system time only)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[12]) + (0 if system_only else int(fields[11]))  # stime, utime
    return ticks / os.sysconf("SC_CLK_TCK")


# --perf-stat: the kernel's software counters of the app's processes (a VM may have no
# hardware counters), read by `perf stat` for the length of a wrk run.
PERF_EVENTS = ("context-switches", "page-faults")


def perf_counts(perf: subprocess.Popen) -> dict[str, float]:
    """Stops a `perf stat -x,` started on the app's processes; its counts by event."""
    perf.send_signal(signal.SIGINT)
    _, err = perf.communicate()
    counts = {}
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in PERF_EVENTS and fields[0].isdigit():
            counts[fields[2]] = float(fields[0])
    if set(counts) != set(PERF_EVENTS):
        raise SystemExit(f"perf stat printed no counts of {', '.join(PERF_EVENTS)}:\n{err}")
    return counts


# --perf-record: how often the app's processes are sampled (the kernel's cpu-clock: a timer,
# which needs no hardware counter).
RECORD_HZ = 2000


def record_path(directory: Path, name: str) -> Path:
    """The next file of app ``name`` in ``directory``: APP-NN.data."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(list(directory.glob(f"{name}-*.data")))
    return directory / f"{name}-{n:02d}.data"


def profile_report(directory: Path, top: int = 25) -> None:
    """Prints where each app's CPU went, in µs per request: by binary (the interpreter, the
    kernel, libc, ...) and the functions whose share differs most from the baseline's. The
    samples of all its runs are pooled (requests.tsv holds each run's requests)."""
    samples: dict[str, collections.Counter] = {}
    requests: collections.Counter = collections.Counter()
    for line in (directory / "requests.tsv").read_text().splitlines():
        file, count = line.split("\t")
        app = file.rsplit("-", 1)[0]
        requests[app] += int(count)
        counted = samples.setdefault(app, collections.Counter())
        report_text = subprocess.run(
            ["perf", "report", "-i", str(directory / file), "--stdio", "-n", "--sort", "dso,sym",
             "--field-separator", "\t"], capture_output=True, text=True, check=True).stdout
        for row in report_text.splitlines():
            fields = row.split("\t")
            if row.startswith("#") or len(fields) < 4:
                continue
            counted[(fields[2].strip(), fields[3].strip())] += int(fields[1])

    apps = list(samples)
    # Samples -> µs of CPU per request: by function, and summed by binary.
    per_request = {app: {key: n / RECORD_HZ / requests[app] * 1e6
                         for key, n in samples[app].items()} for app in apps}
    by_binary = {app: collections.Counter() for app in apps}
    for app in apps:
        for (dso, _), us in per_request[app].items():
            by_binary[app][dso] += us
    print(f"\nperf record (cpu-clock, {RECORD_HZ} Hz), µs of CPU per request, all rounds pooled:")
    print(f"{'':<44}" + "".join(f"{app:>15}" for app in apps))
    print(f"{'all':<44}" + "".join(f"{sum(by_binary[app].values()):15.1f}" for app in apps))
    for dso, _ in sum(by_binary.values(), collections.Counter()).most_common(6):
        print(f"  {dso[:42]:<42}" + "".join(f"{by_binary[app][dso]:15.1f}" for app in apps))
    others = [app for app in apps if app != "baseline"]
    if "baseline" not in samples or not others:
        return
    base = per_request["baseline"]
    symbols = set().union(*(per_request[app] for app in apps))
    widest = sorted(symbols, key=lambda key: -max(
        abs(per_request[app].get(key, 0.0) - base.get(key, 0.0)) for app in others))[:top]
    print(f"the {top} functions whose share differs most from the baseline's:")
    for key in widest:
        dso = key[0] if key[0].startswith("[") else key[0].split(".")[0]
        name = f"{dso} {key[1]}"
        print(f"  {name[:42]:<42}" + "".join(
            f"{per_request[app].get(key, 0.0):15.2f}" for app in apps))


def worker_pids(procs: list[subprocess.Popen]) -> list[int]:
    """The processes serving requests: each uvicorn and the workers it forked."""
    pids = [p.pid for p in procs]
    for proc in procs:
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids += [int(pid) for pid in found.stdout.split()]
    return pids


def connections_per_worker(port: int) -> list[int]:
    """How many of wrk's connections each serving process holds, largest first."""
    listed = subprocess.run(["ss", "-tnpH", "state", "established", "sport", f"= :{port}"],
                            capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", listed):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


# What each app's /predict answers, checked before it is measured: the apps differ in sluice
# only, and a variant that does not answer as meant would measure something else.
EXPECTED_FIELDS = {
    "baseline": (None, "ratelimit"), "baseline-again": (None, "ratelimit"),
    "sluice": ("ratelimit", None), "sluice+x": ("x-ratelimit-limit-requests", None),
    "kept": ("ratelimit", None), "kept-bare": (None, "ratelimit"),
    "sluice-other": ("ratelimit", None),
}


def check_answer(name: str, headers: dict) -> None:
    present, absent = EXPECTED_FIELDS[name]
    if present is not None and present not in headers:
        raise SystemExit(f"{name}: /predict answered without the {present} field")
    if absent is not None and absent in headers:
        raise SystemExit(f"{name}: /predict answered with a {absent} field it must not have")


def median_interval(values: list[float], resamples: int = 4000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of ``values``: how far the median of this many
    rounds could be from the one a longer run would give."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def median_and_interval(values: list[float]) -> str:
    return "{:.3f} (95 % interval {:.3f}-{:.3f})".format(statistics.median(values),
                                                         *median_interval(values))


# A round's line as main() prints it (p90 since 2026-12-06; older logs lack it).
ROUND_LINE = re.compile(
    r"round (\d+) (\S+)\s+([\d.]+) req/s\s+p50\s+([\d.]+) ms\s+(?:p90\s+([\d.]+) ms\s+)?"
    r"p99\s+([\d.]+) ms\s+CPU/request: app\s+([\d.]+) µs, sluiced\s+([\d.]+) µs\s+"
    r"connections per worker \[([\d, ]*)\](?:\s+non-2xx (\d+))?")


def results_from_logs(paths: list[str]) -> dict[str, list[dict]]:
    """The rounds of several runs' output, as main() collects them; a round a run did not
    finish is left out, and every run must have measured the same apps."""
    results: dict[str, list[dict]] = {}
    for path in paths:
        rounds: dict[int, dict[str, dict]] = {}
        for line in Path(path).read_text().splitlines():
            m = ROUND_LINE.match(line)
            if m is None:
                continue
            measured = rounds.setdefault(int(m[1]), {})
            measured[m[2]] = {
                "rps": float(m[3]), "p50": float(m[4]) * 1000,
                "p90": float(m[5]) * 1000 if m[5] else math.nan, "p99": float(m[6]) * 1000,
                "app_us": float(m[7]), "sluiced_us": float(m[8]),
                "spread": [int(n) for n in m[9].split(",") if n.strip()],
                "non2xx": int(m[10] or 0), "place": len(measured)}
        names = set().union(*(measured.keys() for measured in rounds.values())) if rounds else set()
        if results and names != set(results):
            raise SystemExit(f"{path} measured {sorted(names)}, the first log {sorted(results)}")
        for measured in rounds.values():
            if set(measured) == names:
                for name, result in measured.items():
                    results.setdefault(name, []).append(result)
    if "baseline" not in results or "sluice" not in results:
        raise SystemExit("no complete round of the baseline and sluice in " + ", ".join(paths))
    return results


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--http and --loop: which of its parsers and event loops uvicorn serves with. uvicorn's
    own default ("auto") takes httptools and uvloop when they are installed, so the benches
    always name them: a package installed later must not change what a figure measures."""
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11",
                        help="uvicorn's HTTP parser: h11 (default; pure Python, what uvicorn "
                             "runs when nothing else is installed) or httptools (uvicorn["
                             "standard]'s; Debian's python3-httptools)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="uvicorn's event loop: asyncio (default) or uvloop (uvicorn["
                             "standard]'s; Debian's python3-uvloop)")


def server_options(args: argparse.Namespace) -> list[str]:
    """uvicorn's command-line options for the parser and loop chosen."""
    return ["--http", args.http, "--loop", args.loop]


class Servers:
    """The uvicorn processes serving one app, and their listening sockets."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.listeners: list[socket.socket] = []

    @classmethod
    def start(cls, name: str, module: str, app_dir: Path, port: int, args, env: dict,
              work: Path) -> "Servers":
        """Starts the app's workers and returns once every one has run its start-up."""
        servers = cls()
        log = work / f"{name}.log"
        log.write_text("")
        # uvicorn (h11) writes a response's head and body separately and leaves Nagle's
        # algorithm on: with wrk's delayed ACKs every request would then wait about 40 ms,
        # the same for both apps, and the figures would measure that wait rather than the
        # apps. The listening sockets are made here with TCP_NODELAY, which the connections
        # accepted from them inherit, and handed to uvicorn (--fd).
        reuseport = args.accept == "reuseport"
        with open(log, "a") as log_file:
            for _ in range(args.workers if reuseport else 1):
                listener = listening_socket(port, nodelay=not args.nagle, reuseport=reuseport)
                servers.listeners.append(listener)
                servers.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", module, "--app-dir", str(app_dir),
                     "--fd", str(listener.fileno()),
                     "--workers", "1" if reuseport else str(args.workers),
                     *server_options(args),
                     "--log-level", "info", "--no-access-log"],
                    env=env, cwd=work, pass_fds=(listener.fileno(),), stderr=log_file,
                    stdout=subprocess.DEVNULL))
        # Each worker logs this once its app has started (with SO_REUSEPORT, a connection
        # can land on any worker's socket, so one answer does not mean all are up).
        try:
            wait_until(lambda: log.read_text().count("Application startup complete")
                       >= args.workers, 60, f"uvicorn ({name})")
        except BaseException:  # not returned, so nobody else would stop them
            servers.stop()
            raise
        return servers

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        for listener in self.listeners:
            listener.close()


def app_env(sock: Path, repo: Path = REPO) -> dict:
    """The environment the apps run in: sluiced at ``sock``, the client and the example of
    ``repo`` on the path, and no admin socket (the example would report its warm-up over it)."""
    example = repo / "examples" / "fastapi-ml-api"
    env = dict(os.environ, SLUICE_SOCKET=str(sock), HEAVY_MODEL_LOAD_SECONDS="0",
               PYTHONPATH=os.pathsep.join([str(repo / "clients" / "python"), str(example)]))
    env.pop("SLUICE_ADMIN_SOCKET", None)
    return env


def workspace(build_dir, prefix: str) -> tuple[Path, Path, Path, dict]:
    """What every FastAPI bench starts from: sluiced's binary under ``build_dir`` (which must
    exist), and a fresh directory holding the policy and the baseline app. Returns sluiced,
    the directory, sluiced's socket in it and the environment the apps run in."""
    sluiced = Path(build_dir) / "bin" / "sluiced"
    if not sluiced.exists():
        raise SystemExit(f"{sluiced} not found; build sluiced first or pass --build-dir")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    (work / "policy.yaml").write_text(POLICY)
    (work / "baseline_app.py").write_text(BASELINE_MODULE)
    sock = work / "sluice.sock"
    return sluiced, work, sock, app_env(sock)


def start_sluiced(sluiced: Path, work: Path, sock: Path) -> subprocess.Popen:
    """sluiced on ``work``/policy.yaml with the memory plugin, once it answers at ``sock``
    ($SLUICED_LOG keeps its log)."""
    daemon = subprocess.Popen(
        [str(sluiced), "--policy", str(work / "policy.yaml"), "--socket", str(sock),
         "--admin-socket", str(work / "admin.sock"), "--storage", "memory",
         "--state-dir", str(work)], stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("SLUICED_LOG", os.devnull), "w"))
    try:
        wait_until(lambda: sluiced_answers(sock), 15, "sluiced")
    except BaseException:
        stop_process(daemon)
        raise
    return daemon


class WrkRun:
    """One wrk run on an app, started at once and finished by :meth:`result`; with ``procs``
    also the CPU per request of the app and sluiced, and the spread of the connections over
    the workers halfway through (several runs may go at the same time: --together). With
    ``admin`` (sluiced's admin socket; only when this run is sluiced's one caller) also
    sluiced's decisions per request."""

    def __init__(self, port: int, args, script: Path, procs: list[subprocess.Popen] = (),
                 sluiced: subprocess.Popen | None = None, name: str = "app",
                 admin: Path | None = None) -> None:
        self.port, self.args, self.procs, self.sluiced = port, args, procs, sluiced
        self.admin = admin
        self.decisions_before = sluiced_decisions(admin) if admin else 0
        self.pids = worker_pids(list(procs))
        self.app_before = cpu_seconds(self.pids)
        self.system_before = cpu_seconds(self.pids, system_only=True)
        self.sluiced_before = cpu_seconds([sluiced.pid]) if sluiced else 0.0
        self.perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", ",".join(PERF_EVENTS), "-p",
             ",".join(map(str, self.pids))],
            stderr=subprocess.PIPE, text=True) if procs and args.perf_stat else None
        self.record: subprocess.Popen | None = None
        if procs and args.perf_record:
            self.record_to = record_path(args.perf_record, name)
            self.record = subprocess.Popen(
                ["perf", "record", "--quiet", "-e", "cpu-clock", "-F", str(RECORD_HZ),
                 "-o", str(self.record_to), "-p", ",".join(map(str, self.pids))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wrk = subprocess.Popen(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
             "--latency", "-s", str(script), f"http://127.0.0.1:{port}/predict"],
            stdout=subprocess.PIPE, text=True)
        self.spread: list[int] = []

    def look_at_connections(self) -> None:
        """Halfway through: how wrk's connections spread over the workers."""
        if self.procs:
            self.spread = connections_per_worker(self.port)

    def result(self) -> dict:
        out, _ = self.wrk.communicate()
        counted = perf_counts(self.perf) if self.perf is not None else {}
        if self.record is not None:
            self.record.send_signal(signal.SIGINT)
            self.record.wait()
        if self.wrk.returncode != 0:
            raise SystemExit(f"wrk failed with {self.wrk.returncode}")
        result = parse_wrk(out)
        result["spread"] = self.spread
        requests = result["rps"] * self.args.seconds
        if self.procs and requests:
            result["app_us"] = (cpu_seconds(self.pids) - self.app_before) / requests * 1e6
            result["sluiced_us"] = (
                (cpu_seconds([self.sluiced.pid]) - self.sluiced_before) / requests * 1e6
                if self.sluiced else 0.0)
            result["system_us"] = (cpu_seconds(self.pids, system_only=True)
                                   - self.system_before) / requests * 1e6
            if self.admin:
                result["decisions"] = (sluiced_decisions(self.admin)
                                       - self.decisions_before) / requests
            for event, count in counted.items():
                result[event] = count / requests
            if self.record is not None:
                with open(self.record_to.parent / "requests.tsv", "a") as table:
                    table.write(f"{self.record_to.name}\t{requests:.0f}\n")
        return result


def run_wrk(port: int, args, script: Path, procs: list[subprocess.Popen] = (),
            sluiced: subprocess.Popen | None = None, name: str = "app",
            admin: Path | None = None) -> dict:
    """One wrk run on its own (:class:`WrkRun`)."""
    run = WrkRun(port, args, script, procs, sluiced, name, admin)
    if procs:
        time.sleep(args.seconds / 2)
        run.look_at_connections()
    return run.result()


def report(results: dict[str, list[dict]]) -> int:
    """The summary of the rounds in ``results`` (app -> its runs, round by round): medians,
    ratios to the baseline with their intervals, the targets; 1 if any answer was not 2xx."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def rps_per_round(name: str, over: str = "baseline") -> list[float]:
        """The app's requests/s over the baseline's (or app ``over``'s), round by round."""
        return [r["rps"] / b["rps"] for r, b in zip(results[name], results[over])]

    def cpu_per_round(name: str) -> list[float]:
        """The app's CPU per request with sluiced's over the baseline's, round by round."""
        return [(r["app_us"] + r["sluiced_us"]) / b["app_us"]
                for r, b in zip(results[name], results["baseline"])]

    print(f"{'app':<28}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
          f"{'app µs/req':>12}{'sluiced µs/req':>16}")
    labels = {"baseline": "without a limiter", "sluice": "with sluice (example)",
              "sluice+x": "... + x-ratelimit-* fields", "kept": "... decision kept, no check",
              "kept-bare": "... kept, no fields either",
              "baseline-again": "without a limiter, again",
              "sluice-other": "... of the other checkout"}
    for name in results:
        print(f"{labels[name]:<28}{median(name, 'rps'):>10.0f}" + "".join(
            f"{median(name, key) / 1000:>10.2f}" for key in ("p50", "p90", "p99"))
            + f"{median(name, 'app_us'):>12.0f}{median(name, 'sluiced_us'):>16.1f}")
    for name, rs in results.items():
        if rs and all("decisions" in r for r in rs):  # not --together, not --from-log
            per_request = statistics.median(r["decisions"] for r in rs)
            print(f"{labels[name]}: sluiced decisions per request {per_request:.4f}"
                  + (f" (one per {1 / per_request:.0f} requests)" if per_request else ""))
    if all(PERF_EVENTS[0] in r for rs in results.values() for r in rs):  # --perf-stat
        for name in results:
            print(f"{labels[name]}, per request: system CPU {median(name, 'system_us'):.0f} µs, "
                  f"context switches {median(name, PERF_EVENTS[0]):.2f}, "
                  f"page faults {median(name, PERF_EVENTS[1]):.3f}")
    if len(results) > 2:  # with two apps, the place is the alternation itself
        print("requests/s median by place in the round (1st, 2nd, ...): " + "; ".join(
            name + " " + ", ".join(
                f"{statistics.median(r['rps'] for r in rs if r['place'] == place):.0f}"
                for place in range(len(results)) if any(r["place"] == place for r in rs))
            for name, rs in results.items()))
    ratios = rps_per_round("sluice")
    rps_ratio = statistics.median(ratios)
    p99_ratio = median("sluice", "p99") / median("baseline", "p99")
    failures = sum(r["non2xx"] for rs in results.values() for r in rs)
    print("requests/s ratio per round: " + ", ".join(f"{r:.3f}" for r in ratios))
    cpu = cpu_per_round("sluice")
    print("CPU per request (app + sluiced) / baseline app, per round: "
          + ", ".join(f"{r:.3f}" for r in cpu) + f"; median {median_and_interval(cpu)}")
    verdict = "meets" if rps_ratio >= 0.95 else "misses"
    print(f"sluice / baseline requests/s: median {median_and_interval(ratios)} "
          f"({verdict} the 0.95 target)")
    verdict = "meets" if p99_ratio <= 1.10 else "misses"
    print(f"sluice / baseline p99 latency: {p99_ratio:.3f} ({verdict} the 1.10 target)")
    if "sluice+x" in results:
        x_ratios = rps_per_round("sluice+x")
        print("with the x-ratelimit-* family on /predict too: requests/s ratio per round "
              + ", ".join(f"{r:.3f}" for r in x_ratios)
              + f"; median {statistics.median(x_ratios):.3f}, p99 ratio "
              f"{median('sluice+x', 'p99') / median('baseline', 'p99'):.3f}")
    if "baseline-again" in results:
        # The round's two runs of the baseline, averaged, are a steadier reference than one.
        both = [s["rps"] / ((b["rps"] + a["rps"]) / 2) for s, b, a in
                zip(results["sluice"], results["baseline"], results["baseline-again"])]
        print("sluice / the mean of the round's two baseline runs: requests/s ratio median "
              + median_and_interval(both))
        aa = rps_per_round("baseline-again")
        print("the baseline against itself (A/A, the bench's own error): requests/s ratio per "
              "round " + ", ".join(f"{r:.3f}" for r in aa) + f"; median {median_and_interval(aa)}"
              + f", CPU per request {statistics.median(cpu_per_round('baseline-again')):.3f}x")
    for name, what in (("kept", "a kept decision and its fields (no check)"),
                       ("kept-bare", "the route class and wrapper alone (no check, no fields)")):
        if name in results:
            print(f"{what}: requests/s ratio median {statistics.median(rps_per_round(name)):.3f}, "
                  f"CPU per request {statistics.median(cpu_per_round(name)):.3f}x")
    if "sluice-other" in results:
        other = rps_per_round("sluice-other")
        print("the other checkout's example / baseline: requests/s ratio median "
              f"{median_and_interval(other)}, CPU per request "
              f"{median_and_interval(cpu_per_round('sluice-other'))}")
        print("this checkout's example / the other's: requests/s ratio median "
              + median_and_interval(rps_per_round("sluice", over="sluice-other")))
    if failures:
        print(f"non-2xx answers: {failures} (a limit or sluice failed; the figures are void)")
        return 1
    return 0


def print_round(i: int, name: str, result: dict, args) -> None:
    print(f"round {i + 1} {name:<14} {result['rps']:>9.0f} req/s  "
          f"p50 {result['p50'] / 1000:6.2f} ms  p90 {result['p90'] / 1000:6.2f} ms  "
          f"p99 {result['p99'] / 1000:6.2f} ms  "
          f"CPU/request: app {result['app_us']:5.0f} µs, "
          f"sluiced {result['sluiced_us']:4.1f} µs  "
          f"connections per worker {result['spread']}"
          + (f"  non-2xx {result['non2xx']}" if result["non2xx"] else "")
          + (f"  sluiced decisions per request {result['decisions']:.4f}"
             if "decisions" in result else "")
          + ("  per request: system CPU {:.0f} µs, context switches {:.2f}, page "
             "faults {:.3f}".format(result["system_us"],
                                    *(result[e] for e in PERF_EVENTS))
             if args.perf_stat else ""),
          flush=True)


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
    parser.add_argument("--keys", type=int, default=1,
                        help="callers: 1 (default) sends every request from one client; N "
                             "draws each request's X-API-Key from N keys (many callers, each "
                             "one too slow for local grants when N is large)")
    parser.add_argument("--x-ratelimit", action="store_true",
                        help="also run the example with the x-ratelimit-* family on /predict "
                             "(it sends the IETF fields only there)")
    parser.add_argument("--split", action="store_true",
                        help="also run the example with /predict's first decision kept (no "
                             "check per request), with and without its fields")
    parser.add_argument("--servers", choices=("fresh", "kept"), default="fresh",
                        help="fresh (default): each app's workers are started for each of its "
                             "runs and stopped after it; kept: started once for all rounds")
    parser.add_argument("--aa", action="store_true",
                        help="also run the baseline a second time under another name: its "
                             "ratio to the baseline is the bench's own error (ideally 1.000)")
    parser.add_argument("--accept", choices=("reuseport", "shared"), default="reuseport",
                        help="reuseport (default): one uvicorn process per worker, each with "
                             "its own listening socket on the port; shared: uvicorn --workers "
                             "on one socket")
    parser.add_argument("--other", metavar="CHECKOUT", type=Path,
                        help="also run the example of another checkout of sluice (its client "
                             "and example app), e.g. a git worktree of an earlier commit")
    parser.add_argument("--perf-stat", action="store_true",
                        help="also read the app's context switches and page faults per request "
                             "(perf stat, the kernel's software counters) and its system CPU")
    parser.add_argument("--together", action="store_true",
                        help="run the apps at the same time, each under its own wrk, instead "
                             "of one after the other: they share the cores and the host's "
                             "slow spells alike (workers are started afresh every round)")
    parser.add_argument("--apps", type=lambda text: text.split(","), metavar="NAME,...",
                        help="run only these of the apps the other options name (baseline "
                             "and sluice always), e.g. --split --apps baseline,sluice,kept")
    parser.add_argument("--perf-record", metavar="DIR", type=Path,
                        help="also sample the app's processes with perf record (cpu-clock, "
                             f"{RECORD_HZ} Hz) during each run, into DIR/APP-NN.data")
    add_server_options(parser)
    parser.add_argument("--from-log", nargs="+", metavar="LOG",
                        help="measure nothing: pool the rounds printed in these runs' output "
                             "and print their summary")
    args = parser.parse_args()
    if args.from_log:
        results = results_from_logs(args.from_log)
        print(f"POST /predict, {len(results['sluice'])} rounds pooled from "
              f"{len(args.from_log)} runs' output; medians")
        return report(results)

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (scripts/install-deps installs Debian's wrk)")
    sluiced, work, sock, env = workspace(args.build_dir, "sluice-e2e-")
    (work / "x_ratelimit_app.py").write_text(X_RATELIMIT_MODULE)
    (work / "kept_app.py").write_text(KEPT_DECISION_MODULE.format(fields=True))
    (work / "kept_bare_app.py").write_text(KEPT_DECISION_MODULE.format(fields=False))
    (work / "post.lua").write_text(WRK_KEYS_SCRIPT % args.keys if args.keys > 1 else WRK_SCRIPT)
    apps = [("baseline", "baseline_app:app", work), ("sluice", "app:app", EXAMPLE)]
    if args.aa:
        apps.append(("baseline-again", "baseline_app:app", work))
    if args.x_ratelimit:
        apps.append(("sluice+x", "x_ratelimit_app:app", work))
    if args.split:
        apps += [("kept", "kept_app:app", work), ("kept-bare", "kept_bare_app:app", work)]
    if args.apps:
        if not {"baseline", "sluice"} <= set(args.apps) <= {name for name, _, _ in apps}:
            raise SystemExit(f"--apps {','.join(args.apps)}: name baseline, sluice and any of "
                             f"{', '.join(n for n, _, _ in apps)} (the options given add these)")
        apps = [app for app in apps if app[0] in args.apps]
    envs = {name: env for name, _, _ in apps}
    if args.other:
        other = args.other.resolve()
        if not (other / "examples" / "fastapi-ml-api" / "app.py").exists():
            raise SystemExit(f"--other {other}: no examples/fastapi-ml-api/app.py there")
        apps.append(("sluice-other", "app:app", other / "examples" / "fastapi-ml-api"))
        envs["sluice-other"] = app_env(sock, other)
    modules = {name: (module, app_dir) for name, module, app_dir in apps}
    ports = {name: free_port() for name, _, _ in apps}
    servers: dict[str, Servers] = {}
    daemon: subprocess.Popen | None = None
    load_before = os.getloadavg()[0]

    def start(name: str) -> None:
        module, app_dir = modules[name]
        servers[name] = Servers.start(name, module, app_dir, ports[name], args, envs[name],
                                      work)
        check_answer(name, post_predict(ports[name])[1])
        # warm every worker up; a fresh process's first requests run cold code
        run_wrk(ports[name], argparse.Namespace(**{**vars(args), "seconds": 2}),
                work / "post.lua")

    try:
        daemon = start_sluiced(sluiced, work, sock)
        if args.servers == "kept" and not args.together:
            for name in ports:
                start(name)
        results: dict[str, list[dict]] = {name: [] for name in ports}
        for i in range(args.rounds):
            # Each app takes every place of the order equally often (a rotation): with a fixed
            # middle place, a cost of that place would look like the app's.
            names = list(ports)
            order = names[i % len(names):] + names[:i % len(names)]
            if args.together:
                # All apps at once, each under its own wrk, started in that order: whatever
                # slows the host slows them alike, and the one that needs more CPU per
                # request serves fewer requests.
                for name in order:
                    start(name)
                runs = {name: WrkRun(ports[name], args, work / "post.lua",
                                     servers[name].procs,
                                     None if name.startswith("baseline") else daemon, name)
                        for name in order}
                time.sleep(args.seconds / 2)
                for run in runs.values():
                    run.look_at_connections()
                measured = {name: runs[name].result() for name in ports}
                for name in ports:
                    servers.pop(name).stop()
            else:
                measured = {}
                for name in order:
                    if args.servers == "fresh":
                        start(name)
                    # alone, the app is sluiced's one caller: its decisions are the app's
                    measured[name] = run_wrk(
                        ports[name], args, work / "post.lua", servers[name].procs, daemon,
                        name, None if name.startswith("baseline") else work / "admin.sock")
                    if args.servers == "fresh":
                        servers.pop(name).stop()
            for name, result in measured.items():
                result["place"] = order.index(name)
                results[name].append(result)
                print_round(i, name, result, args)
    finally:
        # The apps first, sluiced last: requests wrk left in flight still ask sluice.
        for running in servers.values():
            running.stop()
        if daemon:
            stop_process(daemon)
        shutil.rmtree(work, ignore_errors=True)

    print()
    workers = (f"{args.workers} uvicorn processes on one port (SO_REUSEPORT)"
               if args.accept == "reuseport" else f"uvicorn --workers {args.workers}")
    workers += (", started afresh for every run" if args.servers == "fresh" or args.together
                else ", started once for all rounds")
    workers += f", --http {args.http} --loop {args.loop}"
    callers = "one caller" if args.keys <= 1 else f"{args.keys} callers (X-API-Key)"
    print(f"POST /predict from {callers}, {workers}, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.seconds}s, {args.rounds} rounds "
          + ("with every app at once (--together)" if args.together else "in rotating order")
          + "; medians")
    print(f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    failed = report(results)
    if args.perf_record:
        profile_report(args.perf_record)
    return failed


if __name__ == "__main__":
    sys.exit(main())
