"""Commands that fill or read a store: ``replay``, ``feedback``, ``export``, ``status``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InputError
from .._json import dumps
from ._common import (
    CountingStore,
    add_bundle,
    add_json,
    add_progress,
    add_store,
    add_window,
    progress_for,
    trusted_env,
    window,
)

if TYPE_CHECKING:
    from ..recording import Store

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="run a data set through the serving path and record it")
    add_bundle(p)
    p.add_argument("--data", required=True, help="records to replay (.csv or .parquet)")
    add_store(p, "where to record them")
    p.add_argument("--label-column", help="column holding the ground truth (joined as labels)")
    p.add_argument("--timestamp-column", help="column holding each record's time")
    p.add_argument("--label-timestamp-column", help="column holding when each label arrived")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="records predicted and recorded together (default: %(default)s)",
    )
    add_json(p, "the summary")
    add_progress(p)
    p.set_defaults(func=_replay)

    p = sub.add_parser("feedback", help="join ground-truth labels to recorded predictions")
    add_bundle(p)
    p.add_argument("--data", required=True, help="labels (.csv or .parquet)")
    add_store(p, "the store holding the predictions")
    p.add_argument(
        "--id-column",
        default="request_id",
        help="column holding the request id each label is for (default: %(default)s)",
    )
    p.add_argument(
        "--label-column", default="label", help="column holding the label (default: %(default)s)"
    )
    add_json(p, "the outcome")
    p.set_defaults(func=_feedback)

    p = sub.add_parser("export", help="export recorded predictions and labels to Parquet")
    add_store(p)
    p.add_argument(
        "--out",
        required=True,
        help="the directory of the Parquet dataset (partitioned by bundle_version and hour)",
    )
    add_window(p)
    add_json(p, "the summary")
    add_progress(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("status", help="what a store holds and what each recorder wrote or dropped")
    add_store(p, "the store to inspect (a SQLite file must exist; it is never created)")
    add_json(p)
    p.set_defaults(func=_status)


def _drop_if_empty(store: Store, made: Any) -> None:
    """Remove the SQLite file a failed replay made, if it still holds no record.

    A replay that refuses its input must leave no empty store behind: the next
    ``diagnose`` would read it as a store with nothing in it.
    """
    if not isinstance(made, Path):
        return
    try:
        if store.count()["predictions"]:
            return
    except Exception:  # the store failing too must not hide why the replay failed
        return
    store.close()
    for suffix in ("", "-wal", "-shm"):
        made.with_name(made.name + suffix).unlink(missing_ok=True)


def _replay(args: argparse.Namespace) -> int:
    from .._redact import redact_url
    from .._replay._file import read_replay
    from ..bundle._bundle import load
    from ..recording import open_store

    bundle = load(args.bundle, trusted=trusted_env())
    if args.batch_size < 1:
        raise InputError(f"`--batch-size` must be a positive integer; got {args.batch_size}.")
    # The data is read and its columns found before the store is opened (or made).
    # The label column is read as text and coerced by the one label rule (see _feedback).
    data = read_replay(
        args.data,
        text_columns=[*bundle.preprocessing.categorical_fields, *filter(None, [args.label_column])],
        label_column=args.label_column,
        timestamp_column=args.timestamp_column,
        label_timestamp_column=args.label_timestamp_column,
    )
    try:  # a SQLite file this replay makes is removed again if the replay fails
        store, made = open_store(args.store, create=False), None
    except InputError:
        store = open_store(args.store)
        made = getattr(store, "path", None)
    bar = progress_for(args)
    try:
        result = data.run(
            bundle,
            store,
            batch_size=args.batch_size,
            progress=None if bar is None else lambda done, n: bar("replay", done / max(n, 1)),
        )
    except BaseException:
        _drop_if_empty(store, made)
        raise
    finally:
        store.close()
        if bar is not None:
            bar.close()
    if args.json:
        print(dumps(result.to_dict()))
    else:
        print(
            f"replayed {result.records} records into {redact_url(args.store)} in "
            f"{result.seconds} s; "
            f"labels joined {result.labels_accepted}, unknown {result.labels_unknown}, "
            f"dropped {result.dropped}"
        )
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from .._tables import pop_column, read_table
    from ..bundle._bundle import load
    from ..recording import open_store

    bundle = load(args.bundle, trusted=trusted_env())
    # Labels are read as text and coerced to the classes' type by the one rule
    # that /feedback applies ("1" for integer classes, "True" for booleans).
    rows = read_table(args.data, text_columns=[args.id_column, args.label_column])
    ids = pop_column(rows, args.id_column, flag="--id-column", source=args.data)
    labels = pop_column(rows, args.label_column, flag="--label-column", source=args.data)
    # labels join records already stored: a mistyped path says so, and is not created
    store = open_store(args.store, create=False)
    try:
        result = bundle.feedback(
            [{"request_id": i, "label": y} for i, y in zip(ids, labels, strict=True)], store=store
        )
    finally:
        store.close()
    if args.json:
        print(dumps(result.to_dict()))
    else:
        unknown = result.unknown_request_ids
        print(
            f"joined {result.accepted} labels"
            + (
                f"; {len(unknown)} request ids are not in the store, e.g. {unknown[0]}"
                if unknown
                else ""
            )
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from .._export import export_parquet
    from ..recording import open_store

    since, until = window(args)
    store = open_store(args.store, create=False)
    bar = progress_for(args)
    try:
        reader: Any = store if bar is None else CountingStore(store, bar, "export")
        n = export_parquet(reader, args.out, since=since, until=until)
    finally:
        store.close()
        if bar is not None:
            bar.close()
    if args.json:
        print(dumps({"records": n, "out": str(args.out)}))
    else:
        print(f"exported {n} records to {args.out}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .._redact import redact_url
    from ..recording import open_store

    store = open_store(args.store, create=False)  # a mistyped path says so, and is not created
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
        print(dumps(status, indent=2))
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
