"""A traced delivery attempt's CPU alone, without the worker's drains (whose CPU has two levels
on a shared machine, wider apart than tracing's cost).

    python -m bench.tracing_alone [--attempts 50000] [--rounds 5] [--claim 50] [--tiny]

A loop drives the tracing seam as the worker does (delivery/worker.py and dispatch.py):
``claim_started`` → ``claimed`` (a claim of ``--claim`` messages) → for each message ``attempt``
→ ``settled`` (the plain acknowledgement ``policy`` writes for a 200) → ``end``, yielding to the
event loop after each attempt as the worker's tasks do. Every message is the worker's ``Message``
with a producer's traceparent whose trace is sampled (the worst case: every attempt recorded).
The loop runs, in interleaved rounds whose order rotates, with:

- ``NO_TRACING``: the worker without tracing;
- record: the lean recorder (``LeanTracing``, the sampler ``start_tracing`` picks) with a sink
  that drops each batch: the seam's calls, the buffer, the export task;
- encode: the same, the sink encoding each batch for OTLP (``wire.SpanWire``, as ``OtlpSink``
  builds it) and dropping the bytes; the encoding is also timed on its own;
- export: the tracing ``start_tracing(["otlp"])`` builds, POSTing over OTLP/HTTP to a sink in
  another process (``bench.otlp_sink``: its CPU is not counted), closed at the end of the loop.

The loop ends a span every few µs, twenty times as fast as a worker delivers: a POST slower than
2,048 of its attempts (OTEL_BSP_MAX_QUEUE_SIZE's default) would drop spans, leaving their cost out,
so every arm's queue holds a whole loop (``--attempts``); batches are the default 512 spans.
Each run is measured with ``time.process_time()`` (this process's CPU, all threads), from the
first claim to the end of ``close``; the sink's span count is checked after every export run.
No database. Target: none (README "Tracing" quotes it: ~4 µs a traced attempt in all).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Final
from uuid import uuid4

from opentelemetry.sdk.trace import TracerProvider

from bench.harness import load, print_table, run_async
from bench.otlp_sink import sink_counts, sink_process
from outbox_worker.delivery import policy
from outbox_worker.delivery.tracing import NO_TRACING, Tracing
from outbox_worker.integrations.otel.lean import Attempt, Batching, LeanTracing
from outbox_worker.integrations.otel.spans import (
    SdkSampling,
    span_wire,
    start_tracing,
    worker_resource,
)
from outbox_worker.models import Answer, LeaseToken, Message, MessageId, Settlement

OFF, RECORD, ENCODE, EXPORT = "off", "record", "encode", "export"
ARMS: Final = (OFF, RECORD, ENCODE, EXPORT)
SERVER_ADDRESS: Final = "127.0.0.1"  # the delivery endpoint's host, as the worker names it
CLOSE_WITHIN_S: Final = 60.0


def sampled_messages(count: int) -> list[Message]:
    """``count`` claimed messages, each with its producer's sampled traceparent (ids as a
    table's: increasing from a bigint far from 0)."""
    rng = random.Random(19)
    messages = []
    for i in range(count):
        trace, parent = rng.getrandbits(128) | 1, rng.getrandbits(64) | 1  # never all zeros
        messages.append(Message(
            id=MessageId(1_000_000 + i), body=b"{}", attempts=0, age=timedelta(seconds=1),
            lease_token=LeaseToken(uuid4()), traceparent=f"00-{trace:032x}-{parent:016x}-01",
        ))  # fmt: skip
    return messages


def acknowledgements(messages: Sequence[Message]) -> list[Settlement]:
    """The row write the worker makes for each message's plain 200 (built before the loops:
    both arms would pay for it alike)."""
    settlements = []
    for message in messages:
        settlement = policy.plain_acknowledgement(message, Answer(200, 0.05))
        assert settlement is not None
        settlements.append(settlement)
    return settlements


async def drive(
    tracing: Tracing, messages: Sequence[Message], settlements: Sequence[Settlement], claim: int
) -> None:
    """The worker's calls on the seam for every message, a claim of ``claim`` at a time."""
    for first in range(0, len(messages), claim):
        batch = messages[first : first + claim]
        source = tracing.claim_started().claimed(batch)
        for message, settlement in zip(batch, settlements[first : first + claim], strict=True):
            trace = source.attempt(message)
            trace.settled(settlement)
            trace.end()
            await asyncio.sleep(0)  # the worker's tasks yield between attempts


