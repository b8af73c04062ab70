"""The stand-in's script steps: what each one answers. Pure data, no I/O.

A step is written as an HTTP status (200-599) or as one of these names:

    ==============  =======  ===============================================================
    step            status   answer
    ==============  =======  ===============================================================
    "drop" (or 0)   0        the connection is closed without an answer
    "nul200"        200      ``{"status":200,"data":{"warnings":[{"class":"x\\u0000y"}]}}``:
                             a warning class holding a NUL, which jsonb cannot store
    "surrogate400"  400      Ravelin's 400 body whose validationErrors hold the lone surrogate
                             escape ``\\ud800`` (valid JSON text, not encodable as UTF-8)
    "absurd429"     429      ``Retry-After: Mon, 01 Jan 99999999999 00:00:00 GMT``
    "absurd503"     503      the same absurd Retry-After
    "huge200"       200      a 3 MB JSON body
    "huge400"       400      a 3 MB Ravelin 400 body (3 MB of validationErrors)
    "redirect307"   307      ``Location: https://elsewhere.invalid/v2/registration``
    "redirect302"   302      the same Location
    "slow"          200      a normal 200, only after the stand-in's ``slow_seconds`` (default
                             5 s, longer than a worker's HTTP timeout in the tests)
    ==============  =======  ===============================================================

A plain 200 and the 200-class steps (``nul200``, ``huge200``, ``slow``) still check the request
(key, content type, shape) and answer the check's error when it fails; the other steps (another
2xx such as 201 included) answer whatever was sent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

StepName: TypeAlias = Literal[
    "drop",
    "nul200",
    "surrogate400",
    "absurd429",
    "absurd503",
    "huge200",
    "huge400",
    "redirect307",
    "redirect302",
    "slow",
]
Step: TypeAlias = int | StepName
"""A script step as written: an HTTP status, or a step name from the table above."""

DROP: Final = 0
"""Script status that closes the connection without answering."""
ABSURD_RETRY_AFTER: Final = "Mon, 01 Jan 99999999999 00:00:00 GMT"
REDIRECT_LOCATION: Final = "https://elsewhere.invalid/v2/registration"
DEFAULT_SLOW_SECONDS: Final = 5.0
HUGE_BYTES: Final = 3 * 1024 * 1024
_TRACE_ID: Final = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True, slots=True)
class Reply:
    """What one step answers: a status, and optionally its own body, headers or delay."""

    name: str  # as written in scripts and recorded in Received.step: "503", "drop", "nul200"
    status: int  # the HTTP status answered; 0: the connection is closed without one
    body: str | None = None  # the step's own body text (JSON); None: the usual body
    headers: tuple[tuple[str, str], ...] = ()
    slow: bool = False  # answer only after the stand-in's slow_seconds

    @property
    def checked(self) -> bool:
        """True for 200 and the 200-class steps: the request is still checked (key, type,
        shape) first. Another scripted 2xx (201, 204) is answered as it is, like an error."""
        return self.status == 200


def reply(step: object) -> Reply:
    """The Reply for a script step as written; ValueError for anything else."""
    if step == "drop" or (step == DROP and not isinstance(step, bool)):
        return _DROP
    if isinstance(step, str):
        named = _NAMED.get(step)
        if named is not None:
            return named()
    elif isinstance(step, int) and not isinstance(step, bool) and 200 <= step <= 599:
        return _status(step)
    raise ValueError(
        f'a scripted status is an HTTP status, "drop" or one of {sorted(_NAMED)}, not {step!r}'
    )


@functools.cache
def _status(status: int) -> Reply:
    return Reply(str(status), status)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _nul200() -> Reply:
    # json.dumps writes the NUL as the escape \u0000, exactly as a JSON server would.
    body = _json({"status": 200, "data": {"warnings": [{"class": "x\x00y"}]}})
    return Reply("nul200", 200, body)


def _surrogate400() -> Reply:
    problem = {"field": "registration", "message": "bad value \ud800 here"}
    body = _json(
        {
            "status": 400,
            "message": "Invalid Request: registration rejected (lone surrogate, stand-in)",
            "traceId": _TRACE_ID,
            "validationErrors": [problem],
        }
    )  # json.dumps writes the lone surrogate as the escape \ud800: the text stays ASCII
    return Reply("surrogate400", 400, body)


def _absurd(status: Literal[429, 503]) -> Reply:
    return Reply(f"absurd{status}", status, headers=(("Retry-After", ABSURD_RETRY_AFTER),))


@functools.cache
def _huge200() -> Reply:
    padding = "x" * HUGE_BYTES
    return Reply("huge200", 200, _json({"status": 200, "timestamp": 0, "padding": padding}))


@functools.cache
def _huge400() -> Reply:
    item = {"field": "registration", "message": "rejected by the stand-in " + "x" * 200}
    count = HUGE_BYTES // len(_json(item)) + 1
    body = {
        "status": 400,
        "message": "Invalid Request: registration rejected (huge body, stand-in)",
        "traceId": _TRACE_ID,
        "validationErrors": [item] * count,
    }
    return Reply("huge400", 400, _json(body))


def _redirect(status: Literal[302, 307]) -> Reply:
    return Reply(f"redirect{status}", status, headers=(("Location", REDIRECT_LOCATION),))


_DROP: Final = Reply("drop", DROP)
_NAMED: Final[dict[str, Callable[[], Reply]]] = {
    "nul200": _nul200,
    "surrogate400": _surrogate400,
    "absurd429": lambda: _absurd(429),
    "absurd503": lambda: _absurd(503),
    "huge200": _huge200,
    "huge400": _huge400,
    "redirect307": lambda: _redirect(307),
    "redirect302": lambda: _redirect(302),
    "slow": lambda: Reply("slow", 200, slow=True),
}
