"""Local grants: the bookkeeping on a simulated clock, the client against a scripted server
(what it sends, when it decides alone, what it gives back), and two clients against a real
sluiced admitting exactly what the limit allows and giving back what they did not use."""

import asyncio
import threading

import pytest

from fake_sluiced import Error, FakeSluiced
from sluice import AsyncSluiceClient, Decision, LimitState, LocalGrants, SluiceClient
from sluice.grants import Grant, GrantBook, grant_expiry, least_remaining

KEY = ("predict", "alice", None, None, 1)


def decision(remaining=10_000, reset_ms=30_000, allowed=True, limits=None):
    if limits is None:
        limits = (LimitState("per_minute", 100_000, remaining, reset_ms, 60_000),)
    return Decision(allowed=allowed, limit=100_000, remaining=remaining, reset_after_ms=reset_ms,
                    retry_after_ms=0 if allowed else 5, rule="per_minute", resource="predict",
                    limits=limits)


# -- the book, on a simulated clock -----------------------------------------------------------

def test_a_grant_needs_a_known_headroom_and_a_rate():
    book = GrantBook(LocalGrants(ttl=0.25))
    assert book.take(KEY, 0.0) is None
    assert book.size(KEY) == 0  # nothing known of the limits yet
    book.noted(KEY, decision(remaining=10_000))
    assert book.size(KEY) == 1  # one request seen: no grant
    book.take(KEY, 0.01)
    assert book.size(KEY) == 2
    for t in range(10):
        book.take(KEY, 0.02 + t / 1000)
    assert book.size(KEY) == 12  # the requests of this period


@pytest.mark.parametrize("remaining,cost,share,max_requests,seen,expected", [
    (10_000, 1, 16, 256, 300, 256),   # the largest grant
    (10_000, 1, 16, 1_000, 1_000, 625),  # a sixteenth of what is left
    (10_000, 4, 16, 1_000, 1_000, 156),  # ... in requests of cost 4
    (31, 1, 16, 256, 300, 1),         # near the limit: decided alone
    (0, 1, 16, 256, 300, 0),          # nothing left / a denial / unknown
    (10_000, 1, 1, 256, 40, 40),      # the rate bounds it
])
def test_grant_size(remaining, cost, share, max_requests, seen, expected):
    key = KEY[:4] + (cost,)
    book = GrantBook(LocalGrants(share=share, max_requests=max_requests))
    for i in range(seen):
        book.take(key, i * 1e-5)
    book.noted(key, decision(remaining=remaining))
    assert book.size(key) == expected


def test_a_grant_asked_ahead_takes_what_its_life_will_use():
    # Its ttl runs from when it is taken, but it is used only once the current grant runs
    # out: it takes the caller's rate less what the current grant still holds.
    book = GrantBook(LocalGrants(share=1))
    for i in range(100):
        book.take(KEY, i * 1e-4)
    book.noted(KEY, decision(remaining=100_000))
    assert book.size(KEY) == 100
    book.granted(KEY, Grant("a", 60, expires=1.0, decision=decision(), cost=1, used=0))
    for i in range(20):
        book.take(KEY, 0.02)  # 20 of 60 used, 40 left
    assert book.size(KEY) == 120 - 40  # 120 requests this period, 40 of them still granted
    for i in range(39):
        book.take(KEY, 0.02)
    assert book.size(KEY) == 159 - 1
    book.take(KEY, 0.02)  # "a" is used up: a grant asked now is used at once
    assert book.size(KEY) == 160


def test_the_rate_is_that_of_the_last_ttl():
    book = GrantBook(LocalGrants(ttl=0.25))
    book.noted(KEY, decision()) if book.take(KEY, 0.0) is None else None
    for i in range(49):
        book.take(KEY, 0.001 * (i + 1))
    assert book.size(KEY) == 50
    book.take(KEY, 0.3)  # a new period: the last one's 50 still count
    assert book.size(KEY) == 50
    book.take(KEY, 0.9)  # after a quiet period, only what is seen now
    assert book.size(KEY) == 1


def test_a_grant_admits_its_size_until_it_expires():
    book = GrantBook(LocalGrants(ttl=0.25))
    book.take(KEY, 0.0)
    d = decision()
    book.granted(KEY, Grant("lease", 3, expires=0.25, decision=d, cost=1))
    assert book.take(KEY, 0.01) is d
    assert book.take(KEY, 0.02) is d
    assert book.take(KEY, 0.03) is None  # 3 used: the one that took it and two more
    book.granted(KEY, Grant("lease2", 10, expires=0.25, decision=d, cost=1))
    assert book.take(KEY, 0.249) is d
    assert book.take(KEY, 0.25) is None  # expired
    # Both are held until the client's timer ends them (and gives back the unused part).
    assert [g.lease for _, g in book.outstanding()] == ["lease", "lease2"]
    for key, grant in book.outstanding():
        book.ended(key, grant)
    assert book.outstanding() == []