class DropSink:
    """A sink that takes each batch and keeps only the count of its spans."""

    def __init__(self) -> None:
        self.spans = 0

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Count the batch; nothing is encoded or sent."""
        self.spans += len(spans)

    async def close(self) -> None:
        """Nothing to release."""


class EncodeSink(DropSink):
    """A sink that encodes each batch as ``OtlpSink`` does, times the encoding, drops the bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._wire = span_wire(worker_resource(), SERVER_ADDRESS)
        self.cpu_s = 0.0
        self.bytes = 0

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Encode the batch (timed), count its spans and bytes."""
        started = time.process_time()
        body = self._wire.encode(spans)
        self.cpu_s += time.process_time() - started
        self.spans += len(spans)
        self.bytes += len(body)


def build(arm: str, sink_url: str, queue: int) -> tuple[Tracing, DropSink | None]:
    """The tracing of ``arm`` (and its counting sink, for record and encode), its export queue
    holding ``queue`` spans."""
    if arm == OFF:
        return NO_TRACING, None
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink_url, "OTEL_BSP_MAX_QUEUE_SIZE": str(queue)}
    if arm == EXPORT:
        return start_tracing(["otlp"], server_address=SERVER_ADDRESS, environ=environ), None
    sink = DropSink() if arm == RECORD else EncodeSink()
    sampling = SdkSampling(TracerProvider().sampler)  # as start_tracing picks it
    return LeanTracing([sink], sampling=sampling, batching=Batching.from_environ(environ)), sink


async def measure(
    arm: str, sink_url: str, messages: Sequence[Message], settlements: Sequence[Settlement],
    claim: int,
) -> tuple[float, DropSink | None]:  # fmt: skip
    """Process CPU seconds of one loop over ``messages`` with ``arm``'s tracing, its close
    included (not its construction)."""
    tracing, sink = build(arm, sink_url, max(len(messages), Batching().max_queue))
    gc.collect()
    started = time.process_time()
    await drive(tracing, messages, settlements, claim)
    await tracing.close(CLOSE_WITHIN_S)
    return time.process_time() - started, sink


def check_exported(sink_url: str, before: int, expected: int) -> int:
    """The spans the sink got since ``before``; fail loudly unless all ``expected`` came (a
    span missing is a cost missing from the figure)."""
    received = sink_counts(sink_url)["spans"] - before
    if received != expected:
        raise SystemExit(f"the OTLP sink received {received:,} spans, not {expected:,}")
    return received


async def run(args: argparse.Namespace, sink_url: str) -> None:
    """Warm every arm up, then the interleaved rounds, then the tables."""
    messages = sampled_messages(args.attempts)
    settlements = acknowledgements(messages)
    warm = min(len(messages), 5_000)
    for arm in ARMS:  # imports, the HTTP session's code paths, the sink's first connection
        await measure(arm, sink_url, messages[:warm], settlements[:warm], args.claim)
    exported = sink_counts(sink_url)["spans"]
    cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
    encode_cpu, encode_bytes, encoded, received = 0.0, 0, 0, 0
    for round_ in range(args.rounds):
        shift = round_ % len(ARMS)  # rotate who goes first
        line = []
        for arm in ARMS[shift:] + ARMS[:shift]:
            seconds, sink = await measure(arm, sink_url, messages, settlements, args.claim)
            cpu[arm].append(seconds / len(messages) * 1e6)
            if sink is not None and sink.spans != len(messages):
                raise SystemExit(f"{arm}: {sink.spans:,} spans recorded, not {len(messages):,}")
            if isinstance(sink, EncodeSink):
                encode_cpu, encode_bytes = encode_cpu + sink.cpu_s, encode_bytes + sink.bytes
                encoded += sink.spans
            if arm == EXPORT:
                got = check_exported(sink_url, exported, len(messages))
                exported += got
                received += got
            line.append(f"{arm} {cpu[arm][-1]:.2f}")
        print(f"round {round_ + 1}: µs/attempt {', '.join(line)}; {load()}", flush=True)
    print_cpu(cpu, args)
    print(f"\nthe sink received {received:,} spans of {args.rounds * len(messages):,} exported "
          f"in the measured rounds; the encoding alone (timed around SpanWire.encode): "
          f"{encode_cpu / max(encoded, 1) * 1e6:.2f} µs and {encode_bytes / max(encoded, 1):.0f} "
          f"bytes a span; {load()}", flush=True)  # fmt: skip


def print_cpu(cpu: dict[str, list[float]], args: argparse.Namespace) -> None:
    """The table: CPU an attempt for each arm, and each step's cost (medians of the rounds'
    differences, min-max)."""
    labels = {
        OFF: "NO_TRACING",
        RECORD: "record only (sink drops batches)",
        ENCODE: "+ encode (wire, bytes dropped)",
        EXPORT: "+ export (start_tracing, OTLP/HTTP POST)",
    }
    rows: list[list[object]] = []
    for previous, arm in zip((None, *ARMS), ARMS, strict=False):
        rows.append([
            labels[arm], statistics.median(cpu[arm]),
            "-" if previous is None else _spread(cpu[arm], cpu[previous]),
            "-" if previous is None else _spread(cpu[arm], cpu[OFF]),
        ])  # fmt: skip
    print_table(
        f"A traced attempt alone: process CPU µs an attempt, medians over {args.rounds} "
        f"interleaved rounds of {args.attempts:,} attempts (claims of {args.claim}, every trace "
        "sampled)",
        [
            "tracing",
            "CPU µs/attempt",
            "step's cost µs (min to max)",
            "more than off µs (min to max)",
        ],
        rows,
    )


def _spread(values: list[float], base: list[float]) -> str:
    differences = [v - b for v, b in zip(values, base, strict=True)]
    return (
        f"{statistics.median(differences):.2f} ({min(differences):.2f} to {max(differences):.2f})"
    )


def main() -> None:
    """Parse the options, start the sink process, run the rounds."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=50_000, help="attempts a loop traces")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--claim", type=int, default=50, help="messages a claim takes")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.attempts, args.rounds = 2_000, 1
    print(f"{load()}", flush=True)
    with sink_process() as sink_url:
        run_async(lambda: run(args, sink_url))


if __name__ == "__main__":
    main()
