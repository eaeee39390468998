"""Commands that make and choose versions: ``retrain``, ``promote``, ``rollback``,
``preprocessing swap``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._errors import InputError
from ._common import progress_bar, trusted_env, window

__all__ = ["register"]


def register(sub: Any) -> None:
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


def _retrain(args: argparse.Namespace) -> int:
    from .._bundle import load
    from .._monitor import diagnose, recent_data

    try:
        import adapters
    except ImportError as exc:  # pragma: no cover - adapters ships with the project
        raise InputError(f"the retraining adapters cannot be imported: {exc}") from exc
    bundle = load(args.bundle, trusted=trusted_env())
    since, until = window(args)
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
        progress=progress_bar,
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

    from .._monitor import RecentData
    from .._tables import parse_timestamp, pop_column, read_table

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


def _promote(args: argparse.Namespace) -> int:
    from .._bundle import load
    from .._monitor import promotion_decision
    from .._registry import Registry

    champion = load(args.bundle, trusted=trusted_env())
    candidate = load(args.candidate, trusted=trusted_env())
    since, until = window(args)
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
    from .._registry import Registry

    registry = Registry.open(args.bundle)
    target = args.to or registry.previous_active()
    if target is None:
        raise InputError(f"{args.bundle} has no earlier active version to roll back to.")
    current = registry.active
    registry.activate(target, action="rollback")
    print(f"active version {target} (was {current})")
    return 0


def _swap(args: argparse.Namespace) -> int:
    from .._bundle import load
    from ..preprocessing import read_spec

    bundle = load(args.bundle, trusted=trusted_env())
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
