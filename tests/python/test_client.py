"""Client behaviour against a scripted RESP server: arguments, replies, errors, leases,
fail-open / fail-closed and timeouts. The real daemon is exercised in test_e2e_*.py."""

import asyncio
import os
import time

import pytest

from fake_sluiced import HANG, Error, FakeSluiced
from sluice import (AsyncSluiceClient, LeaseNotFound, RateLimited, SluiceClient, SluiceError,
                    SluiceUnavailable)

ALLOW = [1, 10, 9, 60_000, 0, "per_minute"]
DENY = [0, 10, 0, 30_000, 30_000, "per_minute"]


def scripted(replies):
    """respond() that answers by command name and falls back to ERR for anything else."""
    def respond(args):
        reply = replies.get(args[0].upper(), Error(f"ERR unknown command '{args[0]}'"))
        return reply(args) if callable(reply) else reply
    return respond


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "sluice.sock")


def test_check_sends_options_and_parses_the_decision(sock):
    # TIER, KEY and COST are sent only when given, in the documented order.
    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})) as fake, SluiceClient(sock) as client:
        d = client.check("predict", "10.0.0.1")
        assert d.allowed and d.limit == 10 and d.remaining == 9 and d.rule == "per_minute"
        assert d.resource == "predict" and not d.unavailable
        client.check("generate", "u1", tier="premium", api_key="k", cost=250)
    assert fake.commands == [
        ["SL.CHECK", "predict", "10.0.0.1"],
        ["SL.CHECK", "generate", "u1", "TIER", "premium", "KEY", "k", "COST", "250"],
    ]


def test_peek_uses_sl_peek(sock):
    with FakeSluiced(sock, scripted({"SL.PEEK": DENY})) as fake, SluiceClient(sock) as client:
        d = client.peek("predict", "s")
        assert not d.allowed and d.retry_after_seconds == 30
    assert fake.commands[0][0] == "SL.PEEK"


def test_engine_errors_keep_code_and_message(sock):
    # The engine's upper-case prefix is the contract; redis-py must not strip or remap it.
    replies = {"SL.CHECK": lambda a: Error({"bad": "WRONGARGS COST must be a positive integer",
                                            "err": "ERR unknown resource 'nope'",
                                            "perm": "NOPERM not on the decision socket"}[a[1]])}
    with FakeSluiced(sock, scripted(replies)), SluiceClient(sock) as client:
        for resource, code, message in [("bad", "WRONGARGS", "COST must be a positive integer"),
                                        ("err", "ERR", "unknown resource 'nope'"),
                                        ("perm", "NOPERM", "not on the decision socket")]:
            with pytest.raises(SluiceError) as info:
                client.check(resource, "s")
            assert (info.value.code, info.value.message) == (code, message)


def test_client_side_validation_fails_before_sending(sock):
    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})) as fake, SluiceClient(sock) as client:
        for bad in [dict(cost=0), dict(cost=1.5), dict(cost=True)]:
            with pytest.raises(ValueError):
                client.check("predict", "s", **bad)
        with pytest.raises(ValueError):
            client.check("", "s")
    assert fake.commands == []


def test_malformed_reply_is_a_protocol_error(sock):
    with FakeSluiced(sock, scripted({"SL.CHECK": [1, 2]})), SluiceClient(sock) as client:
        with pytest.raises(SluiceError) as info:
            client.check("predict", "s")
        assert info.value.code == "PROTOCOL"


def test_lease_context_manager_settles_actual_cost(sock):
    # The block sets the real cost; leaving the block sends SL.RELEASE with ACTUAL.
    acquire = ALLOW + ["lease-7", 60_000]
    with FakeSluiced(sock, scripted({"SL.ACQUIRE": acquire, "SL.RELEASE": 1})) as fake, \
            SluiceClient(sock) as client:
        with client.acquire("generate", "u", cost=500, ttl_ms=30_000) as lease:
            assert lease.id == "lease-7" and lease.ttl_ms == 60_000
            lease.actual = 123
        assert lease.released
        assert lease.release() is False  # idempotent
    assert fake.commands == [["SL.ACQUIRE", "generate", "u", "COST", "500", "TTL", "30000"],
                             ["SL.RELEASE", "lease-7", "ACTUAL", "123"]]


