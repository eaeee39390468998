"""`bentoml build` works from the repository root with the project's bentofile.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.serve
def test_bentoml_build_from_the_repository_root(tmp_path: Path) -> None:
    env = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml-home"), BENTOML_DO_NOT_TRACK="1")
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("model-sidecar:"), built.stdout
    bento_dir = tmp_path / "bentoml-home" / "bentos" / "model-sidecar" / tag.split(":")[1]
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.py")
    }
    assert "sidecar/serving/service.py" in sources
    assert not any(s.startswith("tests/") for s in sources)
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "skops" in requirements and "torch" not in requirements
