#!/usr/bin/env python3
"""Where sluice's cost in a FastAPI app goes, counted in Python bytecodes per request.

bench/fastapi_e2e.py measures time on a saturated host, where rounds spread by ±10 %. This
bench counts instead: it serves the example app of examples/fastapi-ml-api and the e2e
bench's baseline (the same app without the limiter), each under uvicorn in a process of its
own, sends POST /predict over one keep-alive connection, and counts the bytecodes each
function of the server's event-loop thread executes for a fixed number of requests
(sys.settrace with opcode events, switched on after a warm-up). The counts are the same from
run to run within a few opcodes under h11, so a difference of 1 % is visible (under httptools
the event loop's share moves by about 100 bytecodes a request).

    /usr/bin/python3 bench/fastapi_opcodes.py [--build-dir build] [--requests 1000] [--top 15]
                                              [--http h11|httptools]

It prints the bytecodes per request of each app, the difference by package (the sluice
client, the example's extractors, h11, asyncio, ...) and the functions that differ most. Two
more apps split the difference, as the e2e bench's --split does in time: the example with
/predict's first decision kept (the route and its RateLimit fields, no check) and the same
without the fields (the route class and its wrapper alone). --http httptools counts under
uvicorn's C parser instead of h11, which writes a response's fields in its own Python. The
endpoint itself runs in a worker thread, which is not counted; it is the same in both apps.
Bytecodes are not time (a C call is one bytecode), but Python code like this is mostly
bytecodes: the ratio of the totals is close to the ratio of CPU per request the e2e bench
reads.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import fastapi_e2e as e2e  # noqa: E402 - the e2e bench's policy, baseline app and helpers

# Where a function's code lives, by the first match in its file name.
PACKAGES = [("clients/python/sluice/", "sluice client"), ("examples/", "example app"),
            ("/h11/", "h11"), ("/uvicorn/", "uvicorn"), ("/starlette/", "starlette"),
            ("/fastapi/", "fastapi"), ("/anyio/", "anyio"), ("/pydantic/", "pydantic"),
            ("/asyncio/", "asyncio")]


def package(key: str) -> str:
    for marker, name in PACKAGES:
        if marker in key:
            return name
    return "other"


def serve(module: str, app_dir: str, port: int, out: str, http: str) -> None:
    """The server process: uvicorn on ``port``; SIGUSR1 starts counting (and creates
    ``out``.on once it does), SIGUSR2 writes the counts (function -> bytecodes) to ``out`` as
    JSON, whole: written aside, then renamed."""
    sys.path.insert(0, app_dir)
    import uvicorn

    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame, event, arg):
        code = frame.f_code
        frame.f_trace_opcodes = True
        key = f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}"

        def count(frame, event, arg):
            if event == "opcode":
                counts[key] += 1
            return count

        return count

    def start(*_: object) -> None:
        counts.clear()
        sys.settrace(tracer)
        Path(out + ".on").touch()

    def stop(*_: object) -> None:
        sys.settrace(None)
        Path(out + ".tmp").write_text(json.dumps(counts))
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    # The parser and asyncio named: uvicorn's "auto" would take httptools and uvloop when
    # installed (uvloop's loop is C: its bytecodes would not be counted)
    uvicorn.run(module, port=port, log_level="warning", access_log=False, http=http,
                loop="asyncio")


def post(connection: http.client.HTTPConnection, count: int) -> dict[str, str]:
    """``count`` POST /predict on one connection; the last answer's fields."""
    headers: dict[str, str] = {}
    for _ in range(count):
        connection.request("POST", "/predict", body=b'{"features": [1.0, 2.0, 3.0]}',
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"POST /predict answered {response.status}")
        headers = {k.lower(): v for k, v in response.getheaders()}
    return headers


def count_app(name: str, module: str, app_dir: Path, args, env: dict, work: Path
              ) -> dict[str, int]:
    port = e2e.free_port()
    out = work / f"{name}.json"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", module, str(app_dir), str(port), str(out),
         args.http],
        env=env, cwd=work)
    try:
        e2e.wait_until(lambda: e2e.post_predict(port)[0] == 200, 60, f"uvicorn ({name})")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        e2e.check_answer(name, post(connection, args.requests))  # also the warm-up
        server.send_signal(signal.SIGUSR1)
        e2e.wait_until(Path(f"{out}.on").exists, 10, f"counting in {name}")
        post(connection, args.requests)
        server.send_signal(signal.SIGUSR2)
        e2e.wait_until(out.exists, 10, f"the counts of {name}")
        return json.loads(out.read_text())
    finally:
        e2e.stop_process(server)


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.environ.get("SLUICE_BUILD_DIR",
                                                              e2e.REPO / "build"))
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per app")
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11",
                        help="uvicorn's HTTP parser (h11 by default, as the e2e bench)")
    args = parser.parse_args()
    sluiced, work, sock, env = e2e.workspace(args.build_dir, "sluice-opcodes-")
    (work / "kept_app.py").write_text(e2e.KEPT_DECISION_MODULE.format(fields=True))
    (work / "kept_bare_app.py").write_text(e2e.KEPT_DECISION_MODULE.format(fields=False))
    daemon = e2e.start_sluiced(sluiced, work, sock)
    try:
        base = count_app("baseline", "baseline_app:app", work, args, env, work)
        limited = count_app("sluice", "app:app", e2e.EXAMPLE, args, env, work)
        kept = count_app("kept", "kept_app:app", work, args, env, work)
        bare = count_app("kept-bare", "kept_bare_app:app", work, args, env, work)
    finally:
        e2e.stop_process(daemon)
        shutil.rmtree(work, ignore_errors=True)

    n = args.requests
    # Bytecodes per request of each app.
    total_base, total_limited, total_kept, total_bare = (
        sum(counts.values()) / n for counts in (base, limited, kept, bare))
    print(f"POST /predict, {n} requests on one connection, --http {args.http}, bytecodes per "
          "request executed by the server's event-loop thread")
    print(f"without a limiter                   {total_base:9.0f}")
    for name, total in (("with sluice (example)", total_limited),
                        ("... decision kept, no check", total_kept),
                        ("... kept, no fields either", total_bare)):
        print(f"{name:<34}{total:10.0f}   {total / total_base:.3f}x, {total - total_base:+.0f}")
    print(f"so: the route class and wrapper {total_bare - total_base:+.0f}, the fields "
          f"{total_kept - total_bare:+.0f}, the check {total_limited - total_kept:+.0f}")
    diff = {key: limited.get(key, 0) - base.get(key, 0) for key in set(base) | set(limited)}
    by_package: collections.Counter[str] = collections.Counter()
    for key, added in diff.items():
        by_package[package(key)] += added
    print("\nthe difference by package:")
    for name, added in by_package.most_common():
        if abs(added) / n >= 1:
            print(f"  {name:<16}{added / n:+8.0f}")
    print(f"\nthe {args.top} functions that differ most:")
    for key in sorted(diff, key=lambda k: -abs(diff[k]))[:args.top]:
        where = key.split("/dist-packages/")[-1].replace(str(e2e.REPO) + "/", "")
        print(f"  {diff[key] / n:+8.1f}  {base.get(key, 0) / n:8.1f} -> "
              f"{limited.get(key, 0) / n:8.1f}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
