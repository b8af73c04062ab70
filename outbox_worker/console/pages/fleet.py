"""The fleet on the overview: the pause banner, the workers table, pause and resume forms."""

from __future__ import annotations

from outbox_worker.console.html import Html, age, csrf_field, join, render, when
from outbox_worker.models import WorkerState
from outbox_worker.store.fleet import PauseState, WorkerInfo


def pause_banner(pause: PauseState) -> Html:
    """The banner every page shows while delivery is paused: since when, by whom, why."""
    if not pause.paused:
        return Html("")
    who = pause.actor or pause.db_role or "someone"
    return render(
        '<div class="banner" role="status"><strong>Delivery is paused</strong> since {at} by '
        "{who} (via {via}): {reason}. Enqueue goes on; nothing is sent until someone resumes."
        "</div>",
        at=when(pause.paused_at),
        who=who,
        via=pause.via or "-",
        reason=pause.reason or "no reason given",
    )


def _state(w: WorkerInfo) -> str:
    if w.state is WorkerState.PAUSED and w.paused_by is not None:
        return f"paused ({w.paused_by})"
    return str(w.state)


def workers_table(workers: list[WorkerInfo]) -> Html:
    """Every registered worker: where it runs, its state and what it did lately."""
    head = join(
        render('<th scope="col">{h}</th>', h=h)
        for h in ["Host", "PID", "Version", "State", "Sends/min", "In flight", "Seen", "Started"]
    )
    rows = [
        render(
            '<tr><td data-label="Host">{host}</td><td class="num" data-label="PID">{pid}</td>'
            '<td data-label="Version">{version}</td><td data-label="State">{state}</td>'
            '<td class="num" data-label="Sends/min">{sends}</td>'
            '<td class="num" data-label="In flight">{flight}</td>'
            '<td data-label="Seen">{seen} ago</td><td data-label="Started">{started}</td></tr>',
            host=w.host,
            pid=w.pid,
            version=w.version,
            state=_state(w),
            sends=w.sends_last_minute,
            flight=w.in_flight,
            seen=age(w.seen_ago_s),
            started=when(w.started_at),
        )
        for w in workers
    ]
    body = join(rows) or Html('<tr><td colspan="8">No worker has registered.</td></tr>')
    return render(
        '<table class="list workers"><caption>Workers</caption><thead><tr>{head}</tr></thead>'
        "<tbody>{body}</tbody></table>",
        head=head,
        body=body,
    )


def pause_form(pause: PauseState, csrf: str) -> Html:
    """Pause (with a reason) or resume, for admins; both go through a confirmation."""
    if pause.paused:
        return render(
            '<form method="post" action="/fleet/resume" class="inline">{csrf}'
            "<fieldset><legend>Resume delivery</legend>"
            '<button type="submit">Resume…</button></fieldset></form>',
            csrf=csrf_field(csrf),
        )
    return render(
        '<form method="post" action="/fleet/pause" class="inline">{csrf}'
        "<fieldset><legend>Pause delivery</legend>"
        '<label for="reason">Reason</label>'
        '<input id="reason" name="reason" required maxlength="500" size="30">'
        '<button type="submit">Pause…</button></fieldset></form>',
        csrf=csrf_field(csrf),
    )
