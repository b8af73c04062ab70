"""The circuit breaker (configuration faults and outages) and the rate gate: pure, clock injected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outbox_worker.delivery.circuit import (
    SLOT_GRACE_S,
    CircuitBreaker,
    CircuitState,
    PauseReason,
    RateGate,
    Recorded,
    SendSlots,
)
from outbox_worker.models import Verdict
from outbox_worker.settings.config import CircuitSettings
from tests.unit.fakes import ManualClock

# --- Circuit breaker -----------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    """A monotonic clock under the test's control."""
    return ManualClock()


@pytest.fixture
def circuit(clock: ManualClock) -> CircuitBreaker:
    """A circuit breaker with the default probe intervals (1 s doubling to 60 s)."""
    return CircuitBreaker(CircuitSettings(), clock)


def state_of(circuit: CircuitBreaker) -> CircuitState:
    """The circuit's state read afresh (a call, so type narrowing does not stick to it)."""
    return circuit.state


def fail_probe(circuit: CircuitBreaker, clock: ManualClock) -> float:
    """Wait for the probe, let it fail with a PAUSE, and return the next probe interval."""
    clock.advance(circuit.next_probe_in())
    permit = circuit.acquire()
    assert permit is not None
    assert permit.probe
    assert circuit.record_pause(permit) is True
    return circuit.next_probe_in()


def test_circuit_starts_probing_with_one_permit(circuit: CircuitBreaker) -> None:
    """At start-up one send may go, so a wrong key costs one request, not a batch."""
    assert circuit.state is CircuitState.PROBING
    assert circuit.permits() == 1
    assert circuit.next_probe_in() == 0.0
    probe = circuit.acquire()
    assert probe is not None
    assert probe.probe
    assert circuit.permits() == 0
    assert circuit.acquire() is None


def test_pause_opens_the_circuit_until_the_first_interval(
    circuit: CircuitBreaker, clock: ManualClock
) -> None:
    """A PAUSE opens the circuit: no sends for 1 s, then one probe."""
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_pause(probe) is True
    assert circuit.state is CircuitState.OPEN
    assert (circuit.permits(), circuit.acquire(), circuit.next_probe_in()) == (0, None, 1.0)
    clock.advance(0.5)
    assert circuit.acquire() is None
    clock.advance(0.5)
    assert state_of(circuit) is CircuitState.PROBING
    assert circuit.permits() == 1


def test_failed_probes_double_the_interval_up_to_the_cap(
    circuit: CircuitBreaker, clock: ManualClock
) -> None:
    """Each failed probe doubles the wait: 1, 2, 4 ... 32, then 60 s from there on."""
    intervals = [fail_probe(circuit, clock) for _ in range(9)]
    assert intervals == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_success_closes_and_resets_the_interval(
    circuit: CircuitBreaker, clock: ManualClock
) -> None:
    """A successful probe closes the circuit once; a later pause starts again at 1 s."""
    for _ in range(4):
        fail_probe(circuit, clock)
    clock.advance(circuit.next_probe_in())
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_success(probe) is True
    assert circuit.state is CircuitState.CLOSED
    assert (circuit.permits(), circuit.next_probe_in()) == (None, 0.0)
    sends = [circuit.acquire() for _ in range(100)]
    assert all(p is not None and not p.probe for p in sends)
    assert [circuit.record_success(p) for p in sends if p] == [False] * 100
    assert circuit.record_pause(sends[0]) is True  # type: ignore[arg-type]
    assert circuit.next_probe_in() == 1.0


def test_answers_in_flight_when_the_circuit_opened_are_ignored(
    circuit: CircuitBreaker, clock: ManualClock
) -> None:
    """Of many PAUSE answers from one batch, only the first opens the circuit."""
    probe = circuit.acquire()
    assert probe is not None
    circuit.record_success(probe)
    batch = [circuit.acquire() for _ in range(64)]
    changes = [circuit.record_pause(p) for p in batch if p]
    assert changes == [True] + [False] * 63
    assert circuit.next_probe_in() == 1.0  # not doubled 63 times
    clock.advance(1.0)
    late = circuit.acquire()
    assert late is not None
    assert circuit.record_success(batch[1]) is False  # type: ignore[arg-type]
    assert circuit.state is CircuitState.PROBING
    assert circuit.record_success(late) is True


