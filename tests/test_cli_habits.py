"""The command's habits (issue #13.6): help on every option, short summaries with ``--json``
for machines, progress bars only where wanted, the documented exit statuses, and no
traceback for a usage error -- checked on a real bundle and a real SQLite store."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import sidecar
from sidecar.cli import build_parser, main
from tests.servers import free_port

FIELDS = ("x1", "x2", "x3")


def _world(n: int, seed: int) -> tuple[list[dict[str, float]], list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=(n, 3))
    y = np.where(x[:, 0] + x[:, 1] > 10.0, "yes", "no")
    return [dict(zip(FIELDS, row, strict=True)) for row in x.tolist()], y.tolist()


def _csv(path: Path, records: list[dict[str, float]], labels: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*FIELDS, "y", "ts"])
        for i, (r, y) in enumerate(zip(records, labels, strict=True)):
            writer.writerow([*(r[f] for f in FIELDS), y, 1_700_000_000 + 60 * i])
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A wrapped logistic regression, a candidate, a CSV of history and a replayed store."""
    root = tmp_path_factory.mktemp("habits")
    pre = sidecar.TabularPreprocessor(columns=[sidecar.NumericColumn(name=f) for f in FIELDS])
    train, y_train = _world(1500, 0)
    pre.fit(train)
    ref, y_ref = _world(600, 1)
    model = LogisticRegression(max_iter=1000).fit(pre.transform(train), y_train)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="habits",
    )
    bundle.save(root / "bundle")
    weaker = LogisticRegression(C=0.001, max_iter=1000).fit(pre.transform(train), y_train)
    bundle.with_models(advanced=weaker).save(root / "candidate")
    other = sidecar.TabularPreprocessor(columns=[sidecar.NumericColumn(name=f) for f in FIELDS])
    other.fit(_world(500, 9)[0])  # another fit: another preprocessing, not shadow-compatible
    sidecar.wrap(
        LogisticRegression(max_iter=1000).fit(other.transform(train), y_train),
        task="classification",
        preprocessing=other,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="stranger",
    ).save(root / "stranger")
    history, y_history = _world(3000, 2)
    data = _csv(root / "history.csv", history, y_history)
    store = f"sqlite:///{root / 'records.db'}"
    code, _, err = _run(
        [
            "replay",
            str(root / "bundle"),
            "--data",
            str(data),
            "--store",
            store,
            "--label-column",
            "y",
            "--timestamp-column",
            "ts",
        ]
    )
    assert code == 0, err
    return {"root": root, "bundle": root / "bundle", "data": data, "store": store}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _command(*args: str, cwd: Path, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        **popen,
    )


# -- help ------------------------------------------------------------------------------------


def _walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        found.append((path, action))
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.extend(_walk(child, f"{path} {name}"))
    return found


def test_every_command_and_option_has_help() -> None:
    actions = _walk(build_parser(), "sidecar")
    commands = [
        (path, choice.dest, choice.help)
        for path, action in actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    ]
    assert len(commands) >= 19  # every command and sub-command, plan and preprocessing too
    assert [c for c in commands if not c[2]] == []
    options = [(p, a) for p, a in actions if not isinstance(a, argparse._SubParsersAction)]
    assert len(options) > 100
    missing = [f"{p}: {a.option_strings or a.dest}" for p, a in options if not a.help]
    assert missing == []


def test_top_help_documents_the_exit_statuses_as_the_readme_does() -> None:
    text = build_parser().format_help()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = re.findall(r"^\| `(\d+)` \|", readme, flags=re.M)
    assert table == ["0", "1", "2", "130", "141"]
    for status in table:
        assert re.search(rf"^  {status} +\S", text, flags=re.M), status


# -- summaries and --json --------------------------------------------------------------------


def test_retrain_prints_a_short_summary_and_json_only_when_asked(
    world: dict[str, Any], tmp_path: Path
) -> None:
    base = [
        "retrain",
        str(world["bundle"]),
        "--data",
        str(world["data"]),
        "--label-column",
        "y",
        "--timestamp-column",
        "ts",
        "--strategy",
        "regularize",
    ]
    code, out, err = _run([*base, "--out", str(tmp_path / "a")])
    assert code == 0, err
    lines = out.splitlines()
    assert 3 <= len(lines) <= 8, out
    assert lines[0].startswith("saved candidate ")
    assert "{" not in out and "sidecar promote" in out
    version = sidecar.load(tmp_path / "a").version
    assert version in lines[0]
    assert "[" not in err  # stderr is not a terminal here: no progress bar

    code, out, err = _run([*base, "--out", str(tmp_path / "b"), "--json"])
    assert code == 0, err
    document = json.loads(out)
    assert document["parent"] == sidecar.load(world["bundle"]).version
    assert document["report"]["strategy"] == "regularize"


