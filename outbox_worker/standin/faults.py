"""The stand-in's injected faults as data, and the control API's checks of new values.

``Faults`` is what a stand-in is told to do (scripts, latency, Retry-After, the body of a 200);
``apply_faults`` sets them from a control-API object, refusing bad values with TypeError or
ValueError before anything changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from outbox_worker.standin.answers import BodyVariant
from outbox_worker.standin.knobs import Latency as Latency
from outbox_worker.standin.knobs import Tunable
from outbox_worker.standin.steps import DEFAULT_SLOW_SECONDS, Reply, Step, reply

_T = TypeVar("_T")
_HEALTHY: Final = reply(200)


@dataclass(slots=True)
class Faults:
    """What the stand-in injects; a fresh one is a healthy Ravelin."""

    default_status: Reply = _HEALTHY
    script: deque[Reply] = field(default_factory=deque)
    scripts: dict[str, deque[Reply]] = field(default_factory=dict)
    retry_after: dict[int, str] = field(default_factory=dict)
    latency: Latency = 0.0
    slow_seconds: float = DEFAULT_SLOW_SECONDS
    body: BodyVariant = BodyVariant.NORMAL


def apply_faults(standin: Tunable, faults: Mapping[str, object]) -> None:
    """Call the stand-in's setter for each key of a control-API object (no rollback here)."""
    unknown = sorted(set(faults) - _SETTERS.keys())
    if unknown:
        raise ValueError(f"unknown fault keys {unknown}; known: {sorted(_SETTERS)}")
    for name, value in faults.items():
        _SETTERS[name](standin, value)


def steps(values: object) -> deque[Reply]:
    """A script as Replies, each step checked; ValueError or TypeError otherwise."""
    return deque(reply(value) for value in _iterable(values))


def as_seconds(name: str, value: object) -> float:
    """``value`` as seconds >= 0; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def as_latency(value: object) -> Latency:
    """A fixed latency, or a (low, high) range with 0 <= low <= high; ValueError otherwise."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"a latency range is [low, high], not {value!r}")
        low, high = (as_seconds("latency", part) for part in value)
        if low > high:
            raise ValueError(f"latency range [{low}, {high}] has low > high")
        return (low, high)
    return as_seconds("latency", value)


def parse_latency(text: str) -> Latency:
    """``"0.05"`` (fixed) or ``"0.03-0.12"`` (a uniform range) as a Latency, else ValueError."""
    low, dash, high = text.partition("-")
    try:
        return as_latency((float(low), float(high)) if dash else float(low))
    except ValueError:
        raise ValueError(f"--latency takes seconds or LOW-HIGH, not {text!r}") from None


def _set_retry_after(standin: Tunable, value: object) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"retry_after must map statuses to header values, not {value!r}")
    for status, header in value.items():
        if header is not None and not isinstance(header, str):
            raise TypeError(f"retry_after values must be strings or null, not {header!r}")
        standin.set_retry_after(header, statuses=[int(status)])


def _set_scripts(standin: Tunable, value: object) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"scripts must map message keys to status lists, not {value!r}")
    for key, script in value.items():
        standin.script_for(str(key), _step_list(script))


def _require(kind: type[_T] | tuple[type[_T], ...], name: str, value: object) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} has the wrong type: {value!r}")
    return value


def _latency_value(value: object) -> Latency:
    if isinstance(value, list):
        return as_latency(value)
    return as_latency(_require((int, float), "latency", value))


_SETTERS: Final[dict[str, Callable[[Tunable, object], None]]] = {
    "api_key": lambda s, v: s.set_api_key(_require(str, "api_key", v)),
    "default_status": lambda s, v: s.set_default_status(_as_step(v)),
    "script": lambda s, v: s.set_script(_step_list(_require(list, "script", v))),
    "scripts": _set_scripts,
    "retry_after": _set_retry_after,
    "latency": lambda s, v: s.set_latency(_latency_value(v)),
    "seed": lambda s, v: s.reseed(_require(int, "seed", v)),
    "slow_seconds": lambda s, v: s.set_slow_seconds(_require((int, float), "slow_seconds", v)),
    "body": lambda s, v: s.set_body(_require(str, "body", v)),
}


def _as_step(value: object) -> Step:
    reply(value)  # refuses anything that is not a step
    return cast(Step, value)


def _step_list(values: object) -> list[Step]:
    """A script from the control API, each step checked."""
    return [_as_step(value) for value in _iterable(values)]


def _iterable(values: object) -> Iterable[object]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"a script is a list of steps, not {values!r}")
    return values
