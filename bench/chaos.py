"""The long chaos profile: ``python -m bench.chaos --updates 50000 --seed S`` prints the ledger.

The same code as the CI test (tests/faults/chaos.py), at a larger size and a faster enqueue pace:
3 worker processes, SIGKILLs every few seconds, one or two PostgreSQL restarts, stand-in windows
in seeded cycles, hostile answers and planted rows. It owns an embedded PostgreSQL in a temporary
directory. Exits 0 when every ledger line balances, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from tests.faults.chaos import run_chaos
from tests.faults.plan import Profile


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the long profile, print the ledger."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--updates", type=int, default=50_000, help="updates to enqueue")
    parser.add_argument("--seed", type=int, default=1, help="the seed of the whole run")
    parser.add_argument(
        "--rate", type=float, default=None, help="updates enqueued per second (default 250)"
    )
    args = parser.parse_args(argv)
    profile = Profile.long(args.updates, args.seed, enqueue_rate=args.rate or 250.0)
    started = time.monotonic()
    ledger = asyncio.run(run_chaos(profile))
    print(ledger.table())
    print(f"\nwall time {time.monotonic() - started:.0f}s")
    raise SystemExit(0 if ledger.ok else 1)


if __name__ == "__main__":
    main()
