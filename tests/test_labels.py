"""The one label rule: labels coerced to the classes' type at the door, and refused outside
the class set -- by ``Bundle.feedback``, ``sidecar feedback`` from a CSV file and
``sidecar replay``; a stored label the metrics cannot score never fails a diagnosis; and
time bounds that are not finite exit 2."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import sidecar
from sidecar._labels import check_labels, check_request_id, coerce_label
from sidecar.cli import main
from sidecar.recording import Label, open_store
from sidecar.recording._columnar import decode_labels
from tests import models

# -- the rule, value by value ----------------------------------------------------------

ACCEPTED = [
    ("bool-true-text", (False, True), "True", True),
    ("bool-lower", (False, True), " false ", False),
    ("bool-json", (False, True), True, True),
    ("bool-one", (False, True), 1, True),
    ("bool-zero-text", (False, True), "0", False),
    ("bool-numpy", (False, True), np.bool_(True), True),
    ("bool-float", (False, True), 1.0, True),
    ("bool-float-text", (False, True), "1.0", True),  # as 1.0 is, and as "2.0" is for ints
    ("bool-zero-float-text", (False, True), " 0.0 ", False),
    ("int-text", (0, 1, 2), "1", 1),
    ("int-spaced", (0, 1, 2), " 2 ", 2),
    ("int-float", (0, 1, 2), 2.0, 2),
    ("int-float-text", (0, 1, 2), "2.0", 2),
    ("int-numpy", (0, 1, 2), np.int64(1), 1),
    ("float-text", (0.5, 1.5), "1.5", 1.5),
    ("str", ("benign", "malignant"), "benign", "benign"),
    ("str-from-int", ("1", "2"), 2, "2"),
    ("regression-text", None, "3.25", 3.25),
    ("regression-int", None, 7, 7.0),
]

REFUSED = [
    ("bool-word", (False, True), "yes"),
    ("bool-two", (False, True), 2),
    ("bool-half-text", (False, True), "0.5"),
    ("bool-nan-text", (False, True), "nan"),
    ("bool-null", (False, True), None),
    ("int-bool", (0, 1, 2), True),
    ("int-outside", (0, 1, 2), 3),
    ("int-fraction", (0, 1, 2), 1.5),
    ("int-word", (0, 1, 2), "one"),
    ("int-nan", (0, 1, 2), float("nan")),
    ("str-case", ("benign", "malignant"), "Benign"),
    ("str-float", ("1", "2"), 1.0),
    ("str-list", ("benign", "malignant"), ["benign"]),
    ("regression-nan", None, float("nan")),
    ("regression-inf-text", None, "inf"),
    ("regression-huge-int", None, 10**400),
    ("regression-huge-text", None, "1e400"),
    ("regression-bool", None, False),
    ("regression-word", None, "3.5 kg"),
]


@pytest.mark.parametrize(
    ("classes", "value", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_labels_are_coerced_to_the_class_type(classes: Any, value: Any, expected: Any) -> None:
    task = "regression" if classes is None else "classification"
    got = coerce_label(value, task, classes)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("classes", "value"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_labels_outside_the_rule_are_refused_naming_it(classes: Any, value: Any) -> None:
    task = "regression" if classes is None else "classification"
    want = "a finite number" if classes is None else "one of the"
    with pytest.raises(sidecar.InputError, match=want) as info:
        coerce_label(value, task, classes)
    if classes is not None:
        assert str(list(classes)) in str(info.value)


@pytest.mark.parametrize(
    ("rid", "why"),
    [
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("\x7f", "control characters"),
        ("x" * 257, "at most 256"),
        ("", "non-empty"),
        (5, "non-empty string"),
    ],
    ids=["nul", "newline", "del", "too-long", "empty", "number"],
)
def test_request_ids_with_control_characters_are_refused(rid: Any, why: str) -> None:
    reason = check_request_id(rid)
    assert reason is not None and why in reason
    with pytest.raises(sidecar.InputError, match=r"labels\[0\]\.request_id"):
        check_labels([{"request_id": rid, "label": 1}], task="classification", classes=(0, 1))


def test_a_bad_item_means_nothing_is_returned_and_every_problem_is_named() -> None:
    items = [
        {"request_id": "a", "label": "1"},
        {"request_id": "b", "label": 7},
        {"request_id": "c\x00", "label": 0},
        {"request_id": "d", "label": 0, "ts": float("inf")},
    ]
    with pytest.raises(sidecar.InputError) as info:
        check_labels(items, task="classification", classes=(0, 1))
    assert [p.field for p in info.value.problems] == [
        "labels[1].label",
        "labels[2].request_id",
        "labels[3].ts",
    ]


# -- through the SDK, the store and the command ------------------------------------------


def _bundle(labels: tuple[Any, ...], tmp: Path) -> tuple[sidecar.Bundle, Path]:
    train, y_train, ref, y_ref = models.make_classification_data(
        n_train=200, n_ref=120, seed=3, labels=labels
    )
    pre = sidecar.TabularPreprocessor(columns=models.preprocessing_columns())
    X = pre.fit(train).transform(train)
    bundle = sidecar.wrap(
        RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y_train),
        task="classification",
        preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
        train=(train, y_train),
        reference=(ref, y_ref),
    )
    path = bundle.save(tmp / "bundle")
    return sidecar.load(path), path


@pytest.fixture(scope="module")
def bool_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[sidecar.Bundle, Path]:
    return _bundle((False, True, False), tmp_path_factory.mktemp("bool"))


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _stored_labels(db: Path) -> dict[str, Any]:
    """Every stored label by request id, read back from the store's label segments."""
    store = open_store(f"sqlite:///{db}", create=False)
    try:
        table = store.read_window(columns=["request_id"])
    finally:
        store.close()
    kind = table.column("label_kind").to_numpy()
    labels = decode_labels(
        kind,
        table.column("label_num").to_numpy(zero_copy_only=False),
        table.column("label_text").to_pylist(),
    )
    ids = table.column("request_id").to_pylist()
    return {ids[i]: labels[i] for i in np.flatnonzero(kind >= 0)}


