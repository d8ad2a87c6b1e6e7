"""wait= on check and acquire, sync and async, against this build's sluiced: a waiter is
admitted when the slot is released, denied at its deadline, and an async waiter does not hold
up the calls pipelined on the client's shared connection. The FastAPI dependency passes wait=.
"""

import asyncio
import threading
import time

import pytest

import conftest
from fake_sluiced import FakeSluiced
from sluice import AsyncSluiceClient, SluiceClient

POLICY = """default_tier: free
tiers:
  free: {}
  premium: {priority: 10}
resources:
  gpu:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 1m, per: resource}
    queue: {max_wait: 10s, max_waiters: 100}
  other:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 1000, window: 1m}
"""


@pytest.fixture
def daemon(tmp_path):
    d = conftest.support.Sluiced(conftest.BUILD, policy_yaml=POLICY)
    try:
        d.start()
    except conftest.support.SluicedError as e:
        pytest.fail(str(e))
    yield d
    d.stop()
    d.close()


def test_sync_acquire_waits_for_the_release(daemon):
    with SluiceClient(daemon.socket, timeout=1.0) as client:
        holder = client.acquire("gpu", "holder")
        assert holder.allowed
        threading.Timer(0.2, holder.release).start()
        started = time.monotonic()
        lease = client.acquire("gpu", "waiter", wait=5.0)
        took = time.monotonic() - started
        assert lease.allowed, lease.decision
        assert lease.decision.wait_outcome == "admitted"
        assert 150 <= lease.decision.waited_ms < 2000
        assert 0.15 <= took < 2.0
        lease.release()


def test_sync_check_is_denied_at_the_deadline(daemon):
    with SluiceClient(daemon.socket, timeout=0.25) as client:
        holder = client.acquire("gpu", "holder")
        started = time.monotonic()
        # The call's timeout (0.25 s) grows by the wait: the deadline's denial is the answer.
        decision = client.check("gpu", "waiter", wait=0.5)
        took = time.monotonic() - started
        assert not decision.allowed and not decision.unavailable
        assert decision.wait_outcome == "deadline"
        assert 0.4 <= took < 2.5
        holder.release()


def test_async_wait_does_not_hold_up_the_shared_connection(daemon):
    async def scenario():
        async with AsyncSluiceClient(daemon.socket, timeout=1.0) as client:
            holder = await client.acquire("gpu", "holder")
            assert holder.allowed
            waiting = asyncio.ensure_future(client.acquire("gpu", "waiter", wait=5.0))
            await asyncio.sleep(0.1)
            # Other calls are answered while the waiter waits.
            started = time.monotonic()
            for _ in range(20):
                assert (await client.check("other", "x")).allowed
            assert time.monotonic() - started < 1.0
            assert not waiting.done()
            await holder.release()
            lease = await asyncio.wait_for(waiting, 3)
            assert lease.allowed and lease.decision.wait_outcome == "admitted"
            await lease.release()
    asyncio.run(scenario())


def test_async_check_deadline_and_priority(daemon):
    async def scenario():
        async with AsyncSluiceClient(daemon.socket, timeout=1.0) as client:
            holder = await client.acquire("gpu", "holder")
            denied = await client.check("gpu", "w", wait=0.3)
            assert not denied.allowed and denied.wait_outcome == "deadline"
            free = asyncio.ensure_future(client.acquire("gpu", "free-user", wait=5.0))
            await asyncio.sleep(0.05)
            premium = asyncio.ensure_future(
                client.acquire("gpu", "premium-user", tier="premium", wait=5.0))
            await asyncio.sleep(0.1)
            await holder.release()
            first = await asyncio.wait_for(premium, 3)
            assert first.allowed and not free.done()
            await first.release()
            second = await asyncio.wait_for(free, 3)
            assert second.allowed
            await second.release()
    asyncio.run(scenario())


@pytest.mark.parametrize("bad", [-1, "2", True, 3601])
def test_bad_wait_is_refused_before_sending(tmp_path, bad):
    with SluiceClient(str(tmp_path / "none.sock")) as client:
        with pytest.raises(ValueError, match="wait must be a number of seconds"):
            client.check("gpu", "s", wait=bad)


def test_wait_is_sent_in_milliseconds(tmp_path):
    sock = str(tmp_path / "s.sock")
    reply = [1, 1, 0, 0, 0, "slots", "free", 60000, [], 12, "admitted"]
    with FakeSluiced(sock, lambda args: reply) as fake, SluiceClient(sock) as client:
        decision = client.check("gpu", "s", wait=1.5)
    assert fake.commands == [["SL.CHECK", "gpu", "s", "WAIT", "1500"]]
    assert decision.waited_ms == 12 and decision.wait_outcome == "admitted"


def test_fastapi_dependency_passes_wait(daemon):
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from sluice.fastapi import RateLimit

    with pytest.raises(ValueError):
        RateLimit("gpu", wait=-1)
    app = FastAPI()
    client = AsyncSluiceClient(daemon.socket, timeout=1.0)

    @app.get("/gpu")
    async def gpu(decision=Depends(RateLimit("gpu", client=client, wait=0.3))):
        return {"waited_ms": decision.waited_ms}

    with SluiceClient(daemon.socket) as sync_client, TestClient(app) as http:
        holder = sync_client.acquire("gpu", "holder")
        started = time.monotonic()
        response = http.get("/gpu")
        assert response.status_code == 429
        assert time.monotonic() - started >= 0.25
        holder.release()
        assert http.get("/gpu").status_code == 200
