"""Pieces shared by the blocking and the asyncio client: arguments, replies, fallbacks."""

from __future__ import annotations

import os
import re
from typing import Any, List, Literal, Mapping, Optional, Tuple, get_args

from .decision import Decision
from .errors import SluiceError

DEFAULT_SOCKET = "./run/sluice.sock"
DEFAULT_TIMEOUT = 0.25
#: What a client answers when sluiced cannot be reached (``on_unavailable``).
FailMode = Literal["open", "closed", "raise"]
FAIL_MODES: Tuple[FailMode, ...] = get_args(FailMode)


def unreachable_at_start(path: str, mode: str, reason: str) -> str:
    """The one ERROR logged when a start-up PING finds no sluiced: where, and what follows."""
    consequence = {
        "open": "requests are ALLOWED WITHOUT LIMITS (fail open) until it answers",
        "closed": "requests are DENIED (fail closed, 503) until it answers",
        "raise": "decisions raise SluiceUnavailable until it answers",
    }[mode]
    return f"sluice: no sluiced answers at {path} ({reason}); {consequence}"


def socket_path_or_default(path: Optional[str]) -> str:
    return path or os.environ.get("SLUICE_SOCKET") or DEFAULT_SOCKET


def check_fail_mode(mode: str) -> FailMode:
    for known in FAIL_MODES:
        if mode == known:
            return known
    raise ValueError(f"on_unavailable must be one of {', '.join(FAIL_MODES)}; got {mode!r}")


def _name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string; got {value!r}")
    return value


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1; got {value!r}")
    return value


#: The longest ``wait`` sluiced accepts, in seconds (``WAIT`` is at most 3 600 000 ms).
MAX_WAIT = 3600.0
#: The largest cost, charge or actual cost sluiced accepts (10^12).
MAX_COST = 10**12
#: How many named units one request may carry.
MAX_UNITS = 8
_UNIT = re.compile(r"[a-z_][a-z0-9_]*\Z")


def wait_ms(wait: Optional[float]) -> Optional[int]:
    """``wait`` (seconds, as every duration of this client) as WAIT's milliseconds."""
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
        raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}; got {wait!r}")
    return int(round(wait * 1000))


def _amount(what: str, value: Any, minimum: int) -> int:
    if (isinstance(value, bool) or not isinstance(value, int)
            or not minimum <= value <= MAX_COST):
        raise ValueError(f"{what} must be an integer from {minimum} to 10^12; got {value!r}")
    return value


def named_costs(keyword: str, what: str, costs: Mapping[str, int]) -> List[Any]:
    """``[keyword, unit, n, keyword, unit, n, ...]`` for ``COST unit n`` or ``ACTUAL unit n``:
    each unit an identifier (``input_tokens``), each n 0..10^12, at most eight units."""
    if not isinstance(costs, Mapping):
        raise ValueError(f"{what} must be a mapping of unit name to integer; got {costs!r}")
    if len(costs) > MAX_UNITS:
        raise ValueError(f"{what} may name at most {MAX_UNITS} units; got {len(costs)}")
    args: List[Any] = []
    for unit, n in costs.items():
        if not isinstance(unit, str) or not _UNIT.match(unit):
            raise ValueError(f"{what}: a unit name is a lower-case identifier "
                             f"([a-z_][a-z0-9_]*, e.g. output_tokens); got {unit!r}")
        args += [keyword, unit, _amount(f"{what}[{unit!r}]", n, 0)]
    return args


def decision_args(
    command: str,
    resource: str,
    subject: str,
    tier: Optional[str],
    api_key: Optional[str],
    cost: Optional[int],
    ttl_ms: Optional[int] = None,
    wait: Optional[float] = None,
    costs: Optional[Mapping[str, int]] = None,
) -> Tuple[Any, ...]:
    """The argument vector of SL.CHECK / SL.PEEK / SL.ACQUIRE, validated client-side so a
    programming error fails before it reaches the socket.

    ``cost`` None sends no bare COST (the engine's default: 1, or with named ``costs`` 0 for
    limits whose unit is not named); without named costs a cost of 1 is not sent either.
    """
    args: List[Any] = [command, _name("resource", resource), _name("subject", subject)]
    if tier is not None:
        args += ["TIER", _name("tier", tier)]
    if api_key:
        args += ["KEY", api_key]
    if cost is not None:
        # Checked inline: this runs for every decision (the function call is for the message).
        if type(cost) is not int or not 1 <= cost <= 1_000_000_000_000:
            cost = _amount("cost", cost, 1)
        if cost != 1 or costs:
            args += ["COST", cost]
    if costs:
        args += named_costs("COST", "costs", costs)
    if ttl_ms is not None:
        args += ["TTL", _positive_int("ttl_ms", ttl_ms)]
    waiting = wait_ms(wait)
    if waiting is not None:
        args += ["WAIT", waiting]
    return tuple(args)


def charge_units(n: Optional[int], costs: Optional[Mapping[str, int]]) -> List[Any]:
    """What SL.CHARGE sends after the lease: ``n`` (bare units), or ``COST unit n ...``."""
    if costs is None:
        if n is None:
            raise ValueError("charge needs n (units) or costs (units by name)")
        return [_amount("n", n, 0)]
    if n is not None:
        raise ValueError("charge takes n or costs, not both")
    if not costs:
        raise ValueError("costs must name at least one unit")
    return named_costs("COST", "costs", costs)


def charge_args(lease_id: str, n: Optional[int],
                costs: Optional[Mapping[str, int]]) -> Tuple[Any, ...]:
    return ("SL.CHARGE", _name("lease id", lease_id), *charge_units(n, costs))


def release_args(lease_id: str, actual: Optional[int],
                 actual_costs: Optional[Mapping[str, int]] = None) -> Tuple[Any, ...]:
    args: List[Any] = ["SL.RELEASE", _name("lease id", lease_id)]
    if actual is not None:
        args += ["ACTUAL", _amount("actual", actual, 0)]
    if actual_costs:
        args += named_costs("ACTUAL", "actual_costs", actual_costs)
    return tuple(args)


def parse_decision(reply: Any, resource: str, acquire: bool = False) -> Decision:
    try:
        return Decision.from_reply(reply, resource, extra_at=8 if acquire else 6)
    except (ValueError, TypeError) as exc:
        raise SluiceError("PROTOCOL", str(exc)) from None


def parse_lease(reply: Any) -> Tuple[str, int]:
    """(lease id, lease TTL in ms) from the 7th and 8th elements of an SL.ACQUIRE reply."""
    if not isinstance(reply, (list, tuple)) or len(reply) < 8:
        raise SluiceError("PROTOCOL", f"malformed SL.ACQUIRE reply from sluiced: {reply!r}")
    lease = reply[6]
    if isinstance(lease, bytes):
        lease = lease.decode()
    return (lease or ""), int(reply[7])


def unavailable_decision(mode: str, resource: str, retry_after_ms: int) -> Decision:
    """What the client answers by itself when sluiced cannot be reached."""
    allowed = mode == "open"
    return Decision(
        allowed=allowed,
        limit=-1,
        remaining=-1,
        reset_after_ms=0,
        retry_after_ms=0 if allowed else retry_after_ms,
        rule="",
        resource=resource,
        unavailable=True,
    )

