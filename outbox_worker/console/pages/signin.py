"""The sign-in form: one token field."""

from __future__ import annotations

from outbox_worker.console.html import Html, csrf_field, render


def signin_page(csrf: str, problem: str | None = None, *, sso: bool = False) -> Html:
    """The form (and why the last try failed, if it did)."""
    sso_note = Html("<p>Or sign in through your company's single sign-on.</p>") if sso else Html("")
    return render(
        '{problem}<form method="post" action="/signin" class="signin">{csrf}'
        '<label for="token">Sign-in token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus>"
        '<button type="submit">Sign in</button></form>{sso}'
        "<p>Tokens are made with <code>outbox-worker console-token NAME</code>.</p>",
        problem=render('<p class="problem" role="alert">{p}</p>', p=problem)
        if problem
        else Html(""),
        csrf=csrf_field(csrf),
        sso=sso_note,
    )
