"""Secrets never leave the process: a store URL's password is in no error, log line or body."""

from __future__ import annotations

import logging
import socket
from urllib.parse import quote

import pytest

import sidecar
from sidecar._redact import redact_url, scrub, secrets_of
from sidecar.recording import Recorder, open_store
from tests.stores import pg_schema

SECRET = "pw-Sidecar-7e1d"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/rec", "postgresql://app:***@db:5432/rec"),
        ("postgres://app:@db/rec", "postgres://app:***@db/rec"),
        ("postgresql://app@db/rec?password=s3cret", "postgresql://app@db/rec?password=***"),
        (
            "postgresql://db/rec?sslmode=require&PassWord=a&sslpassword=b#frag",
            "postgresql://db/rec?sslmode=require&PassWord=***&sslpassword=***#frag",
        ),
        ("postgresql://app@db/rec", "postgresql://app@db/rec"),
        ("sqlite:////tmp/records.db", "sqlite:////tmp/records.db"),
    ],
    ids=["userinfo", "empty-password", "query", "query-many", "none", "sqlite"],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_removes_the_url_and_each_secret_as_written_and_decoded() -> None:
    url = "postgresql://app:p%40ss%2Fw0rd@db/rec?password=other+one"
    assert set(secrets_of(url)) >= {"p%40ss%2Fw0rd", "p@ss/w0rd", "other+one", "other one"}
    text = f"failed for {url}: password p@ss/w0rd rejected; also 'other one'"
    out = scrub(text, url)
    assert "w0rd" not in out and "other" not in out
    assert "postgresql://app:***@db/rec?password=***" in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_failing_postgresql_store_names_itself_without_its_password(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    url = (
        f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/test"
        if where == "userinfo"
        else f"postgresql://postgres@127.0.0.1:{port}/test?password={SECRET}"
    )
    store = open_store(url, migrate=False)
    with pytest.raises(sidecar.StoreError, match=r"127\.0\.0\.1") as info:
        store.count()
    assert SECRET not in str(info.value) and "***" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # The recorder logs each failed commit, and its totals at close: no secret in them.
    with caplog.at_level(logging.DEBUG):
        recorder = Recorder(store, linger=0.0, max_backoff=0.05)
        recorder.enqueue([("r",)])
        assert not recorder.flush(timeout=2.0, fail_fast=True)
        recorder.close(timeout=2.0)
    assert caplog.records, "the failures were not logged"
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert recorder.counters.last_error is not None and SECRET not in recorder.counters.last_error
    store.close()


def test_a_nul_byte_reaches_postgresql_only_as_a_scrubbed_store_error() -> None:
    """The driver refuses NUL in text; the error it raises must not carry the password
    (``/feedback`` refuses such ids before the store, see test_labels)."""
    with pg_schema() as schema:
        options = quote(f"-csearch_path={schema}", safe="")
        url = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/test?options={options}"
        store = open_store(url)
        try:
            with pytest.raises(sidecar.StoreError) as info:
                store.upsert_labels([sidecar.recording.Label("a\x00b", 1)])
        finally:
            store.close()
    assert "NUL" in str(info.value) and SECRET not in str(info.value)
