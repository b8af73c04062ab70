#!/usr/bin/env bash
# What CI runs: every benchmark once at a tiny size, so none of them can rot.
# Exits non-zero only if a script crashes; a missed target is printed, never a failure.
# Uses --database-url / OUTBOX_DATABASE_URL if given, else each script starts an embedded server.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
"$PYTHON" -m bench.enqueue_bench --tiny "$@"
"$PYTHON" -m bench.delivery_bench --tiny "$@"
"$PYTHON" -m bench.scale_bench --tiny "$@"
"$PYTHON" -m bench.memory_bench --tiny "$@"
"$PYTHON" -m bench.requeue_bench --rows 2000 --batch-size 500 "$@"
"$PYTHON" -m bench.history_bench --tiny "$@"
"$PYTHON" -m bench.migration_bench --tiny "$@"
# Worker CPU per delivery with tracing on and off (the otel extra, part of .[dev]).
"$PYTHON" -m bench.tracing_bench --tiny "$@"
# A traced attempt's CPU alone (no database, so none of the options above).
"$PYTHON" -m bench.tracing_alone --tiny
# pgqueuer and procrastinate run only with the bench extra; without it (CI installs .[dev]) peers
# and enqueue_bench's table (c) print a skip line each.
"$PYTHON" -m bench.peers --tiny "$@"
"$PYTHON" -m bench.console_bench --tiny "$@"
