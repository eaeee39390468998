"""The examples run as users run them: as scripts, from another directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sidecar

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUICKSTART = EXAMPLES / "quickstart" / "quickstart.py"


@pytest.mark.skipif(not QUICKSTART.is_file(), reason=f"{QUICKSTART} is not there")
def test_quickstart_example_without_serving(tmp_path: Path) -> None:
    # TMPDIR: the example's default --dir is a fresh temporary directory; keep it in tmp_path.
    # One OpenMP thread: the gradient boosting is small, and oversubscription only slows it.
    env = dict(os.environ, TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), "--no-serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    saved = re.search(r"saved \S+ version (\w+) to (\S+)", done.stdout)
    assert saved, done.stdout
    bundle = sidecar.load(saved.group(2))
    assert bundle.version == saved.group(1)
    assert Path(saved.group(2)).resolve().is_relative_to(tmp_path.resolve())
