"""What `outbox-worker demo` sends: a realistic mix of registration outcomes and the faults the
stand-in injects. Pure data, reproducible from a seed; no I/O.

The people are made up: e-mail addresses at example.com, UK telephone numbers from Ofcom's drama
range (+44 7700 900xxx), IP addresses from the documentation ranges (RFC 5737).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from outbox_worker.payload import hash_password
from outbox_worker.settings.config import DEFAULT_OUTAGE_THRESHOLD
from outbox_worker.standin import Step


class Kind(StrEnum):
    """The registration outcomes Ravelin asks to be told about."""

    CUSTOMER_SIGNUP = "customer signed up"
    SUPPLIER_SIGNUP = "driver signed up"
    EMAIL_TAKEN = "validation failed: e-mail already registered"
    PHONE_TAKEN = "validation failed: phone already registered"
    EMAIL_UNVERIFIED = "e-mail verification failed"
    PHONE_UNVERIFIED = "phone verification failed"


_WEIGHTS: dict[Kind, int] = {
    Kind.CUSTOMER_SIGNUP: 50,
    Kind.SUPPLIER_SIGNUP: 15,
    Kind.EMAIL_TAKEN: 12,
    Kind.PHONE_TAKEN: 5,
    Kind.EMAIL_UNVERIFIED: 10,
    Kind.PHONE_UNVERIFIED: 8,
}
REJECTED_SHARE = 0.02  # the stand-in answers 400: the message is at fault, dead at once
# One message the stand-in answers 503 every time: retried, then given up. Only one: failing
# alone at the end it makes max_attempts (5) failures in a row, below the outage threshold (10);
# a few such messages would add up to an "outage" and wait in its pause instead of giving up.
UNREACHABLE_MESSAGES = 1
# The first requests meet a short outage: 5xx answers and connections closed without an answer.
# Counted in requests: the worker starts probing one send at a time, so the first
# OUTBOX_OUTAGE_THRESHOLD (10) failures come from as many messages (one attempt each, never
# max_attempts) and declare the outage; the rest fail the pause's probes, which spend nothing.
# Three failed probes show the pause's doubling interval without making anyone wait for it.
OUTAGE_PATTERN: tuple[Step, ...] = (503, "drop", 503, 502, 504)
OUTAGE_FAILED_PROBES = 3
_GIVEN = ("Ada", "Ben", "Chloé", "Dev", "Eve", "Femi", "Grace", "Hiro", "Ines", "Jonas")
_FAMILY = ("Okafor", "Smith", "Nowak", "Rossi", "Khan", "Silva", "Müller", "Tanaka")
_DEVICES = (
    ("phone", "ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148"),
    ("phone", "android", "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0 Mobile"),
    ("computer", "macos", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Safari/605.1.15"),
    ("computer", "windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/125.0"),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The updates to enqueue (key, body) and the stand-in's scripts that go with them."""

    updates: list[tuple[str, dict[str, Any]]]
    kinds: Counter[Kind]
    rejected: list[str]  # message keys the stand-in answers 400
    unreachable: list[str]  # message keys the stand-in answers 503 until the worker gives up
    outage: list[Step] = field(default_factory=list)  # the global script: the first answers
    outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD  # failures in a row that declare it

    @property
    def expected_dead(self) -> int:
        """How many messages the answer policy must dead-letter."""
        return len(self.rejected) + len(self.unreachable)


def build_scenario(
    count: int, *, seed: int, now_ms: int, outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD
) -> Scenario:
    """``count`` updates in a realistic mix, with the faults scripted for the stand-in; the
    outage lasts ``outage_threshold`` failures (the worker's) and a few failed probes."""
    rng = random.Random(seed)
    kinds = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=count)
    updates = [_update(i, kind, rng, now_ms) for i, kind in enumerate(kinds)]
    keys = [key for key, _ in updates]
    split = _share(count, REJECTED_SHARE)
    faulty = rng.sample(keys, split + (UNREACHABLE_MESSAGES if count >= _FAULTS_FROM else 0))
    outage_length = outage_threshold + OUTAGE_FAILED_PROBES
    return Scenario(
        updates=updates,
        kinds=Counter(kinds),
        rejected=faulty[:split],
        unreachable=faulty[split:],
        outage=[OUTAGE_PATTERN[i % len(OUTAGE_PATTERN)] for i in range(outage_length)],
        outage_threshold=outage_threshold,
    )


def unreachable_script(max_attempts: int) -> list[Step]:
    """The answers for a message that never gets through: a 503 for each attempt, and as many
    again for sends that cost no attempt (a probe of the outage's pause may pick it)."""
    return [503] * (2 * max_attempts)


_FAULTS_FROM = 20  # fewer updates get no scripted rejections or give-ups: all are delivered


def _share(count: int, share: float) -> int:
    return max(1, round(count * share)) if count >= _FAULTS_FROM else 0


def _update(index: int, kind: Kind, rng: random.Random, now_ms: int) -> tuple[str, dict[str, Any]]:
    given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
    email = f"{given.lower()}.{family.lower()}{index}@example.com"
    person: dict[str, Any] = {
        "email": email,
        "name": f"{given} {family}",
        "telephone": f"+447700900{index % 1000:03d}",
        "telephoneCountry": "GB",
    }
    success = kind in (Kind.CUSTOMER_SIGNUP, Kind.SUPPLIER_SIGNUP)
    if success:  # verified during sign-up
        person |= {"emailVerifiedTime": now_ms, "telephoneVerifiedTime": now_ms}
    elif kind is Kind.PHONE_UNVERIFIED:  # the e-mail step passed, the SMS code did not
        person["emailVerifiedTime"] = now_ms
    # Ravelin documents no failureReason for "already registered" or "verification failed":
    # agree the encoding with the integration manager. The demo sends success=false only.
    registration: dict[str, Any] = {
        "success": success,
        "username": email,
        "timestamp": now_ms,
        "app": {"name": "Demo Shop", "platform": "web", "domain": "shop.example.com"},
        "registrationMechanism": {
            "password": {"passwordHashed": hash_password(f"pw-{rng.random()}"), "success": True}
        },
        "marketingEmailsEnabled": rng.random() < 0.4,
    }
    update: dict[str, Any] = {
        "timestamp": now_ms,
        "registration": registration,
        "device": _device(rng),
    }
    if kind is Kind.SUPPLIER_SIGNUP:
        key = f"demo-s-{index:05d}"
        update["supplier"] = person | {
            "supplierId": key,
            "groupId": "fleet-7",
            "groupName": "Demo Couriers",
            "type": "driver",
            "employmentType": "selfEmployed",
            "transportType": rng.choice(["bicycle", "car", "scooter"]),
        }
    else:
        key = f"demo-c-{index:05d}"
        update["customer"] = person | {
            "customerId": key,
            "givenName": given,
            "familyName": family,
            "registrationTime": now_ms,
        }
    return key, update


def _device(rng: random.Random) -> dict[str, Any]:
    device_type, os_name, agent = rng.choice(_DEVICES)
    return {
        "deviceId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "type": device_type,
        "os": os_name,
        "userAgent": agent,
        "language": "en-GB",
        "ipAddress": f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randint(1, 254)}",
    }
