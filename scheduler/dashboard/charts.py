"""The dashboard's charts, drawn on the server as inline SVG.

No chart library: a line chart and a stacked bar chart over one hour are a few dozen SVG
elements, and drawing them here means no script to vendor or load, no asset from elsewhere,
and a page that reads the same with scripts off. Each mark carries a `<title>` (the browser's
tooltip) with its exact figure; the template lists the same figures in a table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Okabe & Ito's palette: told apart with every common kind of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 26  # the plot area's margins
TICK = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Chart:
    svg: SafeString
    legend: list[tuple[str, str]]  # (label, colour), in drawing order


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1): the
    y axis's top, so its gridlines fall on round figures."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if step * top >= value:
                return step * top
        top *= 10


def _x(at: dt.datetime, start: dt.datetime, end: dt.datetime) -> float:
    span = (end - start).total_seconds() or 1.0
    return LEFT + (WIDTH - LEFT - RIGHT) * (at - start).total_seconds() / span


def _y(value: float, top: int) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _frame(title: str, start: dt.datetime, end: dt.datetime, top: int, body: list[str],
           empty: bool) -> SafeString:
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
             'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    step = top // 5 if top >= 5 else 1  # whole numbers: these are counts
    for value in range(0, top + 1, step):
        y = _y(value, top)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="ylabel" x="{LEFT - 6}" y="{y + 4:.1f}">'
                     f"{value}</text>")
    tick = start.replace(second=0, microsecond=0)
    tick += (-tick.minute) % 15 * dt.timedelta(minutes=1)
    while tick <= end:
        x = _x(tick, start, end)
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}" '
                     f'y2="{HEIGHT - BOTTOM + 4}"/><text class="xlabel" x="{x:.1f}" '
                     f'y="{HEIGHT - 8}">{tick:%H:%M}</text>')
        tick += TICK
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
                 f'y2="{HEIGHT - BOTTOM}"/>')
    parts += body
    if empty:
        parts.append(f'<text class="empty" x="{(LEFT + WIDTH - RIGHT) // 2}" '
                     f'y="{HEIGHT // 2}">Nothing in this hour</text>')
    parts.append("</svg>")
    # Every text inside went through escape(); the rest are numbers and fixed markup.
    return mark_safe("".join(parts))  # noqa: S308


def line_chart(*, title: str, start: dt.datetime, end: dt.datetime,
               series: dict[str, list[tuple[dt.datetime, int | None]]]) -> Chart:
    """One line per series over [start, end]; an unknown value (None: the broker did not
    answer) breaks its line."""
    values = [v for points in series.values() for _, v in points if v is not None]
    top = nice_ceiling(max(values, default=0))
    body, legend = [], []
    for index, (label, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        legend.append((label, colour))
        runs: list[list[tuple[dt.datetime, int]]] = [[]]
        for at, value in points:
            if value is None:
                runs.append([])
            else:
                runs[-1].append((at, value))
        for run in (r for r in runs if r):
            coords = " ".join(f"{_x(at, start, end):.1f},{_y(v, top):.1f}" for at, v in run)
            body.append(f'<polyline class="line" data-series="{escape(label)}" '
                        f'points="{coords}" stroke="{colour}"/>')
            body += [f'<circle cx="{_x(at, start, end):.1f}" cy="{_y(v, top):.1f}" r="2" '
                     f'fill="{colour}"><title>{escape(label)} {at:%H:%M}: {v}</title></circle>'
                     for at, v in run]
    return Chart(_frame(title, start, end, top, body, not values), legend)


def stacked_bars(*, title: str, starts: list[dt.datetime], bucket: dt.timedelta,
                 series: dict[str, list[int]]) -> Chart:
    """One bar per bucket, stacked by series (drawn in the order given)."""
    if not starts:
        raise ValueError("stacked_bars needs at least one bucket")
    start, end = starts[0], starts[-1] + bucket
    totals = [sum(counts[i] for counts in series.values()) for i in range(len(starts))]
    top = nice_ceiling(max(totals, default=0))
    width = _x(start + bucket, start, end) - _x(start, start, end)
    body, legend = [], []
    base = [0] * len(starts)
    for index, (label, counts) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        legend.append((label, colour))
        for i, count in enumerate(counts):
            if not count:
                continue
            y_top, y_bottom = _y(base[i] + count, top), _y(base[i], top)
            body.append(
                f'<rect class="bar" data-series="{escape(label)}" '
                f'x="{_x(starts[i], start, end) + 1:.1f}" y="{y_top:.1f}" '
                f'width="{max(width - 2, 1):.1f}" height="{y_bottom - y_top:.1f}" '
                f'fill="{colour}"><title>{escape(label)} {starts[i]:%H:%M}-'
                f"{starts[i] + bucket:%H:%M}: {count}</title></rect>")
            base[i] += count
    return Chart(_frame(title, start, end, top, body, not any(totals)), legend)
