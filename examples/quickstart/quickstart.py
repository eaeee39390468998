"""Quickstart: train a model, wrap it with its preprocessing and a baseline, serve it, call it.

Run it from anywhere:

    python examples/quickstart/quickstart.py            # train, wrap, save, serve, call, stop
    python examples/quickstart/quickstart.py --no-serve # train, wrap, save only (what CI runs)

The data ship with scikit-learn (breast-cancer diagnosis); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

import sidecar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to save the bundle (default: a new temporary folder)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--no-serve", action="store_true")
    args = parser.parse_args()
    args.dir = args.dir or tempfile.mkdtemp(prefix="sidecar-quickstart-")

    # 1. Your data and your model: records are plain dicts, as they arrive in requests.
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    records = [dict(zip(names, map(float, row), strict=True)) for row in data.data]
    labels = [str(data.target_names[t]) for t in data.target]
    train, reference, y_train, y_reference = train_test_split(
        records, labels, test_size=0.3, random_state=0, stratify=labels
    )

    # 2. Preprocessing is its own, versioned part: declare it, fit it on the training records.
    preprocessing = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=name) for name in names]
    ).fit(train)
    model = HistGradientBoostingClassifier(random_state=0)
    model.fit(preprocessing.transform(train), y_train)

    # 3. Wrap: a baseline is fitted for free, and the reference records what "normal" looks like.
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=preprocessing,
        train=(train, y_train),
        reference=(reference, y_reference),
        baseline="auto",
        name="breast-cancer",
    )
    path = bundle.save(Path(args.dir) / "bundle", overwrite=True)
    print(f"saved {bundle.name} version {bundle.version} to {path}")

    # 4. The same bundle predicts in Python, alone or with its shadow baseline.
    pair = bundle.predict_shadow(reference[:3])
    print(
        "advanced:",
        pair.advanced.predictions.tolist(),
        "baseline:",
        None if pair.baseline is None else pair.baseline.predictions.tolist(),
    )
    if args.no_serve:
        return

    # 5. Serve it with BentoML on 127.0.0.1 and call it over HTTP.
    env = dict(
        os.environ,
        SIDECAR_BUNDLE=str(path),
        OMP_NUM_THREADS="1",
        SIDECAR_STORE=f"sqlite:///{Path(args.dir).resolve() / 'records.db'}",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "sidecar.serving.service:Sidecar",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ],
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        _wait_ready(url)
        body = json.dumps({"records": reference[:2]}).encode()
        request = urllib.request.Request(
            f"{url}/predict", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            print(json.dumps(json.load(response), indent=2))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while the worker starts
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server at {url} was not ready within {timeout} s")


if __name__ == "__main__":
    main()
