"""The plots of the HTML report, each one inline SVG with axes, a legend and hover values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._diagnosis import Diagnosis
from ._plan import MonitoringPlan
from ._report_svg import (
    MUTED,
    Frame,
    e,
    fmt,
    legend,
    nice_ticks,
    padded,
    svg,
    time_label,
    window_xticks,
)

__all__ = [
    "confusion_plots",
    "distribution_plot",
    "drift_plot",
    "metric_plot",
    "residual_plots",
    "unknown_plot",
]

COLORS = {"advanced": "#1f6feb", "baseline": "#d29922", "reference": "#6e7781"}
SERIES = ["#1f6feb", "#8250df", "#bf3989", "#cf222e", "#d29922", "#1a7f37"]
ALARM, MATERIAL, QUIET, BOUND = "#cf222e", "#e16f24", "#afb8c1", "#cf222e"
#: what each metric's axis measures
UNITS = {
    "accuracy": "share of records right",
    "balanced_accuracy": "mean recall over classes",
    "f1": "F1 score",
    "roc_auc": "area under the ROC curve",
    "log_loss": "nats per record",
    "brier": "mean squared probability error",
    "mae": "target units",
    "rmse": "target units",
    "mse": "squared target units",
    "median_absolute_error": "target units",
    "trimmed_mse": "squared target units",
    "huber": "target units",
    "pinball": "target units",
}


def metric_label(name: str) -> str:
    unit = UNITS.get(name)
    return f"{name} ({unit})" if unit else name


def metric_plot(d: Diagnosis, plan: MonitoringPlan) -> str:
    """Both models' primary metric per window with intervals, the reference and the bounds."""
    rows = list(d.windows)
    if not rows:
        return "<p class='muted'>No labelled records in this period.</p>"
    ref = d.metrics.get("advanced_reference", {}).get(plan.primary_metric)
    lines = [(plan.bounds.lower, "lower"), (plan.bounds.upper, "upper")]
    values = [
        r[w][k] for r in rows for w in ("advanced", "baseline") for k in ("ci_low", "ci_high")
    ]
    values += [v for v, _ in lines if v is not None] + ([ref.value] if ref else [])
    f = Frame(-0.5, len(rows) - 0.5, *padded(values), height=300, right=112)
    span = rows[-1]["start"] - rows[0]["start"] if len(rows) > 1 else 1.0
    body = [
        f.axes(
            xlabel="window start (UTC)",
            ylabel=metric_label(plan.primary_metric),
            yticks=nice_ticks(f.ylo, f.yhi),
            xticks=window_xticks([r["start"] for r in rows]),
        )
    ]
    x0, x1 = f.left, f.width - f.right
    for value, name in lines:
        if value is not None:
            body.append(_hline(f, value, x0, x1, BOUND, f"{name} {fmt(value)}", "bound"))
    if ref is not None and math.isfinite(ref.value):
        body.append(_hline(f, ref.value, x0, x1, MUTED, f"reference {fmt(ref.value)}", "ref"))
    for who, shift in (("advanced", -5), ("baseline", 5)):
        color, points = COLORS[who], []
        for i, r in enumerate(rows):
            m, cx = r[who], f.x(i) + shift
            if math.isnan(m["value"]):
                continue
            if not math.isnan(m["ci_low"]):
                body.append(
                    f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{f.y(m['ci_low']):.1f}' "
                    f"y2='{f.y(m['ci_high']):.1f}' stroke='{color}' stroke-width='2' "
                    "opacity='.45'/>"
                )
            body.append(
                f"<circle class='point {who}' cx='{cx:.1f}' cy='{f.y(m['value']):.1f}' r='4' "
                f"fill='{color}'><title>{time_label(r['start'], span)} UTC, {who}: "
                f"{plan.primary_metric} {m['value']:.4g} [{fmt(m['ci_low'])}, "
                f"{fmt(m['ci_high'])}], n={r['n']}</title></circle>"
            )
            points.append(f"{cx:.1f},{f.y(m['value']):.1f}")
        body.append(f"<polyline points='{' '.join(points)}' fill='none' stroke='{color}'/>")
    body.append(
        legend(
            {"advanced": COLORS["advanced"], "baseline": COLORS["baseline"]}
            | {"reference": MUTED, "bounds": BOUND},
            x=f.left + 4,
            y=16,
            dashed=("reference", "bounds"),
        )
    )
    label = f"{plan.primary_metric} per window for both models, with 95% intervals"
    return svg("".join(body), label, height=f.height)


