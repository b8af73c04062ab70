"""outbox-worker: deliver registration outcomes to Ravelin through a transactional outbox.

Application code calls ``enqueue`` (or ``enqueue_async``) inside its own transaction; the
``outbox-worker run`` daemon delivers what was committed.
"""

from typing import TYPE_CHECKING, Any

from outbox_worker.enqueue import enqueue, enqueue_async
from outbox_worker.errors import InvalidUpdate, NotInTransaction, OutboxError
from outbox_worker.version import __version__

if TYPE_CHECKING:
    from outbox_worker.payload import RegistrationUpdate

__all__ = [
    "InvalidUpdate",
    "NotInTransaction",
    "OutboxError",
    "RegistrationUpdate",
    "__version__",
    "enqueue",
    "enqueue_async",
]


def __getattr__(name: str) -> Any:
    """RegistrationUpdate on first use: pydantic would cost every worker process's start-up."""
    if name == "RegistrationUpdate":
        from outbox_worker.payload import RegistrationUpdate

        return RegistrationUpdate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