def test_feedback_rollback_and_export_have_json_and_a_summary(
    world: dict[str, Any], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nno-such-request,yes\n")
    argv = ["feedback", str(world["bundle"]), "--data", str(labels), "--store", world["store"]]
    code, out, _ = _run(argv)
    assert (code, out) == (
        0,
        "joined 0 labels; 1 request ids are not in the store, e.g. no-such-request\n",
    )
    code, out, _ = _run([*argv, "--json"])
    assert json.loads(out) == {"accepted": 0, "unknown_request_ids": ["no-such-request"]}

    code, out, err = _run(
        ["export", "--store", world["store"], "--out", str(tmp_path / "r.parquet"), "--json"]
    )
    assert code == 0, err
    assert json.loads(out) == {"records": 3000, "out": str(tmp_path / "r.parquet")}


# -- progress bars ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "bar"),
    [([], False), (["--progress"], True), (["--json"], False), (["--json", "--progress"], True)],
    ids=["not-a-terminal", "asked", "json", "json-and-asked"],
)
@pytest.mark.parametrize("command", ["diagnose", "export"])
def test_a_progress_bar_only_when_asked_or_on_a_terminal(
    world: dict[str, Any], tmp_path: Path, command: str, extra: list[str], bar: bool
) -> None:
    if command == "diagnose":
        argv = ["diagnose", str(world["bundle"]), "--store", world["store"], *extra]
    else:
        argv = ["export", "--store", world["store"], "--out", str(tmp_path / "x.parquet"), *extra]
        argv = [a for a in argv if a != "--json"] + (["--json"] if "--json" in extra else [])
    code, out, err = _run(argv)
    assert code in (0, 1), err
    assert ("100%" in err and "[####" in err) is bar, err
    if "--json" in extra:
        json.loads(out)  # the bar never mixes into the JSON


def test_replay_draws_its_bar_on_a_terminal(world: dict[str, Any], tmp_path: Path) -> None:
    """A real terminal (a pseudo-terminal) on stderr: the bar appears without being asked."""
    main_fd, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sidecar",
                "replay",
                str(world["bundle"]),
                "--data",
                str(world["data"]),
                "--store",
                f"sqlite:///{tmp_path / 'tty.db'}",
                "--label-column",
                "y",
                "--timestamp-column",
                "ts",
                "--batch-size",
                "500",
            ],
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=180,
            cwd=tmp_path,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
            while chunk := os.read(main_fd, 65536):
                drawn += chunk
    finally:
        os.close(main_fd)
        if terminal >= 0:
            os.close(terminal)
    assert done.returncode == 0, drawn
    assert done.stdout.decode().startswith("replayed 3000 records")
    assert drawn.count(b"\r") >= 6 and b"100%" in drawn  # redrawn per batch, in place


# -- exit statuses and usage errors ----------------------------------------------------------


def test_promote_without_shadow_records_says_how_to_put_a_candidate_in_shadow(
    world: dict[str, Any],
) -> None:
    code, out, _ = _run(
        [
            "promote",
            str(world["bundle"]),
            "--candidate",
            str(world["root"] / "candidate"),
            "--store",
            world["store"],
        ]
    )
    assert code == 1  # not promoted
    assert out.startswith("undecided ")
    assert "0 labelled requests with the candidate in shadow" in out
    assert "--candidate" in out and "SIDECAR_CANDIDATE" in out and "attach_candidate" in out
    assert not (world["bundle"] / "ACTIVE").exists()  # nothing switched


def test_status_of_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    code, out, err = _run(["status", "--store", f"sqlite:///{tmp_path / 'typo.db'}"])
    assert (code, out) == (2, "")
    assert "must be an existing SQLite file" in err and "typo.db" in err
    assert list(tmp_path.iterdir()) == []


def test_interrupted_exits_130_without_a_traceback(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sidecar.bundle._bundle

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sidecar.bundle._bundle, "load", interrupted)
    code, out, err = _run(["info", str(world["bundle"])])
    assert (code, out, err) == (130, "", "sidecar: interrupted\n")