def _hline(f: Frame, v: float, x0: float, x1: float, color: str, text: str, cls: str) -> str:
    return (
        f"<line class='{cls}' x1='{x0}' x2='{x1}' y1='{f.y(v):.1f}' y2='{f.y(v):.1f}' "
        f"stroke='{color}' stroke-dasharray='6 4'><title>{e(text)}</title></line>"
        f"<text class='tick' x='{x1 + 4}' y='{f.y(v) + 4:.1f}' fill='{color}'>{e(text)}</text>"
    )


def drift_plot(d: Diagnosis, plan: MonitoringPlan) -> str:
    """Effect per feature on a scale that shows the plan's material effect as a line."""
    rows = sorted(d.drift, key=lambda r: -r.effect if math.isfinite(r.effect) else 0.0)[:25]
    if not rows:
        return "<p class='muted'>No drift tests ran (no records in this period).</p>"
    material = plan.min_drift_effect
    top = max([r.effect for r in rows if math.isfinite(r.effect)] + [material * 2])
    ticks = nice_ticks(0.0, top, 6)
    height = 34 + 20 * len(rows) + 10 + 48
    f = Frame(0.0, ticks[-1], 0.0, float(len(rows)), height=height, left=210, top=34, bottom=48)
    body = [
        f.axes(
            xlabel="drift effect (scale-free: see below)",
            ylabel="",
            yticks=[],
            xticks=f.numeric_xticks(),
        )
    ]
    for i, r in enumerate(rows):
        yy = f.top + 20 * i + 3
        effect = r.effect if math.isfinite(r.effect) else 0.0
        p = r.p_value if math.isnan(r.p_adjusted) else r.p_adjusted
        color = ALARM if r.alarm else MATERIAL if r.effect >= material else QUIET
        state = (
            "significant and material"
            if r.alarm
            else (
                "material, not significant" if r.effect >= material else "below the material effect"
            )
        )
        body.append(
            f"<text class='tick' x='{f.left - 8}' y='{yy + 11}' text-anchor='end'>"
            f"{e(r.feature)} <tspan fill='{MUTED}'>({e(r.space)})</tspan></text>"
            f"<rect class='bar' x='{f.left}' y='{yy}' width='{max(f.x(effect) - f.left, 1):.1f}' "
            f"height='14' rx='2' fill='{color}'><title>{e(r.feature)}: {e(r.effect_name)} "
            f"{r.effect:.4g}, p (adjusted) {p:.3g}; {state}</title></rect>"
            f"<text class='tick' x='{f.x(effect) + 4:.1f}' y='{yy + 11}'>{r.effect:.3g}</text>"
        )
    xm = f.x(material)
    body.append(
        f"<line class='material' x1='{xm:.1f}' x2='{xm:.1f}' y1='{f.top - 6}' "
        f"y2='{f.height - f.bottom}' stroke='{ALARM}' stroke-dasharray='5 4'>"
        f"<title>the plan's material effect: {material:g}</title></line>"
        f"<text class='tick' x='{xm + 4:.1f}' y='{f.top - 8}' fill='{ALARM}'>"
        f"material effect {material:g}</text>"
    )
    body.append(
        legend(
            {"significant and material": ALARM, "material only": MATERIAL, "not material": QUIET},
            x=8,
            y=14,
        )
    )
    return svg("".join(body), "drift effect per feature against the material effect", height=height)


