#!/usr/bin/python3
"""Applying a large policy to a running sluiced: time, memory growth, and memory after going
back to the shipped policy (issue 21: 100,000 resources in <= 2 s and <= 300 MB of growth).

    bench/policy_scale.py [--build-dir build] [--resources 100000] [--rounds 3]

Starts its own sluiced (memory plugin) on temporary sockets, sends SL.POLICY APPLY over the
admin socket, and reads the daemon's VmRSS and VmHWM (peak) from /proc. Prints one line per
round and the medians; stops the daemon on exit.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def policy_of(resources: int) -> str:
    lines = ["version: 1", "default_tier: free", "tiers:", "  free: {multiplier: 1}",
             "  premium: {multiplier: 5}", "  internal: {unlimited: true}", "resources:"]
    # One line per resource: 100,000 of them stay under the 16 MiB a policy may have.
    for i in range(resources):
        lines.append(f"  model-{i}: {{limits: [{{name: per_minute, algorithm: fixed_window,"
                     f" limit: 60, window: 1m}}]}}")
    return "\n".join(lines) + "\n"


def memory_kib(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decide", type=int, default=0,
                        help="SL.CHECKs sent on 50 connections while the large policy runs, so "
                             "that workers and connections hold it; the figure after going back "
                             "is then read once the workers' 1-second sweep has let go of it")
    args = parser.parse_args()

    shipped = (ROOT / "policies" / "default.yaml").read_text()
    large = policy_of(args.resources)
    work = Path(tempfile.mkdtemp(prefix="sluice-policy-scale-"))
    (work / "policy.yaml").write_text(shipped)
    daemon = subprocess.Popen(
        [str(args.build_dir / "bin" / "sluiced"), "--policy", str(work / "policy.yaml"),
         "--socket", str(work / "sluice.sock"), "--admin-socket", str(work / "admin.sock"),
         "--state-dir", str(work), "--log-level", "warn",
         "--plugin-dir", str(args.build_dir / "lib" / "sluice" / "plugins")])
    try:
        admin = redis.Redis(unix_socket_path=str(work / "admin.sock"), socket_timeout=120)
        for _ in range(200):
            try:
                admin.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        start = memory_kib(daemon.pid)["VmRSS"]
        print(f"policy of {args.resources} resources, {len(large) / 1e6:.1f} MB of YAML; "
              f"sluiced starts at {start / 1024:.1f} MiB")
        times, growths, afters = [], [], []
        for round_ in range(1, args.rounds + 1):
            before = memory_kib(daemon.pid)["VmRSS"]
            t0 = time.perf_counter()
            admin.execute_command("SL.POLICY", "APPLY", large)
            elapsed = time.perf_counter() - t0
            peak = memory_kib(daemon.pid)["VmHWM"]
            if args.decide:
                clients = [redis.Redis(unix_socket_path=str(work / "sluice.sock"))
                           for _ in range(50)]
                for i in range(args.decide):
                    clients[i % 50].execute_command("SL.CHECK", f"model-{i * 7919 % args.resources}",
                                                    f"subject-{i}")
            admin.execute_command("SL.POLICY", "APPLY", shipped + f"# round {round_}\n")
            if args.decide:
                time.sleep(2.5)  # the workers' sweep runs once a second
            after = memory_kib(daemon.pid)["VmRSS"]
            times.append(elapsed)
            growths.append((peak - before) / 1024)
            afters.append((after - start) / 1024)
            print(f"round {round_}: apply {elapsed:.2f} s, peak growth {growths[-1]:.0f} MiB "
                  f"(VmHWM {peak / 1024:.0f} MiB), after going back to the shipped policy "
                  f"{after / 1024:.1f} MiB ({afters[-1]:+.1f} MiB since start)")
        print(f"median: apply {statistics.median(times):.2f} s, peak growth "
              f"{statistics.median(growths):.0f} MiB, left after going back "
              f"{statistics.median(afters):+.1f} MiB")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
