"""Shared fixtures. Keep this small: test modules own their specific fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# BentoML's in-process tests need prometheus_client in multiprocess mode, which it
# decides when it is first imported: point it at a fresh directory before anything
# (BentoML, sidecar.serving) imports it.
_PROMETHEUS_DIR = tempfile.mkdtemp(prefix="sidecar-tests-prometheus-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _PROMETHEUS_DIR
atexit.register(shutil.rmtree, _PROMETHEUS_DIR, True)

from tests.stores import KINDS, fresh_store  # noqa: E402 - after the multiprocess directory

if TYPE_CHECKING:
    from sidecar.recording import Store


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind (memory, SQLite, PostgreSQL): the contract suites' store."""
    with fresh_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture(scope="session")
def quickstart_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart bundle (breast-cancer, gradient boosting), built once per session."""
    from sidecar._quickstart import build_quickstart

    path = tmp_path_factory.mktemp("quickstart") / "bundle"
    build_quickstart(path)
    return path


@pytest.fixture(scope="session")
def quickstart_records() -> list[dict[str, Any]]:
    """The quickstart's held-out reference records (valid raw records; do not mutate)."""
    from sidecar._quickstart import load_quickstart_data

    return load_quickstart_data()[2]


@pytest.fixture
def quickstart_record(quickstart_records: list[dict[str, Any]]) -> dict[str, Any]:
    """One valid raw record for the quickstart bundle (a fresh copy each time)."""
    return dict(quickstart_records[0])
