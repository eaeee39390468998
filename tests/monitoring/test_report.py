"""The HTML report of real diagnoses, read as HTML and as a headless Chromium renders it.

Two worlds, each a real model wrapped and replayed into a real SQLite store:
a three-class logistic regression on generated data whose ``income`` input
doubles halfway through (classification: confusion matrices), and a ridge
regression on scikit-learn's shipped diabetes data (regression: residuals).
The browser checks skip, with the reason, where Chromium is missing; the
README says CI installs it.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sidecar
from sidecar.monitoring import render_report

CHROMIUM = Path("/usr/bin/chromium")
DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
#: the SVG namespace is an identifier in an attribute, never fetched
_SVG_NS = re.compile(r"""xmlns=(['"])http://www\.w3\.org/2000/svg\1""")


@dataclass
class World:
    bundle: Any
    diagnosis: Any
    records: list[dict[str, Any]]
    labels: list[Any]
    html: Path


def _people(rng: np.random.Generator, n: int, income_scale: float = 1.0) -> tuple[list, list]:
    age = rng.uniform(18, 80, n)
    income = rng.lognormal(10.5, 0.5, n)
    debt = rng.gamma(2.0, 5000.0, n)
    score = 0.04 * (age - 45) + 1.2 * np.log(income / 36000) - debt / 15000
    cls = np.digitize(score + rng.logistic(0, 0.6, n), [-0.9, 0.4])
    records = [
        {"age": float(a), "income": float(i * income_scale), "debt": float(d)}
        for a, i, d in zip(age, income, debt, strict=True)
    ]
    return records, [["low", "medium", "high"][c] for c in cls]


def _replay(bundle: Any, records: list, labels: list, tmp: Path, days: float) -> Any:
    from sidecar.recording import open_store

    store = open_store(f"sqlite:///{tmp / 'records.db'}")
    ts = np.linspace(T0, T0 + days * DAY, len(records), endpoint=False)
    try:
        sidecar.replay(bundle, records, store=store, labels=labels, timestamps=ts.tolist())
    finally:
        store.close()
    return sidecar.diagnose(bundle, f"sqlite:///{tmp / 'records.db'}")


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> World:
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("credit")
    rng = np.random.default_rng(7)
    train, y_train = _people(rng, 3000)
    ref, y_ref = _people(rng, 1500)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=k) for k in ("age", "income", "debt")]
    ).fit(train)
    model = LogisticRegression(max_iter=500).fit(pre.transform(train), y_train)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="credit",
    )
    before, y_before = _people(rng, 1500)
    after, y_after = _people(rng, 1500, income_scale=2.0)  # a currency change upstream
    records, labels = before + after, y_before + y_after
    d = _replay(bundle, records, labels, tmp, days=6)
    html = tmp / "report.html"
    html.write_text(render_report(d, plan=bundle.plan, title="credit"), encoding="utf-8")
    return World(bundle, d, records, labels, html)


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> World:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    tmp = tmp_path_factory.mktemp("diabetes")
    data = load_diabetes()
    rows = [dict(zip(data.feature_names, map(float, x), strict=True)) for x in data.data]
    y = [float(v) for v in data.target]
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=k) for k in data.feature_names]
    ).fit(rows[:250])
    model = Ridge(alpha=0.1).fit(pre.transform(rows[:250]), y[:250])
    bundle = sidecar.wrap(
        model,
        task="regression",
        preprocessing=pre,
        train=(rows[:250], y[:250]),
        reference=(rows[250:350], y[250:350]),
        name="diabetes",
    )
    d = _replay(bundle, rows[350:], y[350:], tmp, days=3)
    html = tmp / "report.html"
    html.write_text(render_report(d, plan=bundle.plan, title="diabetes"), encoding="utf-8")
    return World(bundle, d, rows[350:], y[350:], html)


def _expected_confusion(world: World) -> dict[tuple[str, str], int]:
    from sklearn.metrics import confusion_matrix

    classes = [str(c) for c in world.bundle.advanced.classes]
    predicted = [str(p) for p in world.bundle.predict(world.records).predictions]
    counts = confusion_matrix(world.labels, predicted, labels=classes)
    return {(t, p): int(counts[i, j]) for i, t in enumerate(classes) for j, p in enumerate(classes)}


def _cells(page: str, who: str) -> dict[tuple[str, str], int]:
    found = re.findall(
        rf"""<rect class=["']cm-cell {who}["'] data-true=["']([^"']+)["'] """
        r"""data-pred=["']([^"']+)["'] data-count=["'](\d+)["']""",
        page,
    )
    return {(t, p): int(n) for t, p, n in found}


def test_the_confusion_matrix_counts_the_window(credit: World) -> None:
    page = credit.html.read_text(encoding="utf-8")
    assert _cells(page, "now") == _expected_confusion(credit)
    o = credit.diagnosis.outcomes
    assert o["kind"] == "confusion" and o["n"] == len(credit.records)
    assert np.sum(o["reference"]) == len(credit.bundle.reference.arrays["y"])


def test_the_report_is_one_file_that_fetches_nothing(credit: World, diabetes: World) -> None:
    for world in (credit, diabetes):
        page = world.html.read_text(encoding="utf-8")
        assert page.startswith("<!doctype html>") and "<script" not in page.lower()
        rest = _SVG_NS.sub("", page)
        assert "http://" not in rest and "https://" not in rest
        assert not re.search(r"(?i)\b(src|href)\s*=|@import|url\(", rest)