def test_a_closed_pipe_ends_quietly(world: dict[str, Any], tmp_path: Path) -> None:
    """`sidecar ... | head -1` when the reader has gone: status 141, nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sidecar", "info", "--json", str(world["bundle"])],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")

    shell = subprocess.run(
        f"set -o pipefail; {sys.executable} -m sidecar diagnose {world['bundle']} --store "
        f"{world['store']} --json | head -1",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shell.stdout == "{\n"
    assert "Traceback" not in shell.stderr and "Exception" not in shell.stderr, shell.stderr


def test_a_busy_port_is_a_usage_error(world: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _command("serve", str(world["bundle"]), "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--store", "mysql://db/records"], "must start with sqlite://"),
        (["diagnose", "{bundle}", "--store", "sqlite:///{root}/none.db"], "existing SQLite file"),
        (["replay", "{bundle}", "--data", "{root}/none.csv", "--store", "memory://"], "none.csv"),
        (["info", "{root}/no-bundle-here"], "BUNDLE must be a bundle directory"),
        (["export", "--store", "{store}", "--out", "{root}/no/dir/x.parquet"], "No such file"),
        (["diagnose", "{bundle}", "--store", "{store}", "--since", "yesterday"], "`--since` must"),
        (
            ["serve", "{bundle}", "--candidate", "{root}/nothing", "--port", "{port}"],
            "--candidate must",
        ),
        (
            ["serve", "{bundle}", "--candidate", "{stranger}", "--port", "{port}"],
            "champion's preprocessing",
        ),
    ],
    ids=[
        "bad-url",
        "missing-store",
        "missing-data",
        "missing-bundle",
        "missing-out-dir",
        "bad-time",
        "missing-candidate",
        "mismatched-candidate",
    ],
)
def test_usage_errors_exit_2_with_a_message_and_no_traceback(
    world: dict[str, Any], tmp_path: Path, argv: list[str], message: str
) -> None:
    filled = [
        a.format(
            bundle=world["bundle"],
            root=tmp_path,
            store=world["store"],
            stranger=world["root"] / "stranger",
            port=free_port(),
        )
        for a in argv
    ]
    done = _command(*filled, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_feedback_into_a_missing_sqlite_file_says_so_and_creates_nothing(
    world: dict[str, Any], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nabc,yes\n")
    store = f"sqlite:///{tmp_path / 'typo.db'}"
    code, out, err = _run(
        ["feedback", str(world["bundle"]), "--store", store, "--data", str(labels)]
    )
    assert (code, out) == (2, "")
    assert "must be an existing SQLite file" in err and "typo.db" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


@pytest.mark.parametrize("empty", ["no records yet", "a window after the last record"])
def test_an_empty_window_is_insufficient_data_not_a_traceback(
    world: dict[str, Any], tmp_path: Path, empty: str
) -> None:
    """A fresh store (a new user's first command) or a window with no records in it."""
    if empty == "no records yet":
        store, window = f"sqlite:///{tmp_path / 'fresh.db'}", []
        from sidecar.recording import open_store

        open_store(store).close()
    else:
        store, window = world["store"], ["--since", "2099-01-01T00:00:00"]
    bundle = str(world["bundle"])
    code, out, err = _run(["diagnose", bundle, "--store", store, *window])
    assert code == 1, err  # not healthy: too few labels to judge
    assert "insufficient_data" in out and "records         0" in out, out
    code, out, err = _run(
        ["report", bundle, "--store", store, *window, "--out", str(tmp_path / "r.html")]
    )
    assert code == 0 and "insufficient_data" in out, err
    code, out, err = _run(
        ["retrain", bundle, "--store", store, *window, "--out", str(tmp_path / "c")]
    )
    assert code != 0 and "insufficient_data" in err and "Traceback" not in err, err
    assert not (tmp_path / "c").exists()
    candidate = str(world["root"] / "candidate")
    code, out, err = _run(["promote", bundle, "--candidate", candidate, "--store", store, *window])
    assert code == 1 and out.startswith("undecided ") and "0 labelled requests" in out, err


def test_the_summary_shows_the_label_free_estimate(world: dict[str, Any]) -> None:
    """#13.10: the estimate from the models' probabilities is in the human summary too."""
    _, out, err = _run(["diagnose", str(world["bundle"]), "--store", world["store"]])
    line = next((row for row in out.splitlines() if row.startswith("estimate ")), None)
    assert line is not None, out + err
    assert re.fullmatch(
        r"estimate +accuracy (0|1)?\.?\d+ \[[\d.]+, [\d.]+\] from the probabilities of \d+ "
        r"records \(cbpe\)(; realised [\d.]+)?",
        line,
    ), line
    _, js, _ = _run(["diagnose", str(world["bundle"]), "--store", world["store"], "--json"])
    est = json.loads(js)["evidence"]["performance_estimate"]
    assert f"accuracy {est['estimate']:.4g} [{est['low']:.4g}, {est['high']:.4g}]" in line


def test_a_missing_candidate_is_a_usage_error(world: dict[str, Any], tmp_path: Path) -> None:
    missing = str(tmp_path / "typo")
    argv = ["promote", str(world["bundle"]), "--candidate", missing, "--store", world["store"]]
    code, out, err = _run(argv)
    assert (code, out) == (2, ""), err
    assert f"{missing}: no such bundle directory" in err
