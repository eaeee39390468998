"""``python -m sidecar``: the ``sidecar`` command."""

from .cli import main

raise SystemExit(main())