def test_abandoned_probe_frees_the_slot(circuit: CircuitBreaker) -> None:
    """A probe abandoned without an answer (shutdown, lease too short) frees the probe slot."""
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record_other(probe) is False
    assert circuit.state is CircuitState.PROBING
    assert circuit.permits() == 1
    assert circuit.next_probe_in() == 0.0


@pytest.mark.parametrize(
    ("verdict", "state"),
    [
        (Verdict.ACKNOWLEDGE, CircuitState.CLOSED),
        (Verdict.PAUSE, CircuitState.OPEN),
        (Verdict.DEAD_LETTER, CircuitState.PROBING),
    ],
)
def test_record_dispatches_on_the_verdict(
    circuit: CircuitBreaker, verdict: Verdict, state: CircuitState
) -> None:
    """record(permit, verdict) moves the circuit as the matching record_* would."""
    probe = circuit.acquire()
    assert probe is not None
    circuit.record(probe, verdict)
    assert circuit.state is state


def test_custom_probe_settings(clock: ManualClock) -> None:
    """probe_initial and probe_cap come from CircuitSettings."""
    settings = CircuitSettings(probe_initial=timedelta(seconds=5), probe_cap=timedelta(seconds=12))
    circuit = CircuitBreaker(settings, clock)
    assert [fail_probe(circuit, clock) for _ in range(4)] == [5, 10, 12, 12]


def test_start_up_probes_failing_transiently_add_up_to_an_outage(clock: ManualClock) -> None:
    """At start-up each failing probe is charged and the next probes at once, until enough
    different messages failed: then delivery pauses for an outage."""
    circuit = CircuitBreaker(CircuitSettings(outage_threshold=3), clock)
    results = []
    for _ in range(3):
        probe = circuit.acquire()
        assert probe is not None
        assert probe.probe
        results.append(circuit.record(probe, Verdict.RETRY, transient=True))
    assert results == [Recorded(False, spend=True)] * 2 + [Recorded(True, spend=False)]
    assert (circuit.state, circuit.reason) == (CircuitState.OPEN, PauseReason.OUTAGE)


# --- Outages --------------------------------------------------------------------------------


def closed(clock: ManualClock, threshold: int = 5) -> CircuitBreaker:
    """A closed circuit breaker with an outage threshold of ``threshold`` messages."""
    circuit = CircuitBreaker(CircuitSettings(outage_threshold=threshold), clock)
    probe = circuit.acquire()
    assert probe is not None
    circuit.record_success(probe)
    return circuit


def fail(circuit: CircuitBreaker, key: int) -> Recorded:
    """One send (of message ``key``, for the reader) that failed transiently."""
    permit = circuit.acquire()
    assert permit is not None
    return circuit.record(permit, Verdict.RETRY, transient=True)


def test_outage_opens_after_threshold_failures_in_a_row(clock: ManualClock) -> None:
    """Four failing sends spend their attempts; the fifth trips the breaker and does not."""
    circuit = closed(clock)
    assert [fail(circuit, key) for key in range(4)] == [Recorded(False, spend=True)] * 4
    assert fail(circuit, 4) == Recorded(changed=True, spend=False)
    assert (circuit.state, circuit.reason) == (CircuitState.OPEN, PauseReason.OUTAGE)
    assert circuit.next_probe_in() == 1.0


def test_one_message_failing_alone_pauses_after_the_threshold(clock: ManualClock) -> None:
    """A message failing alone, with nothing answered between, cannot be told from an outage:
    after the threshold it stops paying, so a small backlog survives an outage of any length."""
    circuit = closed(clock)
    assert [fail(circuit, 7).spend for _ in range(5)] == [True] * 4 + [False]
    assert circuit.reason is PauseReason.OUTAGE


@pytest.mark.parametrize("verdict", [Verdict.ACKNOWLEDGE, Verdict.DEAD_LETTER])
def test_any_other_answer_between_failures_resets_the_count(
    clock: ManualClock, verdict: Verdict
) -> None:
    """A message that fails while others are answered spends its attempts: no outage."""
    circuit = closed(clock)
    for round_ in range(10):
        for key in range(4):
            assert fail(circuit, round_ * 10 + key).spend
        permit = circuit.acquire()
        assert permit is not None
        assert circuit.record(permit, verdict) == Recorded(False, spend=True)
    assert circuit.state is CircuitState.CLOSED


