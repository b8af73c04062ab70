"""Escaping, and the frame every page sits in. No template engine: f-strings of escaped parts.

``render(template, **values)`` escapes every value that is not already ``Html``, so data can
reach a page only escaped: ``&<>"'`` become entities, and control and bidi characters (a dedup
key may carry U+202E to reverse what follows) are shown as visible escapes, as in the CLI.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

# C0 and C1 controls (tab and newline kept for <pre>), DEL, and the characters that reorder or
# hide text: bidi overrides and isolates, zero-width marks, line and paragraph separators.
_CONTROL: Final = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)


class Html(str):
    """Text that is already safe inside a page (made only by this module's functions)."""

    __slots__ = ()


def visible_code(match: re.Match[str]) -> str:
    """The matched character written as the escape that shows it: '\\x1b', '\\u202e'."""
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def esc(value: object) -> Html:
    """``value`` as page text: Html passes through, anything else is escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(_CONTROL.sub(visible_code, str(value)), quote=True))


def render(template: str, **values: object) -> Html:
    """``template`` (a str.format template written here) with every value escaped."""
    return Html(template.format(**{name: esc(value) for name, value in values.items()}))


def join(parts: Iterable[Html], separator: str = "") -> Html:
    """Safe parts joined into one."""
    return Html(separator.join(esc(part) for part in parts))


def age(seconds: float | None) -> str:
    """'45s', '12m', '3h', '2d' (or '-' when there is no age)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def when(value: datetime | None) -> Html:
    """A <time> element in UTC, or '-'."""
    if value is None:
        return Html("-")
    return render(
        '<time datetime="{iso}">{shown}</time>',
        iso=value.isoformat(),
        shown=value.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """What every page shows around its content: who is signed in, a banner, a notice."""

    user: str | None = None  # None on the sign-in page
    role: str = ""
    csrf: str = ""
    current: str = ""  # the path of the nav link to mark as current
    banner: Html = field(default_factory=lambda: Html(""))
    notice: str | None = None


_NAV: Final = (("/", "Overview"), ("/dead", "Dead letters"), ("/audit", "Audit"))


def _nav(current: str) -> Html:
    links = [
        render(
            '<a href="{href}"{mark}>{label}</a>',
            href=href,
            label=label,
            mark=Html(' aria-current="page"' if href == current else ""),
        )
        for href, label in _NAV
    ]
    return render('<nav aria-label="Main">{links}</nav>', links=join(links))


def _account(frame: Frame) -> Html:
    if frame.user is None:
        return Html("")
    return render(
        '<div class="account"><span>{user} ({role})</span>'
        '<form method="post" action="/signout">{csrf}'
        '<button type="submit">Sign out</button></form></div>',
        user=frame.user,
        role=frame.role,
        csrf=csrf_field(frame.csrf),
    )


def csrf_field(token: str) -> Html:
    """The hidden CSRF input every form carries."""
    return render('<input type="hidden" name="csrf" value="{token}">', token=token)


def page(title: str, body: Html, frame: Frame, *, refresh_s: float | None = None) -> Html:
    """A whole HTML document: head, header with navigation, banner, notice and ``body``."""
    notice = (
        render('<p class="notice" role="status">{text}</p>', text=frame.notice)
        if frame.notice
        else Html("")
    )
    refresh = render(' data-refresh-seconds="{s}"', s=f"{refresh_s:g}") if refresh_s else Html("")
    return render(
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · outbox console</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        '<body><a class="skip" href="#main">Skip to content</a>'
        '<header><span class="brand">outbox console</span>{nav}{account}</header>'
        '<main id="main" tabindex="-1"{refresh}><div id="live">{banner}{notice}'
        "<h1>{title}</h1>{body}</div></main></body></html>\n",
        title=title,
        nav=_nav(frame.current) if frame.user is not None else Html(""),
        account=_account(frame),
        refresh=refresh,
        banner=frame.banner,
        notice=notice,
        body=body,
    )