def test_the_next_grant_is_asked_for_ahead_only_far_from_the_limit():
    book = GrantBook(LocalGrants(share=16))
    book.take(KEY, 0.0)
    book.noted(KEY, decision(remaining=16 * 4 * 8))  # far: 4 x 16 x the grant's 8
    book.granted(KEY, Grant("a", 8, expires=1.0, decision=decision(), cost=1))
    book.take(KEY, 0.01)
    book.take(KEY, 0.01)
    assert book.wanted == []  # 3 of 8 used
    book.take(KEY, 0.01)
    assert book.wanted == [KEY]  # half used: the next one is asked for
    book.wanted.clear()
    book.take(KEY, 0.01)
    book.take(KEY, 0.01)
    assert book.wanted == []  # asked for once
    book.granted(KEY, Grant("b", 8, expires=1.0, decision=decision(), cost=1, used=0))
    book.take(KEY, 0.02)
    book.take(KEY, 0.02)
    d = book.take(KEY, 0.02)  # "a" is used up: "b" takes over
    assert d is not None and book.states[KEY].grant.lease == "b"
    book.noted(KEY, decision(remaining=16 * 4 * 8 - 1))  # near: nothing asked ahead
    for i in range(6):
        book.take(KEY, 0.03)
    assert book.wanted == []


def test_a_pending_grant_is_not_asked_for_twice():
    book = GrantBook(LocalGrants())
    for i in range(5):
        book.take(KEY, i * 1e-3)
    book.noted(KEY, decision())
    assert book.size(KEY) == 5
    asked = asyncio.new_event_loop().create_future()
    book.asking(KEY, asked)
    assert book.size(KEY) == 0 and book.pending(KEY) is asked
    book.asking(KEY, None)
    assert book.size(KEY) == 5 and book.pending(KEY) is None


def test_no_headroom_from_what_is_not_a_limits_answer():
    assert least_remaining(decision(remaining=7)) == 7
    assert least_remaining(decision(allowed=False)) == 0
    two = (LimitState("a", 100, 80, 1_000, 60_000), LimitState("b", 10, 3, 1_000, 1_000))
    assert least_remaining(decision(limits=two)) == 3
    assert least_remaining(Decision(True, -1, -1, 0, 0, "unlimited")) == 0
    assert least_remaining(Decision(True, -1, -1, 0, 0, "", unavailable=True)) == 0


@pytest.mark.parametrize("resets,expected", [
    ((30_000,), 0.25),      # the window ends later than the grant
    ((100,), 0.1),          # the window ends first: no grant spills into the next one
    ((30_000, 40), 0.04),   # the soonest of the limits
    ((0,), 0.25),           # a limit that is full now
])
def test_a_grant_ends_with_the_first_window(resets, expected):
    limits = tuple(LimitState(f"l{i}", 100, 50, r, 60_000) for i, r in enumerate(resets))
    assert grant_expiry(10.0, 0.25, decision(limits=limits)) == pytest.approx(10.0 + expected)


def test_idle_kinds_are_forgotten_to_make_room():
    book = GrantBook(LocalGrants(max_keys=2))
    book.take(("a",) + KEY[1:], 0.0)
    book.take(("b",) + KEY[1:], 0.0)
    book.granted(("b",) + KEY[1:], Grant("l", 10, expires=5.0, decision=decision(), cost=1))
    book.take(("c",) + KEY[1:], 1.0)  # "a" had no grant: forgotten
    assert set(k[0] for k in book.states) == {"b", "c"}
    book.granted(("c",) + KEY[1:], Grant("l", 10, expires=5.0, decision=decision(), cost=1))
    assert book.take(("d",) + KEY[1:], 1.0) is None  # no room: decided without a grant
    assert set(k[0] for k in book.states) == {"b", "c"}
    assert book.take(("d",) + KEY[1:], 6.0) is None  # the grants expired: room again
    assert set(k[0] for k in book.states) == {"d"}


