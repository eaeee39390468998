"""Commands on a bundle itself: ``quickstart``, ``wrap``, ``info``, ``sign``, ``verify``."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from .._errors import InputError
from .._json import dumps
from ._common import add_bundle, add_json, add_overwrite, trusted_env
from ._serve import add_address, check_port, run_bentoml

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("quickstart", help="train, wrap, save and serve a real example model")
    p.add_argument(
        "--dir", default="sidecar-quickstart", help="where to write (default: %(default)s)"
    )
    add_address(p)
    p.add_argument("--no-serve", action="store_true", help="stop after saving the bundle")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("wrap", help="wrap a saved model with preprocessing, baseline and reference")
    p.add_argument(
        "--model",
        required=True,
        help="model file (.skops, .onnx, TorchScript .pt, state dict .pt) or import path",
    )
    p.add_argument(
        "--framework",
        choices=["sklearn", "torch", "onnx", "callable", "pickle"],
        help="how to read --model (default: from its suffix; an import path is a callable)",
    )
    p.add_argument(
        "--task",
        required=True,
        choices=["classification", "regression"],
        help="what the model predicts",
    )
    p.add_argument("--preprocessing", required=True, help="spec file (.json, .toml, .yaml)")
    p.add_argument(
        "--train", help="training data (.csv or .parquet); fits preprocessing and baseline"
    )
    p.add_argument("--reference", required=True, help="held-out reference data (.csv or .parquet)")
    p.add_argument(
        "--label-column", required=True, help="the column of --train and --reference holding y"
    )
    p.add_argument(
        "--baseline",
        default="auto",
        choices=["auto", "linear", "tree"],
        help="the shadow baseline (default: %(default)s: logistic or ridge regression)",
    )
    p.add_argument("--name", default="model", help="the bundle's name (default: %(default)s)")
    p.add_argument("--classes", nargs="+", help="class labels of a non-scikit-learn classifier")
    p.add_argument("--factory", help="torch: 'module:function' that rebuilds the architecture")
    p.add_argument("--trusted", nargs="*", default=[], help="extra types skops may load")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a pickled model file (only for files you trust)",
    )
    p.add_argument("--out", required=True, help="bundle directory to write")
    add_overwrite(p)
    p.set_defaults(func=_wrap)

    p = sub.add_parser("info", help="versions, hashes and parts of a bundle")
    add_bundle(p)
    add_json(p)
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "sign", help="sign a saved bundle with a private key (OpenSSF model-signing)"
    )
    add_bundle(p, "the saved bundle directory to sign")
    p.add_argument("--key", required=True, help="the private key, PEM (e.g. ECDSA P-256)")
    p.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the key's password"
    )
    p.set_defaults(func=_sign)

    p = sub.add_parser(
        "verify", help="check a bundle's signature, hashes and seal (exit 0 if good)"
    )
    add_bundle(p)
    p.add_argument("--key", required=True, help="the signer's public key, PEM")
    p.set_defaults(func=_verify)


def _quickstart(args: argparse.Namespace) -> int:
    from .._quickstart import build_quickstart, load_quickstart_data

    directory = Path(args.dir)
    if not args.no_serve:
        check_port(args.host, args.port)
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
    return run_bentoml(directory / "bundle", args.host, args.port, None, store)


def _wrap(args: argparse.Namespace) -> int:
    from .._tables import pop_column, read_table
    from ..bundle._bundle import wrap
    from ..preprocessing import read_spec

    preprocessing = read_spec(args.preprocessing)
    text = preprocessing.categorical_fields

    def labelled(path: str) -> tuple[list[dict[str, Any]], list[Any]]:
        records = read_table(path, text_columns=text)
        return records, pop_column(records, args.label_column, flag="--label-column", source=path)

    reference = labelled(args.reference)
    train = labelled(args.train) if args.train else None
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


def _read_model(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    """Load the model named by ``--model`` in the way its framework requires."""
    from ..bundle._model_file import read_model

    return read_model(
        args.model,
        framework=args.framework,
        trusted=args.trusted,
        factory=args.factory,
        allow_pickle=args.allow_pickle,
        name="--model",
    )


def _typed_classes(classes: list[str] | None, data: tuple[Any, list[Any]]) -> list[Any] | None:
    """Class names from the command line, typed like the labels in the data."""
    if classes is None:
        return None
    labels = data[1]
    if labels and isinstance(labels[0], int):
        return [int(c) for c in classes]
    return classes


def _info(args: argparse.Namespace) -> int:
    from ._analysis import quiet_start

    with quiet_start():
        from ..bundle._bundle import load
        from ..bundle._registry import ACTIVE, Registry

        bundle = load(args.bundle, trusted=trusted_env(), allow_pickle=False)
    info = bundle.info()
    info["plan_sha256"] = bundle.plan.sha256
    history: list[dict[str, Any]] = []
    if (Path(args.bundle) / ACTIVE).is_file():
        registry = Registry.open(args.bundle)
        history = registry.history()
        info["registry"] = {
            "active": registry.active,
            "versions": registry.versions(),
            "history": history,
        }
    if args.json:
        print(dumps(info, indent=2, sort_keys=True, default=str))
        return 0
    print(f"bundle      {info['name']}  version {info['version']}  (parent {info['parent']})")
    print(f"task        {info['task']}  classes {info['classes']}")
    print(f"created     {info['created_at']}")
    print(f"inputs      {', '.join(info['input_fields'])}")
    print(f"plan sha256 {bundle.plan.sha256}")
    for part in ("preprocessing", "advanced", "baseline", "reference"):
        meta = info["parts"][part]
        kind = meta.get("framework") or meta.get("kind")
        print(
            f"{part:<15}{kind:<11}{meta.get('format', ''):<22}version {meta['version']}  "
            f"sha256 {meta['sha256'][:16]}..."
        )
    for event in history:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["time"]))
        extra = f" (from {event['from']})" if event.get("from") else ""
        print(f"history     {when}  {event['action']:<9} {event['version']}{extra}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from ..bundle._signing import sign_bundle

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise InputError(
                f"--password-env must name a set environment variable; {args.password_env} is "
                "not set."
            )
    signature = sign_bundle(args.bundle, args.key, password=password)
    print(f"signed {args.bundle}: {signature}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..bundle._checks import check_bundle
    from ..bundle._registry import resolve_bundle_path
    from ..bundle._signing import verify_bundle

    root = resolve_bundle_path(Path(args.bundle))
    verify_bundle(root, args.key)
    manifest, _ = check_bundle(root)
    print(f"verified {args.bundle}: version {manifest['version']}, signed with {args.key}")
    return 0
