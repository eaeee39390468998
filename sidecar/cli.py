"""The ``sidecar`` command.

Exit status: 0 on success, 2 for a usage or input error (a bad flag, a file
that is not there, a label column that does not exist), 1 for any other
failure (a bundle that fails its hash check, a server that would not start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import InputError, PlanError, SidecarError

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
    except (InputError, PlanError) as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        return 2
    except SidecarError as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        # `diagnose` gates pipelines: 1 means "alarm", so any failure to diagnose is 2.
        return 2 if args.func is _diagnose else 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("model-sidecar")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar",
        description="Wrap, serve, monitor and repair a model with a shadow baseline.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    p.add_argument(
        "--require-signature",
        metavar="PUBLIC_KEY",
        help="serve only a bundle signed with this key's private key (sets SIDECAR_PUBLIC_KEY)",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "sign", help="sign a saved bundle with a private key (OpenSSF model-signing)"
    )
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="the private key, PEM (e.g. ECDSA P-256)")
    p.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the key's password"
    )
    p.set_defaults(func=_sign)

    p = sub.add_parser(
        "verify", help="check a bundle's signature, hashes and seal (exit 0 if good)"
    )
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="the signer's public key, PEM")
    p.set_defaults(func=_verify)

    p = sub.add_parser("replay", help="run a data set through the serving path and record it")
    p.add_argument("bundle")
    p.add_argument("--data", required=True, help="records to replay (.csv or .parquet)")
    p.add_argument("--store", required=True, help="store URL, e.g. sqlite:///records.db")
    p.add_argument("--label-column", help="column holding the ground truth (joined as labels)")
    p.add_argument("--timestamp-column", help="column holding each record's time")
    p.add_argument("--label-timestamp-column", help="column holding when each label arrived")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_replay)

    p = sub.add_parser("feedback", help="join ground-truth labels to recorded predictions")
    p.add_argument("bundle")
    p.add_argument("--data", required=True, help="labels (.csv or .parquet)")
    p.add_argument("--store", required=True)
    p.add_argument("--id-column", default="request_id")
    p.add_argument("--label-column", default="label")
    p.set_defaults(func=_feedback)

    p = sub.add_parser("export", help="export recorded predictions and labels to Parquet")
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True, help="the .parquet file to write")
    p.add_argument("--since", help="epoch seconds or ISO time (inclusive)")
    p.add_argument("--until", help="epoch seconds or ISO time (exclusive)")
    p.set_defaults(func=_export)

    p = sub.add_parser("status", help="what a store holds and what each recorder wrote or dropped")
    p.add_argument("--store", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "diagnose", help="is performance really worse, and why? (exit 0 healthy, 1 alarm)"
    )
    p.add_argument("bundle")
    p.add_argument("--store", required=True)
    p.add_argument("--since", help="epoch seconds or ISO time (inclusive)")
    p.add_argument("--until", help="epoch seconds or ISO time (exclusive)")
    p.add_argument(
        "--all-versions",
        action="store_true",
        help="include records served by other versions of the bundle",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_diagnose)

    p = sub.add_parser("report", help="a self-contained HTML report with plots")
    p.add_argument("bundle")
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True, help="the .html file to write")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--all-versions", action="store_true")
    p.set_defaults(func=_report)

    plan = sub.add_parser("plan", help="the monitoring plan of a bundle")
    plansub = plan.add_subparsers(title="plan commands", metavar="COMMAND")
    p = plansub.add_parser("check", help="show the plan and the sample size its power needs")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_plan_check)
    p = plansub.add_parser("set", help="new bundle version with a new plan (JSON, TOML or YAML)")
    p.add_argument("bundle")
    p.add_argument("plan_file")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_plan_set)

    p = sub.add_parser("retrain", help="write a retrained candidate bundle")
    p.add_argument("bundle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="learn from the labelled records in this store")
    src.add_argument("--data", help="learn from this file (.csv or .parquet)")
    p.add_argument("--label-column", help="with --data: the label column")
    p.add_argument("--timestamp-column", help="with --data: the time column (else file order)")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "regularize", "replace-members", "fine-tune-head"],
    )
    p.add_argument("--force", action="store_true", help="retrain even when healthy")
    p.add_argument("--out", required=True, help="directory of the candidate bundle")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true", help="print the training report as JSON")
    p.set_defaults(func=_retrain)

    p = sub.add_parser(
        "promote", help="promote a candidate only if a paired test says it is better"
    )
    p.add_argument("bundle", help="the champion: a bundle directory or a registry")
    p.add_argument("--candidate", required=True, help="the candidate bundle directory")
    p.add_argument("--store", required=True)
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="make an earlier version active again")
    p.add_argument("bundle", help="the registry")
    p.add_argument("--to", help="the version (default: the one active before the current)")
    p.set_defaults(func=_rollback)

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
    from ._tables import pop_column, read_table
    from .preprocessing import read_spec

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
    from ._registry import ACTIVE, Registry

    bundle = load(args.bundle, trusted=_trusted_env(), allow_pickle=False)
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
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
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


def _trusted_env() -> tuple[str, ...]:
    from ._settings import settings_from_env

    return settings_from_env().trusted


def _serve(args: argparse.Namespace) -> int:
    _check_servable(args)  # fail here, clearly, rather than in a worker
    return _run_bentoml(Path(args.bundle), args.host, args.port, args.workers, args.store)


def _check_servable(args: argparse.Namespace) -> None:
    """Load the bundle as the service will (same settings), so a refusal stops here, once."""
    from ._settings import settings_from_env
    from .serving._shadow_process import load_bundle

    if getattr(args, "require_signature", None):
        key = Path(args.require_signature)
        if not key.is_file():
            raise InputError(
                f"--require-signature must name a PEM public key file; got {str(key)!r}."
            )
        os.environ["SIDECAR_PUBLIC_KEY"] = str(key.resolve())  # the workers check it too
    settings = settings_from_env().model_copy(update={"bundle": str(args.bundle)})
    load_bundle(settings, candidate=False)


def _sign(args: argparse.Namespace) -> int:
    from ._signing import sign_bundle

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
    from ._checks import check_bundle
    from ._registry import resolve_bundle_path
    from ._signing import verify_bundle

    root = resolve_bundle_path(Path(args.bundle))
    verify_bundle(root, args.key)
    manifest, _ = check_bundle(root)
    print(f"verified {args.bundle}: version {manifest['version']}, signed with {args.key}")
    return 0


def _run_bentoml(bundle: Path, host: str, port: int, workers: int | None, store: str | None) -> int:
    """Run ``bentoml serve`` until it ends; SIGTERM, SIGINT and SIGHUP are passed on to it.

    The command waits for BentoML's graceful shutdown (which writes every
    queued record) and returns its exit status. If the command itself is
    killed (even with SIGKILL), the kernel sends BentoML SIGTERM, and each
    worker ends with BentoML's arbiter the same way (see ``_lifetime``).
    """
    import signal

    from ._lifetime import die_with_parent

    env = dict(os.environ, SIDECAR_BUNDLE=str(bundle.resolve()), OMP_NUM_THREADS="1")
    if workers:
        env["SIDECAR_WORKERS"] = str(workers)
    if store:
        env["SIDECAR_STORE"] = store
    env.setdefault("SIDECAR_STORE", f"sqlite:///{(bundle.resolve().parent / 'records.db')}")
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # an exception here: do not leave the server behind
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Stopped by a signal we passed on: a clean stop, as with Ctrl+C before.
    return 0 if forwarded and code in (0, -signal.SIGTERM, -signal.SIGINT) else code


def _replay(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._redact import redact_url
    from ._replay import replay
    from ._tables import pop_column, read_table
    from .recording import open_store

    bundle = load(args.bundle, trusted=_trusted_env())
    # The label column is read as text and coerced by the one label rule (see _feedback).
    text = [*bundle.preprocessing.categorical_fields, *filter(None, [args.label_column])]
    records = read_table(args.data, text_columns=text)
    labels = stamps = label_stamps = None
    if args.label_column:
        labels = pop_column(records, args.label_column, flag="--label-column", source=args.data)
    if args.timestamp_column:
        raw = pop_column(
            records, args.timestamp_column, flag="--timestamp-column", source=args.data
        )
        stamps = [_moment(v, f"{args.timestamp_column}[{i}]") for i, v in enumerate(raw)]
    if args.label_timestamp_column:
        raw = pop_column(
            records, args.label_timestamp_column, flag="--label-timestamp-column", source=args.data
        )
        label_stamps = [  # an empty cell: that label never arrived
            None if v is None else _moment(v, f"{args.label_timestamp_column}[{i}]")
            for i, v in enumerate(raw)
        ]
    store = open_store(args.store)
    try:
        result = replay(
            bundle,
            records,
            store=store,
            labels=labels,
            timestamps=stamps,
            label_timestamps=label_stamps,
            batch_size=args.batch_size,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"replayed {result.records} records into {redact_url(args.store)} in "
            f"{result.seconds} s; "
            f"labels joined {result.labels_accepted}, unknown {result.labels_unknown}, "
            f"dropped {result.dropped}"
        )
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._tables import pop_column, read_table
    from .recording import open_store

    bundle = load(args.bundle, trusted=_trusted_env())
    # Labels are read as text and coerced to the classes' type by the one rule
    # that /feedback applies ("1" for integer classes, "True" for booleans).
    rows = read_table(args.data, text_columns=[args.id_column, args.label_column])
    ids = pop_column(rows, args.id_column, flag="--id-column", source=args.data)
    labels = pop_column(rows, args.label_column, flag="--label-column", source=args.data)
    store = open_store(args.store)
    try:
        result = bundle.feedback(
            [{"request_id": i, "label": y} for i, y in zip(ids, labels, strict=True)], store=store
        )
    finally:
        store.close()
    print(json.dumps(result.to_dict()))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ._export import export_parquet
    from .recording import open_store

    since, until = _window(args)
    store = open_store(args.store)
    try:
        n = export_parquet(store, args.out, since=since, until=until)
    finally:
        store.close()
    print(f"exported {n} records to {args.out}")
    return 0


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _status(args: argparse.Namespace) -> int:
    from ._redact import redact_url
    from .recording import open_store

    store = open_store(args.store)
    try:
        counts = store.count()
        writers = [w.__dict__ for w in store.writers()]
    finally:
        store.close()
    now = time.time()
    stale = _stale_reasons(args.store, writers)
    status = {
        "store": redact_url(args.store),
        **counts,
        "writers": writers,
        "dropped": sum(w["dropped"] for w in writers),
        "stale": stale,
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"store       {status['store']}")
    print(f"records     {status['predictions']}  (labelled {status['labels']})")
    print(f"dropped     {status['dropped']}  (as the writers last stored it)")
    for w in writers:
        print(
            f"writer      {w['writer_id']}  enqueued {w['enqueued']}  written {w['written']}  "
            f"dropped {w['dropped']}  failed commits {w['failed_commits']}  "
            f"as of {max(0.0, now - w['updated_at']):.0f} s ago"
        )
    for reason in stale:
        print(f"stale?      {reason}")
    return 0


def _stale_reasons(url: str, writers: list[dict[str, Any]]) -> list[str]:
    """Why the writers' figures may be behind: the store cannot take their counts, or a
    writer that is still running has not stored its latest ones."""
    import shutil
    import socket

    reasons = []
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite://")[1:])
        folder = path.parent
        free = shutil.disk_usage(folder).free if folder.is_dir() else None
        if free is not None and free < 4 << 20:
            reasons.append(
                f"the disk holding the store has {free} bytes free: writers cannot store new "
                "records or counts (see each server's /metrics, "
                "sidecar_recorder_unstored_dropped_rows, and its log)"
            )
        if (folder.is_dir() and os.statvfs(folder).f_flag & os.ST_RDONLY) or (
            path.exists() and not os.access(path, os.W_OK)
        ):
            reasons.append(
                "the store is read-only: writers cannot store new records or counts (see each "
                "server's /metrics, sidecar_recorder_unstored_dropped_rows, and its log)"
            )
    host = socket.gethostname()
    running = [w for w in writers if w["host"] == host and Path(f"/proc/{w['pid']}").exists()]
    if running:
        reasons.append(
            f"{len(running)} writer(s) may still be running on this host: their figures are as "
            "of their last commit; what they dropped since is on their /metrics"
        )
    return reasons


def _window(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """``--since`` and ``--until`` as epoch seconds; each finite, and since before until."""
    since = _bound(args.since, "--since")
    until = _bound(args.until, "--until")
    if since is not None and until is not None and until <= since:
        raise InputError(
            f"--until must be later than --since; got --since {args.since} and "
            f"--until {args.until}."
        )
    return since, until


def _moment(value: Any, where: str) -> float:
    """A finite time (epoch seconds or ISO 8601) from a data file's cell."""
    import math

    from ._tables import parse_timestamp

    t = parse_timestamp(value, where=where)
    if not math.isfinite(t) or abs(t) > 1e11:
        raise InputError(f"`{where}` must be finite epoch seconds (within +-1e11); got {value!r}.")
    return t


