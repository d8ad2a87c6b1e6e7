# Shared by the package tests: start a sluiced, wait for its socket, ask it, stop it by PID.
# Sourced; expects $work (a scratch directory) to be set.

sluiced_pid=""

# start_sluiced BINARY ARGS... : starts it with sockets and state under $work; logs to
# $work/sluiced.log; fails the test if the decision socket does not answer within 10 s.
start_sluiced() {
  "$@" --socket "$work/sluice.sock" --admin-socket "$work/admin.sock" \
       --state-dir "$work/state" >"$work/sluiced.log" 2>&1 &
  sluiced_pid=$!
  for _ in $(seq 100); do
    if [ "$(redis-cli -s "$work/sluice.sock" PING 2>/dev/null)" = PONG ]; then return 0; fi
    if ! kill -0 "$sluiced_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "sluiced did not answer on $work/sluice.sock; its log:" >&2
  cat "$work/sluiced.log" >&2
  exit 1
}

stop_sluiced() {
  if [ -n "$sluiced_pid" ] && kill -0 "$sluiced_pid" 2>/dev/null; then
    kill -TERM "$sluiced_pid"
    wait "$sluiced_pid" || true
  fi
  sluiced_pid=""
}

# allowed RESOURCE SUBJECT : prints 1 or 0, the first field of an SL.CHECK reply.
allowed() {
  redis-cli -s "$work/sluice.sock" SL.CHECK "$1" "$2" | head -n 1
}

fail() {
  echo "FAIL: $*" >&2
  [ -f "$work/sluiced.log" ] && { echo "sluiced's log:" >&2; cat "$work/sluiced.log" >&2; }
  exit 1
}
