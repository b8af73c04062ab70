"""outbox-worker: deliver registration outcomes to Ravelin through a transactional outbox.

Application code calls ``enqueue`` (or ``enqueue_async``) inside its own transaction; the
``outbox-worker run`` daemon delivers what was committed.
"""

from importlib.metadata import PackageNotFoundError, version

from outbox_worker.enqueue import enqueue, enqueue_async
from outbox_worker.errors import InvalidUpdate, OutboxError
from outbox_worker.payload import RegistrationUpdate

try:
    __version__ = version("outbox-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "InvalidUpdate",
    "OutboxError",
    "RegistrationUpdate",
    "__version__",
    "enqueue",
    "enqueue_async",
]
