#!/usr/bin/env bash
# sluiced with the Redis plugin vs the same limiter sent straight to Redis, side by side on one
# redis-server, driven by redis-benchmark at pipeline 16:
#   sluiced    SL.CHECK to sluiced's socket (fixed_window, 1,000,000 per minute)
#   lua        EVALSHA of fixed_window.lua: the same limiter, answering the same five numbers
#   minimal    EVALSHA of fixed_window_minimal.lua: fastapi-limiter's calls only, one number
# in rounds that rotate which goes first. Prints requests per second, the CPU time each of
# redis-server and sluiced spent per request, the ratios, and their medians.
#
# Usage: plugins/redis/bench/side_by_side.sh [BUILD_DIR] (default: build)
# Environment: ROUNDS (5), REQUESTS (200000), CLIENTS (50), SUBJECTS (100000),
#              SLUICED_ARGS (extra sluiced options, e.g. "--threads 1 --storage-config pipeline=4")
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build}
requests=${REQUESTS:-200000}
clients=${CLIENTS:-50}
rounds=${ROUNDS:-5}
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
redis_pid=$(cat "$redis_sock.pid")
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
# shellcheck disable=SC2086 # SLUICED_ARGS is a list of options
"$build/bin/sluiced" --policy "$work/policy.yaml" --socket "$work/sluice.sock" \
  --admin-socket "$work/admin.sock" --storage redis --plugin-dir "$build/lib/sluice/plugins" \
  --storage-config "url=unix://$redis_sock" --log-level warn ${SLUICED_ARGS:-} &
sluiced_pid=$!
for _ in $(seq 1 100); do [ -S "$work/sluice.sock" ] && break; sleep 0.05; done

load() { redis-cli -s "$redis_sock" SCRIPT LOAD "$(cat "$root/plugins/redis/bench/$1")"; }
sha_full=$(load fixed_window.lua)
sha_min=$(load fixed_window_minimal.lua)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

# run NAME: one redis-benchmark run; sets rps[NAME], redis_us[NAME], sluiced_us[NAME]
declare -A rps redis_us sluiced_us
run() {
  local sock=$redis_sock r0 s0 r1 s1 out
  local -a cmd
  case $1 in
    sluiced) sock=$work/sluice.sock cmd=(SL.CHECK bench user:__rand_int__) ;;
    lua) cmd=(EVALSHA "$sha_full" 1 rl:__rand_int__ 1000000 60000 1) ;;
    minimal) cmd=(EVALSHA "$sha_min" 1 min:__rand_int__ 1000000 60000) ;;
  esac
  r0=$(cpu_ticks "$redis_pid") s0=$(cpu_ticks "$sluiced_pid")
  out=$({ redis-benchmark -s "$sock" -n "$requests" -c "$clients" -P 16 -r "$subjects" -q \
            "${cmd[@]}" 2>/dev/null || true; } | tr '\r' '\n' |
        awk '/requests per second/ {v=$(NF-5)} END {print v+0}')
  r1=$(cpu_ticks "$redis_pid") s1=$(cpu_ticks "$sluiced_pid")
  rps[$1]=$out
  redis_us[$1]=$(awk -v t=$((r1 - r0)) -v u="$tick_us" -v n="$requests" 'BEGIN {printf "%.2f", t * u / n}')
  sluiced_us[$1]=$(awk -v t=$((s1 - s0)) -v u="$tick_us" -v n="$requests" 'BEGIN {printf "%.2f", t * u / n}')
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }

echo "redis-benchmark -n $requests -c $clients -P 16 -r $subjects; $rounds rounds; $(nproc) cores;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "requests/s, and CPU µs per request of redis-server (r) and sluiced (s)"
printf '%-5s %22s %16s %16s %8s %8s\n' round 'sluiced+plugin' 'lua (5 numbers)' 'minimal (1)' 'vs lua' 'vs min'
order=(sluiced lua minimal)
ratios_lua=() ratios_min=()
for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do run "$name"; done
  order=("${order[@]:1}" "${order[0]}")  # rotate who goes first
  a=$(ratio "${rps[sluiced]}" "${rps[lua]}") b=$(ratio "${rps[sluiced]}" "${rps[minimal]}")
  ratios_lua+=("$a") ratios_min+=("$b")
  printf '%-5s %8.0f r%-5s s%-5s %8.0f r%-5s %8.0f r%-5s %8s %8s\n' "$round" \
    "${rps[sluiced]}" "${redis_us[sluiced]}" "${sluiced_us[sluiced]}" \
    "${rps[lua]}" "${redis_us[lua]}" "${rps[minimal]}" "${redis_us[minimal]}" "$a" "$b"
done
echo "median ratio: vs lua $(printf '%s\n' "${ratios_lua[@]}" | median)," \
  "vs minimal $(printf '%s\n' "${ratios_min[@]}" | median);" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
stats=$(redis-cli -s "$work/admin.sock" SL.STATS 2>/dev/null | tr -d '\n')
echo "plugin: $(grep -o '"batches":[0-9]*' <<<"$stats" | head -1)" \
  "$(grep -o '"script_calls":[0-9]*' <<<"$stats" | head -1)" \
  "$(grep -o '"errors":[0-9]*' <<<"$stats" | head -1) $(grep -o '"timeouts":[0-9]*' <<<"$stats" | head -1)"
