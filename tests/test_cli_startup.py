"""The command starts fast: `sidecar --help` and `--version` import no numerical library."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "scipy", "sklearn", "torch", "bentoml", "pandas", "pyarrow", "skops")

PROBE = """
import sys
from sidecar.cli import main
try:
    main({argv!r})
except SystemExit as exit:
    code = exit.code
print("LOADED", sorted(m for m in {heavy!r} if m in sys.modules), code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["diagnose", "--help"]], ids=str)
def test_help_and_version_import_no_numerical_library(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = result.stdout.strip().splitlines()[-1]
    assert loaded == "LOADED [] 0", loaded


def test_version_names_the_distribution() -> None:
    from sidecar.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0


def test_the_public_names_still_resolve() -> None:
    import sidecar

    for name in sidecar.__all__:
        assert getattr(sidecar, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = sidecar.nothing_here  # type: ignore[attr-defined]


def test_a_commands_start_up_is_frozen_from_the_collector_and_thawed_after() -> None:
    """What the imports and the bundle made is frozen once started (collection on again),
    and everything is unfrozen when the command ends -- also when it fails."""
    import gc

    from sidecar.cli._analysis import quiet_start

    assert gc.isenabled() and gc.get_freeze_count() == 0
    with quiet_start() as started:
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]
        started()
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), quiet_start():
        raise RuntimeError("the bundle was refused")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()  # someone else's frozen objects are left as they are
    try:
        before = gc.get_freeze_count()
        with quiet_start() as started:
            started()
            assert gc.isenabled()
        assert gc.get_freeze_count() <= before  # nothing more frozen (some freed since)
    finally:
        gc.unfreeze()
