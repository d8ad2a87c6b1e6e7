"""sluice: Python client for the sluice rate-limit engine (sluiced).

    from sluice import SluiceClient

    client = SluiceClient()                       # $SLUICE_SOCKET or ./run/sluice.sock
    decision = client.check("predict", "203.0.113.7")
    if not decision.allowed:
        print("retry in", decision.retry_after_seconds, "s")

The asyncio client is :class:`AsyncSluiceClient` (with :class:`LocalGrants`, it admits a busy
caller's requests from local grants: :mod:`sluice.grants`); HTTP fields are in :mod:`sluice.headers`;
FastAPI dependencies, middleware and the token-metered stream (``TokenStream``) are in
:mod:`sluice.fastapi`, the Starlette SSE response behind it in :mod:`sluice.streaming`.
"""

from ._common import FailMode
from .aio import AsyncSluiceClient
from .client import SluiceClient
from .decision import NEVER, STORAGE_RULE, UNLIMITED, Decision, LimitState
from .errors import LeaseNotFound, RateLimited, SluiceError, SluiceUnavailable
from .grants import LocalGrants
from .headers import render_headers
from .lease import AsyncLease, Lease

__version__ = "0.1.0"

__all__ = [
    "SluiceClient",
    "AsyncSluiceClient",
    "Decision",
    "LimitState",
    "FailMode",
    "Lease",
    "AsyncLease",
    "LocalGrants",
    "SluiceError",
    "SluiceUnavailable",
    "LeaseNotFound",
    "RateLimited",
    "render_headers",
    "UNLIMITED",
    "NEVER",
    "STORAGE_RULE",
]
