"""Documented ceilings on what enters and leaves the outbox, shared by enqueue and the worker.

Both enqueue paths (Python and the SQL function) refuse updates past these limits, and the worker
dead-letters, without sending, a stored row past them (rows written by other services).
"""

from __future__ import annotations

from typing import Final

# An update's stored JSON text, in UTF-8 bytes. Registration updates are a few KiB; Ravelin
# documents no request size limit, so this is ours: it bounds a worker's memory per message.
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
# Objects and arrays nested deeper than this are refused: Ravelin's body nests four levels, and
# deep nesting exhausts recursive parsers (Python's json, PL/pgSQL) before any rule is checked.
MAX_NESTING_DEPTH: Final = 32
