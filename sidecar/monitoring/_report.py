"""One self-contained HTML report of a diagnosis: inline SVG plots, no scripts, no network.

Sections: the verdict, the period and why; each metric of both models now and
on the reference, with intervals and the change; the estimate before labels
(CBPE) beside what the labels showed; the confusion matrix (classification)
or the residuals (regression); the primary metric per window; drift per
feature against the plan's material effect; distributions of the most drifted
features; the unknown-code rate over time; the error-analysis segments; every
test with its corrected p-value; pipeline health. Every mark carries its value
as a hover title. :meth:`Diagnosis._repr_html_` shows the same page inline in
Jupyter.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from ._diagnosis import Diagnosis
from ._metrics import METRICS
from ._plan import MonitoringPlan
from ._report_plots import (
    confusion_plots,
    distribution_plot,
    drift_plot,
    metric_plot,
    residual_plots,
    unknown_plot,
)
from ._report_svg import e as _e
from ._report_svg import fmt as _fmt

__all__ = ["render_report"]


def render_report(
    diagnosis: Diagnosis, *, plan: MonitoringPlan, title: str, fragment: bool = False
) -> str:
    """The report as one HTML string (write it to a ``.html`` file and open it anywhere).

    ``fragment=True`` gives the same content as one ``<div>`` with its own scoped
    style, to embed in another page (Jupyter shows a :class:`Diagnosis` so).
    """
    d = diagnosis
    parts = [
        f"<header><h1>{_e(title)}</h1><p class='period' id='period'>{_e(_period(d))}</p></header>",
        _verdict(d),
        "<h2 id='metrics'>Metrics now and on the reference</h2>",
        _metrics_table(d, plan),
        _estimate(d),
        _outcomes(d),
        "<h2 id='metric'>Primary metric per window</h2>",
        metric_plot(d, plan),
        "<h2 id='drift'>Drift per feature</h2>",
        drift_plot(d, plan),
        "<p class='muted'>Effect: Wasserstein distance in reference IQRs (numeric features) "
        "or Jensen-Shannon distance (categorical ones). Bars past the dashed line are material "
        "(the plan's <code>min_drift_effect</code>); red ones are also significant after the "
        "plan's correction. Hover a bar for its p-value.</p>",
        "<h2 id='distributions'>Most drifted features, per window</h2>",
        *(distribution_plot(x) for x in d.distributions),
        "" if d.distributions else "<p class='muted'>No numeric feature to show.</p>",
        "<h2 id='unknown'>Unknown-code rate over time</h2>",
        unknown_plot(d),
        "<h2 id='segments'>Where the advanced model fails</h2>",
        _segments(d),
        "<h2 id='tests'>Tests</h2>",
        _tests(d),
        "<h2 id='pipeline'>Pipeline health</h2>",
        _health(d),
    ]
    body = f"{''.join(parts)}<footer>plan sha256 {_e(d.plan_sha256)}</footer>"
    if fragment:
        return f"<div class='sidecar-report'><style>{_CSS}</style>{body}</div>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} - {_e(d.verdict)}</title><style>{_CSS}</style></head>"
        f"<body><main class='sidecar-report'>{body}</main></body></html>"
    )


_CSS = """
.sidecar-report{font:14px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;
max-width:780px;padding:0 12px;color:#1f2328;background:#fff}
.sidecar-report h1{font-size:24px;margin:0}.sidecar-report h2{font-size:17px;margin-top:2em;
padding-bottom:4px;border-bottom:1px solid #d0d7de}.sidecar-report h3{font-size:14px}
.sidecar-report .period{color:#57606a;margin:2px 0 12px}
.sidecar-report table{border-collapse:collapse;width:100%;font-size:12.5px}
.sidecar-report td,.sidecar-report th{padding:4px 8px;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top}.sidecar-report td.num{font-variant-numeric:tabular-nums}
.sidecar-report .box{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;margin:10px 0}
.sidecar-report .box.alarm{border-color:#ff8182;background:#fff5f5}
.sidecar-report .box.ok{border-color:#4ac26b;background:#f6fff8}
.sidecar-report .verdict{font-size:20px;font-weight:600;margin:0}
.sidecar-report .alarm{color:#cf222e}.sidecar-report .ok{color:#1a7f37}
.sidecar-report .muted{color:#6e7781}.sidecar-report .up{color:#1a7f37}
.sidecar-report .down{color:#cf222e}.sidecar-report svg{display:block;margin:.5em 0;
max-width:100%;height:auto}.sidecar-report svg text{font:11px system-ui,sans-serif}
.sidecar-report svg .axis-title{font-size:12px;fill:#57606a}
.sidecar-report svg .cm-count{font-size:12px;font-weight:600}
.sidecar-report .matrices{display:flex;flex-wrap:wrap;gap:12px}
.sidecar-report .matrices svg{margin:0}
.sidecar-report footer{margin-top:3em;color:#6e7781;font-size:12px}
"""


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _period(d: Diagnosis) -> str:
    """The date range: as asked for, else that of the windows with labels."""
    since, until = d.since, d.until
    starts = [w["start"] for w in d.windows] + [u["start"] for u in d.unknown_series]
    if since is None and starts:
        since = min(starts)
    if since is None and until is None:
        return "Every stored record."
    first = "the first record" if since is None else _day(since)
    last = "now" if until is None else _day(until)
    return f"Records from {first} to {last} (UTC)."


def _verdict(d: Diagnosis) -> str:
    cls = "ok" if d.verdict == "healthy" else "alarm"
    rec = d.recommendation
    reasons = "".join(f"<li>{_e(r)}</li>" for r in d.reasons)
    adapter = f" (adapter <code>{_e(rec.adapter)}</code>)" if rec.adapter else ""
    return (
        f"<div class='box {cls}'><p class='verdict {cls}' id='verdict'>{_e(d.verdict)}</p>"
        f"<p><b>Recommendation:</b> {_e(rec.action)}{adapter} — {_e(rec.detail)}</p>"
        f"<p class='muted'>{d.n_records} records, {d.n_labelled} labelled.</p>"
        f"<ul>{reasons}</ul></div>"
    )


def _cell(m: object | None) -> str:
    if m is None:
        return "<td>-</td>"
    value, low, high, n = (getattr(m, k) for k in ("value", "ci_low", "ci_high", "n"))
    return (
        f"<td class='num' title='n={n}'>{_fmt(value)} "
        f"<span class='muted'>[{_fmt(low)}, {_fmt(high)}]</span></td>"
    )


def _metrics_table(d: Diagnosis, plan: MonitoringPlan) -> str:
    """Each metric of both models, now and on the reference, with interval and change."""
    head = (
        "<tr><th>metric</th><th>advanced now</th><th>advanced on the reference</th>"
        "<th>change</th><th>baseline now</th><th>baseline on the reference</th></tr>"
    )
    rows = []
    for name in [plan.primary_metric, *plan.secondary_metrics]:
        now = d.metrics.get("advanced", {}).get(name)
        ref = d.metrics.get("advanced_reference", {}).get(name)
        change = "<td>-</td>"
        if now is not None and ref is not None and math.isfinite(now.value - ref.value):
            delta = now.value - ref.value
            spec = METRICS.get(name)
            better = (delta > 0) == (spec is None or spec.higher_is_better)
            cls = "muted" if abs(delta) < 1e-12 else ("up" if better else "down")
            change = f"<td class='num {cls}'>{delta:+.3g}</td>"
        star = " (primary)" if name == plan.primary_metric else ""
        rows.append(
            f"<tr><th>{_e(name)}{star}</th>{_cell(now)}{_cell(ref)}{change}"
            f"{_cell(d.metrics.get('baseline', {}).get(name))}"
            f"{_cell(d.metrics.get('baseline_reference', {}).get(name))}</tr>"
        )
    bounds = (
        f"<p class='muted'>Acceptable {_e(plan.primary_metric)}: "
        f"{_fmt(plan.bounds.lower)} to {_fmt(plan.bounds.upper)}; smallest material change "
        f"{_fmt(plan.min_effect)}; 95% intervals in brackets; change = advanced now minus "
        "the reference (green: better).</p>"
    )
    return f"<table class='metrics' id='metrics-table'>{head}{''.join(rows)}</table>{bounds}"


def _estimate(d: Diagnosis) -> str:
    est = d.estimate
    if est is None:
        return ""
    level = f"{1 - est.alpha:.0%}"
    rows = [
        f"<tr><th>all {est.n} records</th><td class='num'>{_fmt(est.estimate)} "
        f"<span class='muted'>[{_fmt(est.low)}, {_fmt(est.high)}]</span></td>"
        "<td>-</td><td>-</td></tr>"
    ]
    if est.realised is not None:
        held = "yes" if est.covered else "no"
        rows.append(
            f"<tr><th>the {est.n_labelled} labelled</th><td class='num'>"
            f"{_fmt(est.labelled_estimate)} <span class='muted'>[{_fmt(est.labelled_low)}, "
            f"{_fmt(est.labelled_high)}]</span></td><td class='num'>{_fmt(est.realised)}</td>"
            f"<td class='num'>{_fmt(est.error)} <span class='muted'>(inside the interval: "
            f"{held})</span></td></tr>"
        )
    note = (
        "No labels yet: the estimate is what there is."
        if est.realised is None
        else "A realised value outside the interval means P(y | x) changed (concept drift): "
        "the model's confidence could not know."
    )
    return (
        f"<h3 id='estimate'>Estimated {_e(est.metric)} before labels (CBPE)</h3>"
        f"<table class='estimate'><tr><th>records</th><th>estimated [{level}]</th>"
        f"<th>realised</th><th>realised - estimated</th></tr>{''.join(rows)}</table>"
        f"<p class='muted'>From the advanced model's probabilities, calibrated on the "
        f"reference ({est.n_reference} records). {note}</p>"
    )


def _outcomes(d: Diagnosis) -> str:
    o = d.outcomes
    if not o:
        return ""
    if o["kind"] == "confusion":
        return (
            "<h2 id='confusion'>Confusion matrix</h2>"
            + confusion_plots(o)
            + (
                "<p class='muted'>Rows: the true class; columns: the predicted one. Shading is "
                "the share of the row (blue: right, red: wrong).</p>"
            )
        )
    s = o["summary"]
    line = "; ".join(
        f"{who}: mean {_fmt(s[who]['mean'])}, sd {_fmt(s[who]['sd'])}, "
        f"MAE {_fmt(s[who]['mae'])} (n={s[who]['n']})"
        for who in ("advanced", "reference")
    )
    return (
        "<h2 id='residuals'>Residuals</h2>"
        + residual_plots(o)
        + f"<p class='muted'>{_e(line)}.</p>"
    )


def _segments(d: Diagnosis) -> str:
    if not d.segments:
        return "<p class='muted'>Not enough labelled records for the error tree.</p>"
    rows = "".join(
        f"<tr><td>{_e(s.rule)}</td><td class='num'>{s.support}</td><td class='num'>"
        f"{s.share:.1%}</td><td class='num'>{s.advanced_error:.3g}</td>"
        f"<td class='num'>{s.baseline_error:.3g}</td></tr>"
        for s in d.segments
    )
    return (
        "<table class='segments'><tr><th>segment</th><th>records</th><th>share</th>"
        f"<th>advanced error</th><th>baseline error</th></tr>{rows}</table>"
    )


def _tests(d: Diagnosis) -> str:
    rows = "".join(
        f"<tr><td>{_e(t.name)}</td><td class='num'>{_fmt(t.effect)}</td><td class='num'>"
        f"[{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]</td><td class='num'>{_fmt(t.p_value)}</td>"
        f"<td class='num'>{_fmt(t.p_adjusted)}</td><td class='num'>{t.n}</td></tr>"
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
