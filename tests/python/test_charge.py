"""Named costs, SL.CHARGE and SL.RELEASE ACTUAL per unit, for the blocking and the asyncio
client, against the scripted server: the exact commands sent, the replies read, what a lease
counts as charged, and the arguments refused before anything is sent."""

import asyncio
import inspect

import pytest

from fake_sluiced import Error, FakeSluiced, TokenLedger
from sluice import AsyncSluiceClient, LeaseNotFound, SluiceClient

ALLOW = [1, 100, 40, 60_000, 0, "out", "free", 60_000, [["out", 100, 40, 60_000, 60_000]]]
REFUSE = [0, 100, 0, 60_000, 9_000, "out", "free", 60_000, [["out", 100, 0, 60_000, 60_000]]]
LEASE = ALLOW[:6] + ["lease-1", 60_000] + ALLOW[6:]

KINDS = ["sync", "async"]


async def done(value):
    """The value of a sync call, or of an async call once awaited: one scenario serves both
    clients (the blocking one blocks this loop, which the threaded fake does not mind)."""
    return await value if inspect.isawaitable(value) else value


def run(kind, sock, scenario, **options):
    async def main():
        if kind == "sync":
            with SluiceClient(sock, **options) as client:
                return await scenario(client)
        async with AsyncSluiceClient(sock, **options) as client:
            return await scenario(client)

    return asyncio.run(main())


def by_command(replies):
    def respond(args):
        reply = replies[args[0]]
        return reply(args) if callable(reply) else reply
    return respond


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "s.sock")


