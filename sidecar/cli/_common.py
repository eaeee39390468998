"""What the commands share: time windows, output flags, the progress bar, trusted types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from .._errors import InputError

__all__ = [
    "CountingStore",
    "ProgressBar",
    "add_bundle",
    "add_json",
    "add_overwrite",
    "add_progress",
    "add_store",
    "add_window",
    "bound",
    "progress_for",
    "trusted_env",
    "window",
]


def add_bundle(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """The positional ``BUNDLE``: a bundle directory or a registry."""
    p.add_argument(
        "bundle",
        metavar="BUNDLE",
        help=help or "a bundle directory, or a registry (its active version)",
    )


def check_bundle_exists(args: argparse.Namespace) -> None:
    """A ``BUNDLE`` that is not there at all is a usage error (exit 2), said before any work."""
    import os

    path = getattr(args, "bundle", None)
    if isinstance(path, str) and not os.path.exists(path):
        raise InputError(
            f"BUNDLE must be a bundle directory or a registry; got {path!r}: no such file or "
            "directory."
        )


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true", help="replace the output directory if it exists"
    )


def add_store(p: argparse.ArgumentParser, what: str = "the store to read") -> None:
    p.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help=f"{what}: sqlite:///records.db, postgresql://user@host/db or memory://",
    )


def add_window(p: argparse.ArgumentParser) -> None:
    """``--since`` and ``--until``: the time window of the records a command reads."""
    p.add_argument(
        "--since", metavar="T", help="from this time on: epoch seconds or ISO 8601 (inclusive)"
    )
    p.add_argument(
        "--until", metavar="T", help="before this time: epoch seconds or ISO 8601 (exclusive)"
    )


def add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: one JSON object on stdout instead of the short human summary."""
    p.add_argument(
        "--json", action="store_true", help=f"print {what} as JSON (for machines), no summary"
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--progress``: a progress bar on stderr even when stderr is not a terminal."""
    p.add_argument(
        "--progress",
        action="store_true",
        help="draw a progress bar on stderr even when it is not a terminal (default: only on a "
        "terminal, and never with --json)",
    )


class ProgressBar:
    """A one-line bar on stderr, redrawn in place: ``bar(step, fraction)``; ``close()`` ends it."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.drawn = False

    def __call__(self, step: str, fraction: float) -> None:
        width = 30
        filled = int(width * max(0.0, min(1.0, fraction)))
        print(
            f"\r{step[:40]:<40} [{'#' * filled}{'.' * (width - filled)}] {fraction:>4.0%}",
            end="",
            file=self.stream,
            flush=True,
        )
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            print(file=self.stream, flush=True)
            self.drawn = False


def progress_for(args: argparse.Namespace) -> ProgressBar | None:
    """A bar when asked (``--progress``), or on a terminal without ``--json``; else none."""
    if getattr(args, "progress", False):
        return ProgressBar()
    if getattr(args, "json", False) or not sys.stderr.isatty():
        return None
    return ProgressBar()


class CountingStore:
    """A store whose reads (``read_window``, ``iter_joined``, ``iter_batches``) report to a bar.

    Everything else is the wrapped store's. The whole store's size is the
    denominator, so a narrower window ends short of 100 % (``close`` finishes).
    """

    def __init__(self, store: Any, bar: ProgressBar, step: str) -> None:
        self._store, self._bar, self._step = store, bar, step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def iter_joined(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        total = max(1, int(self._store.count().get("predictions", 0)))
        done = 0
        self._bar(self._step, 0.0)
        for chunk in self._store.iter_joined(**kwargs):
            done += len(chunk)
            self._bar(self._step, done / total)
            yield chunk
        self._bar(self._step, 1.0)

    def read_window(self, **kwargs: Any) -> Any:
        """The window in one read (the columnar path): the bar moves when it is in memory."""
        self._bar(self._step, 0.0)
        table = self._store.read_window(**kwargs)
        self._bar(self._step, 1.0)
        return table

    def iter_batches(self, **kwargs: Any) -> Iterator[Any]:
        total = max(1, int(self._store.count().get("predictions", 0)))
        done = 0
        self._bar(self._step, 0.0)
        for piece in self._store.iter_batches(**kwargs):
            done += piece.num_rows
            self._bar(self._step, done / total)
            yield piece
        self._bar(self._step, 1.0)


def number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def trusted_env() -> tuple[str, ...]:
    from .._settings import settings_from_env

    return settings_from_env().trusted


def window(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """``--since`` and ``--until`` as epoch seconds; each finite, and since before until."""
    since = bound(args.since, "--since")
    until = bound(args.until, "--until")
    if since is not None and until is not None and until <= since:
        raise InputError(
            f"--until must be later than --since; got --since {args.since} and "
            f"--until {args.until}."
        )
    return since, until


def bound(text: str | None, flag: str) -> float | None:
    import math

    from .._tables import parse_timestamp

    if text is None:
        return None
    value = parse_timestamp(number_or_text(text), where=flag)
    if not math.isfinite(value) or abs(value) > 1e11:
        raise InputError(
            f"{flag} must be finite epoch seconds (within +-1e11) or an ISO 8601 time such as "
            f"2026-11-26T12:00:00Z; got {text!r}."
        )
    return value
