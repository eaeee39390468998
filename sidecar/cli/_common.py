"""What the commands share: time windows, the trusted-types setting, the progress bar."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import InputError

__all__ = ["add_window", "bound", "moment", "progress_bar", "trusted_env", "window"]


def add_window(p: argparse.ArgumentParser) -> None:
    """``--since`` and ``--until``: the time window of the records a command reads."""
    p.add_argument("--since", help="epoch seconds or ISO time (inclusive)")
    p.add_argument("--until", help="epoch seconds or ISO time (exclusive)")


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


def moment(value: Any, where: str) -> float:
    """A finite time (epoch seconds or ISO 8601) from a data file's cell."""
    import math

    from .._tables import parse_timestamp

    t = parse_timestamp(value, where=where)
    if not math.isfinite(t) or abs(t) > 1e11:
        raise InputError(f"`{where}` must be finite epoch seconds (within +-1e11); got {value!r}.")
    return t


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


def progress_bar(step: str, fraction: float) -> None:
    width = 30
    filled = int(width * max(0.0, min(1.0, fraction)))
    print(
        f"\r{step[:40]:<40} [{'#' * filled}{'.' * (width - filled)}] {fraction:>4.0%}",
        end="",
        file=sys.stderr,
        flush=True,
    )
