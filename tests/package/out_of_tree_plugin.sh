#!/usr/bin/env bash
# A plugin author's path: install sluice's dev component into a scratch prefix, build
# examples/out-of-tree-plugin against it with find_package(sluice) + sluice::plugin_abi, and
# load the result into sluiced, which must enforce a limit with it.
set -euo pipefail
build="$1" src="$2"
work="$(mktemp -d /tmp/sluice-oot-XXXXXX)"
source "$src/tests/package/daemon.sh"
trap 'stop_sluiced; rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" --component dev >/dev/null
# The package carries the plugin ABI header and nothing else of the engine.
headers="$(cd "$work/prefix/include" && find . -type f | sort)"
[ "$headers" = "./sluice/storage_plugin.h" ] || fail "installed headers: $headers"
[ -f "$work/prefix/lib/cmake/sluice/sluiceConfig.cmake" ] || fail "no sluiceConfig.cmake"
[ -f "$work/prefix/lib/cmake/sluice/sluiceConfigVersion.cmake" ] || fail "no version file"

cmake -S "$src/examples/out-of-tree-plugin" -B "$work/plugin-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "the example does not configure"; }
cmake --build "$work/plugin-build" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "the example does not build"; }
plugin="$work/plugin-build/tinymap.so"
[ -f "$plugin" ] || fail "no $plugin"

cat >"$work/policy.yaml" <<'YAML'
version: 1
default_tier: free
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: three_per_minute, algorithm: fixed_window, limit: 3, window: 1m}
YAML
start_sluiced "$build/bin/sluiced" --policy "$work/policy.yaml" --storage "$plugin"
grep -q "storage plugin tinymap 1.0 from $plugin" "$work/sluiced.log" ||
  fail "sluiced did not say it loaded tinymap"

for i in 1 2 3; do
  [ "$(allowed predict alice)" = 1 ] || fail "request $i of alice was denied"
done
[ "$(allowed predict alice)" = 0 ] || fail "alice's fourth request in a minute was allowed"
[ "$(allowed predict bob)" = 1 ] || fail "bob was denied: the plugin mixed up subjects"
reply="$(redis-cli -s "$work/sluice.sock" SL.CHECK predict alice | tr '\n' ' ')"
[[ "$reply" == "0 3 0 "*" three_per_minute "* ]] || fail "denial reply: $reply"
echo "tinymap, built against the installed package, enforced 3/min: $reply"