def test_marks_carry_hover_values_and_axes_carry_units(credit: World) -> None:
    page = credit.html.read_text(encoding="utf-8")
    d, plan = credit.diagnosis, credit.bundle.plan
    for mark in ("circle class='point", "rect class='bar'", "rect class='cm-cell"):
        opened = page.count(f"<{mark}")
        assert opened > 0
        titled = len(re.findall(rf"<{re.escape(mark)}[^>]*><title>[^<]+</title>", page))
        assert titled == opened, mark
    assert f"{plan.primary_metric} (" in page  # the y axis names the metric and its unit
    assert "window start (UTC)" in page and "2026-01-01" in page
    assert "Records from 2026-01-01 00:00 to now (UTC)." in page
    # drift bars are scaled to the plan's material effect, marked by a line
    assert f"material effect {plan.min_drift_effect:g}" in page
    income = next(r for r in d.drift if r.feature == "income" and r.space == "raw")
    assert income.alarm and income.effect > plan.min_drift_effect
    assert re.search(r"<title>income: [a-z_]+ [0-9.e+-]+, p \(adjusted\) [^;]+; significant", page)


def test_estimated_beside_realised(credit: World) -> None:
    est = credit.diagnosis.estimate
    assert est is not None and est.realised is not None and est.error is not None
    page = credit.html.read_text(encoding="utf-8")
    assert f"the {est.n_labelled} labelled" in page and "realised - estimated" in page
    assert f"{est.error:.4g}" in page


def test_residuals_for_a_regressor(diabetes: World) -> None:
    o = diabetes.diagnosis.outcomes
    assert o["kind"] == "residuals" and o["n"] == len(diabetes.records)
    assert sum(o["advanced"]) == len(diabetes.records)
    predicted = diabetes.bundle.predict(diabetes.records).predictions
    residuals = np.asarray(predicted, dtype=float) - np.asarray(diabetes.labels)
    assert o["summary"]["advanced"]["mae"] == pytest.approx(np.abs(residuals).mean())
    page = diabetes.html.read_text(encoding="utf-8")
    assert page.count("<rect class='hist advanced'") == len(o["edges"]) - 1
    assert page.count("<circle class='residual'") == len(o["points"]["residual"])
    assert "residual: prediction - truth (target units)" in page
    assert "cm-cell" not in page


def test_jupyter_shows_a_fragment_with_the_same_parts(credit: World) -> None:
    d = credit.diagnosis
    shown = d._repr_html_()
    assert shown.startswith("<div class='sidecar-report'>") and "<html" not in shown
    assert _cells(shown, "now") == _expected_confusion(credit)
    assert "id='estimate'" in shown and "class='material'" in shown


# --------------------------------------------------------------------------- Chromium


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (CI installs the chromium package)")
    return CHROMIUM


def _browser(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pixels(data: bytes) -> tuple[int, int, np.ndarray]:
    """Width, height and the RGB(A) pixels of an 8-bit PNG (no imaging library needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    for r in range(height):  # undo the PNG row filters
        kind, line = rows[r, 0], rows[r, 1:].astype(np.int32)
        up = out[r - 1] if r else np.zeros(stride, dtype=np.int32)
        if kind == 0:
            out[r] = line
        elif kind == 2:
            out[r] = (line + up) % 256
        else:
            cur = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                left = cur[i - channels] if i >= channels else 0
                ul = up[i - channels] if i >= channels else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up[i]) // 2
                else:
                    p = left + up[i] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else up[i] if pb <= pc else ul
                cur[i] = (line[i] + pred) % 256
            out[r] = cur
    return width, height, out.reshape(height, width, channels)[:, :, :3]


def test_the_report_renders_in_headless_chromium(
    credit: World, chromium: Path, tmp_path: Path
) -> None:
    url = credit.html.resolve().as_uri()
    dumped = _browser(chromium, tmp_path / "dom", "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert _cells(dom, "now") == _expected_confusion(credit)
    counts = re.findall(r'<text class="cm-count now"[^>]*>(\d+)</text>', dom)
    assert sorted(map(int, counts)) == sorted(_expected_confusion(credit).values())
    assert 'class="verdict alarm"' in dom or 'class="verdict ok"' in dom

    shot = tmp_path / "report.png"
    done = _browser(
        chromium, tmp_path / "png", f"--screenshot={shot}", "--window-size=820,2600", url
    )
    assert done.returncode == 0, done.stderr[-2000:]
    width, height, rgb = _pixels(shot.read_bytes())
    assert (width, height) == (820, 2600)
    ink = (rgb < 235).any(axis=2)
    assert 0.03 < ink.mean() < 0.6, ink.mean()  # text and plots, not a blank page
    colours = {tuple(c) for c in rgb[::7, ::7].reshape(-1, 3)}
    assert len(colours) > 40  # the plots' colours and anti-aliased text
    # the confusion matrix's blue diagonal is on the page
    blue = (rgb[:, :, 2] > 150) & (rgb[:, :, 0] < 110) & (rgb[:, :, 1] < 160)
    assert blue.sum() > 2000, blue.sum()