def test_lease_released_with_estimate_when_no_actual_given(sock):
    acquire = ALLOW + ["lease-8", 60_000]
    with FakeSluiced(sock, scripted({"SL.ACQUIRE": acquire, "SL.RELEASE": 1})) as fake, \
            SluiceClient(sock) as client:
        with pytest.raises(KeyError):
            with client.acquire("generate", "u", cost=500):
                raise KeyError("the block failed")  # the lease is still released
    assert fake.commands[-1] == ["SL.RELEASE", "lease-8"]


def test_denied_lease_raises_on_entry_and_sends_no_release(sock):
    acquire = DENY + ["", 0]
    with FakeSluiced(sock, scripted({"SL.ACQUIRE": acquire})) as fake, \
            SluiceClient(sock) as client:
        with pytest.raises(RateLimited) as info:
            with client.acquire("generate", "u", cost=500):
                pytest.fail("a denied lease must not run the block")
        assert info.value.decision.retry_after_ms == 30_000
    assert [c[0] for c in fake.commands] == ["SL.ACQUIRE"]


def test_release_of_unknown_lease_raises_lease_not_found(sock):
    replies = {"SL.RELEASE": Error("NOLEASE lease 42 is unknown or expired")}
    with FakeSluiced(sock, scripted(replies)), SluiceClient(sock) as client:
        with pytest.raises(LeaseNotFound) as info:
            client.release("42", actual=3)
        assert info.value.code == "NOLEASE"


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_unreachable_daemon_follows_on_unavailable(tmp_path, mode):
    # No socket at all: the client answers by itself, marked unavailable.
    client = SluiceClient(str(tmp_path / "missing.sock"), on_unavailable=mode,
                          unavailable_retry_after_ms=2_500)
    d = client.check("predict", "s")
    assert d.unavailable and d.allowed == (mode == "open")
    assert d.retry_after_ms == (0 if mode == "open" else 2_500)
    lease = client.acquire("generate", "s", cost=10)
    assert lease.decision.unavailable and lease.id == ""
    assert client.release("lease-1") is False
    assert client.ping() is False


def test_unreachable_daemon_raises_when_asked(tmp_path):
    client = SluiceClient(str(tmp_path / "missing.sock"), on_unavailable="raise")
    with pytest.raises(SluiceUnavailable):
        client.check("predict", "s")


def test_invalid_fail_mode_is_rejected():
    with pytest.raises(ValueError):
        SluiceClient("x.sock", on_unavailable="maybe")


def test_silent_daemon_times_out_quickly(sock):
    # A daemon that accepts but never answers must not stall the request path.
    with FakeSluiced(sock, lambda args: HANG):
        client = SluiceClient(sock, timeout=0.1, on_unavailable="closed")
        start = time.monotonic()
        d = client.check("predict", "s")
        assert time.monotonic() - start < 1.0
        assert d.unavailable and not d.allowed
        client.close()


def test_async_client_check_lease_and_errors(sock):
    acquire = ALLOW + ["lease-9", 60_000]
    replies = {"SL.CHECK": ALLOW, "SL.ACQUIRE": acquire, "SL.RELEASE": 1,
               "SL.PEEK": Error("STORAGE backend down")}

    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            assert (await client.check("predict", "s", api_key="k")).allowed
            async with await client.acquire("generate", "s", cost=100) as lease:
                lease.actual = 40
            with pytest.raises(SluiceError) as info:
                await client.peek("predict", "s")
            assert info.value.code == "STORAGE"
            assert await client.ping() is False  # PING is unscripted here: ERR, not PONG

    with FakeSluiced(sock, scripted(replies)) as fake:
        asyncio.run(scenario())
    assert ["SL.RELEASE", "lease-9", "ACTUAL", "40"] in fake.commands
    assert ["SL.CHECK", "predict", "s", "KEY", "k"] in fake.commands


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_async_unreachable_and_timeout(tmp_path, mode):
    sock = str(tmp_path / "s.sock")

    async def scenario():
        missing = AsyncSluiceClient(str(tmp_path / "missing.sock"), on_unavailable=mode)
        d = await missing.check("predict", "s")
        assert d.unavailable and d.allowed == (mode == "open")
        slow = AsyncSluiceClient(sock, timeout=0.1, on_unavailable=mode)
        start = time.monotonic()
        d = await slow.check("predict", "s")
        assert time.monotonic() - start < 1.0
        assert d.unavailable and d.allowed == (mode == "open")
        await slow.close()

    with FakeSluiced(sock, lambda args: HANG):
        asyncio.run(scenario())


