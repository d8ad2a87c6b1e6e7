"""The seed article's ML API ("Rate Limiting in FastAPI: Essential Protection for ML API
Endpoints"), with every limit decided by sluice.

Run sluiced with policies/ml-api.yaml, then:

    PYTHONPATH=clients/python uvicorn --app-dir examples/fastapi-ml-api app:app --port 8000

Environment:
    SLUICE_SOCKET           decision socket (default ./run/sluice.sock)
    SLUICE_ADMIN_SOCKET     admin socket; when set, the app reports the heavy model READY
                            after it has loaded, ending its warm-up early
    SLUICE_ON_UNAVAILABLE   open (default) or closed: what to do when sluiced is down
    HEAVY_MODEL_LOAD_SECONDS  simulated load time of the heavy model (default 3)

The app never reads the policy: tiers, limits and windows come with every decision, so a
policy sluiced applies live shows in the very next response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from sluice import AsyncLease, AsyncSluiceClient, Decision, LocalGrants, SluiceError
from sluice.fastapi import (RateLimit, RateLimitLease, SluiceRoute, TokenStream, client_ip, header,
                            json_cost, readiness)

log = logging.getLogger("ml-api")


# -- who is calling ----------------------------------------------------------------------

# The limited subject is the API key when one is sent; a limiter whose subject is absent
# limits the client's IP address instead.
api_key = header("X-API-Key")


def caller(request: Request) -> str:
    """Who is limited: the API key when one is sent, else the client's IP address."""
    return api_key(request) or client_ip(request)


# The seed's approach 3 lets the caller name its tier in X-User-Tier. Honoured here so its
# curl loops work unchanged (a tier the policy does not have is a 400); a real service derives
# the tier from the API key only (sluice does that from the policy's api_keys when no tier,
# or an empty one, is sent).
claimed_tier = header("X-User-Tier")


async def require_premium(request: Request) -> None:
    """403 unless sluice resolves the caller to the premium tier. Asked with SL.PEEK, so a
    caller without access spends no quota."""
    sluice: AsyncSluiceClient = request.app.state.sluice
    try:
        decision = await sluice.peek("premium/predict", caller(request),
                                     tier=claimed_tier(request) or None,
                                     api_key=request.headers.get("X-API-Key"))
    except SluiceError as exc:
        if exc.code != "WRONGARGS":
            raise
        raise HTTPException(status_code=400, detail={"error": "invalid_rate_limit_arguments",
                                                     "message": exc.message}) from None
    if decision.unavailable:  # no tier is known: access cannot be decided
        raise HTTPException(
            status_code=503, headers={"Retry-After": "1"},
            detail={"error": "rate_limiter_unavailable",
                    "message": "The rate limiter is unavailable; try again shortly"})
    if decision.tier != "premium":
        raise HTTPException(status_code=403, detail="Premium access required")


def limit(resource: str, **options: Any) -> RateLimit:
    """A sluice check for ``resource`` with this app's way of finding subject and tier. The
    answers carry the IETF RateLimit fields; the token routes below add the x-ratelimit-*
    family that OpenAI-style clients read (three more fields cost a server like uvicorn a
    few per cent of its requests/s: docs/benchmarks.md)."""
    # subject=api_key: the limiter reads the key once for both and, when none is sent, limits
    # the client's address (as caller() does).
    return RateLimit(resource, subject=api_key, api_key=api_key, tier=claimed_tier, **options)


# -- the application ------------------------------------------------------------------------

app = FastAPI(title="ML API behind sluice")
# The routes' RateLimit dependencies are decided by the route itself, before FastAPI's
# dependency machinery (which costs more per request than sluice's decision).
app.router.route_class = SluiceRoute


@app.on_event("startup")
async def connect_sluice() -> None:
    # Local grants: a caller sending many requests a second is admitted from grants of a few
    # hundred requests instead of one decision each (near a limit, every request is decided).
    app.state.sluice = AsyncSluiceClient(
        on_unavailable=os.environ.get("SLUICE_ON_UNAVAILABLE", "open"), grants=LocalGrants())
    await app.state.sluice.start()  # one ERROR naming the socket when sluiced is not there
    app.state.model_loader = asyncio.create_task(load_heavy_model())


@app.on_event("shutdown")
async def disconnect_sluice() -> None:
    app.state.model_loader.cancel()
    await app.state.sluice.close()


app.get("/readyz", include_in_schema=False)(readiness())


async def load_heavy_model() -> None:
    """Stands in for loading a large model. The policy starts models/heavy cold (a fifth of
    its limit); once loaded we tell sluice, as the seed's startup hook cleared its flag."""
    await asyncio.sleep(float(os.environ.get("HEAVY_MODEL_LOAD_SECONDS", "3")))
    admin_socket = os.environ.get("SLUICE_ADMIN_SOCKET")
    if not admin_socket:
        log.info("heavy model loaded; warm-up ends after the policy's duration")
        return
    async with AsyncSluiceClient(admin_socket, timeout=2.0, on_unavailable="raise") as admin:
        try:
            await admin.execute("SL.WARMUP", "models/heavy", "READY")
            log.info("heavy model loaded; reported READY to sluice")
        except SluiceError as exc:
            log.warning("could not report the heavy model ready: %s", exc)