def _bound(text: str | None, flag: str) -> float | None:
    import math

    from ._tables import parse_timestamp

    if text is None:
        return None
    value = parse_timestamp(_number_or_text(text), where=flag)
    if not math.isfinite(value) or abs(value) > 1e11:
        raise InputError(
            f"{flag} must be finite epoch seconds (within +-1e11) or an ISO 8601 time such as "
            f"2026-11-26T12:00:00Z; got {text!r}."
        )
    return value


def _diagnose(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._monitor import diagnose

    bundle = load(args.bundle, trusted=_trusted_env())
    since, until = _window(args)
    result = diagnose(bundle, args.store, since=since, until=until, all_versions=args.all_versions)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return result.exit_code
    rec = result.recommendation
    print(f"verdict         {result.verdict}")
    print(
        f"recommendation  {rec.action}"
        + (f" (adapter: {rec.adapter})" if rec.adapter else "")
        + f": {rec.detail}"
    )
    print(f"records         {result.n_records}  (labelled {result.n_labelled})")
    print(f"plan sha256     {result.plan_sha256}")
    for reason in result.reasons:
        print(f"because         {reason}")
    for t in result.tests:
        print(f"test            {t.name:<28} effect {t.effect:+.4g}  p_adj {t.p_adjusted:.3g}")
    drifted = [d for d in result.drift if d.material]
    for d in sorted(drifted, key=lambda d: -d.effect)[:10]:
        print(
            f"drift           {d.feature:<28} {d.effect_name} {d.effect:.3g}  "
            f"p_adj {d.p_adjusted:.3g}"
        )
    for h in result.health:
        print(f"pipeline        {h.feature:<28} {h.check}: {h.message}")
    for note in result.notes:
        print(f"note            {note}")
    return result.exit_code


def _report(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._monitor import diagnose
    from .monitoring._report import render_report

    bundle = load(args.bundle, trusted=_trusted_env())
    since, until = _window(args)
    result = diagnose(bundle, args.store, since=since, until=until, all_versions=args.all_versions)
    html = render_report(result, plan=bundle.plan, title=f"{bundle.name} {bundle.version}")
    Path(args.out).write_text(html, encoding="utf-8")
    print(f"wrote {args.out}: verdict {result.verdict}")
    return 0


def _plan_check(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._monitor import plan_summary

    bundle = load(args.bundle, trusted=_trusted_env())
    summary = plan_summary(bundle)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    plan = summary["plan"]
    print(f"plan sha256       {summary['plan_sha256']}")
    print(f"task              {plan['task']}")
    print(
        f"primary metric    {plan['primary_metric']}  (secondary: "
        f"{', '.join(plan['secondary_metrics']) or 'none'})"
    )
    print(
        f"acceptable range  [{plan['bounds']['lower']}, {plan['bounds']['upper']}]  "
        f"(reference value {summary['reference_value']:.4g})"
    )
    print(f"alpha / power     {plan['alpha']} / {plan['power']}")
    print(f"smallest effect   {plan['min_effect']} on the per-example {summary['loss']} loss")
    print(f"window            {plan['window']}")
    need = summary["required_n"]
    print(
        f"sample size       judged from {plan['min_labelled']} labelled records on; "
        + (
            f"{need} rule out a decline of {plan['min_effect']} with power {plan['power']}"
            if need is not None
            else "no number rules out a material decline: the reference is too small"
        )
        + f" (reference: {summary['n_reference']} records, loss sd {summary['loss_sd']:.4g})"
    )
    return 0


def _plan_set(args: argparse.Namespace) -> int:
    from ._bundle import load
    from .monitoring import read_plan

    bundle = load(args.bundle, trusted=_trusted_env())
    new = bundle.with_plan(read_plan(args.plan_file))
    path = new.save(args.out, overwrite=args.overwrite)
    print(
        f"saved bundle {new.name} version {new.version} (parent {bundle.version}) to {path} "
        f"with plan {new.plan.sha256[:16]}..."
    )
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._monitor import diagnose, recent_data

    try:
        import adapters
    except ImportError as exc:  # pragma: no cover - adapters ships with the project
        raise InputError(f"the retraining adapters cannot be imported: {exc}") from exc
    bundle = load(args.bundle, trusted=_trusted_env())
    since, until = _window(args)
    diagnosis = None
    if args.store:
        recent = recent_data(bundle, args.store, since=since, until=until)
        for note in recent.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.strategy == "auto":
            diagnosis = diagnose(bundle, args.store, since=since, until=until)
            print(f"diagnosis: {diagnosis.verdict}", file=sys.stderr)
    else:
        if not args.label_column:
            raise InputError("--label-column must name the label column of --data; got none.")
        if args.strategy == "auto":
            raise InputError(
                "--strategy auto follows a diagnosis, which needs --store; with --data name the "
                "strategy (regularize, replace-members or fine-tune-head)."
            )
        recent = _recent_from_file(bundle, args)
    result = adapters.retrain(
        bundle,
        recent,
        strategy=args.strategy,
        diagnosis=diagnosis,
        force=args.force,
        progress=_progress_bar,
    )
    path = result.candidate.save(args.out, overwrite=args.overwrite)
    print(file=sys.stderr)
    report = result.report.to_dict()
    if args.json:
        print(
            json.dumps(
                {
                    "candidate": str(path),
                    "version": result.candidate.version,
                    "parent": bundle.version,
                    "report": report,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print(f"saved candidate {result.candidate.version} (parent {bundle.version}) to {path}")
    print(json.dumps(report, indent=2, default=str))
    return 0


def _recent_from_file(bundle: Any, args: argparse.Namespace) -> Any:
    import numpy as np

    from ._monitor import RecentData
    from ._tables import parse_timestamp, pop_column, read_table

    records = read_table(args.data, text_columns=bundle.preprocessing.categorical_fields)
    labels = pop_column(records, args.label_column, flag="--label-column", source=args.data)
    if args.timestamp_column:
        raw = pop_column(
            records, args.timestamp_column, flag="--timestamp-column", source=args.data
        )
        ts = [parse_timestamp(v, where=f"{args.timestamp_column}[{i}]") for i, v in enumerate(raw)]
    else:
        ts = [float(i) for i in range(len(records))]
    order = sorted(range(len(records)), key=lambda i: ts[i])
    y = np.array([labels[i] for i in order])
    return RecentData(
        records=[records[i] for i in order],
        labels=y,
        ts=np.array([ts[i] for i in order], dtype=float),
    )


def _progress_bar(step: str, fraction: float) -> None:
    width = 30
    filled = int(width * max(0.0, min(1.0, fraction)))
    print(
        f"\r{step[:40]:<40} [{'#' * filled}{'.' * (width - filled)}] {fraction:>4.0%}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _promote(args: argparse.Namespace) -> int:
    from ._bundle import load
    from ._monitor import promotion_decision
    from ._registry import Registry

    champion = load(args.bundle, trusted=_trusted_env())
    candidate = load(args.candidate, trusted=_trusted_env())
    since, until = _window(args)
    decision = promotion_decision(champion, candidate, args.store, since=since, until=until)
    summary = decision.to_dict()
    if decision.promote:
        registry = Registry.open(args.bundle, create=True)
        registry.register(Path(args.candidate))
        registry.activate(candidate.version, action="promote", evidence=summary)
    elif (Path(args.bundle) / "ACTIVE").is_file():
        Registry.open(args.bundle).log(
            {"action": "reject", "version": candidate.version, "evidence": summary}
        )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        word = {"promote": "promoted", "reject": "rejected"}.get(decision.decision, "undecided")
        print(f"{word} {candidate.version}")
        print(decision.reason)
        for t in decision.tests:
            print(f"test  {t.name:<26} effect {t.effect:+.4g}  p_adj {t.p_adjusted:.3g}")
    return 0 if decision.promote else 1


def _rollback(args: argparse.Namespace) -> int:
    from ._registry import Registry

    registry = Registry.open(args.bundle)
    target = args.to or registry.previous_active()
    if target is None:
        raise InputError(f"{args.bundle} has no earlier active version to roll back to.")
    current = registry.active
    registry.activate(target, action="rollback")
    print(f"active version {target} (was {current})")
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
