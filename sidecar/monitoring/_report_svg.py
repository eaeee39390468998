"""SVG pieces of the HTML report: frames with readable axes, legends, heatmaps and bars.

Everything is inline SVG text: no script, no font or style sheet fetched, so
the page is one self-contained file. Marks carry a ``<title>``: the browser
shows it as the hover value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Frame",
    "e",
    "fmt",
    "legend",
    "nice_ticks",
    "padded",
    "svg",
    "time_label",
    "window_xticks",
]

WIDTH = 760
INK, GRID, MUTED = "#1f2328", "#eaeef2", "#6e7781"


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(x: Any, digits: int = 4) -> str:
    """A number as people read it (``-`` for a missing one)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}g}"
    return e(x)


def time_label(ts: float, span: float) -> str:
    """A UTC time, as precise as a span of ``span`` seconds needs."""
    when = datetime.fromtimestamp(ts, UTC)
    if span >= 3 * 86400 or (span >= 86400 and when.hour == when.minute == 0):
        return when.strftime("%Y-%m-%d")
    if span >= 86400:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 x 10^k).

    >>> nice_ticks(0.81, 0.97)
    [0.8, 0.85, 0.9, 0.95, 1.0]
    >>> nice_ticks(0, 37)
    [0.0, 10.0, 20.0, 30.0, 40.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks: list[float] = []
    v = start
    while v <= hi + step * 1e-6 or len(ticks) < 2:
        ticks.append(float(round(v, 12)))
        v += step
    if ticks[-1] < hi:
        ticks.append(float(round(ticks[-1] + step, 12)))
    return ticks


def _tick_text(v: float, ticks: Sequence[float], unit: str = "") -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    if unit == "%":
        decimals = max(0, -math.floor(math.log10(step * 100) + 1e-9))
        return f"{v * 100:.{decimals}f}%"
    if max(abs(t) for t in ticks) >= 1e5 or (step < 1e-3 and v != 0):
        return f"{v:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{v:.{decimals}f}"


@dataclass
class Frame:
    """A plot area: data ranges mapped onto pixels, with axes drawn around it."""

    xlo: float
    xhi: float
    ylo: float
    yhi: float
    width: int = WIDTH
    height: int = 280
    left: int = 64
    right: int = 24
    top: int = 28
    bottom: int = 52

    def x(self, v: float) -> float:
        span = (self.xhi - self.xlo) or 1.0
        return self.left + (v - self.xlo) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.yhi - self.ylo) or 1.0
        return (
            self.height
            - self.bottom
            - (v - self.ylo) / span * (self.height - self.top - self.bottom)
        )

    def axes(
        self,
        *,
        xlabel: str,
        ylabel: str,
        yticks: Sequence[float],
        xticks: Sequence[tuple[float, str]],
        yunit: str = "",
    ) -> str:
        """Grid lines, tick labels on both axes and both axis titles."""
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        out = []
        for v in yticks:
            yy = self.y(v)
            out.append(
                f"<line x1='{x0}' x2='{x1}' y1='{yy:.1f}' y2='{yy:.1f}' stroke='{GRID}'/>"
                f"<text class='tick' x='{x0 - 6}' y='{yy + 4:.1f}' text-anchor='end'>"
                f"{e(_tick_text(v, yticks, yunit))}</text>"
            )
        for v, label in xticks:
            xx = self.x(v)
            out.append(
                f"<line x1='{xx:.1f}' x2='{xx:.1f}' y1='{y0}' y2='{y0 + 5}' stroke='{MUTED}'/>"
                f"<text class='tick' x='{xx:.1f}' y='{y0 + 18}' text-anchor='middle'>"
                f"{e(label)}</text>"
            )
        out.append(
            f"<line x1='{x0}' x2='{x0}' y1='{y1}' y2='{y0}' stroke='{MUTED}'/>"
            f"<line x1='{x0}' x2='{x1}' y1='{y0}' y2='{y0}' stroke='{MUTED}'/>"
            f"<text class='axis-title' x='{(x0 + x1) / 2:.1f}' y='{self.height - 10}' "
            f"text-anchor='middle'>{e(xlabel)}</text>"
            f"<text class='axis-title' transform='translate(14 {(y0 + y1) / 2:.1f}) rotate(-90)' "
            f"text-anchor='middle'>{e(ylabel)}</text>"
        )
        return "".join(out)

    def numeric_xticks(self, unit: str = "") -> list[tuple[float, str]]:
        ticks = [t for t in nice_ticks(self.xlo, self.xhi, 6) if self.xlo <= t <= self.xhi]
        return [(t, _tick_text(t, ticks, unit)) for t in ticks]


def padded(values: Sequence[float], *, pad: float = 0.08) -> tuple[float, float]:
    """A range around ``values`` (NaN left out) with a margin, widened onto round ticks."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    margin = (hi - lo) * pad or abs(hi) * 0.05 or 0.05
    ticks = nice_ticks(lo - margin, hi + margin)
    return ticks[0], ticks[-1]


def svg(body: str, label: str, width: int = WIDTH, height: int = 280) -> str:
    return (
        f"<svg class='plot' role='img' aria-label='{e(label)}' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"
        f"<rect width='{width}' height='{height}' fill='white'/>{body}</svg>"
    )


def legend(items: Mapping[str, str], *, x: float, y: float, dashed: Sequence[str] = ()) -> str:
    """Swatches and names in a row from ``(x, y)``; ``dashed`` ones drawn as dashed lines."""
    out, cursor = [], x
    for name, color in items.items():
        if name in dashed:
            out.append(
                f"<line x1='{cursor:.1f}' x2='{cursor + 16:.1f}' y1='{y - 4}' y2='{y - 4}' "
                f"stroke='{color}' stroke-width='2' stroke-dasharray='4 3'/>"
            )
        else:
            out.append(
                f"<rect x='{cursor:.1f}' y='{y - 9}' width='16' height='10' rx='2' fill='{color}'/>"
            )
        out.append(f"<text class='legend' x='{cursor + 21:.1f}' y='{y}'>{e(name)}</text>")
        cursor += 30 + 6.5 * len(name)
    return "".join(out)


def window_xticks(starts: Sequence[float], count: int = 6) -> list[tuple[float, str]]:
    """Labels for windows ``0..n-1`` at their start times, about ``count`` of them."""
    n = len(starts)
    if n == 0:
        return []
    span = (starts[-1] - starts[0]) if n > 1 else 0.0
    step = max(1, math.ceil(n / count))
    picks = list(range(0, n, step))
    if picks[-1] != n - 1 and (n - 1 - picks[-1]) >= step / 2:
        picks.append(n - 1)
    return [(float(i), time_label(starts[i], span or 1.0)) for i in picks]
