"""A ResNet-style image classifier meets an input shift: fine-tune the head, shadow, promote.

A small residual network reads 8x8 handwritten digits (scikit-learn ships
them; nothing is downloaded). Then the camera turns: digits arrive rotated by
about 30 degrees. The diagnosis sees both models decay
and the inputs move (data drift) and recommends fine-tuning the head. The
adapter freezes the backbone (its BatchNorm statistics included), caches its
features once and retrains only the final layer on recent labelled images; the
candidate runs in shadow; `sidecar promote` promotes it on the paired test.

    python examples/resnet_head/resnet_head.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import rotate
from sklearn.datasets import load_digits

import adapters
import sidecar
from sidecar.cli import main as sidecar_cli
from sidecar.monitoring import default_plan
from sidecar.recording import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so "net:make_net" imports
from net import make_net

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PIXELS = [f"p{i:02d}" for i in range(64)]


def records(images: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(PIXELS, map(float, row), strict=True)) for row in images]


def turned(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The new camera: mounted about 30 degrees off, still 0..16 integer grey levels."""
    out = np.empty_like(images, dtype=np.float64)
    for i, flat in enumerate(images):
        img = rotate(flat.reshape(8, 8), 30 + rng.uniform(-5, 5), reshape=False, order=1)
        out[i] = np.clip(np.rint(img), 0, 16).ravel()
    return out


def train(net: torch.nn.Module, X: np.ndarray, y: np.ndarray, epochs: int = 12) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(Xt)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()


def replay(
    bundle: sidecar.Bundle, store: Any, images: np.ndarray, labels: np.ndarray, day0: float
) -> None:
    ts = [START + (day0 + 3 * i / len(images)) * DAY for i in range(len(images))]
    sidecar.replay(
        bundle,
        records(images),
        store=store,
        labels=labels.tolist(),
        timestamps=ts,
        label_timestamps=[t + 600 for t in ts],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a new temporary folder)")
    args = parser.parse_args()
    out = Path(args.dir or tempfile.mkdtemp(prefix="sidecar-resnet-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    X, y = digits.data[order], digits.target[order]
    X_train, y_train, X_ref, y_ref, X_new, y_new = (
        X[:900],
        y[:900],
        X[900:1200],
        y[900:1200],
        X[1200:],
        y[1200:],
    )

    pre = sidecar.TabularPreprocessor(columns=[sidecar.NumericColumn(name=p) for p in PIXELS]).fit(
        records(X_train)
    )
    net = make_net()
    train(net, X_train, y_train)
    # The plan: a drop of ten points of accuracy matters (the default's 2.5 points
    # would need more labels than this small example serves).
    plan = default_plan("classification", min_effect=0.1)
    champion = sidecar.wrap(
        net,
        task="classification",
        preprocessing=pre,
        name="digits",
        plan=plan,
        train=(records(X_train), y_train),
        reference=(records(X_ref), y_ref),
        model_options={"factory": "net:make_net"},
    )
    champion.save(out / "model", overwrite=True)
    url = f"sqlite:///{(out / 'records.db').resolve()}"
    store = open_store(url)

    # Days 0-3: the turned camera. Labels come ten minutes later.
    shifted = turned(X_new, rng)
    half = len(shifted) // 2
    replay(champion, store, shifted[:half], y_new[:half], day0=0)
    diagnosis = sidecar.diagnose(champion, store)
    print("diagnosis:", diagnosis.verdict, "->", diagnosis.recommendation.adapter)

    recent = sidecar.recent_data(champion, store)
    result = adapters.retrain(champion, recent, strategy="auto", diagnosis=diagnosis)
    candidate_dir = result.candidate.save(out / "candidate", overwrite=True)
    print("retrained:", result.report.summary)

    # Days 3-6: the candidate in shadow on the rest of the turned images.
    champion.attach_candidate(result.candidate)
    replay(champion, store, shifted[half:], y_new[half:], day0=3)
    champion.attach_candidate(None)
    store.close()
    # The bundle names its factory, "net:make_net": code, which a loader runs only when it
    # trusts it by name -- sidecar.load(..., trusted=[...]), or SIDECAR_TRUSTED for the CLI.
    os.environ["SIDECAR_TRUSTED"] = "net:make_net"
    code = sidecar_cli(
        ["promote", str(out / "model"), "--candidate", str(candidate_dir), "--store", url]
    )
    print(
        json.dumps(
            {
                "verdict": diagnosis.verdict,
                "strategy": result.report.strategy,
                "champion_holdout": result.report.champion.get("accuracy"),
                "candidate_holdout": result.report.candidate.get("accuracy"),
                "promoted": code == 0,
                "active_version": sidecar.load(out / "model", trusted=["net:make_net"]).version,
                "candidate_version": result.candidate.version,
            }
        )
    )


if __name__ == "__main__":
    main()
