"""sluice.fastapi.TokenStream against the scripted server's TokenLedger: a denial is a 429
before any byte; each chunk is charged before it is sent; a refused charge ends the stream
with an error event and stops the generator; and the lease is released exactly once, at the
tokens streamed, on completion, on a client disconnect and when the request task is cancelled.
Disconnect and cancellation drive the ASGI app directly, so the test decides when the client
goes away."""

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from fake_sluiced import Error, FakeSluiced, TokenLedger
from sluice import AsyncSluiceClient
from sluice.fastapi import TokenStream, header, stream_tokens
from sluice.streaming import sse_event


class Model:
    """A stand-in model: yields ``pieces`` (one token per character) and records how far it
    got and whether it was closed. With ``stall_after`` it stops producing after that many
    pieces, as a model that is still thinking when the client leaves."""

    def __init__(self, pieces, stall_after=None, fail_after=None):
        self.pieces = pieces
        self.stall_after = stall_after
        self.fail_after = fail_after
        self.produced = 0
        self.closed = False

    async def generate(self):
        try:
            for piece in self.pieces:
                if self.produced == self.stall_after:
                    await asyncio.get_running_loop().create_future()  # never resolved
                if self.produced == self.fail_after:
                    raise RuntimeError("the model crashed")
                self.produced += 1
                yield piece
        finally:
            self.closed = True


