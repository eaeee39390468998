"""The README's examples run: every Python block in order, in one namespace, in a temporary
directory, with real models and a real SQLite store; the loop's commands run as real
processes; and every ``sidecar`` command line the README shows parses."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sidecar.cli import build_parser

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def _loop_section(text: str) -> str:
    start = text.index("## The loop")
    return text[start : text.index("\n## ", start + 1)]


def _command_lines(body: str) -> list[str]:
    """The ``sidecar ...`` commands of a shell block, continuation lines joined, comments off."""
    joined = body.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip().rstrip("&").strip() for line in joined.splitlines()]
    return [line for line in lines if line.startswith("sidecar ")]


def _first_example_data() -> dict[str, Any]:
    """What the first examples take as given: records with weight, age and a diagnosis code."""
    rng = np.random.default_rng(0)

    def records(n: int) -> tuple[list[dict[str, Any]], list[str]]:
        weight = rng.uniform(40, 120, n)
        age = rng.integers(18, 90, n)
        code = rng.choice(["E11.9", "I10", "J45", "K21.9"], n)
        y = np.where(weight + 0.3 * age > 95, "malignant", "benign")
        rows = [
            {"weight": float(w), "age": int(a), "diagnosis": str(c)}
            for w, a, c in zip(weight, age, code, strict=True)
        ]
        return rows, y.tolist()

    train, y_train = records(800)
    held, y_held = records(300)
    return {
        "train_records": train,
        "y_train": y_train,
        "heldout_records": held,
        "y_heldout": y_held,
        "records": held[:5],
    }


def test_every_python_block_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    blocks = _blocks(text, "python")
    loop = _blocks(_loop_section(text), "python")
    assert len(loop) >= 7 and len(blocks) >= len(loop) + 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme", **_first_example_data()}
    snapshot = None
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            raise AssertionError(f"README python block {i + 1} failed:\n{block}") from exc
        if "attach_candidate" in block:  # the champion with its candidate's shadow records
            snapshot = tmp_path.parent / f"{tmp_path.name}-cli"
            shutil.copytree(tmp_path, snapshot)
    # The loop ran for real: the candidate was promoted on the paired test, then rolled back.
    registry = namespace["registry"]
    assert [e["action"] for e in registry.history()] == [
        "register",
        "register",
        "promote",
        "rollback",
    ]
    assert namespace["decision"].promote
    assert (tmp_path / "report.html").read_text().lower().startswith("<!doctype html>")

    # The same loop from the shell, on the state just before `promote`, as real processes.
    assert snapshot is not None
    expected = {"diagnose": 1}  # an alarm
    ran = []
    for body in _blocks(_loop_section(text), "bash"):
        for line in _command_lines(body):
            argv = shlex.split(line)[1:]
            if argv[0] == "serve":  # runs until stopped; the Python blocks did its work
                continue
            if argv[0] == "retrain":  # the Python block already wrote sea-candidate
                argv[argv.index("--out") + 1] = "sea-candidate-cli"
            done = subprocess.run(
                [sys.executable, "-m", "sidecar", *argv],
                cwd=snapshot,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == expected.get(argv[0], 0), (line, done.stderr)
            assert "Traceback" not in done.stderr
            ran.append(argv[0])
    assert ran == ["diagnose", "retrain", "promote", "info", "rollback"]
    assert "promote" in (snapshot / "sea" / "history.jsonl").read_text()


def test_every_command_line_in_the_readme_parses() -> None:
    parser = build_parser()
    text = README.read_text()
    lines = [
        line
        for body in _blocks(text, "bash") + _blocks(text, "")
        for line in _command_lines(body)
        if "|" not in line and "[" not in line  # the synopsis's alternatives and options
    ]
    assert len(lines) >= 15
    for line in lines:
        argv = [a for a in shlex.split(line)[1:] if not a.startswith("<")]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # --version and --help exit 0
            assert exc.code == 0, f"the README's `{line}` does not parse"
