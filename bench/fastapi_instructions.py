#!/usr/bin/env python3
"""What sluice costs a FastAPI app per request, counted in instructions rather than timed.

bench/fastapi_e2e.py times the example app against the same app without a limiter under
wrk. On a shared 2-core VM its ratios move by more than the 5 % that issue 15 allows, from
one run to the next. This bench counts instead: each app runs as one uvicorn process under
valgrind's callgrind, and so does sluiced; after a warm-up the counters are zeroed, a fixed
number of POST /predict requests is sent over a few keep-alive connections, and the counters
are dumped. Instructions per request, the app's and sluiced's, come out the same to a fraction
of a per cent from one run to the next.

    /usr/bin/python3 bench/fastapi_instructions.py [--build-dir build] [--requests 2000]
                                                   [--connections 8] [--runs 2] [--split]
                                                   [--grant-ttl 8] [--cache-sim]
                                                   [--http h11] [--loop asyncio]

--split adds bench/fastapi_e2e.py's two apps that tell the cost apart: the example with
/predict's first decision kept (the route class, its wrapper and the two fields, no check),
and the same without the fields.

What it counts is what runs in user space in those processes: not the kernel's work for the
sockets (the same number of reads and writes per request in both apps, except for sluiced's
round trips, which are few with local grants), nor what cache misses and mispredicted
branches cost (--cache-sim adds callgrind's models of them, and their cycle estimate). It
is an estimate of the CPU ratio, free of the host's noise, to read beside the timed one.
The apps are bench/fastapi_e2e.py's: the example as shipped, and its baseline (the same
routes with the limiter dependencies taken off). PYTHONHASHSEED is fixed so that both run
with the same dict layouts.

Under valgrind an app serves some 50 times fewer requests a second than at full speed, and a
local grant is sized from the caller's requests per ttl (LocalGrants' 0.25 s): left as they
are, grants would be 50 times smaller and the example would ask sluiced 50 times as often
as it does under wrk. The example counted here therefore takes its grants with a longer ttl
(--grant-ttl, default 8 s), so that a grant admits about as many requests as one does at
full speed (a few hundred: under wrk, a worker serves 1,000-1,500 requests a second); each
run prints the requests per second it saw and how many instructions sluiced spent per
request, which shows how often it was asked.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import fastapi_e2e as e2e

BODY = b'{"features": [1.0, 2.0, 3.0]}'

# The example with its local grants' ttl set (see above); only the ttl differs.
SCALED_GRANTS_MODULE = """\
from sluice import LocalGrants

import app as example

# The example builds its client's grants with LocalGrants() at start-up; without that name
# the ttl would silently stay as it is.
if not hasattr(example, "LocalGrants"):
    raise SystemExit("the example no longer takes its grants through LocalGrants()")
