"""Commands that make and choose versions: ``retrain``, ``promote``, ``rollback``,
``preprocessing swap``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import InputError
from .._json import dumps
from .._types import STRATEGIES
from ._common import (
    add_bundle,
    add_json,
    add_overwrite,
    add_progress,
    add_store,
    add_window,
    progress_for,
    trusted_env,
    window,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("retrain", help="write a retrained candidate bundle")
    add_bundle(p, "the champion: a bundle directory or a registry")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", metavar="URL", help="learn from the labelled records in this store")
    src.add_argument("--data", help="learn from this file (.csv or .parquet)")
    p.add_argument("--label-column", help="with --data: the label column")
    p.add_argument("--timestamp-column", help="with --data: the time column (else file order)")
    add_window(p)
    for action in p._actions:
        if action.dest == "since":
            action.help = (
                "from this time on: epoch seconds or ISO 8601 (inclusive), or 'all' for every "
                "row (default: with --strategy auto, the rows after the change the diagnosis "
                "found, when it is significant and leaves at least 50 labelled rows; else all)"
            )
    p.add_argument(
        "--strategy",
        default="auto",
        choices=STRATEGIES,
        help="the adapter; auto follows the store's diagnosis (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="retrain even when healthy")
    p.add_argument("--out", required=True, help="directory of the candidate bundle")
    add_overwrite(p)
    add_json(p, "the candidate and the whole training report")
    add_progress(p)
    p.set_defaults(func=_retrain)

    p = sub.add_parser(
        "promote", help="promote a candidate only if a paired test says it is better"
    )
    add_bundle(p, "the champion: a bundle directory or a registry")
    p.add_argument("--candidate", required=True, help="the candidate bundle directory")
    add_store(p, "the store holding both models' answers (the candidate in shadow)")
    add_window(p)
    add_json(p, "the decision and its evidence")
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="make an earlier version active again")
    add_bundle(p, "the registry")
    p.add_argument("--to", help="the version (default: the one active before the current)")
    add_json(p, "the versions")
    p.set_defaults(func=_rollback)

    pre = sub.add_parser("preprocessing", help="work on a bundle's preprocessing")
    presub = pre.add_subparsers(title="preprocessing commands", metavar="COMMAND")
    p = presub.add_parser("swap", help="new bundle version with a new preprocessing, same models")
    add_bundle(p)
    p.add_argument("new_preprocessing", help="spec file (.json, .toml, .yaml)")
    p.add_argument("--out", required=True, help="directory of the new bundle version")
    p.add_argument("--version", help="version of the new preprocessing (default: its hash)")
    add_overwrite(p)
    p.set_defaults(func=_swap)


def _retrain(args: argparse.Namespace) -> int:
    from .._retraining import retrain
    from ..bundle._bundle import load

    bundle = load(args.bundle, trusted=trusted_env())
    every_row = args.since is not None and args.since.strip().lower() == "all"
    if every_row:
        args.since = None
    since: float | str | None
    since, until = window(args)
    if every_row:
        since = "all"
    data = None
    timestamps = None
    if args.data:
        if not args.label_column:
            raise InputError("--label-column must name the label column of --data; got none.")
        if args.strategy == "auto":
            raise InputError(
                "--strategy auto follows a diagnosis, which needs --store; with --data name the "
                "strategy (regularize, replace-members, refit or fine-tune-head)."
            )
        data, timestamps = _read_data(bundle, args)
    bar = progress_for(args)
    try:
        result = retrain(
            bundle,
            args.store,
            data=data,
            timestamps=timestamps,
            strategy=args.strategy,
            since=since,
            until=until,
            force=args.force,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    path = result.candidate.save(args.out, overwrite=args.overwrite)
    report = result.report
    for note in report.notes:  # what the data left out, the diagnosis: beside the result
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        document = {
            "candidate": str(path),
            "version": result.candidate.version,
            "parent": bundle.version,
            "report": report.to_dict(),
        }
        print(dumps(document, indent=2, default=str))
        return 0
    metric = report.primary_metric
    print(f"saved candidate {result.candidate.version} (parent {bundle.version}) to {path}")
    print(f"strategy   {report.strategy}: {report.summary}")
    rows = report.window.get("n")
    print(f"window     {report.window.get('why') or f'every labelled row in the window ({rows})'}")
    print(
        f"data       {report.n_train} train, {report.n_validation} validation, "
        f"{report.n_holdout} holdout (the latest); {report.wall_time_s:.1f} s"
    )
    print(
        f"holdout    {metric} champion {report.champion[metric]:.4g}, candidate "
        f"{report.candidate[metric]:.4g} ({'better' if report.improved else 'not better'}; "
        f"the smallest effect that matters is {report.min_effect:g})"
    )
    print(
        f"next       run it in shadow (sidecar serve {args.bundle} --candidate {path}), then "
        f"sidecar promote {args.bundle} --candidate {path} --store URL   (--json: every figure)"
    )
    return 0


def _read_data(bundle: Any, args: argparse.Namespace) -> tuple[Any, list[float] | None]:
    """``--data``'s records and labels, and its times when ``--timestamp-column`` names them."""
    from .._tables import parse_timestamp, pop_column, read_table

    records = read_table(args.data, text_columns=bundle.preprocessing.categorical_fields)
    labels = pop_column(records, args.label_column, flag="--label-column", source=args.data)
    if not args.timestamp_column:
        return (records, labels), None
    raw = pop_column(records, args.timestamp_column, flag="--timestamp-column", source=args.data)
    ts = [parse_timestamp(v, where=f"{args.timestamp_column}[{i}]") for i, v in enumerate(raw)]
    return (records, labels), ts


def _promote(args: argparse.Namespace) -> int:
    from ..bundle._promotion import promote

    since, until = window(args)
    decision = promote(
        args.bundle, args.candidate, args.store, since=since, until=until, trusted=trusted_env()
    )
    if args.json:
        print(dumps(decision.to_dict(), indent=2))
    else:
        word = {"promote": "promoted", "reject": "rejected"}.get(decision.decision, "undecided")
        print(f"{word} {decision.candidate_version}")
        print(decision.reason)
        for t in decision.tests:
            print(f"test  {t.name:<26} effect {t.effect:+.4g}  p_adj {t.p_adjusted:.3g}")
    return 0 if decision.promote else 1


def _rollback(args: argparse.Namespace) -> int:
    from ..bundle._promotion import rollback
    from ..bundle._registry import Registry

    current = Registry.open(args.bundle).active
    target = rollback(args.bundle, to=args.to)
    if args.json:
        print(dumps({"active": target, "was": current}))
    else:
        print(f"active version {target} (was {current})")
    return 0


def _swap(args: argparse.Namespace) -> int:
    from ..bundle._bundle import load
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
