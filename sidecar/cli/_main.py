"""The top parser: each command group adds its own sub-commands, and ``main`` maps
errors to exit statuses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import InputError, PlanError, SidecarError
from . import _analysis, _bundle_cmds, _retrain, _serve, _store_cmds

__all__ = ["main"]

# Each group's `register(sub)` adds its sub-parsers; a new command group is one more line.
GROUPS = (_bundle_cmds, _serve, _store_cmds, _analysis, _retrain)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
        return int(getattr(args, "failure_status", 1))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("model-sidecar")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar",
        description="Wrap, serve, monitor and repair a model with a shadow baseline.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser
