"""python -m outbox_worker: the same as the outbox-worker command."""

from outbox_worker.cli import main

main()