example.LocalGrants = lambda: LocalGrants(ttl={ttl})
app = example.app
"""


def callgrind(out: Path, command: list[str], cache_sim: bool = False) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
            "--dump-line=no", "--vgdb=yes", "--vgdb-error=999999",
            f"--cache-sim={'yes' if cache_sim else 'no'}",
            f"--branch-sim={'yes' if cache_sim else 'no'}", *command]


def estimated_cycles(events: dict[str, int]) -> int:
    """KCachegrind's rough estimate: an instruction a cycle, a mispredicted branch or a miss
    of the first-level caches 10 more, a miss of the last level 100 more."""
    return (events["Ir"] + 10 * (events["Bcm"] + events["Bim"])
            + 10 * (events["I1mr"] + events["D1mr"] + events["D1mw"])
            + 100 * (events["ILmr"] + events["DLmr"] + events["DLmw"]))


def control(option: str, pid: int) -> None:
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"callgrind_control {option} {pid} failed:\n{done.stdout}{done.stderr}")


def counted_since_zero(out: Path, pid: int, dumps_before: set[Path]) -> dict[str, int]:
    """Dumps ``pid``'s counters and returns what they counted since they were zeroed (the
    dump that appeared after the call), by event: Ir (instructions), and with the cache
    simulation its misses."""
    control("--dump", pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for dump in dumps_of(out, pid) - dumps_before:
            text = dump.read_text()
            events = re.search(r"^events:\s+(.+)$", text, re.MULTILINE)
            total = re.search(r"^(?:summary|totals):\s+(.+)$", text, re.MULTILINE)
            if events and total:  # the totals come last: the dump is whole
                return dict(zip(events.group(1).split(), map(int, total.group(1).split())))
        time.sleep(0.2)
    raise SystemExit(f"no callgrind dump of {pid} appeared")


def dumps_of(out: Path, pid: int) -> set[Path]:
    return set(out.parent.glob(f"{out.name}.{pid}.*"))


def post_many(port: int, requests: int, connections: int) -> None:
    """``requests`` POST /predict over ``connections`` keep-alive connections, each waiting
    for its answer before the next; every answer must be a 200."""
    errors: list[str] = []

    def one_connection(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            for _ in range(count):
                conn.request("POST", "/predict", body=BODY,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"status {response.status}")
                    return
        except OSError as exc:
            errors.append(str(exc))
        finally:
            conn.close()

    share = [requests // connections + (1 if i < requests % connections else 0)
             for i in range(connections)]
    threads = [threading.Thread(target=one_connection, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"POST /predict failed: {errors[0]}")


def measure(name: str, module: str, app_dir: Path, env: dict, work: Path, daemon_pid: int,
            args) -> tuple[float, float, float, float]:
    """Instructions per request of one run of app ``name``, the app's and sluiced's; the
    requests per second it served while counted; the app's estimated cycles per request
    (0 without the cache simulation)."""
    port = e2e.free_port()
    out = work / f"callgrind.{name}"
    log = work / f"{name}.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            callgrind(out, [sys.executable, "-m", "uvicorn", module, "--app-dir", str(app_dir),
                            "--port", str(port), "--log-level", "info", "--no-access-log",
                            *e2e.server_options(args)],
                      args.cache_sim),
            env=dict(env, PYTHONHASHSEED="0"), cwd=work, stderr=log_file,
            stdout=subprocess.DEVNULL)
    try:
        # uvicorn binds its port after the app's start-up, and says so last.
        e2e.wait_until(lambda: "Uvicorn running on" in log.read_text(), 600,
                       f"uvicorn ({name}) under valgrind")
        # The app answers as meant (the fields it must and must not send), as in the e2e bench.
        e2e.check_answer(name, e2e.post_predict(port)[1])
        post_many(port, args.warmup, args.connections)
        sluiced_out = work / "callgrind.sluiced"
        control("--zero", proc.pid)
        control("--zero", daemon_pid)
        app_dumps, sluiced_dumps = dumps_of(out, proc.pid), dumps_of(sluiced_out, daemon_pid)
        started = time.monotonic()
        post_many(port, args.requests, args.connections)
        rate = args.requests / (time.monotonic() - started)
        app = counted_since_zero(out, proc.pid, app_dumps)
        sluiced = counted_since_zero(sluiced_out, daemon_pid, sluiced_dumps)
    finally:
        e2e.stop_process(proc)
    cycles = estimated_cycles(app) if args.cache_sim else 0
    return (app["Ir"] / args.requests, sluiced["Ir"] / args.requests, rate,
            cycles / args.requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.environ.get("SLUICE_BUILD_DIR",
                                                              e2e.REPO / "build"))
    parser.add_argument("--requests", type=int, default=2000, help="counted per run")
    parser.add_argument("--warmup", type=int, default=300, help="sent before counting")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2, help="runs of each app, alternating")
    parser.add_argument("--grant-ttl", type=float, default=8.0,
                        help="seconds: the ttl of the example's local grants under valgrind")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulate the caches and branch prediction and print "
                             "KCachegrind's estimate of the app's cycles (valgrind runs about "
                             "a third as fast: raise --grant-ttl to match)")
    parser.add_argument("--split", action="store_true",
                        help="also count the example with /predict's first decision kept, "
                             "with and without its fields")
    e2e.add_server_options(parser)
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/install-deps installs valgrind)")
    sluiced, work, sock, env = e2e.workspace(args.build_dir, "sluice-instructions-")
    (work / "scaled_app.py").write_text(SCALED_GRANTS_MODULE.format(ttl=args.grant_ttl))
    apps = [("baseline", "baseline_app:app", work), ("sluice", "scaled_app:app", work)]
    if args.split:
        (work / "kept_app.py").write_text(e2e.KEPT_DECISION_MODULE.format(fields=True))
        (work / "kept_bare_app.py").write_text(e2e.KEPT_DECISION_MODULE.format(fields=False))
        apps += [("kept", "kept_app:app", work), ("kept-bare", "kept_bare_app:app", work)]
    daemon = subprocess.Popen(
        callgrind(work / "callgrind.sluiced",
                  [str(sluiced), "--policy", str(work / "policy.yaml"), "--socket", str(sock),
                   "--admin-socket", str(work / "admin.sock"), "--storage", "memory",
                   "--state-dir", str(work), "--threads", "1"], args.cache_sim),
        stdout=subprocess.DEVNULL, stderr=open(work / "sluiced.log", "w"))
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in apps}
    try:
        e2e.wait_until(lambda: e2e.sluiced_answers(sock), 120, "sluiced under valgrind")
        print(f"POST /predict, {args.requests} requests over {args.connections} connections "
              f"per run after {args.warmup} to warm up; instructions per request (callgrind)")
        for run in range(args.runs):
            order = apps if run % 2 == 0 else apps[::-1]
            for name, module, app_dir in order:
                app, sluiced_ir, rate, cycles = measure(name, module, app_dir, env, work,
                                                        daemon.pid, args)
                results[name].append((app, sluiced_ir, cycles))
                print(f"run {run + 1} {name:<9} app {app:>10,.0f}  sluiced {sluiced_ir:>8,.0f}  "
                      f"together {app + sluiced_ir:>10,.0f}  ({rate:.0f} requests/s)"
                      + (f"  app's estimated cycles {cycles:>10,.0f}" if cycles else ""),
                      flush=True)
    finally:
        e2e.stop_process(daemon)

    def mean(name: str, what: str) -> float:
        values = [{"app": a, "together": a + s, "cycles": c}[what] for a, s, c in results[name]]
        return sum(values) / len(values)

    base = mean("baseline", "app")
    for name in list(results)[1:]:
        print(f"{name} / baseline, the app's instructions: {mean(name, 'app') / base:.4f}; "
              f"with sluiced's: {mean(name, 'together') / base:.4f}"
              + (f"; the app's estimated cycles: "
                 f"{mean(name, 'cycles') / mean('baseline', 'cycles'):.4f}"
                 if args.cache_sim else ""))
    spreads = [max(a for a, _, _ in r) / min(a for a, _, _ in r) - 1 for r in results.values()]
    print(f"largest difference between runs of one app: {max(spreads) * 100:.2f} %")
    print(f"(callgrind's files are in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
