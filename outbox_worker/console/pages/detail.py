"""One message: its facts, Ravelin's answer, the attempt timeline and the body (masked)."""

from __future__ import annotations

import json
from typing import Any

from outbox_worker.console.html import Html, csrf_field, join, render, when
from outbox_worker.console.masking import Shown
from outbox_worker.models import State
from outbox_worker.store.operations import MessageDetail


def _fact(label: str, value: object) -> Html:
    return render('<tr><th scope="row">{label}</th><td>{value}</td></tr>', label=label, value=value)


def _answer(response: Any) -> Html:
    """Ravelin's message, traceId and validationErrors from the last answer, if any."""
    if not isinstance(response, dict) or not response:
        return Html("<p>No answer body was kept.</p>")
    errors = response.get("validationErrors")
    items = []
    if isinstance(errors, list):
        items = [
            render(
                "<li>{text}</li>",
                text=json.dumps(e, ensure_ascii=False) if not isinstance(e, str) else e,
            )
            for e in errors
        ]
    facts = [
        _fact("Message", response.get("message", "-")),
        _fact("Trace id", response.get("traceId", "-")),
    ]
    return render(
        '<table class="facts"><caption class="sr-only">Ravelin\'s answer</caption>'
        "<tbody>{facts}</tbody></table>"
        "{errors}",
        facts=join(facts),
        errors=render("<h3>Validation errors</h3><ul>{items}</ul>", items=join(items))
        if items
        else Html(""),
    )


def _timeline(history: list[Any]) -> Html:
    if not history:
        return Html("<p>No attempt recorded.</p>")
    items = []
    for number, h in enumerate(history, start=1):
        if not isinstance(h, dict):
            continue
        latency = h.get("latency_ms")
        items.append(
            render(
                '<li><span class="when">{at}</span> attempt {n}: status {status}, '
                "{latency}{error}</li>",
                at=h.get("at", "-"),
                n=number,
                status="-" if h.get("status") is None else h.get("status"),
                latency=f"{latency:.0f} ms" if isinstance(latency, int | float) else "no latency",
                error=render(" — {e}", e=h["error"]) if h.get("error") else Html(""),
            )
        )
    return render('<ol class="timeline">{items}</ol>', items=join(items))


def _actions(m: MessageDetail, *, admin: bool, can_reveal: bool, csrf: str) -> Html:
    if not admin:
        return Html("")
    parts = []
    if m.state is State.DEAD:
        parts.append(
            render(
                '<form method="post" action="/dead/requeue">{csrf}'
                '<input type="hidden" name="id" value="{id}">'
                '<button type="submit">Requeue this message…</button></form>',
                csrf=csrf_field(csrf),
                id=m.id,
            )
        )
    if can_reveal:
        parts.append(
            render(
                '<form method="post" action="/messages/{id}/reveal">{csrf}'
                '<button type="submit">Reveal personal data (audited)</button></form>',
                csrf=csrf_field(csrf),
                id=m.id,
            )
        )
    return render('<div class="actions">{parts}</div>', parts=join(parts))


def detail_page(
    m: MessageDetail, shown: Shown, *, revealed: bool, admin: bool, can_reveal: bool, csrf: str
) -> Html:
    """The detail's content (inside the frame)."""
    state = f"{m.state}{' (claimed by a worker)' if m.claimed else ''}"
    facts = [
        _fact("State", state),
        _fact("Attempts", m.attempts),
        _fact("Last status", "-" if m.last_status is None else m.last_status),
        _fact("Last error", shown.last_error or "-"),
        _fact("Dedup key", shown.dedup_key or "-"),
        _fact("Created", when(m.created_at)),
        _fact("Dead", when(m.dead_at)),
        _fact("Acknowledged", when(m.acknowledged_at)),
        _fact("Requeued", f"{m.requeue_count} time(s)"),
    ]
    notice = (
        Html('<p class="problem" role="alert">Personal data shown unmasked; this was audited.</p>')
        if revealed
        else Html("")
    )
    body = json.dumps(shown.payload, indent=2, ensure_ascii=False)
    return render(
        '{notice}<table class="facts"><caption>Message</caption><tbody>{facts}</tbody></table>'
        "{actions}<h2>Ravelin's answer</h2>{answer}<h2>Attempts</h2>{timeline}"
        "<h2>Body{masked}</h2><pre>{body}</pre>",
        notice=notice,
        facts=join(facts),
        actions=_actions(m, admin=admin, can_reveal=can_reveal and not revealed, csrf=csrf),
        answer=_answer(shown.last_response),
        timeline=_timeline(shown.history),
        masked="" if revealed else " (personal data masked)",
        body=body,
    )