def test_async_concurrent_calls_are_pipelined_on_one_connection(sock):
    # Concurrent decisions share the loop's one connection, each getting its own reply in
    # order; none fails for want of a connection (a fail-open answer would skip the limit).
    def by_subject(args):
        time.sleep(0.005)
        return [1, 10, int(args[2][1:]), 60_000, 0, "per_minute"]

    async def scenario():
        async with AsyncSluiceClient(sock, on_unavailable="raise") as c:
            decisions = await asyncio.gather(*(c.check("predict", f"s{i}") for i in range(20)))
            assert [d.remaining for d in decisions] == list(range(20))

    with FakeSluiced(sock, by_subject) as fake:
        asyncio.run(scenario())
    assert len(fake.commands) == 20
    assert len(fake.connections) == 1


def test_async_timeout_closes_the_connection_and_the_next_call_reconnects(sock):
    # A reply that never comes must not hold up later calls behind it on the same connection.
    def hang_once(args):
        return HANG if args[2] == "slow" else ALLOW

    async def scenario():
        async with AsyncSluiceClient(sock, timeout=0.1, on_unavailable="raise") as c:
            with pytest.raises(SluiceUnavailable):
                await c.check("predict", "slow")
            assert (await c.check("predict", "fast")).allowed

    with FakeSluiced(sock, hang_once) as fake:
        asyncio.run(scenario())
    assert len(fake.connections) == 2


def test_async_client_reconnects_after_the_daemon_closed_its_connection(sock):
    # A restart of sluiced closes pooled connections; the next call must not fail open.
    async def scenario():
        async with AsyncSluiceClient(sock, on_unavailable="raise") as client:
            with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})):
                assert (await client.check("predict", "s")).allowed
            await asyncio.sleep(0.05)
            with FakeSluiced(sock, scripted({"SL.CHECK": DENY})):
                assert not (await client.check("predict", "s")).allowed

    asyncio.run(scenario())


def test_sync_client_reconnects_after_the_daemon_closed_its_connection(sock):
    with SluiceClient(sock, on_unavailable="raise") as client:
        with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})):
            assert client.check("predict", "s").allowed
        time.sleep(0.05)
        with FakeSluiced(sock, scripted({"SL.CHECK": DENY})):
            assert not client.check("predict", "s").allowed


FULL = ALLOW + ["premium", 60_000, [["per_minute", 10, 9, 60_000, 60_000],
                                    ["per_day", 500, 490, 3_600_000, 86_400_000]]]


def run(kind, sock, method, *args, **options):
    """Calls ``method(*args)`` on a fresh sync or async client (``options`` go to the
    constructor) and returns its result, so one test covers both clients."""
    if kind == "sync":
        with SluiceClient(sock, **options) as client:
            return getattr(client, method)(*args)

    async def scenario():
        async with AsyncSluiceClient(sock, **options) as client:
            return await getattr(client, method)(*args)

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_decision_carries_tier_window_and_every_limit(sock, kind):
    with FakeSluiced(sock, scripted({"SL.CHECK": FULL})):
        d = run(kind, sock, "check", "predict", "s")
    assert d.tier == "premium" and d.window_ms == 60_000
    assert [(lim.name, lim.limit, lim.remaining, lim.reset_after_ms, lim.window_ms)
            for lim in d.limits] == [("per_minute", 10, 9, 60_000, 60_000),
                                     ("per_day", 500, 490, 3_600_000, 86_400_000)]
    assert d.has_quota and not d.storage_failure


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_six_field_reply_of_an_older_daemon_still_parses(sock, kind):
    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})):
        d = run(kind, sock, "check", "predict", "s")
    assert d.allowed and d.tier == "" and d.window_ms == 0 and d.limits == ()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_acquire_reads_the_extra_fields_after_the_lease(sock, kind):
    reply = ALLOW + ["lease-1", 30_000] + FULL[6:]
    with FakeSluiced(sock, scripted({"SL.ACQUIRE": reply, "SL.RELEASE": 1})):
        lease = run(kind, sock, "acquire", "generate", "s")
    assert lease.id == "lease-1" and lease.ttl_ms == 30_000
    assert lease.decision.tier == "premium" and len(lease.decision.limits) == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("limits", ["oops", [["per_minute", 10]], [None]])
