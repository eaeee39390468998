"""The embedded default store: one SQLite file in WAL mode, safe for several worker processes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from ._assemble import Scratch
from ._sql import SQLStore

__all__ = ["SQLiteStore"]

#: Bytes of a segment read at a time (see ``_segment_bytes``).
_PIECE = 1 << 20


class SQLiteStore(SQLStore):
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``.

    WAL mode lets readers work beside the writer; ``BEGIN IMMEDIATE`` with a
    long ``busy_timeout`` makes the writers of several processes take turns
    instead of failing; ``synchronous=NORMAL`` keeps every committed batch
    across a process crash (it is the power-loss window that WAL+NORMAL trades).
    """

    dialect = "sqlite"
    marker = "?"

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__(url)
        path = url.removeprefix("sqlite://")
        if not path.startswith("/") or path == "/":
            raise InputError(
                f"a SQLite store URL must be sqlite:///relative/path.db or "
                f"sqlite:////absolute/path.db; got {url!r}."
            )
        self.path = Path(path[1:])  # "/rel.db" -> rel.db, "//abs.db" -> /abs.db
        if not create and not self.path.is_file():
            raise InputError(
                f"the store {url} must be an existing SQLite file; got no file at {self.path}."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        # Switching to WAL needs a moment with no writer, and SQLite does not
        # wait for it (no busy handler here), so several workers opening a new
        # file together must retry. WAL is persistent: usually it is on already.
        deadline = time.monotonic() + 30.0
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _segment_bytes(self, cur: Any, seq_lo: int, nbytes: int, scratch: Scratch) -> Any:
        # Incremental blob I/O: one copy out of the pages, half the time of a SELECT of the
        # blob; in pieces of _PIECE bytes (malloc reuses their memory) into the scratch buffer.
        with self._blob(cur, seq_lo) as blob:
            out = scratch.get(len(blob))
            _read_into(blob, 0, len(blob), out)
            return out

    def _segment_ranges(
        self, cur: Any, seq_lo: int, spans: Sequence[tuple[int, int]], out: Any
    ) -> bool:
        with self._blob(cur, seq_lo) as blob:
            return all(_read_into(blob, a, b, out) for a, b in spans)

    def _blob(self, cur: Any, seq_lo: int) -> Any:
        cur.execute("SELECT rowid FROM sidecar_segments WHERE seq_lo = ?", (seq_lo,))
        rowid = int(cur.fetchone()[0])
        return cur.connection.blobopen("sidecar_segments", "data", rowid, readonly=True)

    def _begin(self, cur: Any, write: bool) -> None:
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def _read_into(blob: Any, a: int, b: int, out: Any) -> bool:
    """Bytes ``[a, b)`` of ``blob`` into ``out[a:b]`` (``False`` when the blob is shorter)."""
    blob.seek(a)
    while a < b:
        piece = blob.read(min(_PIECE, b - a))
        if not piece:
            return False
        out[a : a + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        a += len(piece)
    return True
