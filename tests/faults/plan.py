"""A chaos run's plan, drawn from ``random.Random(seed)``: what goes wrong, when, to which message.

The plan is pure data (no I/O, no clock): the same profile and seed give the same plan, compared
by ``Plan.digest()``. Times are seconds from the start of the run.

- Messages: ``updates`` valid updates, enqueued at ``enqueue_rate`` per second, each keyed by its
  stand-in message key ``customer.customerId`` (or ``supplier.supplierId``). A seeded share gets
  a per-message script, and with it an expected fate (``MessageFault``):
  poison answers (nul200, huge200, absurd429, absurd503: acknowledged; surrogate400, huge400:
  dead with 400), redirects (307/302 for max_attempts or one more answers, then 200:
  acknowledged, since a redirect spends no attempt), message-at-fault statuses (400, 413, 422:
  dead with that status) and "always 500" (dead after max attempts).
- Planted rows, inserted by raw SQL at the start (healthy endpoint), as another service might:
  a pending payload that is a JSON string or array, a valid update with ``history = 'null'`` or
  ``attempts = 2147483647``: the schema refuses them (row checks of migration 0004), so they are
  expected refused at INSERT, never stored; a payload over 1 MiB (dead "too large", never sent);
  a valid update at the schema's attempts bound, 1,000,000 (acknowledged: a row's bookkeeping is
  the worker's to keep within bounds, the update itself is fine).
- Schedule: SIGKILL a random worker every few seconds (it is restarted at once); restart
  PostgreSQL once or twice; stand-in windows one after another with healthy gaps between them,
  every kind once per cycle in a seeded order: a 503 storm, a full outage (stand-in stopped),
  dropped connections, 401 for everyone, a 429 burst, slow answers.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.standin import Step
from tests.cases import registration_update

MAX_INT = 2_147_483_647
ATTEMPTS_BOUND = 1_000_000  # the schema's messages_attempts_bounded
# Dead-expected scripts repeat their answer, so a re-send after a SIGKILL meets it again.
REPEAT = 5
ALWAYS = 200  # "always 500": more answers than any run asks for


class Fate(StrEnum):
    """How a message must end; each dead fate names the fault that explains it."""

    ACKNOWLEDGED = "acknowledged"
    DEAD_400 = "dead: 400 from the endpoint"
    DEAD_413 = "dead: 413 from the endpoint"
    DEAD_422 = "dead: 422 from the endpoint"
    DEAD_GAVE_UP = "dead: gave up after max attempts"
    DEAD_NOT_OBJECT = "dead: payload not a JSON object"
    DEAD_TOO_LARGE = "dead: payload too large"
    REFUSED = "refused by the schema at INSERT"


DEAD_BY_STATUS = {400: Fate.DEAD_400, 413: Fate.DEAD_413, 422: Fate.DEAD_422}


class WindowKind(StrEnum):
    """What the stand-in does for everyone during a window."""

    STORM_503 = "503 storm"
    OUTAGE = "full outage (stopped)"
    DROP = "dropped connections"
    UNAUTHORIZED = "401 for everyone"
    BURST_429 = "429 burst"
    SLOW = "slow answers"


@dataclass(frozen=True, slots=True)
class Profile:
    """The size and pacing of a run; everything else comes from the seed."""

    updates: int
    seed: int
    workers: int = 3
    concurrency: int = 16  # sends in flight per worker (OUTBOX_CONCURRENCY)
    enqueue_rate: float = 65.0  # updates per second
    max_attempts: int = 4
    kill_every: tuple[float, float] = (3.0, 6.0)
    pg_restarts: tuple[int, int] = (1, 2)
    window_length: tuple[float, float] = (1.5, 3.0)
    window_gap: tuple[float, float] = (1.5, 3.0)
    first_window_at: float = 3.0
    window_kinds: tuple[WindowKind, ...] = tuple(WindowKind)
    burst_429: int = 40
    poison: tuple[float, int] = (0.01, 60)  # (share of updates, at most)
    redirects: tuple[float, int] = (0.005, 12)
    rejected: tuple[float, int] = (0.01, 150)
    always_500: tuple[float, int] = (0.005, 40)
    planted_each: int = 1
    latency: tuple[float, float] = (0.05, 0.4)  # kills then catch sends in flight
    drain_timeout: float = 90.0

    @classmethod
    def short(cls, seed: int) -> Profile:
        """The CI profile: 2,000 updates over about half a minute of chaos."""
        return cls(updates=2000, seed=seed)

    @classmethod
    def long(cls, updates: int, seed: int, *, enqueue_rate: float = 250.0) -> Profile:
        """The bench profile: ``updates`` at a faster pace, the same faults and schedule rules.

        Windows pause delivery about half the time and answers take 50-400 ms, so 3 workers need
        64 sends in flight each to keep up with 250 updates/s; the drain gets 5 s per 1,000.
        """
        return cls(
            updates=updates,
            seed=seed,
            enqueue_rate=enqueue_rate,
            concurrency=64,
            planted_each=3,
            drain_timeout=max(90.0, updates / 200),
        )


REDIRECTS: list[Step] = ["redirect307", "redirect302"]
POISON_STEPS: dict[str, tuple[Step, int, Fate]] = {
    # step: (the step, how many times it answers, the fate)
    "nul200": ("nul200", 1, Fate.ACKNOWLEDGED),
    "huge200": ("huge200", 1, Fate.ACKNOWLEDGED),
    "absurd429": ("absurd429", 1, Fate.ACKNOWLEDGED),
    "absurd503": ("absurd503", 1, Fate.ACKNOWLEDGED),
    "surrogate400": ("surrogate400", REPEAT, Fate.DEAD_400),
    "huge400": ("huge400", REPEAT, Fate.DEAD_400),
}


@dataclass(frozen=True, slots=True)
class MessageFault:
    """A message's own script and the fate it implies."""

    kind: str  # "nul200", "redirect307", "rejected-413", "always-500", ...
    script: tuple[Step, ...]
    fate: Fate


@dataclass(frozen=True, slots=True)
class PlantedRow:
    """A row inserted by raw SQL, as another service might write it."""

    kind: str  # "string", "array", "too-large", "history-null", "attempts-max"
    payload: str  # JSON text
    fate: Fate
    key: str | None = None  # the stand-in message key, when the payload has one
    history: str = "[]"
    attempts: int = 0

    @property
    def sendable(self) -> bool:
        """False when the worker must dead-letter the row without sending it."""
        return self.fate is Fate.ACKNOWLEDGED


@dataclass(frozen=True, slots=True)
class Window:
    """The stand-in misbehaves for everyone from ``start`` to ``end``."""

    kind: WindowKind
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGKILL worker number ``worker`` at ``at``."""

    at: float
    worker: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Enqueue ``keys[first:last]`` at ``at``."""

    at: float
    first: int
    last: int


@dataclass(frozen=True)
class Plan:
    """Everything a run will do, decided before it starts."""

    profile: Profile
    keys: list[str]
    faults: dict[str, MessageFault]
    planted: list[PlantedRow]
    batches: list[Batch]
    windows: list[Window]
    kills: list[Kill]
    pg_restarts: list[float]
    chaos_end: float

    def fate(self, key: str) -> Fate:
        """How the message ``key`` must end."""
        fault = self.faults.get(key)
        return fault.fate if fault is not None else Fate.ACKNOWLEDGED

    def body(self, index: int) -> dict[str, Any]:
        """The update enqueued as ``keys[index]``."""
        return registration_update(index, self.keys[index])

    def digest(self) -> str:
        """A short hash of the whole plan: equal for equal seeds and profiles."""
        text = repr((self.profile, self.keys, sorted(self.faults.items()), self.planted))
        text += repr((self.batches, self.windows, self.kills, self.pg_restarts, self.chaos_end))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_plan(profile: Profile) -> Plan:
    """Draw the whole run from ``random.Random(profile.seed)``."""
    rng = random.Random(profile.seed)
    keys = [f"chaos-{profile.seed}-{i}" for i in range(profile.updates)]
    faults = _assign_faults(keys, profile, rng)
    batches = _batches(profile)
    enqueue_end = batches[-1].at if batches else 0.0
    windows = _windows(profile, enqueue_end, rng)
    chaos_end = max(enqueue_end, windows[-1].end if windows else 0.0)
    return Plan(
        profile=profile,
        keys=keys,
        faults=faults,
        planted=_planted(profile),
        batches=batches,
        windows=windows,
        kills=_kills(profile, chaos_end, rng),
        pg_restarts=_pg_restarts(profile, chaos_end, rng),
        chaos_end=chaos_end,
    )


def _count(share: tuple[float, int], total: int) -> int:
    fraction, cap = share
    return min(cap, round(total * fraction))


def _assign_faults(
    keys: list[str], profile: Profile, rng: random.Random
) -> dict[str, MessageFault]:
    shuffled = keys[:]
    rng.shuffle(shuffled)
    faults: dict[str, MessageFault] = {}
    taken = iter(shuffled)
    for _ in range(_count(profile.poison, len(keys))):
        kind = rng.choice(sorted(POISON_STEPS))
        step, times, fate = POISON_STEPS[kind]
        faults[next(taken)] = MessageFault(kind, (step,) * times, fate)
    for _ in range(_count(profile.redirects, len(keys))):
        redirect = rng.choice(REDIRECTS)
        times = rng.randint(profile.max_attempts, profile.max_attempts + 1)
        faults[next(taken)] = MessageFault(str(redirect), (redirect,) * times, Fate.ACKNOWLEDGED)
    for _ in range(_count(profile.rejected, len(keys))):
        status = rng.choice(sorted(DEAD_BY_STATUS))
        fault = MessageFault(f"rejected-{status}", (status,) * REPEAT, DEAD_BY_STATUS[status])
        faults[next(taken)] = fault
    for _ in range(_count(profile.always_500, len(keys))):
        faults[next(taken)] = MessageFault("always-500", (500,) * ALWAYS, Fate.DEAD_GAVE_UP)
    return faults


def _planted(profile: Profile) -> list[PlantedRow]:
    rows: list[PlantedRow] = []
    for i in range(profile.planted_each):
        big_key = f"planted-{profile.seed}-big-{i}"
        big = {**registration_update(i, big_key), "padding": "x" * (MAX_PAYLOAD_BYTES + 1024)}
        history_key = f"planted-{profile.seed}-history-{i}"
        int_max_key = f"planted-{profile.seed}-int-max-{i}"
        bound_key = f"planted-{profile.seed}-attempts-{i}"
        rows += [
            PlantedRow("string", json.dumps(f"planted string {i}"), Fate.REFUSED),
            PlantedRow("array", json.dumps([{"planted": f"array {i}"}]), Fate.REFUSED),
            PlantedRow("too-large", json.dumps(big), Fate.DEAD_TOO_LARGE, big_key),
            PlantedRow(
                "history-null",
                json.dumps(registration_update(i, history_key)),
                Fate.REFUSED,
                history_key,
                history="null",
            ),
            PlantedRow(
                "attempts-int-max",
                json.dumps(registration_update(i, int_max_key)),
                Fate.REFUSED,
                int_max_key,
                attempts=MAX_INT,
            ),
            PlantedRow(
                "attempts-at-bound",
                json.dumps(registration_update(i, bound_key)),
                Fate.ACKNOWLEDGED,
                bound_key,
                attempts=ATTEMPTS_BOUND,
            ),
        ]
    return rows


def _batches(profile: Profile) -> list[Batch]:
    per_batch = max(1, round(profile.enqueue_rate / 4))  # four batches a second
    return [
        Batch(at=first / profile.enqueue_rate, first=first, last=min(first + per_batch, n))
        for n in [profile.updates]
        for first in range(0, n, per_batch)
    ]


def _windows(profile: Profile, enqueue_end: float, rng: random.Random) -> list[Window]:
    """Cycles of every kind (each in a fresh seeded order): one whole cycle at least, then on
    until enqueueing is over."""
    windows: list[Window] = []
    at = profile.first_window_at
    if not profile.window_kinds:
        return windows
    while True:
        kinds = list(profile.window_kinds)
        rng.shuffle(kinds)
        for kind in kinds:
            if len(windows) >= len(profile.window_kinds) and at >= enqueue_end:
                return windows
            end = at + rng.uniform(*profile.window_length)
            windows.append(Window(kind, round(at, 3), round(end, 3)))
            at = end + rng.uniform(*profile.window_gap)


def _kills(profile: Profile, chaos_end: float, rng: random.Random) -> list[Kill]:
    kills: list[Kill] = []
    at = rng.uniform(*profile.kill_every)
    while at < chaos_end:
        kills.append(Kill(round(at, 3), rng.randrange(profile.workers)))
        at += rng.uniform(*profile.kill_every)
    return kills


def _pg_restarts(profile: Profile, chaos_end: float, rng: random.Random) -> list[float]:
    count = rng.randint(*profile.pg_restarts)
    if count == 0:
        return []
    span = chaos_end * 0.7 / count  # one restart in each slice of the middle of the run
    return [round(chaos_end * 0.15 + span * (i + rng.uniform(0.1, 0.9)), 3) for i in range(count)]
