"""Secrets never leave the process: store URLs without their passwords, for any text shown.

A store URL may carry a password in two places -- ``scheme://user:SECRET@host``
and a query parameter such as ``?password=SECRET`` (libpq also reads
``sslpassword``). :func:`redact_url` replaces each with ``***``;
:func:`scrub` removes the URL *and* its secrets from any text (a driver's
error message may quote them), so an error, a log line or an HTTP body built
from it carries no secret.

>>> redact_url("postgresql://app:s3cr%40t@db:5432/rec?sslmode=require&password=x")
'postgresql://app:***@db:5432/rec?sslmode=require&password=***'
>>> scrub("could not log in as app with s3cr@t", "postgresql://app:s3cr%40t@db/rec")
'could not log in as app with ***'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["redact_url", "scrub", "secrets_of"]

#: Query parameters that hold a secret (libpq's names, matched case-insensitively).
_SECRET_PARAMS = ("password", "sslpassword", "passfile", "sslkey", "token", "secret")
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):(?P<pw>[^/?#@]*)@")
_PARAM = re.compile(
    r"(?P<head>[?&](?:" + "|".join(_SECRET_PARAMS) + r")=)(?P<value>[^&#]*)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a query parameter) as ``***``."""
    out = _USERINFO.sub(lambda m: f"{m['head']}:***@", url, count=1)
    return _PARAM.sub(lambda m: f"{m['head']}***", out)


def secrets_of(url: str) -> list[str]:
    """The secret strings in ``url``, as written and percent-decoded (longest first)."""
    found: list[str] = []
    m = _USERINFO.match(url)
    if m and m["pw"]:
        found.append(m["pw"])
    found.extend(p["value"] for p in _PARAM.finditer(url) if p["value"])
    every = {s for raw in found for s in (raw, unquote(raw), unquote(raw.replace("+", " ")))}
    return sorted((s for s in every if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown redacted and every secret of ``url`` replaced by ``***``."""
    if not url:
        return text
    out = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        out = out.replace(secret, "***")
    return out