def _set_label(db: Path, value: Any, order: str, limit: int) -> None:
    """Store ``value`` as the label of the first ``limit`` labelled ids in ``order``, by hand
    (through the store, past the label rule that ``/feedback`` applies)."""
    ids = sorted(_stored_labels(db), reverse=order == "DESC")[:limit]
    store = open_store(f"sqlite:///{db}", create=False)
    try:
        assert store.upsert_labels([Label(rid, value) for rid in ids]).accepted == len(ids)
    finally:
        store.close()


def test_bool_labels_from_json_and_from_a_csv_file_are_stored_as_booleans(
    bool_bundle: tuple[sidecar.Bundle, Path], tmp_path: Path
) -> None:
    bundle, path = bool_bundle
    db = tmp_path / "records.db"
    store = open_store(f"sqlite:///{db}")
    try:
        records = models.make_classification_data(n_train=1, n_ref=6, seed=9)[2]
        recorder = sidecar.recording.Recorder(store)
        bundle.attach_recorder(recorder)
        ids = list(bundle.predict(records).request_ids)
        result = bundle.feedback(
            [{"request_id": ids[0], "label": "True"}, {"request_id": ids[1], "label": 0}]
        )
        assert result.accepted == 2
        with pytest.raises(sidecar.InputError, match=r"labels\[0\]\.label.*\[False, True\]"):
            bundle.feedback([{"request_id": ids[2], "label": "maybe"}])
        recorder.close()
        bundle.attach_recorder(None)
    finally:
        store.close()
    assert _stored_labels(db) == {ids[0]: True, ids[1]: False}

    # The command reads the label column as text and applies the same rule.
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["request_id", "label"])
        writer.writerows([[ids[2], "true"], [ids[3], "FALSE"], [ids[4], "1"]])
    code, out, err = _run(
        ["feedback", str(path), "--data", str(labels), "--store", f"sqlite:///{db}", "--json"]
    )
    assert code == 0, err
    assert json.loads(out) == {"accepted": 3, "unknown_request_ids": []}
    assert _stored_labels(db) == {
        ids[0]: True,
        ids[1]: False,
        ids[2]: True,
        ids[3]: False,
        ids[4]: True,
    }

    # One bad cell: exit 2, the cell named, nothing stored.
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["request_id", "label"], [ids[5], "true"], [ids[4], "Benign"]])
    code, _, err = _run(
        ["feedback", str(path), "--data", str(labels), "--store", f"sqlite:///{db}", "--json"]
    )
    assert code == 2
    assert "labels[1].label" in err and "[False, True]" in err and "'Benign'" in err
    assert ids[5] not in _stored_labels(db)


