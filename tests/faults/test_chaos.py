"""Issue 8's proof: a seeded chaos run through three real workers balances its ledger.

See tests/faults/plan.py for what goes wrong and when, tests/faults/ledger.py for the lines and
how duplicates are explained. ``python -m bench.chaos --updates 50000 --seed S`` runs the same
code at length.
"""

from __future__ import annotations

import pytest

from tests.faults.chaos import run_chaos
from tests.faults.plan import Profile


@pytest.mark.faults
@pytest.mark.timeout(420)
async def test_short_chaos_run_balances_its_ledger(chaos_seed: int) -> None:
    """2,000 updates through 3 workers under kills, PostgreSQL restarts, stand-in outages and hostile answers: none lost, every dead letter explained by its own fault, every duplicate by a kill, restart or timeout, no crash."""
    ledger = await run_chaos(Profile.short(chaos_seed))
    print(ledger.table())
    assert ledger.ok, "\n" + ledger.table()
