"""The contract with Ravelin: the /v2/registration body as a model, its scan and rules, the limits.

No I/O here. ``from outbox_worker.payload import RegistrationUpdate`` is the public spelling; the
model is loaded on first use, so a worker that only reads ``payload.limits`` never imports pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outbox_worker.payload.model import (
        App,
        Customer,
        Device,
        Location,
        PasswordMechanism,
        Registration,
        RegistrationMechanism,
        RegistrationUpdate,
        Supplier,
        hash_password,
        parse_update,
    )

__all__ = [
    "App",
    "Customer",
    "Device",
    "Location",
    "PasswordMechanism",
    "Registration",
    "RegistrationMechanism",
    "RegistrationUpdate",
    "Supplier",
    "hash_password",
    "parse_update",
]


def __getattr__(name: str) -> Any:
    """The model's public names, imported on first use (pydantic costs a worker's start-up)."""
    if name in __all__:
        return getattr(import_module("outbox_worker.payload.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