def _replayed(
    labels: tuple[Any, ...], tmp_path: Path
) -> tuple[sidecar.Bundle, Path, Path, list[Any]]:
    """A bundle with ``labels`` as classes, its held-out records replayed with their labels
    into a real SQLite store: ``(bundle, bundle_path, db, labels)``."""
    bundle, path = _bundle(labels, tmp_path)
    _, _, ref, y_ref = models.make_classification_data(
        n_train=200, n_ref=120, seed=3, labels=labels
    )
    db = tmp_path / "records.db"
    store = open_store(f"sqlite:///{db}")
    try:
        sidecar.replay(bundle, ref, store=store, labels=list(y_ref), timestamps=None)
    finally:
        store.close()
    return bundle, path, db, list(y_ref)


def test_a_stored_label_outside_the_classes_is_left_out_and_counted(tmp_path: Path) -> None:
    bundle, path, db, _ = _replayed((0, 1, 2), tmp_path)
    url = f"sqlite:///{db}"
    before = sidecar.diagnose(bundle, url)
    # A store written by an older version, or by hand: labels the metrics cannot score.
    _set_label(db, "Benign", "ASC", 2)
    _set_label(db, True, "DESC", 1)
    after = sidecar.diagnose(bundle, url)
    assert after.n_labelled == before.n_labelled - 3
    [note] = [n for n in after.notes if "stored labels were left out" in n]
    assert note.startswith("3 stored labels were left out")
    assert "'Benign' (2)" in note and "True (1)" in note
    code, out, err = _run(["diagnose", str(path), "--store", url, "--json"])
    assert code in (0, 1), err
    assert any("3 stored labels" in n for n in json.loads(out)["evidence"]["notes"])


@pytest.mark.parametrize(
    "bounds",
    [
        ["--since", "nan"],
        ["--since", "1e400"],
        ["--until", "inf"],
        ["--since=-inf"],
        ["--since", "1e300"],
        ["--since", "2000", "--until", "1000"],
        ["--since", "2026-01-02T00:00:00", "--until", "2026-01-01T00:00:00"],
        ["--since", "yesterday"],
    ],
    ids=[
        "nan",
        "overflow",
        "inf",
        "minus-inf",
        "beyond-any-date",
        "until-first",
        "iso-reversed",
        "word",
    ],
)
@pytest.mark.parametrize("command", ["diagnose", "report", "export"])
def test_bad_time_bounds_exit_2_with_a_clear_message(
    command: str, bounds: list[str], bool_bundle: tuple[sidecar.Bundle, Path], tmp_path: Path
) -> None:
    db = tmp_path / "records.db"
    open_store(f"sqlite:///{db}").close()
    argv = [command] + ([] if command == "export" else [str(bool_bundle[1])])
    argv += ["--store", f"sqlite:///{db}", *bounds]
    if command in ("report", "export"):
        argv += ["--out", str(tmp_path / ("r.html" if command == "report" else "r.parquet"))]
    code, out, err = _run(argv)
    assert code == 2, (out, err)
    assert ("--since" in err or "--until" in err) and "Traceback" not in err


def test_a_stored_number_among_string_classes_leaves_the_strings_scored(tmp_path: Path) -> None:
    """Mixed stored labels travel as JSON text in the window: the good ones must still score."""
    bundle, _, db, _ = _replayed(("a", "b", "c"), tmp_path)
    url = f"sqlite:///{db}"
    before = sidecar.diagnose(bundle, url)
    _set_label(db, 5, "ASC", 1)
    after = sidecar.diagnose(bundle, url)
    assert after.n_labelled == before.n_labelled - 1
    assert any(n.startswith("1 stored labels were left out") for n in after.notes), after.notes


def test_retraining_data_leaves_out_stored_labels_outside_the_classes(tmp_path: Path) -> None:
    from sidecar import recent_data

    bundle, _, db, y_ref = _replayed((0, 1, 2), tmp_path)
    _set_label(db, "Benign", "ASC", 2)
    # a label stored as text by an older replay: coerced, not dropped
    _set_label(db, "1", "DESC", 1)
    recent = recent_data(bundle, f"sqlite:///{db}")
    assert len(recent) == len(y_ref) - 2
    assert recent.labels.dtype == np.int64 and set(recent.labels.tolist()) <= {0, 1, 2}
    assert recent.notes and recent.notes[0].startswith("2 stored labels were left out")
