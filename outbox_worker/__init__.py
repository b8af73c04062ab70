"""outbox-worker: deliver registration outcomes to Ravelin through a transactional outbox."""

from importlib.metadata import PackageNotFoundError, version

from outbox_worker.errors import InvalidUpdate, OutboxError

try:
    __version__ = version("outbox-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["InvalidUpdate", "OutboxError", "__version__"]