def distribution_plot(dist: Mapping[str, Any]) -> str:
    edges: Sequence[float] = dist["edges"]
    series = {"reference": dist["reference"]}
    for w in dist["windows"]:
        series[time_label(w["start"], 86400 * 3)] = w["share"]
    top = max(max(v) for v in series.values()) or 1.0
    f = Frame(edges[0], edges[-1], 0.0, nice_ticks(0, top)[-1], height=260)
    body = [
        f.axes(
            xlabel=f"{dist['feature']} (raw value)",
            ylabel="share of records",
            yticks=nice_ticks(0, top),
            xticks=f.numeric_xticks(),
            yunit="%",
        )
    ]
    colors: dict[str, str] = {}
    for i, (name, share) in enumerate(series.items()):
        color = COLORS["reference"] if name == "reference" else SERIES[i % len(SERIES)]
        colors[name] = color
        pts = " ".join(
            f"{f.x((edges[j] + edges[j + 1]) / 2):.1f},{f.y(s):.1f}" for j, s in enumerate(share)
        )
        width = 3 if name == "reference" else 1.5
        body.append(
            f"<polyline class='dist' points='{pts}' fill='none' stroke='{color}' "
            f"stroke-width='{width}'><title>{e(name)}</title></polyline>"
        )
    body.append(legend(colors, x=f.left + 4, y=16))
    label = f"distribution of {dist['feature']}: reference and each window"
    return (
        f"<h3>{e(dist['feature'])} <span class='muted'>(effect {dist['effect']:.3g})</span></h3>"
        + svg("".join(body), label, height=f.height)
    )


def unknown_plot(d: Diagnosis) -> str:
    rows = list(d.unknown_series)
    if not rows:
        return "<p class='muted'>No categorical feature (or no records).</p>"
    fields = sorted(rows[0]["rates"])
    top = max(max(r["rates"][k] for r in rows for k in fields), 0.05)
    yticks = nice_ticks(0.0, top)
    f = Frame(-0.5, len(rows) - 0.5, 0.0, yticks[-1], height=260)
    span = rows[-1]["start"] - rows[0]["start"] if len(rows) > 1 else 1.0
    body = [
        f.axes(
            xlabel="window start (UTC)",
            ylabel="values encoded as unknown",
            yticks=yticks,
            xticks=window_xticks([r["start"] for r in rows]),
            yunit="%",
        )
    ]
    colors = {}
    for i, name in enumerate(fields):
        color = SERIES[i % len(SERIES)]
        colors[name] = color
        pts = [(f.x(k), f.y(r["rates"][name]), r) for k, r in enumerate(rows)]
        body.append(
            f"<polyline class='unknown' points='{' '.join(f'{x:.1f},{y:.1f}' for x, y, _ in pts)}'"
            f" fill='none' stroke='{color}' stroke-width='2'/>"
        )
        body.extend(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'><title>{e(name)}, "
            f"{time_label(r['start'], span)} UTC: {r['rates'][name]:.1%} unknown</title></circle>"
            for x, y, r in pts
        )
    body.append(legend(colors, x=f.left + 4, y=16))
    return svg("".join(body), "share of unknown-coded values per window and feature", height=260)


def confusion_plots(outcomes: Mapping[str, Any]) -> str:
    """The advanced model's confusion matrix on the window's labels and on the reference."""
    classes = [str(c) for c in outcomes["classes"]]
    if outcomes.get("too_many"):
        return f"<p class='muted'>{len(classes)} classes: too many for a confusion matrix.</p>"
    parts = [
        _matrix(outcomes["advanced"], classes, "now", f"advanced, {outcomes['n']} labelled"),
        _matrix(outcomes["reference"], classes, "reference", "advanced, on the reference"),
    ]
    return "<div class='matrices'>" + "".join(parts) + "</div>"


