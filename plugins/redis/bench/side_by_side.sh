#!/usr/bin/env bash
# sluiced with the Redis plugin vs the same limiter sent straight to Redis, side by side on one
# redis-server: redis-benchmark at pipeline 16 against sluiced's socket (SL.CHECK) and against
# Redis (EVALSHA of fixed_window.lua), in alternating rounds. Prints requests per second and
# the ratio. Usage: plugins/redis/bench/side_by_side.sh [BUILD_DIR] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build}
requests=${REQUESTS:-200000}
clients=${CLIENTS:-50}
rounds=${ROUNDS:-3}
subjects=${SUBJECTS:-100000}
work=$(mktemp -d /tmp/sluice-redis-bench.XXXXXX)
redis_sock=$work/redis.sock
cleanup() {
  [ -n "${sluiced_pid:-}" ] && kill "$sluiced_pid" 2>/dev/null && wait "$sluiced_pid" 2>/dev/null
  "$root/scripts/redis-test-server" stop "$redis_sock" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$root/scripts/redis-test-server" start "$redis_sock"
cat >"$work/policy.yaml" <<'YAML'
version: 1
default_tier: free
on_storage_failure: fail_closed
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  bench: {limits: [{name: per_minute, algorithm: fixed_window, limit: 1000000, window: 1m}]}
YAML
"$build/bin/sluiced" --policy "$work/policy.yaml" --socket "$work/sluice.sock" \
  --admin-socket "$work/admin.sock" --storage redis --plugin-dir "$build/lib/sluice/plugins" \
  --storage-config "url=unix://$redis_sock" --log-level warn ${SLUICED_ARGS:-} &
sluiced_pid=$!
for _ in $(seq 1 100); do [ -S "$work/sluice.sock" ] && break; sleep 0.05; done

sha=$(redis-cli -s "$redis_sock" SCRIPT LOAD "$(cat "$root/plugins/redis/bench/fixed_window.lua")")
rps() { # rps SOCKET COMMAND...: the requests per second redis-benchmark reports
  local sock=$1
  shift
  { redis-benchmark -s "$sock" -n "$requests" -c "$clients" -P 16 -r "$subjects" -q "$@" 2>/dev/null || true; } |
    tr '\r' '\n' | awk '/requests per second/ {v=$(NF-5)} END {print v+0}'
}
echo "redis-benchmark -n $requests -c $clients -P 16 -r $subjects, $rounds alternating rounds"
printf '%-7s %14s %14s %7s\n' round sluiced+redis redis+lua ratio
for round in $(seq 1 "$rounds"); do
  s=$(rps "$work/sluice.sock" SL.CHECK bench user:__rand_int__)
  r=$(rps "$redis_sock" EVALSHA "$sha" 1 rl:__rand_int__ 1000000 60000 1)
  printf '%-7s %14s %14s %7s\n' "$round" "$s" "$r" "$(awk -v a="$s" -v b="$r" 'BEGIN {printf "%.2f", a/b}')"
done
echo "plugin: $(redis-cli -s "$work/admin.sock" SL.STATS 2>/dev/null | tr -d '\n' | grep -o '"batches":[0-9]*' | head -1)" \
  "$(redis-cli -s "$work/admin.sock" SL.STATS 2>/dev/null | tr -d '\n' | grep -o '"script_calls[^}]*' | head -1)"
