"""Server-side SVG: data lands where it should, thresholds are drawn, labels are escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from streams.console.charts import Series, Span, Threshold, line_chart, stacked_bars, waterfall

NS = {"s": "http://www.w3.org/2000/svg"}


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML or this raises


def test_line_chart_points_threshold_and_gaps() -> None:
    svg = line_chart("latency", (0, 4000), [Series("p95", [(0, 100.0), (1000, 200.0), (2000, None), (3000, 50.0)])],
                     [Threshold("rollback >", 400.0)])
    root = _parse(svg)
    assert root.get("data-points") == "3"
    lines = root.findall(".//s:polyline", NS)
    assert len(lines) == 1 and len(lines[0].get("points", "").split()) == 2  # the gap breaks the line
    assert len(root.findall(".//s:circle", NS)) == 1  # the lone point after the gap
    threshold = root.find(".//s:g[@class='threshold']/s:line", NS)
    assert threshold is not None
    # The scale includes the threshold (400 * 1.1 at the top): the rule sits above every point.
    y_rule = float(threshold.get("y1", "0"))
    ys = [float(p.split(",")[1]) for p in lines[0].get("points", "").split()]
    assert all(y > y_rule for y in ys)
    assert "rollback &gt; 400" in svg


def test_line_chart_without_data_says_so() -> None:
    root = _parse(line_chart("empty", (0, 10), [Series("x", [(0, None)])]))
    assert root.get("data-points") == "0" and "no data in this window" in ET.tostring(root, encoding="unicode")


def test_labels_are_escaped() -> None:
    svg = line_chart("<script>alert(1)</script>", (0, 10), [Series("a&b", [(0, 1.0), (5, 2.0)])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg
    _parse(svg)


def test_stacked_bars_stack_per_bucket() -> None:
    svg = stacked_bars("requests", (0, 120_000), 60_000,
                       {"ok": [(0, 3.0), (60_000, 0.0)], "error": [(0, 1.0), (60_000, 2.0)]},
                       classes={"ok": "st-ok", "error": "st-error"})
    root = _parse(svg)
    bars = root.findall(".//s:rect[@class]", NS)
    bars = [b for b in bars if "bar" in (b.get("class") or "")]
    assert len(bars) == 3  # zero-height segments are not drawn
    first = [b for b in bars if float(b.get("x", "0")) < 100]
    ok, err = sorted(first, key=lambda b: b.get("class") or "")[::-1]
    # error sits on top of ok in the first bucket: its bottom is ok's top.
    assert abs(float(err.get("y", "0")) + float(err.get("height", "0")) - float(ok.get("y", "0"))) < 0.2
    assert root.get("data-points") == "2"


def test_waterfall_rows_offsets_and_durations() -> None:
    spans = [Span("process requests", 0, 0.0, 50.0), Span("chat sim-small", 1, 10.0, 30.0, "Error", "llm-1")]
    svg = waterfall(spans)
    root = _parse(svg)
    rows = root.findall(".//s:g[@class='span-row']", NS)
    assert [r.get("data-duration-ms") for r in rows] == ["50", "30"]
    bars = root.findall(".//s:rect", NS)
    assert bars[1].get("class") == "span-bar span-error"
    # The child starts a fifth of the way along the axis (10 of 50 ms).
    x0, x1 = float(bars[0].get("x", "0")), float(bars[1].get("x", "0"))
    w0 = float(bars[0].get("width", "0"))
    assert abs((x1 - x0) / w0 - 0.2) < 0.01
    assert re.search(r'<a href="#llm-1">', svg)