def test_malformed_limits_are_a_protocol_error(sock, kind, limits):
    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW + ["free", 0, limits]})):
        with pytest.raises(SluiceError) as info:
            run(kind, sock, "check", "predict", "s")
    assert info.value.code == "PROTOCOL"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_storage_decision_is_told_apart_from_a_quota(sock, kind):
    with FakeSluiced(sock, scripted({"SL.CHECK": [0, 0, 0, 0, 1000, "(storage)", "free", 0, []]})):
        d = run(kind, sock, "check", "predict", "s")
    assert d.storage_failure and not d.has_quota and d.retry_after_seconds == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode,words", [("open", "ALLOWED WITHOUT LIMITS (fail open)"),
                                        ("closed", "DENIED (fail closed, 503)")])
def test_start_logs_one_error_naming_the_path_and_the_fallback(tmp_path, caplog, kind, mode,
                                                                words):
    missing = str(tmp_path / "nowhere.sock")
    with caplog.at_level("ERROR", logger="sluice"):
        assert run(kind, missing, "start", on_unavailable=mode) is False
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert message.count(missing) == 1 and words in message
    assert "No such file or directory" in message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_start_and_ready_are_quiet_when_sluiced_answers(sock, caplog, kind):
    with FakeSluiced(sock, scripted({"PING": "PONG"})), caplog.at_level("ERROR", logger="sluice"):
        assert run(kind, sock, "start") is True
        assert run(kind, sock, "ready") is True
    assert not caplog.records


# -- the asyncio client, case for case with the blocking one above ----------------------------

def arun(scenario):
    return asyncio.run(scenario())


def test_async_check_sends_options_and_parses_the_decision(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            d = await client.check("predict", "10.0.0.1")
            assert d.allowed and d.limit == 10 and d.remaining == 9 and d.rule == "per_minute"
            assert d.resource == "predict" and not d.unavailable
            await client.check("generate", "u1", tier="premium", api_key="k", cost=250)

    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})) as fake:
        arun(scenario)
    assert fake.commands == [
        ["SL.CHECK", "predict", "10.0.0.1"],
        ["SL.CHECK", "generate", "u1", "TIER", "premium", "KEY", "k", "COST", "250"],
    ]


