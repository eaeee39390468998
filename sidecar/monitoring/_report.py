"""One self-contained HTML report of a diagnosis: inline SVG plots, no scripts, no network.

Sections: the verdict and why; both models' primary metric per window with
confidence intervals and the plan's bounds; per-feature drift; distributions
of the most drifted features per window; the unknown-code rate over time; the
error-analysis segments; every test with its corrected p-value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ._diagnosis import Diagnosis
from ._plan import MonitoringPlan

__all__ = ["render_report"]

_W, _H, _PAD = 720, 260, 48
_COLORS = {"advanced": "#1f6feb", "baseline": "#d29922", "reference": "#6e7781"}
_WINDOW_COLORS = ["#1f6feb", "#8250df", "#bf3989", "#cf222e", "#d29922", "#1a7f37"]


def render_report(diagnosis: Diagnosis, *, plan: MonitoringPlan, title: str) -> str:
    """The report as one HTML string (write it to a ``.html`` file and open it anywhere)."""
    d = diagnosis
    parts = [
        f"<h1>{_e(title)}</h1>",
        _verdict(d),
        "<h2 id='metrics'>Metrics now and on the reference</h2>",
        _metrics_table(d, plan),
        _estimate(d),
        "<h2 id='metric'>Primary metric per window</h2>",
        _metric_plot(d, plan),
        "<h2 id='drift'>Drift per feature</h2>",
        _drift_plot(d),
        "<h2 id='distributions'>Most drifted features, per window</h2>",
        *(_distribution_plot(x) for x in d.distributions),
        "" if d.distributions else "<p class='muted'>No numeric feature to show.</p>",
        "<h2 id='unknown'>Unknown-code rate over time</h2>",
        _unknown_plot(d),
        "<h2 id='segments'>Where the advanced model fails</h2>",
        _segments(d),
        "<h2 id='tests'>Tests</h2>",
        _tests(d),
        "<h2 id='pipeline'>Pipeline health</h2>",
        _health(d),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)} - {_e(d.verdict)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}<footer>plan sha256 {_e(d.plan_sha256)}</footer></body></html>"
    )


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:760px;color:#1f2328}
h1{font-size:22px}h2{font-size:17px;margin-top:2em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;font-size:12px}td,th{padding:3px 6px;
border-bottom:1px solid #eaeef2;text-align:left}.verdict{font-size:20px;font-weight:600}
.alarm{color:#cf222e}.ok{color:#1a7f37}.muted{color:#6e7781}svg{display:block;margin:.5em 0}
footer{margin-top:3em;color:#6e7781;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return _e(x)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _verdict(d: Diagnosis) -> str:
    cls = "ok" if d.verdict == "healthy" else "alarm"
    rec = d.recommendation
    reasons = "".join(f"<li>{_e(r)}</li>" for r in d.reasons)
    return (
        f"<p class='verdict {cls}' id='verdict'>{_e(d.verdict)}</p>"
        f"<p><b>Recommendation:</b> {_e(rec.action)}"
        + (f" (adapter <code>{_e(rec.adapter)}</code>)" if rec.adapter else "")
        + f" — {_e(rec.detail)}</p>"
        f"<p class='muted'>{d.n_records} records, {d.n_labelled} labelled; "
        f"{_e(_period(d))}.</p>"
        f"<ul>{reasons}</ul>"
    )


def _period(d: Diagnosis) -> str:
    if d.since is None and d.until is None:
        return "every stored record"
    since = "the first record" if d.since is None else _day(d.since)
    until = "now" if d.until is None else _day(d.until)
    return f"{since} to {until} (UTC)"


def _metrics_table(d: Diagnosis, plan: MonitoringPlan) -> str:
    """Each metric of both models, now and on the reference, with its interval."""
    names = [plan.primary_metric, *plan.secondary_metrics]
    head = "".join(
        f"<th>{_e(who)}</th>"
        for who in ("advanced", "advanced_reference", "baseline", "baseline_reference")
    )
    rows = []
    for name in names:
        cells = []
        for who in ("advanced", "advanced_reference", "baseline", "baseline_reference"):
            m = d.metrics.get(who, {}).get(name)
            cells.append(
                "<td>-</td>"
                if m is None
                else f"<td title='n={m.n}'>{_fmt(m.value)} "
                f"<span class='muted'>[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]</span></td>"
            )
        star = " (primary)" if name == plan.primary_metric else ""
        rows.append(f"<tr><th>{_e(name)}{star}</th>{''.join(cells)}</tr>")
    bounds = (
        f"<p class='muted'>Acceptable {_e(plan.primary_metric)}: "
        f"{_fmt(plan.bounds.lower)} to {_fmt(plan.bounds.upper)}; "
        f"smallest material change {_fmt(plan.min_effect)}; 95% intervals in brackets.</p>"
    )
    return (
        f"<table class='metrics' id='metrics-table'><tr><th>metric</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
        + bounds
    )


def _estimate(d: Diagnosis) -> str:
    e = d.estimate
    if e is None:
        return ""
    realised = (
        "no labels yet"
        if e.realised is None
        else f"realised {_fmt(e.realised)} on the labelled records (error {_fmt(e.error)})"
    )
    return (
        f"<p id='estimate'><b>Estimated {_e(e.metric)} before labels</b> (CBPE, "
        f"{e.n} records): {_fmt(e.estimate)} "
        f"<span class='muted'>[{_fmt(e.low)}, {_fmt(e.high)}]</span>; {realised}.</p>"
    )


def _svg(body: str, label: str, height: int = _H) -> str:
    return (
        f"<svg class='plot' role='img' aria-label='{_e(label)}' width='{_W}' height='{height}' "
        f"viewBox='0 0 {_W} {height}' xmlns='http://www.w3.org/2000/svg'>"
        f"<rect width='{_W}' height='{height}' fill='white'/>{body}</svg>"
    )


def _scale(lo: float, hi: float, a: float, b: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _axes(ylo: float, yhi: float, height: int = _H) -> str:
    y = _scale(ylo, yhi, height - _PAD, 16)
    ticks = "".join(
        f"<line x1='{_PAD}' x2='{_W - 10}' y1='{y(v):.1f}' y2='{y(v):.1f}' stroke='#eaeef2'/>"
        f"<text x='{_PAD - 4}' y='{y(v) + 4:.1f}' font-size='10' text-anchor='end'>{v:.3g}</text>"
        for v in (ylo + (yhi - ylo) * i / 4 for i in range(5))
    )
    return ticks + (
        f"<line x1='{_PAD}' x2='{_PAD}' y1='16' y2='{height - _PAD}' stroke='#8c959f'/>"
    )


def _metric_plot(d: Diagnosis, plan: MonitoringPlan) -> str:
    rows = list(d.windows)
    if not rows:
        return "<p class='muted'>No labelled records in this period.</p>"
    values = [
        v
        for r in rows
        for who in ("advanced", "baseline")
        for v in (r[who]["ci_low"], r[who]["ci_high"], r[who]["value"])
        if not math.isnan(v)
    ]
    shown_bounds = [b for b in (plan.bounds.lower, plan.bounds.upper) if b is not None]
    lo, hi = min(values + shown_bounds), max(values + shown_bounds)
    pad = (hi - lo) * 0.1 or 0.05
    lo, hi = lo - pad, hi + pad
    y = _scale(lo, hi, _H - _PAD, 16)
    x = _scale(0, max(len(rows) - 1, 1), _PAD + 20, _W - 30)
    body = [_axes(lo, hi)]
    for b, name in ((plan.bounds.lower, "lower bound"), (plan.bounds.upper, "upper bound")):
        if b is not None:
            body.append(
                f"<line class='bound' x1='{_PAD}' x2='{_W - 10}' y1='{y(b):.1f}' y2='{y(b):.1f}'"
                f" stroke='#cf222e' stroke-dasharray='5 4'/><text x='{_W - 12}' "
                f"y='{y(b) - 4:.1f}' font-size='10' text-anchor='end' fill='#cf222e'>{name}</text>"
            )
    for who, shift in (("advanced", -4), ("baseline", 4)):
        color = _COLORS[who]
        points = []
        for i, r in enumerate(rows):
            m = r[who]
            cx = x(i) + shift
            if not math.isnan(m["ci_low"]):
                body.append(
                    f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{y(m['ci_low']):.1f}' "
                    f"y2='{y(m['ci_high']):.1f}' stroke='{color}' stroke-width='2' opacity='.5'/>"
                )
            body.append(
                f"<circle class='point {who}' cx='{cx:.1f}' cy='{y(m['value']):.1f}' "
                f"r='3.5' fill='{color}'><title>{_day(r['start'])}: "
                f"{m['value']:.4g} (n={r['n']})</title></circle>"
            )
            points.append(f"{cx:.1f},{y(m['value']):.1f}")
        body.append(f"<polyline points='{' '.join(points)}' fill='none' stroke='{color}'/>")
    for i in (0, len(rows) - 1):
        body.append(
            f"<text x='{x(i):.1f}' y='{_H - _PAD + 16}' font-size='10' "
            f"text-anchor='middle'>{_day(rows[i]['start'])}</text>"
        )
    body.append(_legend({"advanced": _COLORS["advanced"], "baseline": _COLORS["baseline"]}))
    label = f"{plan.primary_metric} per window for both models, with 95% intervals"
    return _svg("".join(body), label) + f"<p class='muted'>{_e(label)}.</p>"


def _legend(items: Mapping[str, str], y0: int = 12) -> str:
    out, x0 = [], _W - 10 - 110 * len(items)
    for i, (name, color) in enumerate(items.items()):
        out.append(
            f"<rect x='{x0 + 110 * i}' y='{y0 - 8}' width='10' height='10' "
            f"fill='{color}'/><text x='{x0 + 110 * i + 14}' y='{y0 + 1}' "
            f"font-size='11'>{_e(name)}</text>"
        )
    return "".join(out)


def _drift_plot(d: Diagnosis) -> str:
    rows = sorted(d.drift, key=lambda r: -r.effect)[:25]
    if not rows:
        return "<p class='muted'>No drift tests ran (no records in this period).</p>"
    height = 24 + 18 * len(rows)
    top = max(max(r.effect for r in rows), 1e-9)
    x = _scale(0, top, 200, _W - 60)
    body = []
    for i, r in enumerate(rows):
        yy = 16 + 18 * i
        p = r.p_value if math.isnan(r.p_adjusted) else r.p_adjusted
        color = "#cf222e" if r.material and p <= r.detail.get("alpha", 0.05) else "#8c959f"
        body.append(
            f"<text x='196' y='{yy + 11}' font-size='11' text-anchor='end'>"
            f"{_e(r.feature)} ({_e(r.space)})</text><rect class='bar' x='200' y='{yy}' "
            f"width='{max(x(r.effect) - 200, 1):.1f}' height='13' fill='{color}'>"
            f"<title>{_e(r.effect_name)} {r.effect:.4g}, p_adj {p:.3g}</title></rect>"
            f"<text x='{x(r.effect) + 4:.1f}' y='{yy + 11}' font-size='10'>{r.effect:.3g}</text>"
        )
    return _svg(
        "".join(body), "drift effect per feature (red: significant and material)", height
    ) + (
        "<p class='muted'>Effect: Wasserstein distance in reference IQRs "
        "(numeric) or Jensen-Shannon distance (categorical); red bars are "
        "significant after Benjamini-Hochberg and material.</p>"
    )


def _distribution_plot(dist: Mapping[str, Any]) -> str:
    edges: Sequence[float] = dist["edges"]
    series = {"reference": dist["reference"]}
    for w in dist["windows"]:
        series[_day(w["start"])] = w["share"]
    top = max(max(v) for v in series.values()) or 1.0
    x = _scale(edges[0], edges[-1], _PAD, _W - 10)
    y = _scale(0, top, _H - _PAD, 24)
    body = [_axes(0, top)]
    colors = {"reference": _COLORS["reference"]}
    for i, (name, share) in enumerate(series.items()):
        color = colors.get(name, _WINDOW_COLORS[i % len(_WINDOW_COLORS)])
        colors[name] = color
        pts = " ".join(
            f"{x((edges[j] + edges[j + 1]) / 2):.1f},{y(s):.1f}" for j, s in enumerate(share)
        )
        width = 3 if name == "reference" else 1.5
        body.append(
            f"<polyline class='dist' points='{pts}' fill='none' stroke='{color}' "
            f"stroke-width='{width}'/>"
        )
    body.append(
        f"<text x='{_PAD}' y='{_H - _PAD + 16}' font-size='10'>{edges[0]:.4g}</text>"
        f"<text x='{_W - 10}' y='{_H - _PAD + 16}' font-size='10' "
        f"text-anchor='end'>{edges[-1]:.4g}</text>"
    )
    legend = " ".join(f"<span style='color:{c}'>■ {_e(n)}</span>" for n, c in colors.items())
    label = f"distribution of {dist['feature']}: reference and each window"
    return (
        f"<h3>{_e(dist['feature'])} <span class='muted'>(effect {dist['effect']:.3g})"
        f"</span></h3>" + _svg("".join(body), label) + f"<p>{legend}</p>"
    )


def _unknown_plot(d: Diagnosis) -> str:
    rows = list(d.unknown_series)
    if not rows:
        return "<p class='muted'>No categorical feature (or no records).</p>"
    fields = sorted(rows[0]["rates"])
    top = max(max(r["rates"][f] for r in rows for f in fields), 0.05)
    x = _scale(0, max(len(rows) - 1, 1), _PAD + 20, _W - 30)
    y = _scale(0, top, _H - _PAD, 24)
    body = [_axes(0, top)]
    colors = {}
    for i, f in enumerate(fields):
        color = _WINDOW_COLORS[i % len(_WINDOW_COLORS)]
        colors[f] = color
        pts = " ".join(f"{x(k):.1f},{y(r['rates'][f]):.1f}" for k, r in enumerate(rows))
        body.append(
            f"<polyline class='unknown' points='{pts}' fill='none' stroke='{color}' "
            "stroke-width='2'/>"
        )
    for i in (0, len(rows) - 1):
        body.append(
            f"<text x='{x(i):.1f}' y='{_H - _PAD + 16}' font-size='10' "
            f"text-anchor='middle'>{_day(rows[i]['start'])}</text>"
        )
    body.append(_legend(colors))
    return _svg("".join(body), "share of unknown-coded values per window and feature")


def _segments(d: Diagnosis) -> str:
    if not d.segments:
        return "<p class='muted'>Not enough labelled records for the error tree.</p>"
    rows = "".join(
        f"<tr><td>{_e(s.rule)}</td><td>{s.support}</td><td>{s.share:.1%}</td>"
        f"<td>{s.advanced_error:.3g}</td><td>{s.baseline_error:.3g}</td></tr>"
        for s in d.segments
    )
    return (
        "<table class='segments'><tr><th>segment</th><th>records</th><th>share</th>"
        f"<th>advanced error</th><th>baseline error</th></tr>{rows}</table>"
    )


def _tests(d: Diagnosis) -> str:
    rows = "".join(
        f"<tr><td>{_e(t.name)}</td><td>{_fmt(t.effect)}</td><td>[{_fmt(t.ci_low)}, "
        f"{_fmt(t.ci_high)}]</td><td>{_fmt(t.p_value)}</td><td>{_fmt(t.p_adjusted)}</td>"
        f"<td>{t.n}</td></tr>"
        for t in d.tests
    )
    outliers = "".join(
        f"<li>{_e(o.metric)}: {o.value:.4g}, without the largest {o.k} error(s) "
        f"{o.value_without_top_k:.4g} ({o.relative_change:+.1%})</li>"
        for o in d.outliers
    )
    return (
        "<table class='tests'><tr><th>test</th><th>effect</th><th>95% CI</th><th>p</th>"
        f"<th>p (BH)</th><th>n</th></tr>{rows}</table>"
        + (f"<p><b>Outlier influence</b></p><ul>{outliers}</ul>" if outliers else "")
    )


def _health(d: Diagnosis) -> str:
    if not d.health:
        return "<p class='ok'>No finding points at the pipeline.</p>"
    items = "".join(
        f"<li><b>{_e(h.feature)}</b> — {_e(h.check)}: {_e(h.message)}</li>" for h in d.health
    )
    return f"<ul class='health'>{items}</ul>"
