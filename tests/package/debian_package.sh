#!/usr/bin/env bash
# The Debian packages: cpack -G DEB writes sluice, sluice-admin and sluice-dev; their contents
# and control files are what a packager expects, and the daemon starts from the unpacked root
# with the plugins and policy that the package carries.
set -euo pipefail
build="$1" src="$2" gui="${3:-1}"
work="$(mktemp -d /tmp/sluice-deb-XXXXXX)"
source "$src/tests/package/daemon.sh"
trap 'stop_sluiced; rm -rf "$work"' EXIT

(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
one_deb() {
  local found=("$work"/out/"$1"_*.deb)
  [ -f "${found[0]}" ] || fail "no $1 package in: $(ls "$work/out")"
  echo "${found[0]}"
}
runtime="$(one_deb sluice)" dev="$(one_deb sluice-dev)"

must_list() {  # must_list DEB PATH...
  local deb="$1"; shift
  local listing; listing="$(dpkg-deb -c "$deb" | awk '{print $6}')"
  for p in "$@"; do
    grep -qx "$p" <<<"$listing" || fail "$(basename "$deb") lacks $p"
  done
}
must_list "$runtime" ./usr/bin/sluiced ./usr/bin/sluicectl \
  ./usr/lib/sluice/plugins/memory.so ./usr/lib/sluice/plugins/sqlite.so \
  ./usr/lib/sluice/plugins/redis.so ./usr/lib/systemd/system/sluiced.service \
  ./etc/sluice/policy.yaml ./usr/share/sluice/policies/default.yaml \
  ./usr/share/sluice/policies/ml-api.yaml
must_list "$dev" ./usr/include/sluice/storage_plugin.h ./usr/lib/cmake/sluice/sluiceConfig.cmake
if dpkg-deb -c "$runtime" | grep -q "sluice-admin"; then fail "sluice-admin is in the daemon's package"; fi

# Control files: a conffile, the user created at configure, dependencies found by shlibdeps.
dpkg-deb -e "$runtime" "$work/control"
grep -qx /etc/sluice/policy.yaml "$work/control/conffiles" || fail "policy.yaml is not a conffile"
grep -q "adduser .*--system" "$work/control/postinst" || fail "postinst creates no system user"
depends="$(dpkg-deb -f "$runtime" Depends)"
for lib in libc6 libsqlite3 libhiredis; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
if [ "$gui" = 1 ]; then  # a build with -DSLUICE_BUILD_GUI=OFF makes no sluice-admin package
  admin="$(one_deb sluice-admin)"
  must_list "$admin" ./usr/bin/sluice-admin
  grep -q "libqt6" <<<"$(dpkg-deb -f "$admin" Depends)" || fail "sluice-admin does not depend on Qt"
fi

# The unit runs the packaged binary on the packaged policy with a state directory.
dpkg-deb -x "$runtime" "$work/root"
unit="$work/root/usr/lib/systemd/system/sluiced.service"
for want in "ExecStart=/usr/bin/sluiced --policy /etc/sluice/policy.yaml" "User=sluice" \
            "StateDirectory=sluice" "--state-dir /var/lib/sluice" "ProtectSystem=strict"; do
  grep -qF -- "$want" "$unit" || fail "the unit lacks '$want'"
done

# sluiced from the unpacked root finds its plugins next to itself (no --plugin-dir).
start_sluiced env -u SLUICE_PLUGIN_DIR "$work/root/usr/bin/sluiced" \
  --policy "$work/root/etc/sluice/policy.yaml"
grep -q "storage plugin memory .* from $work/root/usr/lib/sluice/plugins/memory.so" \
  "$work/sluiced.log" || fail "sluiced did not load the packaged memory plugin"
[ "$(allowed predict alice)" = 1 ] || fail "the packaged daemon denied a first request"
[ -f "$work/state/audit.log" ] || fail "no audit log in the state directory"
[ ! -e "$work/root/etc/sluice/policy.yaml.audit.log" ] || fail "an audit log next to the policy"
stop_sluiced
echo "packages: $(cd "$work/out" && ls ./*.deb | xargs -n1 basename | tr '\n' ' ')"
