"""The installed distribution's version, for the User-Agent and `--version`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("outbox-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
