"""The overview: counts by state, backlog age, the two charts, top dead reasons, admin actions."""

from __future__ import annotations

from outbox_worker.console.charts import bar_chart
from outbox_worker.console.html import Html, age, join, render
from outbox_worker.console.overview import Overview
from outbox_worker.console.pages.fleet import pause_form, workers_table
from outbox_worker.models import WorkerState
from outbox_worker.pii import mask_text


def _row(label: str, value: object) -> Html:
    return render('<tr><th scope="row">{label}</th><td>{value}</td></tr>', label=label, value=value)


def counts_table(o: Overview) -> Html:
    """The numbers `stats --json` prints, labelled."""
    s = o.stats
    rows = [
        _row("Pending", s.pending),
        _row("Claimed by workers", s.claimed),
        _row("Oldest pending", age(s.oldest_pending_age_s)),
        _row("Acknowledged", s.acknowledged),
        _row("Dead", s.dead),
        _row("Dead, last hour", s.dead_last_hour),
        _row("Dead, last day", s.dead_last_day),
        _row("Delivered, last minute", s.delivered_last_minute),
        _row("Delivered, last hour", s.delivered_last_hour),
        _row("Workers delivering", o.fleet.workers.get(WorkerState.DELIVERING, 0)),
        _row("Workers paused", o.fleet.workers.get(WorkerState.PAUSED, 0)),
    ]
    return render(
        '<table class="facts"><caption>Messages by state</caption><tbody>{rows}</tbody></table>',
        rows=join(rows),
    )


def _reasons(o: Overview) -> Html:
    if not o.stats.top_dead_reasons:
        return Html("")
    rows = [
        render('<tr><td class="num">{n}</td><td>{reason}</td></tr>', n=n, reason=mask_text(reason))
        for reason, n in o.stats.top_dead_reasons
    ]
    return render(
        '<table><caption>Top dead-letter reasons</caption><thead><tr><th scope="col">Count</th>'
        '<th scope="col">Reason</th></tr></thead><tbody>{rows}</tbody></table>',
        rows=join(rows),
    )


def _purge_form() -> Html:
    return Html(
        '<form method="get" action="/purge" class="inline">'
        "<fieldset><legend>Purge finished messages</legend>"
        '<label for="older_than">Finished longer ago than</label>'
        '<input id="older_than" name="older_than" value="7d" required size="6">'
        '<label><input type="checkbox" name="include_dead" value="1"> also dead letters</label>'
        '<button type="submit">Purge…</button></fieldset></form>'
    )


def overview_page(o: Overview, *, admin: bool, csrf: str) -> Html:
    """The overview's content (inside the frame)."""
    t = o.throughput
    charts = join(
        [
            bar_chart("Per minute, last hour", t.minutes, "%H:%M"),
            bar_chart("Per hour, last day", t.hours, "%d %b %H:00"),
        ]
    )
    actions = render(
        '<section aria-label="Actions">{pause}{purge}</section>',
        pause=pause_form(o.fleet.pause, csrf),
        purge=_purge_form(),
    )
    return render(
        '<div class="grid"><section aria-label="Counts">{counts}</section>'
        '<section aria-labelledby="charts-h"><h2 id="charts-h">Deliveries and dead letters</h2>'
        '<p class="legend"><span class="key key-delivered"></span>delivered '
        '<span class="key key-dead"></span>dead</p>{charts}</section></div>'
        "{workers}{reasons}{actions}",
        workers=workers_table(o.workers),
        counts=counts_table(o),
        charts=charts,
        reasons=_reasons(o),
        actions=actions if admin else Html(""),
    )
