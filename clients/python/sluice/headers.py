"""HTTP response fields for a decision. Pure functions: no I/O, no framework.

Three conventions are rendered:

* ``Retry-After`` (RFC 9110 §10.2.3) on a denial: whole seconds, rounded up, so a client
  that waits exactly that long is not refused again for the same reason.
* ``RateLimit-Policy`` and ``RateLimit`` from draft-ietf-httpapi-ratelimit-headers (-10/-11),
  Structured Field lists whose items are the policy name as an sf-string with parameters:
  ``RateLimit-Policy: "per_minute";q=10;w=60`` and ``RateLimit: "per_minute";r=3;t=42``.
* Optionally the ``x-ratelimit-limit-requests`` / ``-remaining-requests`` /
  ``-reset-requests`` family (``-tokens`` for token limits) that LLM API clients read; the
  reset is a duration such as ``1s``, ``6m0s`` or ``250ms``.

When the decision lists its limits (sluiced sends every enforced limit's answer), the IETF
fields carry one item per limit, the deciding limit first, each with its own window; the
``x-ratelimit-*`` family describes the deciding limit.

Decisions for an unlimited tier, decisions made without sluiced (``unavailable``) and
decisions the policy's ``on_storage_failure`` made (rule ``(storage)``) carry no quota, so
only ``Retry-After`` (fail-closed) is rendered for them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, List, Literal, Optional, Sequence, Tuple

from .decision import Decision, LimitState

__all__ = [
    "Unit",
    "sf_string",
    "format_duration",
    "retry_after",
    "ratelimit_policy",
    "ratelimit",
    "x_ratelimit",
    "render_headers",
    "raw_headers",
]

#: The cost units a limit counts in: the policy's (requests, tokens, items) and the draft's
#: registered ones. Units the draft does not register travel in ``sluice-unit``.
Unit = Literal["requests", "tokens", "items", "concurrent-requests", "content-bytes"]

# Quota units registered by the draft; any other unit (tokens, items) travels in a vendor
# parameter, because the draft allows unregistered parameters but not unregistered units.
_REGISTERED_UNITS = {"requests", "content-bytes", "concurrent-requests"}


@lru_cache(maxsize=4096)  # rule names repeat on every response
def sf_string(value: str) -> str:
    """A Structured Field sf-string (RFC 8941 §3.3.3): printable ASCII, quoted, escaped."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")  # sf-string cannot carry it; keep the name's length and shape
    out.append('"')
    return "".join(out)


