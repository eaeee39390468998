"""Which raw fields a record may keep: drop some, keep others only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import InputError

__all__ = ["RecordPolicy"]


class RecordPolicy:
    """Privacy rules applied to each raw record before it is stored.

    ``exclude`` names fields left out of the record; ``hash`` names fields
    stored only as ``HMAC-SHA256(key, value)`` (hex), so equal values can
    still be counted and joined, but not read back. A hash needs a ``key``.

    >>> policy = RecordPolicy(exclude=["name"], hash=["email"], key=b"k")
    >>> rec = policy.apply({"name": "Ada", "email": "ada@example.org", "age": 36})
    >>> sorted(rec), len(rec["email"])
    (['age', 'email'], 64)
    """

    def __init__(
        self, *, exclude: Iterable[str] = (), hash: Iterable[str] = (), key: bytes | None = None
    ) -> None:
        self.exclude = frozenset(exclude)
        self.hash = frozenset(hash)
        both = sorted(self.exclude & self.hash)
        if both:
            raise InputError(f"a field must be excluded or hashed, not both; got both for {both}.")
        if self.hash and not key:
            raise InputError(
                "hashing fields needs a secret key (SIDECAR_HASH_KEY); got none. Without a key "
                "a hash of a small set of values (names, birth dates) is easy to reverse."
            )
        self._key = key or b""
        self.active = bool(self.exclude or self.hash)

    def apply(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self.active:
            return record
        out: dict[str, Any] = {}
        for name, value in record.items():
            if name in self.exclude:
                continue
            if name in self.hash and value is not None:
                value = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
            out[name] = value
        return out
