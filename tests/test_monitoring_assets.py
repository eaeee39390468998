"""The Grafana dashboard and the Prometheus alert rules in ``examples/monitoring``.

Every metric an expression names must be one the service exports: checked against the
``/metrics`` of a real ``bentoml serve`` that has answered, refused and recorded requests
(a bundle with a categorical column, so the per-feature series exist). The rules must pass
``promtool check rules`` (Debian's ``prometheus`` package; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import serve_sidecar

ASSETS = Path(__file__).resolve().parents[1] / "examples" / "monitoring"
RULES = ASSETS / "alerts.yml"
DASHBOARD = ASSETS / "grafana-dashboard.json"

#: A metric name as PromQL writes one of ours or BentoML's.
METRIC = re.compile(r"\b((?:sidecar|bentoml)_[a-z_]+)\b")


def _rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def _dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["definition"]
    return found


def _names(expressions: dict[str, str]) -> dict[str, set[str]]:
    return {where: set(METRIC.findall(expr)) for where, expr in expressions.items()}


def test_every_expression_names_a_metric() -> None:
    for where, names in (_names(_rule_expressions()) | _names(_dashboard_expressions())).items():
        assert names, f"{where} names no sidecar or BentoML metric"


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "model-sidecar"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_rules_pass_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rule_expressions())} rules found" in result.stdout


def _records(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = random.Random(seed)
    records = [{"code": rng.choice("abcde"), "x": rng.gauss(0.0, 1.0)} for _ in range(n)]
    return records, [int((r["x"] > 0) != (r["code"] == "a")) for r in records]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.ensemble import RandomForestClassifier

    import sidecar

    train, y_train = _records(400, seed=1)
    ref, y_ref = _records(150, seed=2)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.CategoricalColumn(name="code", top_n=3), sidecar.NumericColumn(name="x")]
    ).fit(train)
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    model.fit(pre.transform(train), y_train)
    wrapped = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="codes",
    )
    return wrapped.save(tmp_path_factory.mktemp("assets") / "bundle")


def _post(port: int, path: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _gauge(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in a Prometheus exposition."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            found[labels] = float(value)
    return found


@pytest.mark.serve
@pytest.mark.parametrize("shadow_process", ["0", "1"], ids=["threads", "shadow-process"])
def test_every_metric_is_exported_by_a_live_service(
    bundle: Path, tmp_path: Path, shadow_process: str
) -> None:
    proc, port = serve_sidecar(
        bundle,
        f"sqlite:///{tmp_path / 'records.db'}",
        tmp_path / "server.log",
        SIDECAR_SHADOW_PROCESS=shadow_process,
    )
    try:
        records, _ = _records(40, seed=3)
        records += [{"code": "never-seen", "x": 0.1}] * 3  # unknown codes
        assert _post(port, "/predict", json.dumps({"records": records}).encode()) == 200
        assert _post(port, "/predict", b'{"records": [{"x": "text"}]}') == 400
        deadline = time.monotonic() + 30
        exported: set[str] = set()
        wanted = set().union(
            *_names(_rule_expressions()).values(), *_names(_dashboard_expressions()).values()
        )
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            exported = {
                line.split("{", 1)[0].split(" ", 1)[0]
                for line in text.splitlines()
                if line and not line.startswith("#")
            }
            if wanted <= exported:  # the shadow gauges are set off the request path
                break
            time.sleep(0.5)
        assert wanted - exported == set(), f"not on /metrics: {sorted(wanted - exported)}"
        # the per-feature series carry the label the expressions group by
        assert 'sidecar_unknown_code_rate{feature="code"}' in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    _check_live_estimate(bundle, text, records)


def _check_live_estimate(bundle: Path, text: str, records: list[dict[str, Any]]) -> None:
    """The gauges hold the CBPE estimate of these 43 records, as the library computes it."""
    import numpy as np

    import sidecar
    from sidecar.monitoring import METRICS, estimate_performance

    loaded = sidecar.load(bundle)
    metric = loaded.plan.primary_metric
    key = f'{{metric="{metric}"}}'
    est = _gauge(text, "sidecar_estimated_metric")[key]
    low = _gauge(text, "sidecar_estimated_metric_low")[key]
    high = _gauge(text, "sidecar_estimated_metric_high")[key]
    assert low <= est <= high and 0.0 <= est <= 1.0, (low, est, high)
    assert _gauge(text, "sidecar_estimated_metric_records")[key] == len(records)
    arrays = loaded.reference.arrays
    classes = np.asarray(loaded.reference.summary["classes"])
    expected = estimate_performance(
        metric,
        loaded.predict_proba(records),
        reference_proba=arrays["advanced:probabilities"],
        reference_labels=arrays["y"],
        classes=classes,
        alpha=loaded.plan.alpha,
        draws=400,
    )
    assert est == pytest.approx(expected.estimate, abs=0.03)
    assert high - low == pytest.approx(expected.high - expected.low, rel=0.3)
    reference = METRICS[metric].function(
        arrays["y"], None, arrays["advanced:probabilities"], classes
    )
    assert _gauge(text, "sidecar_reference_metric")[key] == pytest.approx(reference)
    bound = _gauge(text, "sidecar_metric_bound")[f'{{metric="{metric}",side="lower"}}']
    assert bound == loaded.plan.bounds.lower
