"""Fixtures that run the real thing: a sluiced process and uvicorn serving the example app.

The daemon comes from the build tree named by $SLUICE_BUILD_DIR (ctest sets it; by hand it
defaults to <repo>/build) and is started by tests/support/sluiced.py, as the C++ suites start
it. A missing daemon fails the end-to-end tests: they are the proof
that the client, the example and the engine agree.

$SLUICE_TEST_LOOP picks the event loop and server the tests run on: "asyncio" (default:
asyncio's loop, uvicorn with h11) or "uvloop" (uvloop's loop for every asyncio.run here, and
uvicorn with httptools and uvloop: what `pip install uvicorn[standard]` runs). uvicorn is
always told which, since its "auto" picks whatever happens to be installed.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from sluice import SluiceClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import sluiced as support  # noqa: E402  (tests/support/sluiced.py, the shared launcher)

LOOP = os.environ.get("SLUICE_TEST_LOOP", "asyncio")
if LOOP == "uvloop":
    import asyncio

    import uvloop  # a missing uvloop fails the run: scripts/install-deps installs it

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    UVICORN_SERVER = ["--http", "httptools", "--loop", "uvloop"]
elif LOOP == "asyncio":
    UVICORN_SERVER = ["--http", "h11", "--loop", "asyncio"]
else:
    raise SystemExit(f"SLUICE_TEST_LOOP={LOOP!r}: asyncio or uvloop")

REPO = Path(os.environ.get("SLUICE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("SLUICE_BUILD_DIR", REPO / "build"))
EXAMPLE_DIR = REPO / "examples" / "fastapi-ml-api"
ML_POLICY = REPO / "policies" / "ml-api.yaml"


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sluiced(support.Sluiced):
    """This build's sluiced on the module's fixed socket paths (tests/support/sluiced.py);
    restartable (fresh counters). A daemon that is not built or does not answer fails the
    test."""

    def __init__(self, workdir: Path, policy: Path = ML_POLICY):
        super().__init__(BUILD, policy=policy, workdir=workdir)

    def start(self, timeout=15):
        try:
            return super().start(timeout)
        except support.SluicedError as e:
            pytest.fail(str(e))

    def fresh_window(self, resource, subject, margin_ms=3_000):
        """Wait out a fixed window about to roll over, so a burst of requests is counted in
        one window (a rollover mid-burst would let one request too many through)."""
        with self.client() as client:
            reset = client.peek(resource, subject).reset_after_ms
        if 0 < reset < margin_ms:
            time.sleep(reset / 1000 + 0.05)

    def client(self, admin=False):
        return SluiceClient(self.admin_socket if admin else self.socket, on_unavailable="raise")


class Uvicorn:
    """uvicorn serving examples/fastapi-ml-api/app.py on a free loopback port."""

    def __init__(self, workdir: Path, sluiced: Sluiced, **env):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"uvicorn-{self.port}.log"
        self.env = dict(os.environ, SLUICE_SOCKET=sluiced.socket,
                        PYTHONPATH=os.pathsep.join([str(REPO / "clients" / "python"),
                                                    os.environ.get("PYTHONPATH", "")]),
                        **env)
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE_DIR),
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                 "--no-access-log", *UVICORN_SERVER],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited; its log:\n{self.log.read_text()}")
            try:
                return httpx.get(self.base_url + "/openapi.json", timeout=0.5).status_code == 200
            except httpx.TransportError:
                return False

        _wait(ready, 30, "uvicorn")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def http(self):
        return httpx.Client(base_url=self.base_url, timeout=10)


@pytest.fixture(scope="module")
def workdir():
    # Not tmp_path: Unix socket paths are limited to 107 bytes and pytest's can be longer.
    path = Path(tempfile.mkdtemp(prefix="sluice-py-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(workdir):
    d = Sluiced(workdir).start()
    yield d
    d.stop()


@pytest.fixture
def sluiced(daemon):
    """The module's sluiced, restarted so every test starts from empty counters."""
    return daemon.restart()


@pytest.fixture(scope="module")
def api(workdir, daemon):
    """The example app, failing open; the heavy model stays in warm-up during the tests."""
    server = Uvicorn(workdir, daemon, HEAVY_MODEL_LOAD_SECONDS="3600",
                     SLUICE_ADMIN_SOCKET=daemon.admin_socket).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_fail_closed(workdir, daemon):
    server = Uvicorn(workdir, daemon, SLUICE_ON_UNAVAILABLE="closed",
                     HEAVY_MODEL_LOAD_SECONDS="3600").start()
    yield server
    server.stop()
