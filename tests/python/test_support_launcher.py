"""The shared launcher (tests/support/sluiced.py) checks itself: a refused start is an error
carrying the log, a restart keeps the sockets, a stop by PID reports the exit."""

import signal

import pytest

from conftest import BUILD, ML_POLICY, support


def test_a_refused_policy_raises_with_the_log():
    d = support.Sluiced(BUILD, policy_yaml="resources: [")
    try:
        with pytest.raises(support.SluicedError, match="refused"):
            d.start()
        assert d.pid is None
    finally:
        d.close()
    assert not d.dir.exists()


def test_restart_keeps_the_sockets_and_stop_reports_the_exit():
    with support.Sluiced(BUILD, policy=ML_POLICY, extra_args=["--max-connections", "7"]) as d:
        first, sock = d.pid, d.socket
        d.restart()
        assert d.pid != first
        assert d.socket == sock
        with open(f"/proc/{d.pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        assert b"--max-connections" in args and b"--plugin-dir" in args
        assert d.stop() == 0
        d.start()
        assert d.stop(signal.SIGKILL) == 128 + signal.SIGKILL
