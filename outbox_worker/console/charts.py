"""Bar charts as inline SVG, drawn on the server: no script, no library, readable by a screen
reader (a title per chart, a tooltip title per bar, a one-line summary beside it).

Deliveries and dead letters are stacked in each bar, on a scale set by the tallest bar. Colours
come from classes in console.css (the strict CSP allows no inline style).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from outbox_worker.console.html import Html, join, render
from outbox_worker.store.throughput import Bucket

WIDTH: Final = 600
HEIGHT: Final = 120
AXIS: Final = 14  # room under the bars for the first and last label


def _bar(index: int, bucket: Bucket, peak: int, width: float, label: str) -> Html:
    total = bucket.delivered + bucket.dead
    span = HEIGHT - AXIS
    delivered_h = span * bucket.delivered / peak if peak else 0.0
    dead_h = span * bucket.dead / peak if peak else 0.0
    x = index * width
    return render(
        "<g><title>{label}: {delivered} delivered, {dead} dead</title>"
        '<rect class="bar-bg" x="{x}" y="0" width="{w}" height="{span}"></rect>'
        '<rect class="bar-delivered" x="{x}" y="{dy}" width="{w}" height="{dh}"></rect>'
        '<rect class="bar-dead" x="{x}" y="{ky}" width="{w}" height="{kh}"></rect></g>',
        label=label,
        delivered=bucket.delivered,
        dead=bucket.dead if total else 0,
        x=f"{x:.1f}",
        w=f"{max(width - 1, 1):.1f}",
        span=f"{span:.1f}",
        dy=f"{span - delivered_h:.1f}",
        dh=f"{delivered_h:.1f}",
        ky=f"{span - delivered_h - dead_h:.1f}",
        kh=f"{dead_h:.1f}",
    )


def bar_chart(title: str, buckets: Sequence[Bucket], time_format: str) -> Html:
    """A figure: the chart, its title as caption, and a one-line summary for screen readers."""
    peak = max((b.delivered + b.dead for b in buckets), default=0)
    width = WIDTH / max(len(buckets), 1)
    bars = [_bar(i, b, peak, width, b.start.strftime(time_format)) for i, b in enumerate(buckets)]
    delivered = sum(b.delivered for b in buckets)
    dead = sum(b.dead for b in buckets)
    first = buckets[0].start.strftime(time_format) if buckets else ""
    last = buckets[-1].start.strftime(time_format) if buckets else ""
    return render(
        '<figure class="chart"><figcaption>{title}</figcaption>'
        '<svg viewBox="0 0 {w} {h}" role="img" aria-label="{title}: {delivered} delivered, '
        '{dead} dead">{bars}'
        '<text class="axis" x="0" y="{ty}">{first}</text>'
        '<text class="axis" x="{w}" y="{ty}" text-anchor="end">{last} UTC</text></svg>'
        '<p class="summary">{delivered} delivered, {dead} dead; busiest bar {peak}.</p>'
        "</figure>",
        title=title,
        w=WIDTH,
        h=HEIGHT,
        ty=HEIGHT - 2,
        bars=join(bars),
        delivered=delivered,
        dead=dead,
        peak=peak,
        first=first,
        last=last,
    )
