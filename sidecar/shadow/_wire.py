"""The shadow process's wire: its messages, and whole messages over datagrams.

A message is a pickle (protocol 5) of one of the frozen dataclasses here,
sent on a private ``socketpair`` (``SOCK_SEQPACKET``). Each datagram carries a
one-byte tag: ``M`` a whole message, ``C`` a piece, ``E`` the last piece of a
message larger than a datagram.
"""

from __future__ import annotations

import contextlib
import pickle
import select
import socket
import time
from dataclasses import dataclass
from typing import Any

from ._items import ShadowItem

__all__ = ["Batch", "Close", "Flush", "Prepare", "Receiver", "Reply", "recv", "send"]

#: Largest datagram: a message is sent whole up to this size, in pieces beyond it.
#: (Each datagram carries a one-byte tag: M a whole message, C a piece, E the last piece.)
DATAGRAM = 128 << 10

# -- the messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Answered requests to run in shadow; ``dropped`` records the worker could not send."""

    items: list[ShadowItem]
    dropped: int = 0


@dataclass(frozen=True)
class Flush:
    """Run and write everything sent so far, then reply with ``token``."""

    token: int


@dataclass(frozen=True)
class Prepare:
    """Load the bundle ``version`` at ``path`` (the worker is about to serve it), then reply."""

    token: int
    path: str
    version: str


@dataclass(frozen=True)
class Close:
    """Finish, write everything, exit (closing the socket says the same)."""


@dataclass(frozen=True)
class Reply:
    """The child's answer to the request ``token``: ``error`` is ``None`` when it went well."""

    token: int
    error: str | None = None


# -- framing ------------------------------------------------------------------------------


def send(sock: socket.socket, payload: bytes, deadline: float) -> None:
    """Send one message (in pieces beyond a datagram), waiting for room until ``deadline``.

    Raises ``TimeoutError`` at the deadline, ``OSError`` if the child is gone.
    """
    if len(payload) <= DATAGRAM:
        _send_datagram(sock, [b"M", payload], deadline)
        return
    view = memoryview(payload)
    for start in range(0, len(payload), DATAGRAM):
        tag = b"E" if start + DATAGRAM >= len(payload) else b"C"
        _send_datagram(sock, [tag, view[start : start + DATAGRAM]], deadline)


def _send_datagram(sock: socket.socket, parts: list[Any], deadline: float) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while True:
        try:
            sock.sendmsg(parts)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the shadow process stopped reading") from None
            poller.poll(left * 1000)


def recv(sock: socket.socket, deadline: float) -> bytes | None:
    """One message, or ``None`` at the deadline or when the other end is gone."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):
        return None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if poller.poll(left * 1000):
            try:
                data = sock.recv(DATAGRAM + 1)
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return None
            return data or None


class Receiver:
    """The child's side of the framing: whole messages out of datagrams."""

    _WHOLE, _LAST = ord("M"), ord("E")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray(DATAGRAM + 1)
        self._view = memoryview(self._buffer)
        self._pieces = bytearray()

    def next(self) -> Any:
        """The next message; ``None`` once the worker closed its end (or died)."""
        while True:
            n = self.sock.recv_into(self._buffer)
            if n == 0:
                return None  # a message in pieces is discarded
            tag = self._buffer[0]
            if tag == self._WHOLE:
                return pickle.loads(self._view[1:n])
            self._pieces += self._view[1:n]
            if tag == self._LAST:
                message = pickle.loads(self._pieces)
                self._pieces = bytearray()
                return message

    def reply(self, reply: Reply) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(b"M" + pickle.dumps(reply))
