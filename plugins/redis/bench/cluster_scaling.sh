#!/usr/bin/env bash
# Three sluiced instances on a 3-master Redis Cluster against three on one Redis: each instance
# driven by its own redis-benchmark at pipeline 16 (SL.CHECK, fixed_window, random subjects),
# in rounds that alternate which set-up goes first. Prints the summed requests per second of
# every round, the CPU time the Redis side spent per request, and the medians.
#
# Usage: plugins/redis/bench/cluster_scaling.sh [BUILD_DIR] (default: build)
# Environment: ROUNDS (3), REQUESTS per instance (100000), CLIENTS per instance (16),
#              SUBJECTS (100000), CLUSTER_REPLICAS (0: masters only, as a replica's CPU would
#              come out of the same two cores), SLUICED_ARGS (extra sluiced options)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build}
requests=${REQUESTS:-100000}
clients=${CLIENTS:-16}
rounds=${ROUNDS:-3}
subjects=${SUBJECTS:-100000}
work=$(mktemp -d /tmp/sluice-cluster-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$root/scripts/redis-test-cluster" stop "$work/cluster" >/dev/null 2>&1 || true
  "$root/scripts/redis-test-server" stop "$work/redis.sock" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

CLUSTER_REPLICAS=${CLUSTER_REPLICAS:-0} "$root/scripts/redis-test-cluster" start "$work/cluster" cluster
seeds=$(cat "$work/cluster/cluster.seeds")
cluster_pids=$(awk '{print $2}' "$work/cluster/pids")
# One Redis, on TCP loopback like the cluster's nodes.
single_port=$(($(cat "$work/cluster/base") + 20))
mkdir -p "$work/single"
redis-server --port "$single_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/single" \
  --logfile "$work/single/redis.log" >/dev/null 2>&1 &
single_pid=$!
pids+=("$single_pid")
for _ in $(seq 1 100); do redis-cli -p "$single_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

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
start_sluiced() {  # start_sluiced NAME STORAGE_CONFIG...
  local name=$1; shift
  local -a config=()
  for c in "$@"; do config+=(--storage-config "$c"); done
  mkdir -p "$work/$name"
  # shellcheck disable=SC2086 # SLUICED_ARGS is a list of options
  "$build/bin/sluiced" --policy "$work/policy.yaml" --socket "$work/$name/s.sock" \
    --admin-socket "$work/$name/a.sock" --state-dir "$work/$name" --storage redis \
    --plugin-dir "$build/lib/sluice/plugins" "${config[@]}" --log-level warn ${SLUICED_ARGS:-} &
  pids+=("$!")
  for _ in $(seq 1 100); do [ -S "$work/$name/s.sock" ] && break; sleep 0.05; done
}
# A generous command timeout: on a loaded machine a 200 ms one fails decisions, which
# fail_closed answers quickly and would count as served requests.
for i in 1 2 3; do
  start_sluiced "single$i" "url=redis://127.0.0.1:$single_port" command_timeout_ms=2000
  start_sluiced "cluster$i" "cluster=$seeds" command_timeout_ms=2000
done

cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

# run single|cluster: three redis-benchmark runs at once, one per instance; prints the summed
# requests per second and the Redis side's CPU µs per request
run() {
  local side=$1 r0 r1 total=0
  local -a redis_pids
  if [ "$side" = single ]; then redis_pids=("$single_pid"); else read -ra redis_pids <<<"$(echo $cluster_pids)"; fi
  r0=$(cpu_ticks "${redis_pids[@]}")
  for i in 1 2 3; do
    redis-benchmark -s "$work/$side$i/s.sock" -n "$requests" -c "$clients" -P 16 -r "$subjects" -q \
      SL.CHECK bench "user:__rand_int__" 2>/dev/null | tr '\r' '\n' |
      awk '/requests per second/ {v=$(NF-5)} END {print v+0}' >"$work/rps.$i" &
  done
  wait
  r1=$(cpu_ticks "${redis_pids[@]}")
  for i in 1 2 3; do total=$(awk -v a="$total" -v b="$(cat "$work/rps.$i")" 'BEGIN {print a + b}'); done
  echo "$total $(awk -v t=$((r1 - r0)) -v u="$tick_us" -v n=$((3 * requests)) 'BEGIN {printf "%.2f", t * u / n}')"
}
median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2}'; }

echo "3 sluiced x redis-benchmark -n $requests -c $clients -P 16 -r $subjects SL.CHECK; $rounds rounds;" \
  "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %28s %28s\n' round 'one Redis: req/s (Redis µs)' '3-master cluster: req/s (µs)'
singles=() clusters=() order=(single cluster)
for round in $(seq 1 "$rounds"); do
  declare -A got=()
  for side in "${order[@]}"; do got[$side]=$(run "$side"); done
  order=("${order[1]}" "${order[0]}")
  read -r s_rps s_us <<<"${got[single]}"
  read -r c_rps c_us <<<"${got[cluster]}"
  singles+=("$s_rps") clusters+=("$c_rps")
  printf '%-6s %20.0f (%5s) %20.0f (%5s)\n' "$round" "$s_rps" "$s_us" "$c_rps" "$c_us"
done
s=$(printf '%s\n' "${singles[@]}" | median) c=$(printf '%s\n' "${clusters[@]}" | median)
echo "median: one Redis $s req/s, cluster $c req/s, cluster/one $(awk -v a="$c" -v b="$s" 'BEGIN {printf "%.2f", a / b}');" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for name in single1 single2 single3 cluster1 cluster2 cluster3; do
  stats=$(redis-cli -s "$work/$name/a.sock" SL.STATS 2>/dev/null | tr -d '\n')
  echo "$name plugin: $(grep -o '"batches":[0-9]*' <<<"$stats" | head -1)" \
    "$(grep -o '"script_calls":[0-9]*' <<<"$stats" | head -1)" \
    "$(grep -o '"errors":[0-9]*' <<<"$stats" | head -1) $(grep -o '"redirects":[0-9]*' <<<"$stats" | head -1)"
done
