"""The ``sidecar`` command, one module per command group.

Exit status: 0 on success, 2 for a usage or input error (a bad flag, a file
that is not there, a label column that does not exist), 1 for any other
failure (a bundle that fails its hash check, a server that would not start).

Every module here imports only the standard library at the top, so that
``sidecar --help`` starts in well under a second; each command imports what it
needs when it runs.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
