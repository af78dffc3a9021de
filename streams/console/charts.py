"""Charts as inline SVG, drawn on the server (pure functions, text out).

Our users may be offline and the console must need nothing but Python: no JavaScript charting
library, no CDN. Colours come from CSS classes in the console's own stylesheet (`s0`…`s5`,
`st-<status>`, `threshold`), so the markup carries no inline styles and the page's
Content-Security-Policy can forbid them. Every label is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Series", "Span", "Threshold", "line_chart", "stacked_bars", "waterfall"]

Number = float | int
Format = Callable[[float], str]

_W, _H = 560, 204
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 12, 36, 26


@dataclass(frozen=True)
class Series:
    """One line: (epoch ms, value or None for "no data in this bucket") points."""

    name: str
    points: Sequence[tuple[int, float | None]]


@dataclass(frozen=True)
class Threshold:
    """A horizontal rule: where the monitor would roll the candidate back."""

    label: str
    value: float


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value == value else "0"


def default_format(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _time_label(ms: int, span_ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%m-%d %H:%M" if span_ms > 86_400_000 else "%H:%M")


class _Frame:
    """Maps data to pixels for one chart."""

    def __init__(self, x_lo: int, x_hi: int, y_hi: float, width: int, height: int) -> None:
        self.x_lo, self.x_hi = x_lo, max(x_hi, x_lo + 1)
        self.y_hi = y_hi if y_hi > 0 else 1.0
        self.width, self.height = width, height
        self.plot_w = width - _LEFT - _RIGHT
        self.plot_h = height - _TOP - _BOTTOM

    def x(self, ms: float) -> float:
        return _LEFT + (ms - self.x_lo) / (self.x_hi - self.x_lo) * self.plot_w

    def y(self, value: float) -> float:
        return _TOP + self.plot_h - min(value, self.y_hi) / self.y_hi * self.plot_h

    def axes(self, fmt: Format) -> list[str]:
        out = [
            f'<line class="axis" x1="{_LEFT}" y1="{_TOP + self.plot_h}" '
            f'x2="{_LEFT + self.plot_w}" y2="{_TOP + self.plot_h}"/>',
            f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + self.plot_h}"/>',
        ]
        for frac in (0.0, 0.5, 1.0):
            v = self.y_hi * frac
            y = self.y(v)
            out.append(f'<text class="tick" x="{_LEFT - 4}" y="{_num(y + 3)}" text-anchor="end">'
                       f"{escape(fmt(v))}</text>")
            if frac:
                out.append(f'<line class="grid" x1="{_LEFT}" y1="{_num(y)}" '
                           f'x2="{_LEFT + self.plot_w}" y2="{_num(y)}"/>')
        span = self.x_hi - self.x_lo
        for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            ms = int(self.x_lo + span * frac)
            out.append(f'<text class="tick" x="{_num(self.x(ms))}" y="{self.height - 8}" '
                       f'text-anchor="{anchor}">{escape(_time_label(ms, span))}</text>')
        return out


def _open(title: str, width: int, height: int, kind: str, points: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-kind="{kind}" data-points="{points}" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<text class="chart-title" x="{_LEFT}" y="14">{escape(title)}</text>'
    )


def _legend(names: Sequence[str], classes: Sequence[str], width: int) -> list[str]:
    out, x = [], width - _RIGHT
    for name, cls in reversed(list(zip(names, classes, strict=True))):
        x -= 8 + 6 * len(name) + 14
        out.append(f'<rect class="{cls}" x="{x}" y="19" width="9" height="9"/>'
                   f'<text class="legend" x="{x + 12}" y="27">{escape(name)}</text>')
    return out


def _thresholds(frame: _Frame, thresholds: Sequence[Threshold], fmt: Format) -> list[str]:
    out = []
    for t in thresholds:
        y = _num(frame.y(t.value))
        out.append(
            f'<g class="threshold"><line x1="{_LEFT}" y1="{y}" x2="{_LEFT + frame.plot_w}" y2="{y}"/>'
            f'<text x="{_LEFT + frame.plot_w - 2}" y="{_num(frame.y(t.value) - 3)}" text-anchor="end">'
            f"{escape(t.label)} {escape(fmt(t.value))}</text></g>"
        )
    return out


def line_chart(
    title: str,
    x_range: tuple[int, int],
    series: Sequence[Series],
    thresholds: Sequence[Threshold] = (),
    *,
    fmt: Format = default_format,
    width: int = _W,
    height: int = _H,
) -> str:
    """Lines over time; a None value breaks the line (no data is not zero). The y scale always
    includes the thresholds, so the distance to a rollback is visible."""
    values = [v for s in series for _, v in s.points if v is not None]
    y_hi = max([*values, *(t.value for t in thresholds), 0.0]) * 1.1
    frame = _Frame(x_range[0], x_range[1], y_hi, width, height)
    parts = [_open(title, width, height, "line", len(values)), *frame.axes(fmt)]
    parts += _thresholds(frame, thresholds, fmt)
    for i, s in enumerate(series):
        runs: list[list[str]] = [[]]
        for ms, v in s.points:
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{_num(frame.x(ms))},{_num(frame.y(v))}")
        for run in filter(None, runs):
            if len(run) == 1:
                x, y = run[0].split(",")
                parts.append(f'<circle class="s{i % 6} dot" cx="{x}" cy="{y}" r="2.5"/>')
            else:
                parts.append(f'<polyline class="s{i % 6} line" points="{" ".join(run)}"/>')
    parts += _legend([s.name for s in series], [f"s{i % 6}" for i in range(len(series))], width)
    if not values:
        parts.append(f'<text class="empty" x="{width // 2}" y="{height // 2}" text-anchor="middle">'
                     "no data in this window</text>")
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    title: str,
    x_range: tuple[int, int],
    step_ms: int,
    stacks: dict[str, Sequence[tuple[int, float]]],
    *,
    classes: dict[str, str] | None = None,
    fmt: Format = default_format,
    width: int = _W,
    height: int = _H,
) -> str:
    """One bar per bucket, stacked by category (e.g. requests by status)."""
    totals: dict[int, float] = {}
    for points in stacks.values():
        for ms, v in points:
            totals[ms] = totals.get(ms, 0.0) + v
    frame = _Frame(x_range[0], x_range[1], max(totals.values(), default=0.0) * 1.1, width, height)
    bar_w = max(1.0, frame.plot_w * step_ms / (frame.x_hi - frame.x_lo) - 1)
    names = list(stacks)
    cls = {n: (classes or {}).get(n, f"s{i % 6}") for i, n in enumerate(names)}
    nonzero = sum(1 for v in totals.values() if v)
    parts = [_open(title, width, height, "bars", nonzero), *frame.axes(fmt)]
    base: dict[int, float] = {}
    for name in names:
        for ms, v in stacks[name]:
            if not v:
                continue
            lo = base.get(ms, 0.0)
            base[ms] = lo + v
            y_top, y_bottom = frame.y(lo + v), frame.y(lo)
            parts.append(
                f'<rect class="{cls[name]} bar" x="{_num(frame.x(ms))}" y="{_num(y_top)}" '
                f'width="{_num(bar_w)}" height="{_num(max(y_bottom - y_top, 0.5))}">'
                f"<title>{escape(name)}: {escape(fmt(v))}</title></rect>"
            )
    parts += _legend(names, [cls[n] for n in names], width)
    if not nonzero:
        parts.append(f'<text class="empty" x="{width // 2}" y="{height // 2}" text-anchor="middle">'
                     "no data in this window</text>")
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Span:
    """One row of a waterfall: offsets in ms from the trace's first span."""

    label: str
    depth: int
    offset_ms: float
    duration_ms: float
    status: str = "Unset"
    anchor: str = ""  # id of the detail block on the page, if any


