"""``python -m sidecar.cli``."""

from ._main import main

raise SystemExit(main())
