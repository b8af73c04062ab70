"""The audit trail: who did what, when, through which door, to how many rows."""

from __future__ import annotations

import json

from outbox_worker.console.html import Html, join, render, when
from outbox_worker.pii import mask_text
from outbox_worker.store.audit import AuditEntry

DETAILS_WIDTH = 200


def _details(entry: AuditEntry) -> str:
    text = json.dumps(entry.details, ensure_ascii=False, sort_keys=True, default=str)
    text = mask_text(text)  # a filter typed by an operator may quote personal data
    return text if len(text) <= DETAILS_WIDTH else text[: DETAILS_WIDTH - 1] + "…"


def _window_form(chosen: str) -> Html:
    options = join(
        render(
            '<option value="{v}"{sel}>{v}</option>',
            v=value,
            sel=Html(" selected" if value == chosen else ""),
        )
        for value in ("24h", "7d", "30d", "90d", "400d")
    )
    return render(
        '<form method="get" action="/audit" class="filters">'
        '<label>Window <select name="since">{options}</select></label>'
        '<button type="submit">Show</button></form>',
        options=options,
    )


def audit_page(entries: list[AuditEntry], chosen: str = "7d") -> Html:
    """The window's form and the table of operations, newest first."""
    head = join(
        render('<th scope="col">{h}</th>', h=h)
        for h in ["When", "Action", "Who", "Database role", "Rows", "Details"]
    )
    rows = [
        render(
            '<tr><td data-label="When">{at}</td><td data-label="Action">{action}</td>'
            '<td data-label="Who">{who}</td><td data-label="Database role">{role}</td>'
            '<td class="num" data-label="Rows">{rows}</td>'
            '<td class="key" data-label="Details">{details}</td></tr>',
            at=when(e.at),
            action=e.action,
            who=f"{e.actor or '-'} (via {e.via})",
            role=e.db_role,
            rows=e.row_count,
            details=_details(e),
        )
        for e in entries
    ]
    body = join(rows) or Html('<tr><td colspan="6">Nothing was done in this window.</td></tr>')
    return render(
        '{form}<table class="list"><caption>Operator actions, last {chosen}, newest first'
        "</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        form=_window_form(chosen),
        chosen=chosen,
        head=head,
        body=body,
    )