@pytest.mark.parametrize("options,message", [
    ({"ttl": 0}, "ttl must be"),
    ({"ttl": 120}, "ttl must be"),
    ({"max_requests": 1}, "max_requests must be an integer >= 2"),
    ({"share": 0}, "share must be"),
    ({"max_keys": True}, "max_keys must be"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        LocalGrants(**options)


def test_grants_take_only_local_grants(tmp_path):
    with pytest.raises(ValueError, match="grants must be a LocalGrants"):
        AsyncSluiceClient(str(tmp_path / "s"), grants={"ttl": 1})


# -- the client, against a scripted server ----------------------------------------------------

def reply(remaining, allowed=1, lease="", reset_ms=30_000):
    limits = [["per_minute", 100_000, remaining, reset_ms, 60_000]]
    if lease is None:
        return [allowed, 100_000, remaining, reset_ms, 0 if allowed else 500, "per_minute",
                "free", 60_000, limits]
    return [allowed, 100_000, remaining, reset_ms, 0 if allowed else 500, "per_minute",
            lease, 500 if lease else 0, "free", 60_000, limits]


class Ledger:
    """A server keeping one limit: SL.CHECK takes 1, SL.ACQUIRE `COST requests k` takes k,
    SL.RELEASE ... ACTUAL requests m gives back k - m."""

    def __init__(self, limit, deny_grants=False):
        self.left = limit
        self.deny_grants = deny_grants
        self.leases = {}
        self.issued = 0

    def __call__(self, args):
        if args[0] == "SL.CHECK":
            if self.left < 1:
                return reply(0, allowed=0, lease=None)
            self.left -= 1
            return reply(self.left, lease=None)
        if args[0] == "SL.ACQUIRE":
            k = int(args[args.index("requests") + 1])
            if self.deny_grants or k > self.left:
                return reply(self.left, allowed=0, lease="")
            self.left -= k
            self.issued += 1
            lease = f"lease{self.issued}"  # never a name still in use
            self.leases[lease] = k
            return reply(self.left, lease=lease)
        if args[0] == "SL.RELEASE":
            k = self.leases.pop(args[1], None)
            if k is None:
                return Error("NOLEASE unknown or expired lease")
            self.left += k - int(args[args.index("requests") + 1])
            return 1
        return Error(f"ERR unexpected {args}")


def run_checks(sock, respond, batches, options=LocalGrants(ttl=30), after=None):
    """Runs `batches` (numbers of concurrent checks, one batch after another) through one
    client with grants; returns (decisions, commands)."""
    async def main():
        client = AsyncSluiceClient(sock, on_unavailable="raise", grants=options)
        decisions = []
        for n in batches:
            decisions += await asyncio.gather(*(client.check("predict", "alice")
                                                for _ in range(n)))
        if after is not None:
            await after(client)
        await client.close()
        return decisions

    with FakeSluiced(sock, respond) as fake:
        decisions = asyncio.run(main())
    return decisions, fake.commands


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "s.sock")


def test_a_busy_caller_is_admitted_from_grants(sock):
    ledger = Ledger(100_000)
    decisions, commands = run_checks(sock, ledger, [1, 1, 20, 20, 20])
    assert all(d.allowed for d in decisions) and len(decisions) == 62
    kinds = [c[0] for c in commands]
    # Alone until a rate is seen (a second request), then grants: far fewer commands.
    assert kinds[0] == "SL.CHECK"
    assert "SL.ACQUIRE" in kinds and len(commands) <= 12  # for 62 requests
    grant = next(c for c in commands if c[0] == "SL.ACQUIRE")
    assert grant[grant.index("requests") - 1:] == ["COST", "requests", grant[-3], "TTL", "60000"]
    # Closing gave back what was not used: the ledger counts exactly the 62 admitted.
    assert ledger.left == 100_000 - 62
    assert kinds[-1] == "SL.RELEASE"


def test_one_client_on_two_event_loops_keeps_a_book_for_each(sock):
    # The class keeps a connection per event loop; its grants follow (a grant's lease, timer
    # and waiting requests belong to one loop).
    ledger = Ledger(100_000)
    client = AsyncSluiceClient(sock, on_unavailable="raise", grants=LocalGrants(ttl=30))
    admitted, books = [0, 0], [None, None]

    def worker(i):
        async def main():
            for _ in range(10):
                batch = await asyncio.gather(*(client.check("predict", "alice")
                                               for _ in range(20)))
                admitted[i] += sum(d.allowed for d in batch)
            books[i] = client.grants
            await client.close()
        asyncio.run(main())

    with FakeSluiced(sock, ledger) as fake:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert admitted == [200, 200]
    assert books[0] is not None and books[1] is not None and books[0] is not books[1]
    assert any(c[0] == "SL.ACQUIRE" for c in fake.commands)
    assert ledger.left == 100_000 - 400  # each loop gave back what its grants did not use
    assert client.grants is None  # no loop runs here


def test_near_the_limit_every_request_is_decided_alone(sock):
    ledger = Ledger(30)  # a sixteenth of 30 is 1: never a grant
    decisions, commands = run_checks(sock, ledger, [10, 10, 15])
    assert [c[0] for c in commands] == ["SL.CHECK"] * 35
    assert sum(d.allowed for d in decisions) == 30
    assert ledger.left == 0


def test_a_grant_that_does_not_fit_leaves_the_request_alone(sock):
    ledger = Ledger(100_000, deny_grants=True)
    decisions, commands = run_checks(sock, ledger, [1, 1, 5])
    assert all(d.allowed for d in decisions)
    kinds = [c[0] for c in commands]
    # The denied grant, then that request alone; never admitted without sluiced's yes.
    assert kinds.count("SL.ACQUIRE") >= 1
    acquire = kinds.index("SL.ACQUIRE")
    assert kinds[acquire + 1] == "SL.CHECK"
    assert ledger.left == 100_000 - 7


def test_an_expired_grant_admits_nothing_and_gives_back_the_rest(sock):
    ledger = Ledger(100_000)

    async def expire_all(client):
        book = client.grants
        for key, grant in book.outstanding():
            grant.expires = 0.0  # as if its time were up
            client._grant_ended(key, grant)  # what the loop's timer does then
        await asyncio.gather(*client._settling)
        assert book.outstanding() == []
        released = ledger.left
        assert released == 100_000 - 32  # what the 32 requests so far used, no more
        d = await client.check("predict", "alice")  # decided by sluiced again
        assert d.allowed and ledger.left < released

    decisions, commands = run_checks(sock, ledger, [1, 1, 30], after=expire_all)
    releases = [c for c in commands if c[0] == "SL.RELEASE"]
    assert releases and releases[0][2:4] == ["ACTUAL", str(int(releases[0][-1]))]
    assert ledger.left == 100_000 - 33  # and the last one, once the client closed


def test_an_error_about_the_request_is_raised(sock):
    def respond(args):  # the first check passes; then the tier is gone (a policy change)
        if commands_seen:
            return Error("WRONGARGS unknown tier")
        commands_seen.append(args)
        return reply(50_000, lease=None)

    commands_seen = []
    with pytest.raises(Exception, match="unknown tier"):
        run_checks(sock, respond, [1, 1])  # the grant is refused, and the request alone too


def test_a_sluiced_refusing_grants_turns_them_off(sock, caplog):
    def respond(args):
        if args[0] == "SL.ACQUIRE":  # e.g. lease_ttl_max below the grant's TTL
            return Error("WRONGARGS TTL must be 1 to 100")
        return reply(50_000, lease=None)

    decisions, commands = run_checks(sock, respond, [1, 1, 10, 10])
    assert all(d.allowed for d in decisions) and len(decisions) == 22
    kinds = [c[0] for c in commands]
    assert kinds.count("SL.ACQUIRE") == 1 and kinds.count("SL.CHECK") == 22
    assert "local grants are off" in caplog.text


# -- two clients against sluiced: exact, and nothing kept -------------------------------------

POLICY = """\
version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_hour, algorithm: fixed_window, limit: 2000, window: 1h}
      - {name: bucket, algorithm: token_bucket, limit: 5000, window: 1h}
"""


def test_two_clients_with_grants_admit_exactly_the_limit(workdir):
    from conftest import Sluiced

    policy = workdir / "grants.yaml"
    policy.write_text(POLICY)
    daemon = Sluiced(workdir, policy=policy).start()
    try:
        admitted = [0, 0]
        sent = [0, 0]

        def worker(i):
            async def main():
                client = AsyncSluiceClient(daemon.socket, on_unavailable="raise",
                                           grants=LocalGrants(ttl=5))
                for _ in range(30):
                    batch = await asyncio.gather(*(client.check("predict", "alice")
                                                   for _ in range(50)))
                    sent[i] += len(batch)
                    admitted[i] += sum(d.allowed for d in batch)
                await client.close()
            asyncio.run(main())

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(sent) == 3000
        # Never more than the limit; grants near it are small, so hardly fewer either.
        assert sum(admitted) <= 2000
        assert sum(admitted) >= 1990
        with SluiceClient(daemon.socket, on_unavailable="raise") as client:
            peek = client.peek("predict", "alice")
            stats_left = {limit.name: limit.remaining for limit in peek.limits}
        # What the limits counted is what was admitted: every unused grant was given back.
        assert stats_left["per_hour"] == max(0, 2000 - sum(admitted) - 1)  # after one more
        assert stats_left["bucket"] >= 5000 - sum(admitted) - 1 - 5
    finally:
        daemon.stop()
