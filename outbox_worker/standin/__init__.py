"""A local stand-in for Ravelin's ``POST /v2/registration``, for tests, ``demo`` and benchmarks.

A real aiohttp server on a loopback port. ``POST /v2/registration`` answers in this order:

1. Wait ``latency`` seconds (fixed, or drawn uniformly from ``[low, high]`` by a seeded
   generator), or the request's ``Ravelin-Min-Latency: <ms>`` as Ravelin's sandbox does,
   whichever is longer.
2. Take the injected step: the message's own script first, then the global script, then
   ``default_status``. A step is an HTTP status or a named fault (the table in
   ``outbox_worker.standin.steps``): ``drop`` (or 0) closes the connection without an answer;
   ``nul200``, ``huge200`` and ``slow`` (200 after ``slow_seconds``) are 200s with a hostile body
   or delay; ``surrogate400`` and ``huge400`` are 400s with a hostile body; ``absurd429`` and
   ``absurd503`` carry a Retry-After in the year 99999999999; ``redirect307`` and
   ``redirect302`` send ``Location: https://elsewhere.invalid/v2/registration``. Another status
   but 200 is answered with a Ravelin-shaped error body; 200 and the 200-class steps go on to
   the checks below (a failed check answers instead of the step).
3. A ``score`` query parameter: 400, updates never ask for a recommendation.
4. ``Authorization`` other than exactly ``token <api_key>``: 401.
5. ``Content-Type`` other than ``application/json``: 400. Ravelin documents 406 only for
   ``Accept``; a body of the wrong type is the message's fault, so 400, which dead-letters it.
6. Not a JSON object with an integer ``timestamp`` and a ``registration`` object with a boolean
   ``success``: 400 with ``validationErrors``.
7. Otherwise 200 with the step's own body, else the configured body variant.

A message's key (for per-message scripts) is ``customer.customerId``, else
``supplier.supplierId``, else ``registration.username``, as a string. Error bodies carry
``status``, ``message`` and ``traceId``, plus ``validationErrors`` on 400. Every request is
recorded as a ``Received`` with its key, the step that answered it and the status it was
answered (0 when dropped), once answered.

A full outage (connection refused) is ``stop()`` then ``start()``: the port stays the same
(``SO_REUSEADDR``), and scripts, faults and records survive the restart.

Control API, no auth (the server binds loopback only unless ``allow_remote=True``):

``POST /_standin/faults``, a JSON object; only the given keys change, all or nothing:
    ``api_key``         str, the key ``Authorization`` must carry
    ``default_status``  a step (int or name), the answer once the scripts are used up (200: healthy)
    ``script``          [step, ...], replaces the global script
    ``scripts``         {message key: [step, ...]}, sets those messages' scripts
    ``retry_after``     {"<status>": str or null}, the ``Retry-After`` sent with that status
                        (a step's own Retry-After wins)
    ``latency``         float, seconds added to every request, or [low, high]: drawn uniformly
    ``seed``            int, reseeds the generator of latency draws
    ``slow_seconds``    float, how long a ``slow`` step waits before answering (default 5)
    ``body``            "normal" | "empty" | "null" | "extra", the body of a 200
``GET /_standin/received[?bodies=1]``: ``{"total": n, "by_status": {"200": n, ...}}``, plus
    ``"bodies"`` (the request bodies as text, in arrival order) with ``bodies=1``.
``POST /_standin/reset``: clears scripts, faults and records; the API key stays.

In a process of its own it is ``outbox-worker standin`` (``process.serve``).

Modules: ``server`` (StandIn, Received), ``answers`` (Ravelin's answers and body-shape checks),
``steps`` (the named faults), ``faults`` (what is injected, and the control API's value checks),
``control`` (the control API's routes), ``process`` (a stand-in until SIGTERM).
"""

from __future__ import annotations

from outbox_worker.standin.answers import BAD_KEY_MESSAGE, PATH, BodyVariant
from outbox_worker.standin.faults import Latency, parse_latency
from outbox_worker.standin.process import serve
from outbox_worker.standin.server import DEFAULT_API_KEY, Received, StandIn
from outbox_worker.standin.steps import DROP, Step, StepName

__all__ = [
    "BAD_KEY_MESSAGE",
    "DEFAULT_API_KEY",
    "DROP",
    "PATH",
    "BodyVariant",
    "Latency",
    "Received",
    "StandIn",
    "Step",
    "StepName",
    "parse_latency",
    "serve",
]