def format_duration(ms: int) -> str:
    """Go-style duration, as OpenAI-compatible clients parse: 250ms, 1s, 1.5s, 6m0s, 1h0m0s."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _seconds_up(ms: int) -> int:
    return max(0, math.ceil(ms / 1000))


def _listed(decision: Decision, name: Optional[str]) -> Sequence[LimitState]:
    """The limits the IETF fields list: the deciding one first, then the others in policy
    order. With an explicit ``name`` (or no list from the daemon), only the deciding one."""
    limits = decision.limits
    if name is not None or not limits:
        return ()
    if len(limits) == 1 or limits[0].name == decision.rule:
        return limits  # already in that order: the usual case, with nothing to build
    deciding = [lim for lim in limits if lim.name == decision.rule]
    return deciding + [lim for lim in limits if lim.name != decision.rule]


def _policy_name(decision: Decision, name: Optional[str]) -> str:
    return name or decision.rule or decision.resource or "default"


def retry_after(decision: Decision) -> Optional[str]:
    """``Retry-After`` value, or None when allowed or when retrying can never succeed."""
    seconds = decision.retry_after_seconds
    return None if seconds is None else str(seconds)


def ratelimit_policy(decision: Decision, *, window_ms: Optional[int] = None,
                     unit: Unit = "requests", name: Optional[str] = None) -> Optional[str]:
    """``RateLimit-Policy`` value: ``"name";q=<limit>[;qu=...][;w=<window seconds>]`` per limit.

    ``window_ms`` overrides the deciding limit's window the decision carries.
    """
    if not decision.has_quota:
        return None
    return _policy_field(decision, _listed(decision, name), window_ms, unit, name)


def _policy_field(decision: Decision, listed: Sequence[LimitState], window_ms: Optional[int],
                  unit: Unit, name: Optional[str]) -> str:
    if not listed:
        window = window_ms if window_ms is not None else decision.window_ms
        return _policy_value(_policy_name(decision, name), decision.limit, window, unit)
    return ", ".join(
        _policy_value(lim.name, lim.limit,
                      window_ms if window_ms is not None and lim.name == decision.rule
                      else lim.window_ms, unit)
        for lim in listed)


@lru_cache(maxsize=4096)  # a policy's value is the same on every response until it changes
def _policy_value(name: str, limit: int, window_ms: Optional[int], unit: Unit) -> str:
    parts = [sf_string(name), f"q={limit}"]
    if unit in _REGISTERED_UNITS:
        if unit != "requests":
            parts.append(f"qu={sf_string(unit)}")
    else:
        parts.append(f"sluice-unit={sf_string(unit)}")
    if window_ms is not None and window_ms > 0:
        parts.append(f"w={max(1, _seconds_up(window_ms))}")
    return ";".join(parts)


def ratelimit(decision: Decision, *, name: Optional[str] = None) -> Optional[str]:
    """``RateLimit`` value: ``"name";r=<remaining>;t=<seconds>`` per limit.

    On a denial the deciding limit's ``t`` is the retry delay: the draft asks that
    ``Retry-After`` not point earlier than the end of the effective window, and with ``r=0``
    the window in which no more quota is available ends exactly when the request could be
    retried.
    """
    if not decision.has_quota:
        return None
    return _ratelimit_field(decision, _listed(decision, name), name)


def _ratelimit_field(decision: Decision, listed: Sequence[LimitState],
                     name: Optional[str]) -> str:
    if decision.allowed or decision.retry_after_ms < 0:
        seconds = _seconds_up(decision.reset_after_ms)
    else:
        seconds = decision.retry_after_seconds or 0
    remaining = decision.remaining if decision.remaining > 0 else 0
    deciding = f"{sf_string(_policy_name(decision, name))};r={remaining};t={seconds}"
    if len(listed) < 2:
        return deciding
    others = [f"{sf_string(lim.name)};r={max(0, lim.remaining)};t={_seconds_up(lim.reset_after_ms)}"
              for lim in listed[1:]]
    return ", ".join([deciding] + others)


@lru_cache(maxsize=16)
def _x_names(unit: str) -> Tuple[str, str, str]:
    suffix = "requests" if unit in ("requests", "concurrent-requests") else unit
    return (f"x-ratelimit-limit-{suffix}", f"x-ratelimit-remaining-{suffix}",
            f"x-ratelimit-reset-{suffix}")


def x_ratelimit(decision: Decision, *, unit: Unit = "requests") -> Dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-<unit>`` fields (``requests`` or ``tokens``)."""
    if not decision.has_quota:
        return {}
    headers: Dict[str, str] = {}
    _add_x_ratelimit(headers, decision, unit)
    return headers


def _add_x_ratelimit(headers: Dict[str, str], decision: Decision, unit: str) -> None:
    reset_ms = decision.reset_after_ms
    if not decision.allowed and decision.retry_after_ms > 0:
        reset_ms = decision.retry_after_ms
    limit_name, remaining_name, reset_name = _x_names(unit)
    headers[limit_name] = str(decision.limit)
    headers[remaining_name] = str(decision.remaining if decision.remaining > 0 else 0)
    headers[reset_name] = format_duration(reset_ms)


def render_headers(decision: Decision, *, window_ms: Optional[int] = None,
                   unit: Unit = "requests", name: Optional[str] = None,
                   ietf: bool = True, x_ratelimit_fields: bool = False) -> Dict[str, str]:
    """Every field for ``decision`` as a dict of header name to value.

    ``window_ms`` overrides the deciding limit's ``w`` in ``RateLimit-Policy`` (default: the
    window the decision carries); ``unit`` is the limits' cost unit; ``name`` overrides the
    policy name (default: the deciding rule) and then only the deciding limit is listed.
    """
    headers: Dict[str, str] = {}
    if not decision.allowed:
        value = retry_after(decision)
        if value is not None:
            headers["Retry-After"] = value
    if not decision.has_quota:
        return headers
    if ietf:
        listed = _listed(decision, name)
        headers["RateLimit-Policy"] = _policy_field(decision, listed, window_ms, unit, name)
        headers["RateLimit"] = _ratelimit_field(decision, listed, name)
    if x_ratelimit_fields:
        _add_x_ratelimit(headers, decision, unit)
    return headers


@lru_cache(maxsize=64)
def _raw_name(name: str) -> bytes:
    return name.lower().encode("latin-1")


def raw_headers(headers: Dict[str, str]) -> List[Tuple[bytes, bytes]]:
    """``headers`` as ASGI's raw pairs (lower-case names, latin-1 bytes), e.g. to extend a
    Starlette response's ``raw_headers`` without its per-field lookups."""
    return [(_raw_name(k), v.encode("latin-1")) for k, v in headers.items()]
