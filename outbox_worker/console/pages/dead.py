"""The dead-letter list: the filter form, one page of rows, older/newest links, requeue buttons."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from outbox_worker.console.filters import PAGE_SIZE, WINDOWS, DeadQuery
from outbox_worker.console.html import Html, age, csrf_field, join, render
from outbox_worker.console.masking import shown_key, shown_reason, subject
from outbox_worker.store.operations import DeadLetter


def _window_options(chosen: str) -> Html:
    options = [
        render(
            '<option value="{v}"{sel}>{label}</option>',
            v=value,
            label=label,
            sel=Html(" selected" if value == chosen else ""),
        )
        for value, label in WINDOWS
    ]
    if chosen and chosen not in {v for v, _ in WINDOWS}:
        options.append(render('<option value="{v}" selected>{v}</option>', v=chosen))
    return join(options)


def filter_form(q: DeadQuery) -> Html:
    """The GET form that filters the list (works without JavaScript)."""
    return render(
        '<form method="get" action="/dead" class="filters" role="search" '
        'aria-label="Filter dead letters">'
        '<label>Dead within <select name="since">{windows}</select></label>'
        '<label>Status code <input name="status" inputmode="numeric" size="4" '
        'value="{status}"></label>'
        '<label>Reason contains <input name="reason" value="{reason}"></label>'
        '<label>Dedup key <input name="dedup_key" value="{dedup}"></label>'
        '<button type="submit">Filter</button> <a href="/dead">Clear</a></form>',
        windows=_window_options(q.text.get("since", "")),
        status=q.text.get("status", ""),
        reason=q.text.get("reason", ""),
        dedup=q.text.get("dedup_key", ""),
    )


def _row(r: DeadLetter, now: datetime, admin: bool) -> Html:
    pick = (
        render(
            '<td><input type="checkbox" name="id" value="{id}" '
            'aria-label="Select message {id}"></td>',
            id=r.id,
        )
        if admin
        else Html("")
    )
    return render(
        '<tr>{pick}<td data-label="Id"><a href="/messages/{id}">{id}</a></td>'
        '<td data-label="Age">{age}</td><td class="num" data-label="Status">{status}</td>'
        '<td class="num" data-label="Attempts">{attempts}</td>'
        '<td data-label="Subject">{subject}</td>'
        '<td class="reason" data-label="Reason">{reason}</td>'
        '<td class="key" data-label="Dedup key">{key}</td></tr>',
        pick=pick,
        id=r.id,
        age=age((now - r.dead_at).total_seconds()),
        status="-" if r.last_status is None else r.last_status,
        attempts=r.attempts,
        subject=subject(r),
        reason=shown_reason(r),
        key=shown_key(r.dedup_key),
    )


def _pager(q: DeadQuery, rows: Sequence[DeadLetter]) -> Html:
    links = []
    if q.after is not None:
        links.append(render('<a href="/dead{link}">Newest</a>', link=q.link()))
    if len(rows) == PAGE_SIZE:
        last = rows[-1]
        older = q.link(after_at=last.dead_at.isoformat(), after_id=str(last.id))
        links.append(render('<a href="/dead{link}" rel="next">Older</a>', link=older))
    return render('<nav class="pager" aria-label="Pages">{links}</nav>', links=join(links, " "))


def dead_page(
    q: DeadQuery, rows: Sequence[DeadLetter], now: datetime, *, admin: bool, csrf: str
) -> Html:
    """The list's content (inside the frame)."""
    problems = join(render('<p class="problem" role="alert">{p}</p>', p=p) for p in q.problems)
    head = join(
        render('<th scope="col">{h}</th>', h=h)
        for h in ["Id", "Age", "Status", "Attempts", "Subject", "Reason", "Dedup key"]
    )
    if admin:
        head = join([Html('<th scope="col"><span class="sr">Select</span></th>'), head])
    body = join(_row(r, now, admin) for r in rows) or Html(
        '<tr><td colspan="8">No dead letters match.</td></tr>'
    )
    table = render(
        '<table class="list"><caption>Dead letters, newest first ({filters})</caption>'
        "<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        filters=q.described,
        head=head,
        body=body,
    )
    if admin:
        table = render(
            '<form method="post" action="/dead/requeue">{csrf}{table}'
            '<div class="actions"><button type="submit">Requeue selected…</button> '
            '<a class="button" href="/dead/requeue-matching{link}">Requeue all matching…</a>'
            "</div></form>",
            csrf=csrf_field(csrf),
            table=table,
            link=q.link(),
        )
    return join([filter_form(q), problems, table, _pager(q, rows)])