def test_async_peek_uses_sl_peek(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            d = await client.peek("predict", "s")
            assert not d.allowed and d.retry_after_seconds == 30

    with FakeSluiced(sock, scripted({"SL.PEEK": DENY})) as fake:
        arun(scenario)
    assert fake.commands[0][0] == "SL.PEEK"


def test_async_engine_errors_keep_code_and_message(sock):
    replies = {"SL.CHECK": lambda a: Error({"bad": "WRONGARGS COST must be a positive integer",
                                            "err": "ERR unknown resource 'nope'",
                                            "perm": "NOPERM not on the decision socket"}[a[1]])}

    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            for resource, code, message in [("bad", "WRONGARGS", "COST must be a positive integer"),
                                            ("err", "ERR", "unknown resource 'nope'"),
                                            ("perm", "NOPERM", "not on the decision socket")]:
                with pytest.raises(SluiceError) as info:
                    await client.check(resource, "s")
                assert (info.value.code, info.value.message) == (code, message)

    with FakeSluiced(sock, scripted(replies)):
        arun(scenario)


def test_async_client_side_validation_fails_before_sending(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            for bad in [dict(cost=0), dict(cost=1.5), dict(cost=True)]:
                with pytest.raises(ValueError):
                    await client.check("predict", "s", **bad)
            with pytest.raises(ValueError):
                await client.check("", "s")
            with pytest.raises(ValueError):
                await client.acquire("generate", "s", ttl_ms=0)
            with pytest.raises(ValueError):
                await client.release("lease-1", actual=-1)

    with FakeSluiced(sock, scripted({"SL.CHECK": ALLOW})) as fake:
        arun(scenario)
    assert fake.commands == []


def test_async_malformed_reply_is_a_protocol_error(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            with pytest.raises(SluiceError) as info:
                await client.check("predict", "s")
            assert info.value.code == "PROTOCOL"

    with FakeSluiced(sock, scripted({"SL.CHECK": [1, 2]})):
        arun(scenario)


def test_async_lease_context_manager_settles_actual_cost(sock):
    acquire = ALLOW + ["lease-7", 60_000]

    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            async with await client.acquire("generate", "u", cost=500, ttl_ms=30_000) as lease:
                assert lease.id == "lease-7" and lease.ttl_ms == 60_000
                lease.actual = 123
            assert lease.released
            assert await lease.release() is False  # idempotent

    with FakeSluiced(sock, scripted({"SL.ACQUIRE": acquire, "SL.RELEASE": 1})) as fake:
        arun(scenario)
    assert fake.commands == [["SL.ACQUIRE", "generate", "u", "COST", "500", "TTL", "30000"],
                             ["SL.RELEASE", "lease-7", "ACTUAL", "123"]]


def test_async_lease_released_with_estimate_when_no_actual_given(sock):
    acquire = ALLOW + ["lease-8", 60_000]

    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            with pytest.raises(KeyError):
                async with await client.acquire("generate", "u", cost=500):
                    raise KeyError("the block failed")  # the lease is still released

    with FakeSluiced(sock, scripted({"SL.ACQUIRE": acquire, "SL.RELEASE": 1})) as fake:
        arun(scenario)
    assert fake.commands[-1] == ["SL.RELEASE", "lease-8"]


def test_async_denied_lease_raises_on_entry_and_sends_no_release(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            with pytest.raises(RateLimited) as info:
                async with await client.acquire("generate", "u", cost=500):
                    pytest.fail("a denied lease must not run the block")
            assert info.value.decision.retry_after_ms == 30_000

    with FakeSluiced(sock, scripted({"SL.ACQUIRE": DENY + ["", 0]})) as fake:
        arun(scenario)
    assert [c[0] for c in fake.commands] == ["SL.ACQUIRE"]


def test_async_release_of_unknown_lease_raises_lease_not_found(sock):
    async def scenario():
        async with AsyncSluiceClient(sock) as client:
            with pytest.raises(LeaseNotFound) as info:
                await client.release("42", actual=3)
            assert info.value.code == "NOLEASE"

    with FakeSluiced(sock, scripted({"SL.RELEASE": Error("NOLEASE lease 42 is unknown")})):
        arun(scenario)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_async_unreachable_daemon_follows_on_unavailable(tmp_path, mode):
    async def scenario():
        client = AsyncSluiceClient(str(tmp_path / "missing.sock"), on_unavailable=mode,
                                   unavailable_retry_after_ms=2_500)
        d = await client.check("predict", "s")
        assert d.unavailable and d.allowed == (mode == "open")
        assert d.retry_after_ms == (0 if mode == "open" else 2_500)
        lease = await client.acquire("generate", "s", cost=10)
        assert lease.decision.unavailable and lease.id == ""
        assert await client.release("lease-1") is False
        assert await client.ping() is False
        assert await client.ready() is False
        await client.close()

    arun(scenario)


def test_async_unreachable_daemon_raises_when_asked(tmp_path):
    async def scenario():
        client = AsyncSluiceClient(str(tmp_path / "missing.sock"), on_unavailable="raise")
        with pytest.raises(SluiceUnavailable):
            await client.check("predict", "s")
        with pytest.raises(SluiceUnavailable):
            await client.release("lease-1")

    arun(scenario)


def test_async_invalid_fail_mode_is_rejected():
    with pytest.raises(ValueError, match="on_unavailable must be one of open, closed, raise"):
        AsyncSluiceClient("x.sock", on_unavailable="maybe")


def test_sync_pool_waits_for_a_free_connection_and_reuses_it(sock):
    # More threads than connections: the extra callers wait their turn instead of failing
    # open, and no more than max_connections sockets are ever opened.
    from concurrent.futures import ThreadPoolExecutor

    def slow_allow(args):
        time.sleep(0.01)
        return ALLOW

    with FakeSluiced(sock, slow_allow) as fake, \
            SluiceClient(sock, max_connections=2, on_unavailable="raise") as client:
        with ThreadPoolExecutor(8) as threads:
            decisions = list(threads.map(lambda i: client.check("predict", f"s{i}"), range(16)))
    assert all(d.allowed and not d.unavailable for d in decisions)
    assert len(fake.commands) == 16
    assert len(fake.connections) <= 2


def test_sync_timeout_closes_the_connection_and_the_next_call_reconnects(sock):
    def hang_once(args):
        return HANG if args[2] == "slow" else ALLOW

    with FakeSluiced(sock, hang_once) as fake, \
            SluiceClient(sock, timeout=0.1, on_unavailable="raise") as client:
        with pytest.raises(SluiceUnavailable):
            client.check("predict", "slow")
        assert client.check("predict", "fast").allowed
        assert client.check("predict", "fast").allowed  # the fresh connection is kept
    assert len(fake.connections) == 2


class _RecordingTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.writes = []
        self.aborted = False

    def write(self, data):
        self.writes.append(bytes(data))

    def abort(self):
        self.aborted = True


def test_async_calls_made_in_one_loop_turn_are_written_together():
    # One system call per turn of the event loop, not one per call; replies still reach
    # their callers in order.
    from sluice._resp import encode
    from sluice.aio import _Connection

    async def scenario():
        connection = _Connection(asyncio.get_running_loop(), 1.0)
        transport = _RecordingTransport()
        connection.connection_made(transport)
        futures = [connection.request(encode(("SL.CHECK", "r", f"s{i}"))) for i in range(3)]
        assert transport.writes == []
        await asyncio.sleep(0)
        assert transport.writes == [b"".join(encode(("SL.CHECK", "r", f"s{i}")) for i in range(3))]
        connection.data_received(b":1\r\n:2\r\n")
        assert [f.result() for f in futures[:2]] == [1, 2] and not futures[2].done()
        later = connection.request(encode(("PING",)))
        await asyncio.sleep(0)
        assert len(transport.writes) == 2
        connection.data_received(b":3\r\n+PONG\r\n")
        assert futures[2].result() == 3 and later.result() == "PONG"
        connection.close(ConnectionError("done"))

    asyncio.run(scenario())


class _Timer:
    """A timer _ClockLoop hands out: it knows when it was due and never fires by itself."""

    def __init__(self, when):
        self._when = when

    def when(self):
        return self._when

    def cancel(self):
        pass


class _ClockLoop:
    """The event loop as a _Connection sees it, with a clock the test drives and timers it
    only records (patching a real loop's time() would not move uvloop's timers)."""

    def __init__(self, loop, now):
        self.loop = loop
        self.now = now

    def time(self):
        return self.now

    def create_future(self):
        return self.loop.create_future()

    def call_soon(self, callback, *args):
        return self.loop.call_soon(callback, *args)

    def call_at(self, when, callback, *args):
        return _Timer(when)

    def call_later(self, delay, callback, *args):
        return _Timer(self.now + delay)


def test_async_watchdog_expires_only_the_calls_that_waited_the_whole_timeout():
    # One timer per connection: when the oldest call has waited `timeout`, it fails with a
    # timeout and the connection is dropped; younger calls fail as lost (the client sends
    # them again on a fresh connection). Time is the loop's clock, driven by the test.
    from sluice._resp import encode
    from sluice.aio import _Connection, _Lost

    async def scenario():
        loop = _ClockLoop(asyncio.get_running_loop(), 1000.0)
        connection = _Connection(loop, 0.1)
        transport = _RecordingTransport()
        connection.connection_made(transport)
        old = connection.request(encode(("PING",)))
        assert connection.watchdog.when() == pytest.approx(1000.1)
        loop.now += 0.06
        young = connection.request(encode(("PING",)))
        connection._watch()  # nothing has waited 0.1 s yet: checks again when one has
        assert connection.watchdog is not None
        assert connection.watchdog.when() == pytest.approx(1000.1)
        assert not old.done() and not transport.aborted
        loop.now += 0.05
        connection._watch()
        assert isinstance(old.exception(), asyncio.TimeoutError)
        assert isinstance(young.exception(), _Lost)
        assert transport.aborted and connection.lost

    asyncio.run(scenario())


def test_async_timeout_fails_open_only_the_call_that_timed_out(sock):
    # Behind a call whose reply never comes, a later call on the same connection is sent
    # again on a fresh one and answered by the daemon, not failed open.
    def hang_once(args):
        if args[2] == "slow":
            return HANG
        time.sleep(0.01)
        return ALLOW

    async def scenario():
        async with AsyncSluiceClient(sock, timeout=0.2, on_unavailable="open") as c:
            slow = asyncio.ensure_future(c.check("predict", "slow"))
            await asyncio.sleep(0.15)
            fast = await c.check("predict", "fast")
            assert (await slow).unavailable
            assert fast.allowed and not fast.unavailable

    with FakeSluiced(sock, hang_once) as fake:
        asyncio.run(scenario())
    assert len(fake.connections) == 2


def test_the_event_loop_is_the_one_asked_for():
    """SLUICE_TEST_LOOP=uvloop (ctest's python_client_uvloop) must really run these tests on
    uvloop: the async client once failed there only (its transport is no asyncio.Transport)."""
    async def loop_type():
        return type(asyncio.get_running_loop())

    running = asyncio.run(loop_type())
    if os.environ.get("SLUICE_TEST_LOOP", "asyncio") == "uvloop":
        import uvloop
        assert running is uvloop.Loop
    else:
        assert running.__module__.startswith("asyncio")
