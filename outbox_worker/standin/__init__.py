"""The local stand-in for Ravelin's ``POST /v2/registration`` (see ``server``)."""

from outbox_worker.standin.server import (
    BAD_KEY_MESSAGE,
    DEFAULT_API_KEY,
    DROP,
    PATH,
    BodyVariant,
    Latency,
    Received,
    StandIn,
    Step,
    StepName,
    main,
    parse_latency,
    serve,
)

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
    "main",
    "parse_latency",
    "serve",
]