class Upstream:
    """An async iterable that is not a generator (say, an HTTP stream from a model server):
    it must be closed whether or not it was iterated."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.closed = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.pieces:
            raise StopAsyncIteration
        return self.pieces.pop(0)

    async def aclose(self):
        self.closed = True


def openai_delta(piece):
    return {"choices": [{"delta": {"content": piece}}]}


def build_app(sock, model, on_unavailable="open", **options):
    app = FastAPI()
    client = AsyncSluiceClient(sock, on_unavailable=on_unavailable)
    stream = TokenStream("generate", client=client, subject=header("X-User"),
                         x_ratelimit_headers=True, **options)

    @app.post("/generate")
    async def generate(body: dict, request: Request):
        chunks = model if isinstance(model, Upstream) else model.generate()
        return await stream(request, chunks, input_tokens=len(body["prompt"]),
                            max_output_tokens=body["max_tokens"], count=len,
                            render=openai_delta, done="[DONE]")

    return app


def events(text):
    """The SSE events of a body as (event name or None, data) pairs."""
    parsed = []
    for block in text.strip("\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        parsed.append((name, "\n".join(data)))
    return parsed


def releases(fake):
    return [c for c in fake.commands if c[0] == "SL.RELEASE"]


BODY = {"prompt": "hi!", "max_tokens": 10}
USER = {"X-User": "u"}


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "s.sock")


def test_completion_charges_each_chunk_before_sending_it_and_settles_once(sock):
    ledger = TokenLedger(limit=1_000)
    model = Model(["", "Hel", "lo", " world"])  # an empty first delta costs nothing
    with FakeSluiced(sock, ledger) as fake, TestClient(build_app(sock, model)) as http:
        response = http.post("/generate", json=BODY, headers=USER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    # The fields describe the reservation: 10 output tokens of 1000.
    assert response.headers["x-ratelimit-remaining-tokens"] == "990"
    assert 'sluice-unit="tokens"' in response.headers["ratelimit-policy"]
    assert response.text == (
        'data: {"choices":[{"delta":{"content":""}}]}\n\n'
        'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
        'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
        'data: {"choices":[{"delta":{"content":" world"}}]}\n\n'
        'data: [DONE]\n\n')
    assert fake.commands == [
        ["SL.ACQUIRE", "generate", "u", "COST", "input_tokens", "3", "COST", "output_tokens",
         "10"],
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "3"],
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "2"],
        ["SL.CHARGE", "lease-1", "COST", "output_tokens", "6"],
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "11"],
    ]
    # 11 tokens streamed against a reservation of 10: the eleventh came from the budget.
    assert ledger.remaining == 1_000 - 11 and model.closed


def test_a_denied_reservation_is_a_429_before_any_byte(sock):
    ledger = TokenLedger(limit=100, retry_after_ms=7_000)
    model = Upstream(["never"])
    with FakeSluiced(sock, ledger) as fake, TestClient(build_app(sock, model)) as http:
        response = http.post("/generate", json={"prompt": "x", "max_tokens": 500},
                             headers=USER)
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "7"
    assert response.headers["ratelimit"] == '"output_tokens_per_minute";r=100;t=7'
    assert response.json()["detail"]["error"] == "rate_limited"
    assert response.json()["detail"]["rule"] == "output_tokens_per_minute"
    assert [c[0] for c in fake.commands] == ["SL.ACQUIRE"]
    assert model.pieces == ["never"] and model.closed  # not read, but let go


def test_a_refused_charge_ends_the_stream_with_an_error_event_and_stops_the_model(sock):
    # 30 tokens in all, 10 reserved: 8 + 8 + 8 pass (24), the fourth 8 would need 32.
    ledger = TokenLedger(limit=30, retry_after_ms=12_500)
    model = Model(["aaaaaaaa"] * 10)
    with FakeSluiced(sock, ledger) as fake, TestClient(build_app(sock, model)) as http:
        response = http.post("/generate", json=BODY, headers=USER)
    assert response.status_code == 200
    sent = events(response.text)
    assert [name for name, _ in sent] == [None, None, None, "error"]
    assert json.loads(sent[-1][1]) == {"error": {
        "type": "rate_limited", "message": "Token limit reached while streaming",
        "resource": "generate", "rule": "output_tokens_per_minute", "limit": 30,
        "remaining": 6, "retry_after_seconds": 13, "usage": {"output_tokens": 24}}}
    assert "[DONE]" not in response.text
    # The refused chunk was the last one pulled: the model was closed, not drained.
    assert model.produced == 4 and model.closed
    assert [c[0] for c in fake.commands].count("SL.CHARGE") == 4
    assert releases(fake) == [["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "24"]]
    assert ledger.remaining == 30 - 24


@pytest.mark.parametrize("charge_reply, kind", [
    (Error("NOLEASE unknown or expired lease"), "rate_limit_lease_expired"),
    (Error("STORAGE the plugin failed"), "rate_limiter_error"),
    ([0, 0, 0, 0, 1_000, "(storage)", "free", 0, []], "rate_limiter_unavailable"),
])
def test_a_charge_sluiced_cannot_answer_ends_the_stream_with_its_reason(sock, charge_reply,
                                                                        kind):
    ledger = TokenLedger(limit=1_000)
    model = Upstream(["ab", "cd", "ef"])
    charges = iter([None, charge_reply])

    def respond(args):
        reply = next(charges) if args[0] == "SL.CHARGE" else None
        return ledger(args) if reply is None else reply

    with FakeSluiced(sock, respond) as fake, TestClient(build_app(sock, model)) as http:
        response = http.post("/generate", json=BODY, headers=USER)
    sent = events(response.text)
    assert [name for name, _ in sent] == [None, "error"]
    error = json.loads(sent[-1][1])["error"]
    assert error["type"] == kind and error["usage"] == {"output_tokens": 2}
    assert model.closed and model.pieces == ["ef"]
    assert releases(fake) == [["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "2"]]


def test_stream_tokens_function_and_a_failing_model_still_settle(sock):
    ledger = TokenLedger(limit=1_000)
    model = Model(["ab", "cd", "ef"], fail_after=2)
    app = FastAPI()
    client = AsyncSluiceClient(sock)

    @app.post("/generate")
    async def generate(request: Request):
        return await stream_tokens(request, "generate", model.generate(), client=client,
                                   max_output_tokens=10, count=len)

    with FakeSluiced(sock, ledger) as fake, \
            TestClient(app, raise_server_exceptions=False) as http:
        response = http.post("/generate")  # broke off after it started
    assert "[DONE]" not in response.text
    assert releases(fake) == [["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "4"]]
    assert fake.commands[0] == ["SL.ACQUIRE", "generate", "testclient", "COST", "input_tokens",
                                "0", "COST", "output_tokens", "10"]
    assert model.closed


@pytest.mark.parametrize("mode, status", [("open", 200), ("closed", 503)])
def test_without_sluiced_the_stream_follows_on_unavailable(tmp_path, mode, status):
    model = Model(["a", "b"])
    app = build_app(str(tmp_path / "missing.sock"), model, on_unavailable=mode)
    with TestClient(app) as http:
        response = http.post("/generate", json=BODY, headers=USER)
    assert response.status_code == status
    if mode == "open":
        assert [data for _, data in events(response.text)][-1] == "[DONE]"
        assert "ratelimit" not in response.headers
    else:
        assert response.json()["detail"]["error"] == "rate_limiter_unavailable"
        assert model.produced == 0


# -- the client goes away: the ASGI app driven directly ------------------------------------

def http_scope():
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/generate", "raw_path": b"/generate",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "headers": [(b"content-type", b"application/json"), (b"x-user", b"u")]}


class Peer:
    """The HTTP client side of one request: sends BODY, collects the response, and after
    ``leave_after`` body chunks either disconnects (``http.disconnect``) or only signals.
    With ``stuck_sending`` the chunk after those never gets out (a full socket buffer)."""

    def __init__(self, leave_after, disconnect, stuck_sending=False):
        self.leave_after = leave_after
        self.disconnect = disconnect
        self.stuck_sending = stuck_sending
        self.chunks = []
        self.asked = False
        self.enough = asyncio.Event()

    async def receive(self):
        if not self.asked:
            self.asked = True
            return {"type": "http.request", "body": json.dumps(BODY).encode(),
                    "more_body": False}
        await self.enough.wait()
        if not self.disconnect:
            await asyncio.get_running_loop().create_future()  # a client that stays
        return {"type": "http.disconnect"}

    async def send(self, message):
        if message["type"] == "http.response.body" and message.get("body"):
            if self.stuck_sending and len(self.chunks) == self.leave_after:
                self.enough.set()
                await asyncio.get_running_loop().create_future()
            self.chunks.append(message["body"])
            if len(self.chunks) == self.leave_after and not self.stuck_sending:
                self.enough.set()


def test_a_client_disconnect_mid_stream_settles_the_lease_at_what_was_streamed(sock):
    ledger = TokenLedger(limit=1_000)
    # The model has produced three pieces (6 tokens) and is still thinking when the client
    # leaves after receiving them.
    model = Model(["ab", "cd", "ef", "gh", "ij"], stall_after=3)
    peer = Peer(leave_after=3, disconnect=True)

    async def scenario(fake):
        await build_app(sock, model)(http_scope(), peer.receive, peer.send)
        return releases(fake)  # settled by the time the server is done with the request

    with FakeSluiced(sock, ledger) as fake:
        settled = asyncio.run(scenario(fake))
    assert len(peer.chunks) == 3
    assert settled == releases(fake) == [
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "6"]]
    assert [c[0] for c in fake.commands].count("SL.CHARGE") == 3
    assert ledger.remaining == 1_000 - 6 and ledger.leases == {}
    assert model.closed and model.produced == 3


def test_a_disconnect_while_a_chunk_is_being_sent_settles_it_as_streamed(sock):
    # The fourth chunk was charged and handed to the server, whose socket is full when the
    # client leaves: the stream stops at a `yield`, and the response settles all four.
    ledger = TokenLedger(limit=1_000)
    model = Model(["ab", "cd", "ef", "gh", "ij"])
    peer = Peer(leave_after=3, disconnect=True, stuck_sending=True)

    async def scenario(fake):
        await build_app(sock, model)(http_scope(), peer.receive, peer.send)
        return releases(fake)  # settled by the time the server is done with the request

    with FakeSluiced(sock, ledger) as fake:
        settled = asyncio.run(scenario(fake))
    assert len(peer.chunks) == 3
    assert settled == releases(fake) == [
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "8"]]
    assert model.closed and model.produced == 4


def test_a_cancelled_request_task_still_releases_the_lease(sock):
    # A server shutting down cancels the request's task: the release is shielded from it.
    ledger = TokenLedger(limit=1_000)
    model = Model(["ab", "cd", "ef", "gh"], stall_after=2)
    peer = Peer(leave_after=2, disconnect=False)

    async def scenario(fake):
        task = asyncio.create_task(build_app(sock, model)(http_scope(), peer.receive,
                                                          peer.send))
        await peer.enough.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        return releases(fake)

    with FakeSluiced(sock, ledger) as fake:
        settled = asyncio.run(scenario(fake))
    assert settled == releases(fake) == [
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "4"]]
    assert ledger.remaining == 1_000 - 4 and model.closed


def test_sse_event_splits_lines_and_names_the_event():
    assert sse_event("a\r\nb\nc", "error") == b"event: error\ndata: a\ndata: b\ndata: c\n\n"
    assert sse_event("") == b"data: \n\n"


def test_stream_options_are_checked_when_declared():
    with pytest.raises(TypeError, match="per call"):
        TokenStream("generate", cost=5)
    with pytest.raises(ValueError, match="lower-case identifier"):
        TokenStream("generate", output_unit="Output")
    with pytest.raises(ValueError, match="must differ"):
        TokenStream("generate", input_unit="tokens", output_unit="tokens")


def test_the_example_streams_openai_chunks_and_still_answers_whole(sock, monkeypatch):
    # examples/fastapi-ml-api: "stream": true is SSE through TokenStream; without it the
    # answer comes whole through RateLimitLease, as before.
    import importlib.util

    from conftest import EXAMPLE_DIR

    monkeypatch.setenv("SLUICE_SOCKET", sock)
    monkeypatch.setenv("HEAVY_MODEL_LOAD_SECONDS", "3600")
    spec = importlib.util.spec_from_file_location("ml_api_streaming", EXAMPLE_DIR / "app.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    ledger = TokenLedger(limit=1_000)
    key = {"X-API-Key": "k"}
    with FakeSluiced(sock, ledger) as fake, TestClient(example.app) as http:
        streamed = http.post("/generate", json={"prompt": "Hi!", "max_tokens": 50,
                                                "stream": True}, headers=key)
        whole = http.post("/generate", json={"prompt": "Hi!", "max_tokens": 50}, headers=key)
    assert streamed.status_code == 200
    assert streamed.headers["x-ratelimit-limit-tokens"] == "1000"
    assert streamed.text == "".join(
        f'data: {{"choices":[{{"delta":{{"content":"{c}"}}}}]}}\n\n' for c in "Hi!") + \
        "data: [DONE]\n\n"
    assert whole.json() == {"text": "Hi!", "usage": {"reserved_tokens": 50,
                                                     "completion_tokens": 3}}
    assert [c for c in fake.commands if c[0] != "PING"] == [
        ["SL.ACQUIRE", "generate", "k", "KEY", "k", "COST", "input_tokens", "3", "COST",
         "output_tokens", "50"],
        *[["SL.CHARGE", "lease-1", "COST", "output_tokens", "1"]] * 3,
        ["SL.RELEASE", "lease-1", "ACTUAL", "output_tokens", "3"],
        ["SL.ACQUIRE", "generate", "k", "KEY", "k", "COST", "50"],
        ["SL.RELEASE", "lease-2", "ACTUAL", "3"],
    ]
    assert ledger.remaining == 1_000 - 3 - 3
