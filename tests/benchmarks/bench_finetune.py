"""Benchmark: fine-tuning the head (cached features) against fine-tuning every layer.

CPU (the default): scikit-learn's digits meet an input shift. Per run (a seed):
the small ResNet-style net (``tests/adapters/resnets.py:make_resnet``) learns
800 upright digits and is wrapped as a bundle; 550 other digits, turned by
30 +- 5 degrees with their contrast at 0.6, are the labelled recent data. On
the same recent data, in the same run:

- head: ``adapters.fine_tune_head(bundle, recent)`` with its defaults;
- full: every layer trainable, BatchNorm in train mode -- the same training
  loop (``adapters._finetune_tune.tune``: Adam, lr 1e-3, batches of 128, at most 30
  epochs, early stopping with patience 4 on the same validation part), the
  same candidate building and report.

Both are scored on the same held-out slice (the last 20% of the recent data by
time, which neither trains nor chooses on); recovered accuracy = candidate
accuracy - champion accuracy on it. Time is the retraining step itself --
rebuilding the network, (for the head) the one feature pass, the epochs --
which is what differs; the end-to-end times (checking and preprocessing the
recent data, building the candidate) are printed too. Figures are medians over
``--runs`` seeds, one torch thread.

    python tests/benchmarks/bench_finetune.py [--runs 5] [--threads 1]

Targets: the head recovers >= 90% of what full fine-tuning recovers, in <= 10%
of its time. Prints one JSON object; exits 1 if a target is missed.

GPU: ``--device cuda --resnet50`` runs the same comparison on a ResNet-50-sized
network (Bottleneck blocks [3, 4, 6, 3], ~25.6M parameters, defined in
``tests/adapters/resnets.py`` without torchvision) on synthetic 3x224x224
images of 10 classes: a champion trained on them briefly, recent images
rotated and dulled, the training loop called directly on arrays (a bundle's
record-by-record preprocessing of 150,528 pixel fields is not what is being
measured). ``--side`` and ``--images`` shrink it for a quick check on a CPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

RECOVERED_SHARE_MIN = 0.90
TIME_SHARE_MAX = 0.10


def full_fine_tune(bundle: Any, recent: Any, *, device: str | None, seed: int) -> Any:
    """Fine-tune every layer of the bundle's network: the loop and report of fine_tune_head."""
    from adapters._base import finish, prepare
    from adapters._finetune_config import BLOCK_LR
    from adapters._finetune_network import device_of
    from adapters._finetune_tune import TuneConfig, tune
    from sidecar.runtimes import import_object

    started = time.perf_counter()
    data = prepare(bundle, recent, strategy="full fine-tuning")
    fit_started = time.perf_counter()
    advanced = bundle.advanced
    model = import_object(advanced.factory)(**advanced.factory_kwargs)
    model.load_state_dict(advanced.module.state_dict())
    config = TuneConfig(output=advanced.output, lr=BLOCK_LR, device=device_of(device), seed=seed)
    fit = tune(
        model, [model], data.X_train, data.c_train, data.X_val, data.c_val, head=None, config=config
    )
    return finish(
        bundle,
        data,
        model,
        strategy="full fine-tuning",
        started=started,
        train_time_s=time.perf_counter() - fit_started,
        summary=f"fine-tuned every layer for {fit.epochs_run} epochs",
        changes={"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch},
        framework="torch",
        model_options={
            "factory": advanced.factory,
            "factory_kwargs": advanced.factory_kwargs,
            "output": advanced.output,
        },
    )


def digits_run(seed: int, device: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from adapters._finetune import fine_tune_head
    from tests.adapters import resnets

    shift = resnets.digits_shift(seed)
    bundle = resnets.digits_bundle(shift, seed=seed)
    recent = shift.recent_data()
    results = {
        "head": fine_tune_head(bundle, recent, device=device, seed=seed, **options),
        "head_adam_epochs": fine_tune_head(
            bundle, recent, device=device, seed=seed, solver="adam", refit=False
        ),
        "head_and_last_block": fine_tune_head(
            bundle, recent, device=device, seed=seed, unfreeze_blocks=1
        ),
        "full": full_fine_tune(bundle, recent, device=device, seed=seed),
    }
    test_x, test_y = shift.test
    champion_test = float(np.mean(bundle.advanced.infer(test_x).predictions == test_y))
    head = results["head"].report
    out: dict[str, Any] = {
        "seed": seed,
        "champion_accuracy_on_holdout": head.champion["accuracy"],
        "champion_accuracy_upright": float(
            np.mean(bundle.advanced.infer(shift.reference[0]).predictions == shift.reference[1])
        ),
        "champion_accuracy_on_unseen_shifted": champion_test,
        "n_train": head.n_train,
        "n_holdout": head.n_holdout,
    }
    for name, result in results.items():
        report = result.report
        unseen = float(np.mean(result.candidate.advanced.infer(test_x).predictions == test_y))
        out[name] = {
            "accuracy_on_holdout": report.candidate["accuracy"],
            "recovered": report.candidate["accuracy"] - report.champion["accuracy"],
            "recovered_on_unseen_shifted": unseen - champion_test,
            "train_s": report.train_time_s,
            "wall_s": report.wall_time_s,
            "solver": report.changes.get("solver", "adam"),
            "epochs_run": report.changes.get("epochs_run", 0),
        }
    return out


def synthetic_images(
    n: int, side: int, n_classes: int, rng: np.random.Generator, prototypes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``side`` x ``side`` x 3 in [0, 1]: a class's smooth pattern plus noise."""
    import torch
    import torch.nn.functional as F

    y = rng.integers(0, n_classes, n)
    base = torch.from_numpy(prototypes[y])
    big = F.interpolate(base, size=(side, side), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0, 0.15, (n, 3, side, side)).astype(np.float32))
    gain = torch.from_numpy(rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32))
    images = (big * gain + noise).clamp(0, 1)
    return images.reshape(n, -1).numpy(), y.astype(np.int64)


def shift_synthetic(X: np.ndarray, side: int, angle: float = 30.0, contrast: float = 0.6) -> Any:
    """Rotate every image by ``angle`` degrees and squeeze its contrast towards a lifted black."""
    import math

    import torch
    import torch.nn.functional as F

    images = torch.from_numpy(X).reshape(-1, 3, side, side)
    a = math.radians(angle)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    turned = F.grid_sample(images, grid, align_corners=False)
    return (turned * contrast + (1 - contrast) * 0.25).reshape(len(X), -1).numpy()


def resnet50_run(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from adapters._finetune_config import BLOCK_LR, HEAD_LR
    from adapters._finetune_network import device_of
    from adapters._finetune_tune import TuneConfig, tune
    from tests.adapters import resnets

    dev = device_of(args.device)
    rng = np.random.default_rng(seed)
    side, n_classes = args.side, 10
    prototypes = rng.uniform(0, 1, (n_classes, 3, 7, 7)).astype(np.float32)
    X0, y0 = synthetic_images(args.images, side, n_classes, rng, prototypes)
    Xr, yr = synthetic_images(args.images // 2, side, n_classes, rng, prototypes)
    Xr = shift_synthetic(Xr, side)
    torch.manual_seed(seed)
    champion = resnets.make_resnet50(n_classes=n_classes, side=side)
    cut = int(len(X0) * 0.8)
    started = time.perf_counter()
    trained = tune(
        champion, [champion], X0[:cut], y0[:cut], X0[cut:], y0[cut:], head=None,
        config=TuneConfig(
            epochs=args.champion_epochs, lr=BLOCK_LR, batch_size=64, patience=100, device=dev,
            seed=seed,
        ),
    )  # fmt: skip
    champion_s = time.perf_counter() - started
    n = len(Xr)
    a, b = int(n * 0.6), int(n * 0.8)
    parts = (Xr[:a], yr[:a], Xr[a:b], yr[a:b])

    def accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
        model.to(dev).eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(X), 128):
                out = model(torch.from_numpy(X[i : i + 128]).to(dev))
                correct += int((out.argmax(1).cpu().numpy() == y[i : i + 128]).sum())
        model.to("cpu")
        return correct / len(X)

    before = accuracy(champion, Xr[b:], yr[b:])
    out: dict[str, Any] = {
        "seed": seed,
        "champion_train_s": champion_s,
        "champion_val_accuracy_by_epoch": [row["val_accuracy"] for row in trained.history],
        "champion_accuracy_unshifted": accuracy(champion, X0[cut:], y0[cut:]),
        "champion_accuracy_on_holdout": before,
        "n_train": a,
        "n_holdout": n - b,
    }
    for name in ("head", "full"):
        model = resnets.make_resnet50(n_classes=n_classes, side=side)
        model.load_state_dict(champion.state_dict())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fit = tune(
            model,
            [model.fc] if name == "head" else [model],
            *parts,
            head=model.fc if name == "head" else None,
            config=TuneConfig(
                lr=HEAD_LR if name == "head" else BLOCK_LR,
                batch_size=args.batch_size,
                device=dev,
                seed=seed,
                refit=name == "head",
            ),
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        after = accuracy(model, Xr[b:], yr[b:])
        out[name] = {
            "accuracy_on_holdout": after,
            "recovered": after - before,
            "train_s": elapsed,
            "wall_s": elapsed,
            "epochs_run": fit.epochs_run,
            "solver": fit.solver,
            "feature_cache": fit.cached,
        }
    return out


def summarize(runs: list[dict[str, Any]], setup: dict[str, Any]) -> dict[str, Any]:
    names = [k for k in ("head", "head_adam_epochs", "head_and_last_block", "full") if k in runs[0]]

    def median(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in runs)

    def share_of_full(name: str, key: str) -> float | None:
        full = median("full", key)
        return round(median(name, key) / full, 4) if full > 0 else None

    share = share_of_full("head", "recovered")
    time_share = median("head", "train_s") / median("full", "train_s")
    result: dict[str, Any] = {
        **setup,
        "runs": len(runs),
        "median_champion_accuracy_on_holdout": round(
            statistics.median(r["champion_accuracy_on_holdout"] for r in runs), 4
        ),
        "median": {
            name: {
                key: round(median(name, key), 4)
                for key in runs[0][name]
                if isinstance(runs[0][name][key], int | float)
                and not isinstance(runs[0][name][key], bool)
            }
            for name in names
        },
        "recovered_share": share,
        "time_share": round(time_share, 4),
        "end_to_end_time_share": round(median("head", "wall_s") / median("full", "wall_s"), 4),
        "per_run_recovered_share": [
            round(r["head"]["recovered"] / r["full"]["recovered"], 4)
            if r["full"]["recovered"] > 0
            else None
            for r in runs
        ],
    }
    if "recovered_on_unseen_shifted" in runs[0]["head"]:
        result["recovered_share_on_unseen_shifted"] = share_of_full(
            "head", "recovered_on_unseen_shifted"
        )
    if "head_and_last_block" in names:
        result["head_and_last_block"] = {
            "recovered_share": share_of_full("head_and_last_block", "recovered"),
            "recovered_share_on_unseen_shifted": share_of_full(
                "head_and_last_block", "recovered_on_unseen_shifted"
            ),
            "time_share": round(
                median("head_and_last_block", "train_s") / median("full", "train_s"), 4
            ),
        }
    result["targets"] = {
        "recovered_share_min": RECOVERED_SHARE_MIN,
        "time_share_max": TIME_SHARE_MAX,
    }
    result["recovered_share_ok"] = share is not None and share >= RECOVERED_SHARE_MIN
    result["time_share_ok"] = time_share <= TIME_SHARE_MAX
    result["all_targets_met"] = result["recovered_share_ok"] and result["time_share_ok"]
    result["per_run"] = _rounded(runs)
    return result


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="seeds (default 5; 3 for ResNet-50)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    parser.add_argument(
        "--head-options", default="{}", help="JSON keyword arguments for fine_tune_head (digits)"
    )
    parser.add_argument("--resnet50", action="store_true", help="ResNet-50 on synthetic images")
    parser.add_argument("--side", type=int, default=224, help="ResNet-50 image side")
    parser.add_argument("--images", type=int, default=2048, help="ResNet-50 champion images")
    parser.add_argument("--champion-epochs", type=int, default=6, help="ResNet-50 champion epochs")
    parser.add_argument("--batch-size", type=int, default=128, help="ResNet-50 fine-tuning batch")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    runs_n = args.runs or (3 if args.resnet50 else 5)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    setup: dict[str, Any] = {
        "benchmark": "fine_tune_head vs full fine-tuning",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "threads": args.threads,
    }
    if args.resnet50:
        setup.update(
            network="ResNet-50 (Bottleneck [3, 4, 6, 3], 25.6M parameters)",
            data=f"synthetic {args.side}x{args.side}x3 images, 10 classes, "
            f"{args.images} champion / {args.images // 2} recent (rotated 30 deg, contrast 0.6)",
        )
        runs = [resnet50_run(seed, args) for seed in range(runs_n)]
    else:
        setup.update(
            network="small ResNet-style net (tests/adapters/resnets.py:make_resnet, 3 BasicBlocks)",
            data="digits: 800 upright to train the champion, 550 recent rotated 30+-5 deg with "
            "contrast 0.6 (train 330 / validation 110 / holdout 110, by time)",
        )
        options = json.loads(args.head_options)
        setup["head_options"] = options
        runs = [digits_run(seed, device, options) for seed in range(runs_n)]
    result = summarize(runs, setup)
    print(json.dumps(result, indent=2))
    return 0 if result["all_targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