def waterfall(spans: Sequence[Span], *, width: int = 960, row_h: int = 20) -> str:
    """A trace as bars on a shared time axis, indented by depth, each labelled with its duration."""
    label_w = 330
    total = max((s.offset_ms + s.duration_ms for s in spans), default=0.0) or 1.0
    plot_w = width - label_w - 70
    height = _TOP + row_h * len(spans) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-kind="waterfall" data-points="{len(spans)}" aria-label="trace waterfall">',
        f'<text class="tick" x="{label_w}" y="14">0 ms</text>'
        f'<text class="tick" x="{label_w + plot_w}" y="14" text-anchor="end">{escape(_num(total))} ms</text>',
    ]
    for i, s in enumerate(spans):
        y = _TOP + i * row_h
        x = label_w + s.offset_ms / total * plot_w
        w = max(s.duration_ms / total * plot_w, 1.0)
        status = "error" if s.status == "Error" else "ok"
        label = escape(("  " * s.depth) + s.label)
        row = (
            f'<g class="span-row" data-duration-ms="{_num(s.duration_ms)}">'
            f'<text class="span-label" x="{4 + 12 * s.depth}" y="{y + 14}">{escape(s.label)}</text>'
            f'<rect class="span-bar span-{status}" x="{_num(x)}" y="{y + 3}" width="{_num(w)}" '
            f'height="{row_h - 6}"><title>{label}: {escape(_num(s.duration_ms))} ms</title></rect>'
            f'<text class="span-ms" x="{_num(min(x + w + 4, width - 64))}" y="{y + 14}">'
            f"{escape(_num(s.duration_ms))} ms</text></g>"
        )
        if s.anchor:
            row = f'<a href="#{escape(s.anchor)}">{row}</a>'
        parts.append(row)
    parts.append("</svg>")
    return "".join(parts)
