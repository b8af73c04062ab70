"""The confirmation every action shows first: the exact number of rows, and one button to go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from outbox_worker.console.html import Html, csrf_field, join, render


def confirm_page(
    *,
    question: str,
    details: str,
    action: str,
    fields: Mapping[str, str] | Sequence[tuple[str, str]],
    button: str,
    back: str,
    csrf: str,
    nothing: bool = False,
) -> Html:
    """A question, the hidden fields that repeat what was asked, confirm and cancel."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    hidden = join(
        render('<input type="hidden" name="{n}" value="{v}">', n=name, v=value)
        for name, value in pairs
    )
    if nothing:
        return render(
            '<p role="status">{question}</p><p><a href="{back}">Back</a></p>',
            question=question,
            back=back,
        )
    return render(
        '<form method="post" action="{action}" class="confirm">{csrf}{hidden}'
        '<input type="hidden" name="confirmed" value="yes">'
        '<p class="question">{question}</p><p>{details}</p>'
        '<button type="submit" class="danger">{button}</button> '
        '<a href="{back}">Cancel</a></form>',
        action=action,
        csrf=csrf_field(csrf),
        hidden=hidden,
        question=question,
        details=details,
        button=button,
        back=back,
    )
