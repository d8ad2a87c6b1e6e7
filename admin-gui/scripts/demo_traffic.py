#!/usr/bin/python3
"""Varied traffic for sluice-admin's screenshots and demos.

Drives a sluiced that serves policies/ml-api.yaml through its decision socket: a few free
callers within their limits, a noisy client far over them, a premium API key, token-metered
generation, and the heavy model in warm-up (marked READY half-way through, on the admin
socket). The rate swings slowly so the Live charts have a shape.

  /usr/bin/python3 admin-gui/scripts/demo_traffic.py DECISION_SOCKET ADMIN_SOCKET [SECONDS]
"""
import math
import random
import sys
import time

import redis


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    decide = redis.Redis(unix_socket_path=sys.argv[1])
    admin = redis.Redis(unix_socket_path=sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 180.0
    rng = random.Random(7)
    tick = 0.25

    def times(rate: float) -> int:
        """How many requests of a `rate` per second stream fall into one tick."""
        n = rate * tick
        return int(n) + (1 if rng.random() < n - int(n) else 0)

    start = time.monotonic()
    ready_sent = False
    while (elapsed := time.monotonic() - start) < seconds:
        swing = 0.6 + 0.4 * math.sin(elapsed / 25.0)
        burst = 4.0 if 40 < elapsed % 120 < 55 else 1.0  # a recurring rush on /predict
        pipe = decide.pipeline(transaction=False)
        for _ in range(times(5 * swing * burst)):
            pipe.execute_command("SL.CHECK", "predict", f"10.0.0.{rng.randint(1, 40)}")
        for _ in range(times(2 * swing)):
            pipe.execute_command("SL.CHECK", "predict", "10.0.0.66")  # the noisy client
        for _ in range(times(1.0 * swing)):
            pipe.execute_command("SL.CHECK", "predict", "key-holder", "KEY", "premium-user-key")
        for _ in range(times(12 * swing)):
            pipe.execute_command("SL.CHECK", "models/lightweight", f"10.0.1.{rng.randint(1, 8)}")
        for _ in range(times(0.8 * swing)):
            pipe.execute_command("SL.CHECK", "models/heavy", f"10.0.2.{rng.randint(1, 5)}")
        for _ in range(times(1.0)):
            pipe.execute_command("SL.CHECK", "generate", f"10.0.3.{rng.randint(1, 3)}",
                                 "COST", str(rng.randint(100, 600)))
        pipe.execute()
        if not ready_sent and elapsed > seconds / 2:
            admin.execute_command("SL.WARMUP", "models/heavy", "READY")
            ready_sent = True
        time.sleep(tick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
