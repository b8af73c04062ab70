"""The dead-letter filters and page cursor from a query string or form: hostile text, parsed here.

Each bad value becomes one line naming the field; nothing unparsed reaches the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

from outbox_worker.errors import ConfigError
from outbox_worker.pii import mask_text
from outbox_worker.settings.parsing import parse_duration
from outbox_worker.store.operations import DeadCursor, DeadFilters

PAGE_SIZE: Final = 50
MAX_TEXT: Final = 200
# The choices the form offers; any duration typed into the URL works too.
WINDOWS: Final = (("", "any time"), ("15m", "15 minutes"), ("1h", "1 hour"), ("24h", "24 hours"),
                  ("7d", "7 days"), ("30d", "30 days"))  # fmt: skip
FILTER_FIELDS: Final = ("since", "status", "reason", "dedup_key")


@dataclass(frozen=True, slots=True)
class DeadQuery:
    """What the dead-letter page was asked for: the filters, the form's text, a cursor."""

    filters: DeadFilters
    text: Mapping[str, str]  # the filter fields as typed, to fill the form and build links
    after: DeadCursor | None = None
    problems: tuple[str, ...] = field(default=())

    def link(self, **extra: str) -> str:
        """A query string with these filters (and ``extra``), empty fields left out."""
        pairs = [(k, v) for k, v in self.text.items() if v] + list(extra.items())
        return "?" + urlencode(pairs) if pairs else ""

    @property
    def described(self) -> str:
        """The filters in words, masked: 'status 503, dead within 24h' or 'every dead letter'.

        Only the form's own fields and the links that carry the filters repeat what was typed.
        """
        t = self.text
        parts = [
            f"dead within {t['since']}" if t.get("since") else "",
            f"status {t['status']}" if t.get("status") else "",
            f"reason containing {mask_text(t['reason'])!r}" if t.get("reason") else "",
            f"dedup key {mask_text(t['dedup_key'])!r}" if t.get("dedup_key") else "",
        ]
        return ", ".join(p for p in parts if p) or "every dead letter"


def _status(text: str, problems: list[str]) -> int | None:
    if not text:
        return None
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text)
    problems.append("Status code: a number from 100 to 599")
    return None


def _cursor(params: Mapping[str, str], problems: list[str]) -> DeadCursor | None:
    at, ident = params.get("after_at", ""), params.get("after_id", "")
    if not at and not ident:
        return None
    try:
        when: datetime | None = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or not ident.isdigit() or len(ident) > 18:
        problems.append("Page: the link is damaged; start from the newest")
        return None
    return DeadCursor(when, int(ident))


def parse_dead_query(params: Mapping[str, str]) -> DeadQuery:
    """The page's filters from query parameters; problems are listed, bad filters dropped."""
    problems: list[str] = []
    text = {name: params.get(name, "").strip()[:MAX_TEXT] for name in FILTER_FIELDS}
    since = None
    if text["since"]:
        try:
            since = parse_duration(text["since"], name="Dead within")
        except ConfigError as exc:
            problems.append(str(exc))
    filters = DeadFilters(
        since=since,
        status_code=_status(text["status"], problems),
        error_contains=text["reason"] or None,
        dedup_key=text["dedup_key"] or None,
    )
    return DeadQuery(filters, text, _cursor(params, problems), tuple(problems))


def parse_ids(values: list[str]) -> list[int]:
    """Message ids from checkboxes; ValueError on anything else."""
    ids = sorted({int(v) for v in values if v.isdigit() and len(v) < 19})
    if len(ids) != len(set(values)):
        raise ValueError("not message ids")
    return ids
