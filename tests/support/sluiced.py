"""A real sluiced from a build tree, started the way the C++ and GUI suites start it
(tests/support/sluiced_fixture.h): one directory holds the policy, both sockets, the state and
the log; the build tree's plugin folder is searched first; the daemon is ready once both
sockets accept a connection; it is stopped by PID with a signal.

The pytest fixtures (tests/python/conftest.py) build on it. By hand:

    /usr/bin/python3 tests/support/sluiced.py --build build --policy policies/ml-api.yaml

prints the PID and the socket paths, and stops the daemon on Ctrl-C.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SluicedError(RuntimeError):
    """sluiced is not built, or did not answer in time (the message carries its log)."""


def _accepts(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class Sluiced:
    """One sluiced process on fixed paths in `workdir` (a fresh directory under /tmp when
    None, removed by close()); restartable on the same sockets.

    `policy` is a policy file to use as is; `policy_yaml` is policy text written to
    <workdir>/policy.yaml instead. `extra_args` follow the fixed arguments; `launcher` runs
    sluiced (e.g. ["prlimit", "--nofile=1024:1024"])."""

    def __init__(self, build_dir, policy=None, policy_yaml=None, workdir=None, extra_args=(),
                 launcher=()):
        if (policy is None) == (policy_yaml is None):
            raise ValueError("give either policy or policy_yaml")
        self.build_dir = Path(build_dir)
        self.binary = self.build_dir / "bin" / "sluiced"
        self.plugin_dir = self.build_dir / "lib" / "sluice" / "plugins"
        # /tmp rather than TMPDIR: a Unix socket path is limited to 107 bytes.
        self._owns_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-py-", dir="/tmp") if workdir is None
                        else workdir)
        self.socket = str(self.dir / "sluice.sock")
        self.admin_socket = str(self.dir / "admin.sock")
        self.log = self.dir / "sluiced.log"
        if policy_yaml is not None:
            self.policy = self.dir / "policy.yaml"
            self.policy.write_text(policy_yaml)
        else:
            self.policy = Path(policy)
        self.extra_args = list(extra_args)
        self.launcher = list(launcher)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def args(self):
        """The command line: the same fixed arguments as the C++ fixture."""
        return self.launcher + [
            str(self.binary), "--policy", str(self.policy), "--socket", self.socket,
            "--admin-socket", self.admin_socket, "--threads", "2", "--log-level", "info",
            "--state-dir", str(self.dir), "--plugin-dir", str(self.plugin_dir)
        ] + self.extra_args

    def start(self, timeout=10.0):
        """Starts sluiced and polls both sockets until they accept a connection; raises
        SluicedError (with the log) when it exits first or `timeout` seconds pass."""
        if not self.binary.exists():
            raise SluicedError(f"{self.binary} does not exist; build it (ninja sluiced "
                               "sluice_plugin_memory) or point SLUICE_BUILD_DIR at a build tree")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _accepts(self.admin_socket) and _accepts(self.socket):
                return self
            time.sleep(0.01)
        self.stop(signal.SIGKILL)
        raise SluicedError(f"sluiced did not start; its log:\n{self.read_log()}")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends `sig` to the PID and waits (SIGKILL after `timeout` s); returns the exit code,
        128 + signal when killed, None when nothing ran."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def read_log(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self):
        """Stops the daemon (SIGKILL) and removes the directory if this object made it."""
        self.stop(signal.SIGKILL)
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def main(argv):
    parser = argparse.ArgumentParser(description="Run this build tree's sluiced on temporary "
                                     "sockets until Ctrl-C.")
    parser.add_argument("--build", default="build", help="build tree (default: build)")
    parser.add_argument("--policy", required=True, help="policy file")
    parser.add_argument("extra", nargs="*", help="more sluiced arguments (after --)")
    options = parser.parse_args(argv)
    with Sluiced(options.build, policy=options.policy, extra_args=options.extra) as d:
        print(f"pid={d.pid} socket={d.socket} admin_socket={d.admin_socket} log={d.log}",
              flush=True)
        try:
            d.proc.wait()
        except KeyboardInterrupt:
            pass
        return d.stop() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
