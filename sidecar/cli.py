"""The ``sidecar`` command.

Exit status: 0 on success, 2 for a usage or input error (a bad flag, a file
that is not there, a label column that does not exist), 1 for any other
failure (a bundle that fails its hash check, a server that would not start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import InputError, SidecarError

__all__ = ["main"]

SERVICE = "sidecar.serving.service:Sidecar"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        return 2
    except SidecarError as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar",
        description="Wrap, serve, monitor and repair a model with a shadow baseline.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("quickstart", help="train, wrap, save and serve a real example model")
    p.add_argument(
        "--dir", default="sidecar-quickstart", help="where to write (default: %(default)s)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--no-serve", action="store_true", help="stop after saving the bundle")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("wrap", help="wrap a saved model with preprocessing, baseline and reference")
    p.add_argument(
        "--model",
        required=True,
        help="model file (.skops, .onnx, TorchScript .pt, state dict .pt) or import path",
    )
    p.add_argument("--framework", choices=["sklearn", "torch", "onnx", "callable", "pickle"])
    p.add_argument("--task", required=True, choices=["classification", "regression"])
    p.add_argument("--preprocessing", required=True, help="spec file (.json, .toml, .yaml)")
    p.add_argument(
        "--train", help="training data (.csv or .parquet); fits preprocessing and baseline"
    )
    p.add_argument("--reference", required=True, help="held-out reference data (.csv or .parquet)")
    p.add_argument("--label-column", required=True)
    p.add_argument("--baseline", default="auto", choices=["auto", "linear", "tree"])
    p.add_argument("--name", default="model")
    p.add_argument("--classes", nargs="+", help="class labels of a non-scikit-learn classifier")
    p.add_argument("--factory", help="torch: 'module:function' that rebuilds the architecture")
    p.add_argument("--trusted", nargs="*", default=[], help="extra types skops may load")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a pickled model file (only for files you trust)",
    )
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_wrap)

    p = sub.add_parser("info", help="versions, hashes and parts of a bundle")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_info)

    p = sub.add_parser("serve", help="serve a bundle with `bentoml serve`")
    p.add_argument("bundle")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--workers", type=int)
    p.add_argument("--store", help="where to record predictions (sets SIDECAR_STORE)")
    p.set_defaults(func=_serve)

    pre = sub.add_parser("preprocessing", help="work on a bundle's preprocessing")
    presub = pre.add_subparsers(title="preprocessing commands", metavar="COMMAND")
    p = presub.add_parser("swap", help="new bundle version with a new preprocessing, same models")
    p.add_argument("bundle")
    p.add_argument("new_preprocessing", help="spec file (.json, .toml, .yaml)")
    p.add_argument("--out", required=True, help="directory of the new bundle version")
    p.add_argument("--version", help="version of the new preprocessing (default: its hash)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_swap)
    return parser


def _quickstart(args: argparse.Namespace) -> int:
    from ._quickstart import build_quickstart, load_quickstart_data

    directory = Path(args.dir)
    bundle = build_quickstart(directory / "bundle")
    store = f"sqlite:///{(directory / 'records.db').resolve()}"
    print(f"saved bundle {bundle.name} version {bundle.version} to {directory / 'bundle'}")
    if args.no_serve:
        return 0
    print(f"serving on http://{args.host}:{args.port} (records: {store}); try:")
    example = json.dumps({"records": [load_quickstart_data()[2][0]]})
    print(
        f"  curl -s -X POST http://{args.host}:{args.port}/predict "
        f"-H 'content-type: application/json' -d '{example}'"
    )
    return _run_bentoml(directory / "bundle", args.host, args.port, None, store)


def _wrap(args: argparse.Namespace) -> int:
    from ._bundle import wrap
    from ._tables import read_table, split_labels
    from .preprocessing import read_spec

    preprocessing = read_spec(args.preprocessing)
    text = preprocessing.categorical_fields
    reference = split_labels(
        read_table(args.reference, text_columns=text), args.label_column, source=args.reference
    )
    train = (
        split_labels(
            read_table(args.train, text_columns=text), args.label_column, source=args.train
        )
        if args.train
        else None
    )
    model, framework, options = _read_model(args)
    bundle = wrap(
        model,
        task=args.task,
        preprocessing=preprocessing,
        train=train,
        reference=reference,
        baseline=args.baseline,
        name=args.name,
        framework=framework,
        classes=_typed_classes(args.classes, train or reference),
        model_options=options,
    )
    path = bundle.save(args.out, overwrite=args.overwrite)
    print(f"saved bundle {bundle.name} version {bundle.version} to {path}")
    return 0


def _read_model(args: argparse.Namespace) -> tuple[Any, str | None, dict[str, Any]]:
    """Load the model named by ``--model`` in the way its framework requires."""
    source = args.model
    path = Path(source)
    framework = args.framework
    if framework is None:
        framework = {
            ".skops": "sklearn",
            ".onnx": "onnx",
            ".pt": "torch",
            ".pth": "torch",
            ".pkl": "pickle",
            ".pickle": "pickle",
        }.get(path.suffix.lower(), "callable")
    if framework != "callable" and not path.is_file():
        raise InputError(f"--model must be an existing model file; got {source!r}.")
    if framework == "sklearn":
        from ._safe import skops_load

        return skops_load(path, args.trusted), "sklearn", {}
    if framework == "onnx":
        return path.read_bytes(), "onnx", {}
    if framework == "torch":
        from .runtimes import import_object
        from .runtimes._torch import require_torch

        torch = require_torch()
        if args.factory:
            module = import_object(args.factory)()
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return module, "torch", {"factory": args.factory}
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu"), "torch", {}
    if framework == "pickle":
        if not args.allow_pickle:
            raise InputError(
                "--model is a pickle file, and unpickling can run any code; pass "
                "--allow-pickle if you trust it."
            )
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh), "pickle", {}
    return source, "callable", {}


def _typed_classes(classes: list[str] | None, data: tuple[Any, list[Any]]) -> list[Any] | None:
    """Class names from the command line, typed like the labels in the data."""
    if classes is None:
        return None
    labels = data[1]
    if labels and isinstance(labels[0], int):
        return [int(c) for c in classes]
    return classes


def _info(args: argparse.Namespace) -> int:
    from ._bundle import load

    bundle = load(args.bundle, trusted=_trusted_env(), allow_pickle=False)
    info = bundle.info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"bundle      {info['name']}  version {info['version']}  (parent {info['parent']})")
    print(f"task        {info['task']}  classes {info['classes']}")
    print(f"created     {info['created_at']}")
    print(f"inputs      {', '.join(info['input_fields'])}")
    for part in ("preprocessing", "advanced", "baseline", "reference"):
        meta = info["parts"][part]
        kind = meta.get("framework") or meta.get("kind")
        print(
            f"{part:<15}{kind:<11}{meta.get('format', ''):<22}version {meta['version']}  "
            f"sha256 {meta['sha256'][:16]}..."
        )
    return 0


def _trusted_env() -> tuple[str, ...]:
    from ._settings import settings_from_env

    return settings_from_env().trusted


def _serve(args: argparse.Namespace) -> int:
    from ._bundle import load

    load(args.bundle, trusted=_trusted_env())  # fail here, clearly, rather than in a worker
    return _run_bentoml(Path(args.bundle), args.host, args.port, args.workers, args.store)


def _run_bentoml(bundle: Path, host: str, port: int, workers: int | None, store: str | None) -> int:
    env = dict(os.environ, SIDECAR_BUNDLE=str(bundle.resolve()), OMP_NUM_THREADS="1")
    if workers:
        env["SIDECAR_WORKERS"] = str(workers)
    if store:
        env["SIDECAR_STORE"] = store
    env.setdefault("SIDECAR_STORE", f"sqlite:///{(bundle.resolve().parent / 'records.db')}")
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def _swap(args: argparse.Namespace) -> int:
    from ._bundle import load
    from .preprocessing import read_spec

    bundle = load(args.bundle, trusted=_trusted_env())
    new = read_spec(args.new_preprocessing)
    if args.version:
        new.version = args.version
    swapped = bundle.with_preprocessing(new)
    path = swapped.save(args.out, overwrite=args.overwrite)
    print(
        f"saved bundle {swapped.name} version {swapped.version} (parent {bundle.version}) to "
        f"{path}: preprocessing {bundle.preprocessing_version} -> "
        f"{swapped.preprocessing_version}; models unchanged "
        f"(advanced {swapped.manifest['parts']['advanced']['version']}, "
        f"baseline {swapped.manifest['parts']['baseline']['version']})"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