def test_sends_in_flight_when_the_outage_opened_spend_nothing(clock: ManualClock) -> None:
    """Failures of sends that were in flight when the outage was declared are not charged."""
    circuit = closed(clock, threshold=3)
    batch = [circuit.acquire() for _ in range(20)]
    results = [circuit.record(p, Verdict.RETRY, transient=True)
               for k, p in enumerate(batch) if p]  # fmt: skip
    assert [r.spend for r in results] == [True, True] + [False] * 18
    assert [r.changed for r in results] == [False, False, True] + [False] * 17


def test_failed_outage_probes_back_off_and_spend_nothing(clock: ManualClock) -> None:
    """During an outage one probe goes at 1 s, 2 s, 4 s ...; its failures cost no attempt."""
    circuit = closed(clock, threshold=1)
    fail(circuit, 0)
    intervals = []
    for key in range(1, 8):
        clock.advance(circuit.next_probe_in())
        assert circuit.permits() == 1
        assert fail(circuit, key) == Recorded(changed=True, spend=False)
        intervals.append(circuit.next_probe_in())
    assert intervals == [2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("verdict", [Verdict.ACKNOWLEDGE, Verdict.DEAD_LETTER])
def test_any_answer_to_an_outage_probe_resumes_full_speed(
    clock: ManualClock, verdict: Verdict
) -> None:
    """The endpoint answering again (a 2xx, or a 4xx that blames the message) closes the circuit."""
    circuit = closed(clock, threshold=1)
    fail(circuit, 0)
    clock.advance(circuit.next_probe_in())
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record(probe, verdict) == Recorded(changed=True, spend=True)
    assert (circuit.state, circuit.reason, circuit.permits()) == (CircuitState.CLOSED, None, None)


def test_a_4xx_to_a_configuration_probe_keeps_probing(
    circuit: CircuitBreaker, clock: ManualClock
) -> None:
    """After a 401, a 4xx to the probe says nothing about the key: the next send probes again."""
    probe = circuit.acquire()
    assert probe is not None
    circuit.record_pause(probe)
    clock.advance(circuit.next_probe_in())
    probe = circuit.acquire()
    assert probe is not None
    assert circuit.record(probe, Verdict.DEAD_LETTER) == Recorded(False, spend=True)
    assert (circuit.state, circuit.reason) == (CircuitState.PROBING, PauseReason.CONFIGURATION)


# --- Rate gate -----------------------------------------------------------------------------


def test_rate_gate_pause_until_holds_all_sends_and_keeps_the_later() -> None:
    """A 429 slow-down holds every send; an earlier pause never shortens a later one."""
    gate = RateGate()
    gate.pause_until(30.0)
    gate.pause_until(20.0)
    assert gate.delay(10.0) == 20.0
    gate.pause_until(40.0)
    assert gate.delay(10.0) == 30.0
    assert gate.delay(45.0) == 0.0


def test_send_slots_are_one_interval_apart_in_order() -> None:
    """Reserved slots come out in order, 1/rate apart."""
    slots = SendSlots(20)
    slots.add(10.0, 3)

    assert [slots.take(9.0), slots.take(9.0), slots.take(9.0), slots.take(9.0)] == [
        10.0,
        10.05,
        10.1,
        None,
    ]


def test_a_slot_found_past_its_grace_is_dropped() -> None:
    """A slot more than the grace in the past is skipped for the next usable one."""
    slots = SendSlots(4)  # slots 0.25 s apart
    slots.add(10.0, 3)

    assert slots.take(10.0 + SLOT_GRACE_S + 0.01) == 10.25
    assert not slots.usable(10.0, 10.0 + SLOT_GRACE_S + 0.01)


@pytest.mark.parametrize(
    ("rate", "waiting", "wanted"), [(20, 1, 1), (20, 3, 3), (20, 64, 5), (1, 64, 1), (100, 64, 25)]
)
def test_a_reservation_covers_the_waiting_senders_up_to_a_batch(
    rate: float, waiting: int, wanted: int
) -> None:
    """One slot per waiting sender, at most a quarter second of the rate (at least one)."""
    assert SendSlots(rate).wanted(waiting) == wanted