class PredictionRequest(BaseModel):
    features: list
    model_version: str = "default"


class ModelInput(BaseModel):
    data: list
    parameters: dict = {}


class GenerateRequest(BaseModel):
    prompt: str
    max_tokens: int = Field(256, ge=1, le=100_000)
    stream: bool = False


# The routes return plain dicts without a return annotation, as the seed's code does: with
# `-> dict`, FastAPI would build a response model and validate every response on the hot path.

# Approach 1 (in-memory limiter): /predict 10 per minute, /batch-predict 2 per minute.
@app.post("/predict", dependencies=[Depends(limit("predict"))])
def predict(data: dict):
    return {"prediction": 0.95, "confidence": 0.87}


@app.post("/batch-predict", dependencies=[Depends(limit("batch-predict"))])
def batch_predict(data: dict):
    return {"results": [{"prediction": 0.95}, {"prediction": 0.85}]}


@app.get("/model-info", dependencies=[Depends(limit("model-info"))])
def model_info():
    return {"model_version": "v1.2.3", "framework": "PyTorch"}


# Approach 2 (fastapi-limiter): its /predict (20 per 60 s) is served at /limiter/predict,
# its /predict/batch allows 5 per 300 s.
@app.post("/limiter/predict", dependencies=[Depends(limit("limiter/predict"))])
def limiter_predict(request: PredictionRequest):
    return {"prediction": 0.95, "model_version": request.model_version}


@app.post("/predict/batch", dependencies=[Depends(limit("predict/batch"))])
def predict_batch(requests: List[PredictionRequest]):
    return {"batch_predictions": [0.95, 0.85, 0.75][: max(1, len(requests))]}


# Approach 3 (slowapi): premium callers only, 30 per minute. The 403 comes first: a caller
# without access does not spend quota.
@app.post("/premium/predict",
          dependencies=[Depends(require_premium), Depends(limit("premium/predict"))])
async def premium_predict(input_data: ModelInput):
    return {"result": "premium prediction", "status": "success"}


# Resource-based differentiation, with the heavy model's warm-up kept in the policy.
@app.post("/models/lightweight/predict", dependencies=[Depends(limit("models/lightweight"))])
async def lightweight_predict(data: dict):
    return {"prediction": 0.95}


# A caller of the GPU-bound model would rather wait a moment than retry: a request over the
# limit is held up to 2 s for capacity (answered at once when the limit cannot admit it sooner).
@app.post("/models/heavy/predict")
async def heavy_predict(data: dict,
                        decision: Decision = Depends(limit("models/heavy", wait=2.0))):
    return {"prediction": 0.92, "limit_now": decision.limit}


@app.post("/models/batch-process", dependencies=[Depends(limit("models/batch-process"))])
async def batch_process(data: list):
    return {"results": [{"prediction": 0.9} for _ in data]}


# Token metering: reserve max_tokens before generating, settle the tokens really produced.
generate_lease = RateLimitLease(
    "generate", subject=api_key, api_key=api_key, tier=claimed_tier,
    cost=json_cost(lambda body: body["max_tokens"], default=256), unit="tokens",
    x_ratelimit_headers=True)

# Streamed, each token is charged before it is sent: the prompt's and the largest answer's
# tokens are reserved (input_tokens, output_tokens), a stream the limits stop ends with an
# error event, and the lease is settled at the tokens streamed even if the client goes away.
generate_stream = TokenStream(
    "generate", subject=api_key, api_key=api_key, tier=claimed_tier,
    x_ratelimit_headers=True)


async def generate_lease_unless_streaming(
        request: Request, response: Response) -> AsyncIterator[Optional[AsyncLease]]:
    """The lease of an answer returned whole; a streamed answer reserves its own."""
    try:
        streaming = (await request.json()).get("stream") is True
    except Exception:  # noqa: BLE001 - not a JSON object: the route's validation answers
        streaming = False
    if streaming:
        yield None
        return
    async with contextlib.asynccontextmanager(generate_lease)(request, response) as lease:
        yield lease


async def stand_in_model(text: str) -> AsyncIterator[str]:
    """Yields the answer one token (here: one character) at a time, as a model would."""
    for token in text:
        yield token


def openai_chunk(token: str) -> Dict[str, Any]:
    return {"choices": [{"delta": {"content": token}}]}


@app.post("/generate")
async def generate(body: GenerateRequest, request: Request,
                   lease: Optional[AsyncLease] = Depends(generate_lease_unless_streaming)):
    # A stand-in model: one "token" per prompt character, at most max_tokens.
    tokens = min(body.max_tokens, len(body.prompt))
    text = body.prompt[:tokens]
    if body.stream:
        return await generate_stream(request, stand_in_model(text),
                                     input_tokens=len(body.prompt),
                                     max_output_tokens=body.max_tokens,
                                     render=openai_chunk, done="[DONE]")
    assert lease is not None
    await lease.release(actual=tokens)
    return {"text": text, "usage": {"reserved_tokens": body.max_tokens,
                                    "completion_tokens": tokens}}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
