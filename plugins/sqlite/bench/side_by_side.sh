#!/usr/bin/env bash
# sluiced with the memory plugin, the SQLite plugin in durability=interval and in
# durability=commit, side by side: redis-benchmark at pipeline 16 sends SL.CHECK to each in
# alternating rounds. Prints requests per second, each SQLite mode's ratio to memory, and the
# database's size. Usage: plugins/sqlite/bench/side_by_side.sh [BUILD_DIR] (default: build)
# Settings: REQUESTS (200000), CLIENTS (50), PIPELINE (16), SUBJECTS (100000), ROUNDS (3),
# COMMIT_ARGS (more --storage-config for the commit-mode daemon, e.g. synchronous=normal).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build}
requests=${REQUESTS:-200000}
clients=${CLIENTS:-50}
pipeline=${PIPELINE:-16}
subjects=${SUBJECTS:-100000}
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/sluice-sqlite-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/policy.yaml" <<'YAML'
version: 1
default_tier: free
on_storage_failure: fail_closed
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  bench: {limits: [{name: per_minute, algorithm: fixed_window, limit: 1000000000, window: 1m}]}
YAML

start() { # start NAME ARGS...: one sluiced on $work/NAME.sock
  local name=$1
  shift
  "$build/bin/sluiced" --policy "$work/policy.yaml" --socket "$work/$name.sock" \
    --admin-socket "$work/$name-admin.sock" --plugin-dir "$build/lib/sluice/plugins" \
    --log-level warn "$@" &
  pids+=($!)
  for _ in $(seq 1 200); do [ -S "$work/$name.sock" ] && return; sleep 0.05; done
  echo "sluiced ($name) did not start" >&2
  exit 1
}
start memory --storage memory
start interval --storage sqlite --storage-config "path=$work/interval.db"
start commit --storage sqlite --storage-config "path=$work/commit.db" \
  --storage-config durability=commit ${COMMIT_ARGS:-}

rps() { # rps NAME: the requests per second redis-benchmark reports against that sluiced
  { redis-benchmark -s "$work/$1.sock" -n "$requests" -c "$clients" -P "$pipeline" \
      -r "$subjects" -q SL.CHECK bench user:__rand_int__ 2>/dev/null || true; } |
    tr '\r' '\n' | awk '/requests per second/ {v=$(NF-5)} END {print v+0}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

echo "redis-benchmark -n $requests -c $clients -P $pipeline -r $subjects, $rounds alternating rounds"
printf '%-6s %12s %16s %14s %9s %9s\n' round memory sqlite-interval sqlite-commit int/mem com/mem
for round in $(seq 1 "$rounds"); do
  m=$(rps memory)
  i=$(rps interval)
  c=$(rps commit)
  printf '%-6s %12s %16s %14s %9s %9s\n' "$round" "$m" "$i" "$c" "$(ratio "$i" "$m")" "$(ratio "$c" "$m")"
done
for mode in interval commit; do
  stats=$(redis-cli -s "$work/$mode-admin.sock" SL.STATS 2>/dev/null | tr -d '\n')
  echo "$mode: $(grep -o '"keys":[0-9]*' <<<"$stats" | head -1)" \
    "$(grep -o '"commits":[0-9]*' <<<"$stats" | head -1)" \
    "$(grep -o '"db_size_bytes":[0-9-]*' <<<"$stats" | head -1)"
done
