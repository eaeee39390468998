"""The top parser: each command group adds its own sub-commands, and ``main`` maps
errors to exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from .._errors import InputError, PlanError, SidecarError
from . import _analysis, _bundle_cmds, _retrain, _serve, _store_cmds

__all__ = ["main"]

# Exit statuses (README, "Command line"; `sidecar --help`).
SUCCESS = 0
FAILURE = 1  # also: `diagnose` raised an alarm, `promote` did not promote, `verify` failed
USAGE = 2  # a bad flag or value, a file that is not there, a port in use
INTERRUPTED = 130  # Ctrl+C
BROKEN_PIPE = 141  # stdout closed by its reader (128 + SIGPIPE, as a shell reports it)

EPILOG = """exit status:
  0    success (diagnose: healthy; promote: promoted)
  1    failure (diagnose: an alarm; promote: rejected or undecided; a bundle that fails its
       checks, a server that would not start)
  2    usage or input error: a bad flag or value, a file that is not there, a port in use
  130  interrupted (Ctrl+C)
  141  stdout closed early by its reader (e.g. `| head -1`)

Every command has --help. Results go to stdout (a short summary, or --json); progress
bars, notes and errors to stderr."""

# Each group's `register(sub)` adds its sub-parsers; a new command group is one more line.
GROUPS = (_bundle_cmds, _serve, _store_cmds, _analysis, _retrain)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``sidecar`` command; the exit status is documented in ``sidecar --help``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return USAGE
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # here, so that a reader that went away is caught below
        return status
    except (InputError, PlanError, FileNotFoundError, IsADirectoryError) as exc:
        return _fail(exc, USAGE)
    except SidecarError as exc:
        # `diagnose` gates pipelines: 1 means "alarm", so any failure to diagnose is 2.
        return _fail(exc, int(getattr(args, "failure_status", FAILURE)))
    except BrokenPipeError:
        # The reader went away (`sidecar diagnose ... | head -1`): stop quietly, as `cat` does.
        _silence_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print("sidecar: interrupted", file=sys.stderr)
        return INTERRUPTED
    except OSError as exc:  # a disk that is full, a directory that cannot be written
        return _fail(exc, FAILURE)


def _fail(exc: BaseException, status: int) -> int:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc)
    with contextlib.suppress(BrokenPipeError):  # stderr gone too
        print(f"sidecar: error: {message}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a descriptor (captured in tests)
        pass


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
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_version()}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser
