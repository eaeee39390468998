"""Fresh recording stores of each kind for the tests, and helpers that work in a child process.

- ``memory://`` -- one process, nothing on disk;
- SQLite -- ``sqlite:///`` + an absolute path (so four slashes) in a test's temporary directory;
- PostgreSQL -- the server at ``127.0.0.1:5432`` (trust auth, user ``postgres``, database
  ``test``), with one schema ``t_<uuid hex>`` per test, chosen through ``search_path`` in the
  URL and dropped (``CASCADE``) afterwards. PostgreSQL is required: when it cannot be reached
  the tests fail, loudly, rather than skip.

Every PostgreSQL URL made here also sets ``application_name`` to the schema's name, so a
test can find (and terminate) the connections of its own store in ``pg_stat_activity``
without touching anyone else's.

The module is light to import (no pytest, no bundle) because ``spawn``-ed worker processes
import it to run :func:`write_worker` and :func:`migrate_worker`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sidecar.recording import Store, open_store
from sidecar.recording._records import COLUMNS, dumps
from sidecar.recording._schema import LATEST

__all__ = [
    "KINDS",
    "PG_DSN",
    "connections_of",
    "fresh_store",
    "make_row",
    "make_rows",
    "migrate_worker",
    "pg_admin",
    "pg_schema",
    "pg_url",
    "store_url",
    "terminate_connections",
    "write_worker",
]

#: The store kinds, in the order the parametrized tests use them (and their test ids).
KINDS = ("memory", "sqlite", "postgresql")

#: The test server, as an admin connection string (no schema chosen).
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


#: The versions of a hand-built batch of records (the store tests' one bundle).
VERSIONS = {
    "bundle_version": "b1",
    "preprocessing_version": "p1",
    "advanced_version": "a1",
    "baseline_version": "c1",
    "candidate_version": None,
}


# -- PostgreSQL --------------------------------------------------------------------------


def pg_admin() -> Any:
    """An autocommit connection to the test database; raises (never skips) when it is down."""
    import psycopg

    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            f"PostgreSQL is required by the recording tests and is not reachable at {PG_DSN}: "
            f"{exc}. Start it with `pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start`."
        ) from exc


def pg_url(schema: str, *, application_name: str | None = None) -> str:
    """The store URL of ``schema``: its ``search_path`` and an ``application_name`` to find it."""
    options = quote(f"-csearch_path={schema}", safe="")
    app = quote(application_name or schema, safe="")
    return f"{PG_DSN}?options={options}&application_name={app}"


def connections_of(schema: str) -> list[int]:
    """The backend pids of the connections opened through :func:`pg_url` for ``schema``."""
    with pg_admin() as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'test' "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            (schema,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def terminate_connections(schema: str, *, wait: float = 5.0) -> int:
    """Terminate the connections of ``schema``'s stores (only those); return how many there were."""
    with pg_admin() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test' "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            (schema,),
        ).fetchall()
    deadline = time.monotonic() + wait
    while connections_of(schema) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(rows)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema ``t_<uuid hex>``, dropped with everything in it afterwards."""
    schema = f"t_{uuid.uuid4().hex}"
    with pg_admin() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        # A store left open (or a worker that died) must not keep the DROP waiting.
        terminate_connections(schema)
        with pg_admin() as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- any kind ----------------------------------------------------------------------------


@contextlib.contextmanager
def store_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL naming a fresh, empty store of ``kind`` (``memory://`` is fresh at each open)."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        path = (tmp_path / "records.db").resolve()
        yield f"sqlite:///{path}"  # sqlite:/// + /abs/path: four slashes
    elif kind == "postgresql":
        with pg_schema() as schema:
            yield pg_url(schema)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(f"unknown store kind {kind!r}; expected one of {KINDS}")


@contextlib.contextmanager
def fresh_store(kind: str, tmp_path: Path, *, migrate: bool = True) -> Iterator[Store]:
    """An opened (by default migrated) fresh store of ``kind``, closed afterwards."""
    with store_url(kind, tmp_path) as url:
        store = open_store(url, migrate=migrate)
        try:
            yield store
        finally:
            store.close()


# -- rows --------------------------------------------------------------------------------


def make_row(request_id: str, ts: float, **values: Any) -> tuple[Any, ...]:
    """One prediction row in ``_records.COLUMNS`` order; ``values`` override cells.

    JSON cells are built with :func:`sidecar.recording._records.dumps`, as the recorder builds them.
    """
    cells: dict[str, Any] = dict.fromkeys(COLUMNS)
    cells.update(
        request_id=request_id,
        ts=float(ts),
        bundle_version="bundle-1",
        preprocessing_version="pre-1",
        advanced_version="adv-1",
        baseline_version="base-1",
        raw=dumps({"id": request_id, "x": 1.5, "color": "red"}),
        advanced_prediction=dumps("cat"),
        advanced_proba=dumps([0.25, 0.75]),
        baseline_prediction=dumps("dog"),
        baseline_proba=dumps([0.5, 0.5]),
        advanced_latency_ms=1.25,
        baseline_latency_ms=0.5,
    )
    unknown = set(values) - set(COLUMNS)
    if unknown:  # pragma: no cover - a typo in a test
        raise ValueError(f"not columns: {sorted(unknown)}")
    cells.update(values)
    return tuple(cells[c] for c in COLUMNS)


def make_rows(prefix: str, n: int, *, ts0: float = 1_000.0, step: float = 1.0) -> list[tuple]:
    """``n`` rows with ids ``<prefix>-<00000i>`` and timestamps ``ts0 + i * step``."""
    return [make_row(f"{prefix}-{i:06d}", ts0 + i * step) for i in range(n)]


# -- child processes (spawned: module-level and importable) ------------------------------


def write_worker(url: str, prefix: str, n: int, batch: int, shared: int, barrier: Any) -> None:
    """Open (and so migrate) the store, then write ``n`` own rows and ``shared`` common ones.

    Every worker writes the same ``shared`` rows (same ids, same order), interleaved with its
    own, so concurrent inserts of one request id meet. Waits at ``barrier`` so that all the
    workers migrate and write at the same moment.
    """
    barrier.wait(timeout=60)
    store = open_store(url)
    try:
        own = make_rows(prefix, n, ts0=2_000.0, step=0.001)
        common = make_rows("shared", shared, ts0=1_000.0)
        for start in range(0, n, batch):
            store.write_predictions(own[start : start + batch], None)
            if start // batch < len(common):
                k = start // batch
                store.write_predictions(common[k : k + 1], None)
        store.write_predictions(common, None)
    finally:
        store.close()


def migrate_worker(url: str, barrier: Any) -> None:
    """Open a store (which migrates it) at the same moment as the other workers.

    Exits non-zero (an exception) unless the store ends at the latest schema version.
    """
    barrier.wait(timeout=60)
    store = open_store(url)
    try:
        version = store.migrate()
        if version != LATEST:
            raise SystemExit(f"migrated to {version}, expected {LATEST}")
    finally:
        store.close()