def _matrix(counts: Sequence[Sequence[int]], classes: Sequence[str], who: str, title: str) -> str:
    k = len(classes)
    cell = max(28, min(64, 300 // max(k, 1)))
    left, top = 96, 58
    width, height = left + cell * k + 16, top + cell * k + 40
    body = [f"<text class='axis-title' x='{left}' y='16'>{e(title)}</text>"]
    for j, name in enumerate(classes):
        cx = left + cell * (j + 0.5)
        body.append(_text(cx, top - 8, name[:10], anchor="middle"))
    body.append(_text(left + cell * k / 2, 34, "predicted", anchor="middle", fill=MUTED))
    for i, name in enumerate(classes):
        row_total = sum(counts[i]) or 1
        cy = top + cell * i
        body.append(_text(left - 8, cy + cell / 2 + 4, name[:12], anchor="end"))
        for j in range(k):
            n = counts[i][j]
            share = n / row_total
            base = "31,111,235" if i == j else "207,34,46"
            ink = "white" if share > 0.55 else "#1f2328"
            body.append(
                f"<rect class='cm-cell {who}' data-true='{e(name)}' data-pred='{e(classes[j])}' "
                f"data-count='{n}' x='{left + cell * j}' y='{cy}' width='{cell - 2}' "
                f"height='{cell - 2}' fill='rgba({base},{0.08 + 0.92 * share:.3f})'>"
                f"<title>true {e(name)}, predicted {e(classes[j])}: {n} records "
                f"({share:.1%} of true {e(name)})</title></rect>"
                f"<text class='cm-count {who}' x='{left + cell * (j + 0.5) - 1:.1f}' "
                f"y='{cy + cell / 2 + 4:.1f}' text-anchor='middle' fill='{ink}'>{n}</text>"
            )
    body.append(
        f"<text class='tick' transform='translate(14 {top + cell * k / 2:.1f}) rotate(-90)' "
        f"text-anchor='middle' fill='{MUTED}'>true class</text>"
    )
    return svg("".join(body), f"confusion matrix, {title}", width=width, height=height)


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = "") -> str:
    color = f" fill='{fill}'" if fill else ""
    return (
        f"<text class='tick' x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'{color}>{e(text)}</text>"
    )


def residual_plots(outcomes: Mapping[str, Any]) -> str:
    """Residual histogram (now vs reference, as shares) and residuals against predictions."""
    edges: Sequence[float] = outcomes["edges"]
    shares = {}
    for who in ("advanced", "reference"):
        total = sum(outcomes[who]) or 1
        shares[who] = [c / total for c in outcomes[who]]
    top = max(max(v) for v in shares.values()) or 1.0
    yticks = nice_ticks(0.0, top)
    f = Frame(edges[0], edges[-1], 0.0, yticks[-1], height=260)
    body = [
        f.axes(
            xlabel="residual: prediction - truth (target units)",
            ylabel="share of records",
            yticks=yticks,
            xticks=f.numeric_xticks(),
            yunit="%",
        )
    ]
    bar = (f.x(edges[1]) - f.x(edges[0])) / 2
    for who, shift in (("reference", 0.0), ("advanced", bar)):
        color = COLORS["reference" if who == "reference" else "advanced"]
        for j, s in enumerate(shares[who]):
            x = f.x(edges[j]) + shift
            body.append(
                f"<rect class='hist {who}' x='{x:.1f}' y='{f.y(s):.1f}' "
                f"width='{max(bar - 0.5, 1):.1f}' "
                f"height='{f.y(0) - f.y(s):.1f}' fill='{color}'><title>{who}: {s:.1%} of records "
                f"with residual in [{edges[j]:.4g}, {edges[j + 1]:.4g})</title></rect>"
            )
    if edges[0] < 0 < edges[-1]:
        body.append(
            f"<line x1='{f.x(0):.1f}' x2='{f.x(0):.1f}' y1='{f.top}' y2='{f.y(0):.1f}' "
            "stroke='#1f2328' stroke-dasharray='3 3'/>"
        )
    body.append(
        legend(
            {"now (advanced)": COLORS["advanced"], "reference": COLORS["reference"]},
            x=f.left + 4,
            y=16,
        )
    )
    hist = svg("".join(body), "histogram of residuals, now and on the reference", height=260)
    return hist + _residual_scatter(outcomes)


def _residual_scatter(outcomes: Mapping[str, Any]) -> str:
    pred, res = outcomes["points"]["predicted"], outcomes["points"]["residual"]
    if not pred:
        return ""
    f = Frame(*padded(pred, pad=0.04), *padded([*res, 0.0]), height=280)
    body = [
        f.axes(
            xlabel="prediction (target units)",
            ylabel="residual (target units)",
            yticks=nice_ticks(f.ylo, f.yhi),
            xticks=f.numeric_xticks(),
        )
    ]
    body.append(
        f"<line x1='{f.left}' x2='{f.width - f.right}' y1='{f.y(0):.1f}' y2='{f.y(0):.1f}' "
        "stroke='#1f2328' stroke-dasharray='3 3'/>"
    )
    body.extend(
        f"<circle class='residual' cx='{f.x(p):.1f}' cy='{f.y(r):.1f}' r='2.5' "
        f"fill='{COLORS['advanced']}' opacity='.55'>"
        f"<title>prediction {p:.4g}, residual {r:+.4g}</title></circle>"
        for p, r in zip(pred, res, strict=True)
    )
    return svg(
        "".join(body),
        "residuals against predictions (a sample of the labelled records)",
        height=280,
    )