@pytest.mark.parametrize("kind", KINDS)
def test_named_costs_are_sent_after_the_bare_cost_and_only_when_given(sock, kind):
    async def scenario(client):
        await done(client.check("generate", "u", costs={"input_tokens": 120,
                                                         "output_tokens": 512}))
        await done(client.check("generate", "u", cost=1, costs={"items": 3}))
        await done(client.peek("generate", "u", costs={"output_tokens": 0}))
        await done(client.check("generate", "u", costs={}))  # nothing named: as without
        lease = await done(client.acquire("generate", "u", ttl_ms=5_000,
                                          costs={"input_tokens": 7, "output_tokens": 64}))
        assert lease.id == "lease-1" and lease.decision.remaining == 40

    replies = {"SL.CHECK": ALLOW, "SL.PEEK": ALLOW, "SL.ACQUIRE": LEASE}
    with FakeSluiced(sock, by_command(replies)) as fake:
        run(kind, sock, scenario)
    assert fake.commands == [
        ["SL.CHECK", "generate", "u", "COST", "input_tokens", "120", "COST", "output_tokens",
         "512"],
        ["SL.CHECK", "generate", "u", "COST", "1", "COST", "items", "3"],
        ["SL.PEEK", "generate", "u", "COST", "output_tokens", "0"],
        ["SL.CHECK", "generate", "u"],
        ["SL.ACQUIRE", "generate", "u", "COST", "input_tokens", "7", "COST", "output_tokens",
         "64", "TTL", "5000"],
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_charge_sends_units_reads_the_decision_and_counts_what_was_allowed(sock, kind):
    charges = iter([ALLOW, ALLOW, REFUSE, ALLOW])

    async def scenario(client):
        lease = await done(client.acquire("generate", "u", costs={"output_tokens": 64}))
        first = await done(lease.charge(costs={"output_tokens": 30}))
        assert first.allowed and first.remaining == 40 and first.resource == "generate"
        assert first.limits[0].name == "out"
        await done(lease.charge(5))
        refused = await done(lease.charge(costs={"output_tokens": 50, "input_tokens": 1}))
        assert not refused.allowed and refused.retry_after_ms == 9_000
        by_id = await done(client.charge("lease-1", costs={"output_tokens": 2}))
        assert by_id.allowed and by_id.resource == ""
        # The refused 50 is not usage; a charge by id does not know the lease object.
        assert lease.charged == {"output_tokens": 30} and lease.charged_cost == 5
        assert await done(lease.release(actual_costs={"output_tokens": 37})) is True
        assert await done(lease.release()) is False  # once

    replies = {"SL.ACQUIRE": LEASE, "SL.CHARGE": lambda args: next(charges), "SL.RELEASE": 1}
    with FakeSluiced(sock, by_command(replies)) as fake:
        run(kind, sock, scenario)
    assert fake.commands[1:] == [
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "30"],
        ["SL.CHARGE", "lease-1", "5"],
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "50", "COST", "input_tokens", "1"],
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "2"],
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "37"],
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_release_sends_bare_and_named_actual_costs(sock, kind):
    async def scenario(client):
        await done(client.release("lease-9", 3, actual_costs={"input_tokens": 10,
                                                              "output_tokens": 0}))
        lease = await done(client.acquire("generate", "u", costs={"output_tokens": 64}))
        lease.actual_costs = {"output_tokens": 12}
        if kind == "sync":
            with lease:
                pass
        else:
            async with lease:
                pass

    with FakeSluiced(sock, by_command({"SL.ACQUIRE": LEASE, "SL.RELEASE": 1})) as fake:
        run(kind, sock, scenario)
    assert fake.commands == [
        ["SL.RELEASE", "lease-9", "ACTUAL", "3", "ACTUAL", "input_tokens", "10", "ACTUAL",
         "output_tokens", "0"],
        ["SL.ACQUIRE", "generate", "u", "COST", "output_tokens", "64"],
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "12"],
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_the_ledger_refuses_charges_past_the_budget_and_settles_at_usage(sock, kind):
    # 100 output tokens: 60 reserved, 90 used (30 beyond the estimate), 20 more refused.
    ledger = TokenLedger(limit=100)

    async def scenario(client):
        lease = await done(client.acquire("generate", "u", costs={"input_tokens": 5,
                                                                  "output_tokens": 60}))
        assert (await done(lease.charge(costs={"output_tokens": 50}))).remaining == 40
        assert (await done(lease.charge(costs={"output_tokens": 40}))).remaining == 10
        refused = await done(lease.charge(costs={"output_tokens": 20}))
        assert not refused.allowed and refused.remaining == 10
        assert lease.charged == {"output_tokens": 90}
        await done(lease.release())  # no ACTUAL: the engine settles at the usage

    with FakeSluiced(sock, ledger):
        run(kind, sock, scenario)
    assert ledger.settled == [("lease-1", 90)] and ledger.remaining == 10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call, message", [
    (lambda c: c.check("g", "u", costs={"Output": 1}), "lower-case identifier"),
    (lambda c: c.check("g", "u", costs={"1x": 1}), "lower-case identifier"),
    (lambda c: c.check("g", "u", costs={"out-put": 1}), "lower-case identifier"),
    (lambda c: c.check("g", "u", costs={"": 1}), "lower-case identifier"),
    (lambda c: c.check("g", "u", costs={3: 1}), "lower-case identifier"),
    (lambda c: c.check("g", "u", costs={"out": -1}), r"costs\['out'\] must be an integer from 0"),
    (lambda c: c.check("g", "u", costs={"out": 10**12 + 1}), "from 0 to 10\\^12"),
    (lambda c: c.check("g", "u", costs={"out": 1.5}), "must be an integer"),
    (lambda c: c.check("g", "u", costs={"out": True}), "must be an integer"),
    (lambda c: c.check("g", "u", costs={f"u{i}": 1 for i in range(9)}), "at most 8 units"),
    (lambda c: c.check("g", "u", costs=[("out", 1)]), "must be a mapping"),
    (lambda c: c.check("g", "u", cost=10**12 + 1), "cost must be an integer from 1"),
    (lambda c: c.acquire("g", "u", cost=0, costs={"out": 1}), "cost must be an integer from 1"),
    (lambda c: c.charge("lease-1"), "needs n"),
    (lambda c: c.charge("lease-1", 1, costs={"out": 1}), "not both"),
    (lambda c: c.charge("lease-1", costs={}), "at least one unit"),
    (lambda c: c.charge("lease-1", -1), "n must be an integer from 0"),
    (lambda c: c.charge("", 1), "lease id"),
    (lambda c: c.release("lease-1", actual_costs={"out": -2}), "actual_costs"),
    (lambda c: c.release("lease-1", actual=10**13), "actual must be an integer from 0"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(sock, kind, call, message):
    async def scenario(client):
        with pytest.raises(ValueError, match=message):
            await done(call(client))

    with FakeSluiced(sock, lambda args: 1) as fake:
        run(kind, sock, scenario)
    assert fake.commands == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_lease_refuses_charges_it_cannot_take(sock, kind):
    denied = REFUSE[:6] + ["", 0] + REFUSE[6:]
    replies = iter([denied, LEASE])

    async def scenario(client):
        lease = await done(client.acquire("generate", "u", costs={"output_tokens": 500}))
        with pytest.raises(ValueError, match="denied lease"):
            await done(lease.charge(1))
        lease = await done(client.acquire("generate", "u", costs={"output_tokens": 5}))
        with pytest.raises(ValueError):
            await done(lease.release(actual_costs={"Bad": 1}))
        assert not lease.released  # a refused argument leaves the lease held
        await done(lease.release())
        with pytest.raises(LeaseNotFound):
            await done(lease.charge(1))  # released: not sent

    def respond(args):
        return next(replies) if args[0] == "SL.ACQUIRE" else 1

    with FakeSluiced(sock, respond) as fake:
        run(kind, sock, scenario)
    assert [c[0] for c in fake.commands] == ["SL.ACQUIRE", "SL.ACQUIRE", "SL.RELEASE"]


@pytest.mark.parametrize("kind", KINDS)
def test_charging_an_expired_lease_raises_lease_not_found(sock, kind):
    async def scenario(client):
        with pytest.raises(LeaseNotFound) as info:
            await done(client.charge("lease-gone", costs={"output_tokens": 1}))
        assert info.value.message == "unknown or expired lease"

    with FakeSluiced(sock, lambda args: Error("NOLEASE unknown or expired lease")):
        run(kind, sock, scenario)


@pytest.mark.parametrize("kind", KINDS)
def test_without_sluiced_charges_follow_on_unavailable(tmp_path, kind):
    missing = str(tmp_path / "missing.sock")

    async def scenario(client):
        # Fail open: the lease has no engine id; its charges are allowed without asking and
        # still counted, so the stream's usage is known.
        lease = await done(client.acquire("generate", "u", costs={"output_tokens": 10}))
        assert lease.allowed and lease.id == ""
        decision = await done(lease.charge(costs={"output_tokens": 4}))
        assert decision.allowed and decision.unavailable
        assert lease.charged == {"output_tokens": 4}
        assert await done(lease.release(actual_costs={"output_tokens": 4})) is False
        return await done(client.charge("lease-1", costs={"output_tokens": 1}))

    assert run(kind, missing, scenario).allowed
    closed = run(kind, missing, lambda c: done(c.charge("lease-1", 1)), on_unavailable="closed",
                 unavailable_retry_after_ms=2_000)
    assert not closed.allowed and closed.unavailable and closed.retry_after_ms == 2_000
