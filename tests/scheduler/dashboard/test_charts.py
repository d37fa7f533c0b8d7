"""The dashboard's inline-SVG charts: scales, marks, broken lines, escaping."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

import pytest

from scheduler.dashboard.charts import (
    BOTTOM,
    HEIGHT,
    TOP,
    line_chart,
    nice_ceiling,
    stacked_bars,
)

T0 = dt.datetime(2026, 3, 2, 11, 0, tzinfo=dt.UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own markup: it must at least be well-formed


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (1.5, 2), (3, 5), (7, 10),
                                            (10, 10), (11, 20), (230, 500), (5001, 10000)])
def test_the_y_axis_tops_at_a_round_figure(value, top):
    assert nice_ceiling(value) == top


def test_a_line_per_series_broken_where_a_value_is_unknown():
    points = [(T0 + dt.timedelta(minutes=m), v)
              for m, v in [(0, 1), (1, 2), (2, None), (3, 4), (4, 5)]]
    chart = line_chart(title="depth", start=T0, end=T0 + dt.timedelta(hours=1),
                       series={"events": points, "cache": [(T0, 0)]})

    tree = _tree(chart.svg)
    lines = tree.findall(f"{SVG}polyline")
    assert [line.get("data-series") for line in lines] == ["events", "events", "cache"]
    # one circle (with its figure as a tooltip) per known value
    titles = [c.find(f"{SVG}title").text for c in tree.findall(f"{SVG}circle")]
    assert titles == ["events 11:00: 1", "events 11:01: 2", "events 11:03: 4",
                      "events 11:04: 5", "cache 11:00: 0"]
    assert [label for label, _ in chart.legend] == ["events", "cache"]
    # ticks every 15 minutes, the axis topped at 5
    assert [t.text for t in tree.findall(f"{SVG}text[@class='xlabel']")] == \
        ["11:00", "11:15", "11:30", "11:45", "12:00"]
    assert tree.findall(f"{SVG}text[@class='ylabel']")[-1].text == "5"
    assert tree.find(f"{SVG}text[@class='empty']") is None


def test_stacked_bars_stack_each_bucket_and_size_it_by_its_count():
    starts = [T0 + i * dt.timedelta(minutes=5) for i in range(12)]
    chart = stacked_bars(title="throughput", starts=starts, bucket=dt.timedelta(minutes=5),
                         series={"a": [4] + [0] * 11, "b": [6] + [0] * 10 + [1]})

    bars = _tree(chart.svg).findall(f"{SVG}rect")
    assert [b.find(f"{SVG}title").text for b in bars] == \
        ["a 11:00-11:05: 4", "b 11:00-11:05: 6", "b 11:55-12:00: 1"]
    plot = HEIGHT - TOP - BOTTOM  # the axis tops at 10: a bar of 4 is 40% of the plot
    heights = [float(b.get("height")) for b in bars]
    assert heights == pytest.approx([plot * 0.4, plot * 0.6, plot * 0.1], abs=0.11)
    # b's first bar sits on a's
    assert float(bars[1].get("y")) + heights[1] == pytest.approx(float(bars[0].get("y")),
                                                                 abs=0.11)


def test_an_empty_chart_says_so():
    chart = stacked_bars(title="t", starts=[T0], bucket=dt.timedelta(minutes=5), series={})
    assert _tree(chart.svg).find(f"{SVG}text[@class='empty']").text == "Nothing in this hour"


def test_labels_are_escaped():
    chart = line_chart(title='<script>alert("t")</script>', start=T0,
                       end=T0 + dt.timedelta(hours=1),
                       series={'<img src=x onerror="y">': [(T0, 1)]})
    assert "<script>" not in chart.svg and "<img" not in chart.svg
    assert re.search(r"&lt;img src=x onerror=(&quot;|&#x27;|&#34;)y", chart.svg)
    _tree(chart.svg)


@pytest.mark.parametrize(("highest", "labels"), [
    (0, ["0", "1"]), (2, ["0", "1", "2"]), (4, ["0", "1", "2", "3", "4", "5"]),
    (50, ["0", "10", "20", "30", "40", "50"]), (130, ["0", "40", "80", "120", "160", "200"])])
def test_gridlines_fall_on_whole_numbers(highest, labels):
    chart = line_chart(title="t", start=T0, end=T0 + dt.timedelta(hours=1),
                       series={"q": [(T0, highest)]})
    assert [t.text for t in _tree(chart.svg).findall(f"{SVG}text[@class='ylabel']")] == labels
