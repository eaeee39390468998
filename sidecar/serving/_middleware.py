"""The ASGI guard in front of the service: auth, media type, size and a body that stalls.

Everything here is decided before BentoML parses a body, so a refusal costs
no parsing and never reaches BentoML's error path (which answers 500 to a
multipart body without a boundary, and 504 to a body shorter than its
``Content-Length`` after the whole traffic timeout).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["BodyLimitMiddleware"]

_REFUSED: Any = object()
#: Media types BentoML would parse as a form; the sidecar's APIs take JSON only.
_FORM_TYPES = (b"multipart/", b"application/x-www-form-urlencoded")


class BodyLimitMiddleware:
    """Guard every HTTP request that carries a body (methods other than GET and HEAD).

    - ``POST /feedback`` without ``Authorization: Bearer <feedback_token>``
      (when a token is set): 401, before the body is read;
    - a form body (``multipart/*``, url-encoded): 415 -- the APIs take JSON;
    - a body longer than ``max_bytes``: 413 (a declared ``Content-Length`` is
      checked before anything is read);
    - a body that stops coming for ``body_timeout`` seconds after it began,
      before it is complete: 400 then, not a 504 at the end of the traffic
      timeout.

    The body is read here and replayed to the application message by message.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        feedback_token: str | None = None,
        body_timeout: float = 1.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.feedback_token = feedback_token
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = await self._check_headers(scope, send)
        if declared is _REFUSED:
            return
        messages = await self._read_body(receive, send, declared)
        if messages is None:
            return
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replayed, send)

    async def _check_headers(self, scope: Scope, send: Send) -> Any:
        """The declared body length (``None``: none), or ``_REFUSED`` once refused."""
        declared = None
        media = b""
        auth = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif name == b"content-type":
                media = value.lower().lstrip()
            elif name == b"authorization":
                auth = value
        if (
            self.feedback_token is not None
            and scope.get("path", "").rstrip("/") == "/feedback"
            and not hmac.compare_digest(auth, f"Bearer {self.feedback_token}".encode())
        ):
            got = "a wrong token" if auth else "no Authorization header"
            expected = "`Bearer <the feedback token>`"
            bearer = [(b"www-authenticate", b"Bearer")]
            await _refuse(send, 401, "Unauthorized", "authorization", expected, got, extra=bearer)
            return _REFUSED
        if media.startswith(_FORM_TYPES):
            shown = media.split(b";", 1)[0].decode("latin-1")
            await _refuse(
                send, 415, "UnsupportedMediaType", "content-type", "application/json", shown
            )
            return _REFUSED
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send, f"{declared} bytes (declared Content-Length)")
            return _REFUSED
        return declared

    async def _read_body(
        self, receive: Receive, send: Send, declared: int | None
    ) -> list[Message] | None:
        """The body's messages, or ``None`` when it was refused (or the client left)."""
        messages: list[Message] = []
        size = 0
        while True:
            # The first message is not timed: it is there at once for all but a
            # client that sends headers and no body at all (the traffic timeout's
            # to end), and a timer per request costs more than the rest of this
            # guard. A body begun and then stalled is timed.
            message = await (self._next(receive) if messages else receive())
            if message is None:  # the body stalled
                got = f"{size} bytes, then nothing for {self.body_timeout:g} s"
                want = f"{declared} bytes" if declared is not None else "the rest of the body"
                await _refuse(send, 400, "IncompleteBody", "body", want, got)
                return None
            messages.append(message)
            if message["type"] != "http.request":
                if message["type"] == "http.disconnect":
                    return None  # the client went away: nobody to answer
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send, f"more than {self.max_bytes} bytes (chunked)")
                return None
            if not message.get("more_body", False):
                return messages

    async def _next(self, receive: Receive) -> Message | None:
        """The next message; ``None`` if none comes within ``body_timeout`` seconds."""
        try:
            async with asyncio.timeout(self.body_timeout):
                return await receive()
        except TimeoutError:
            return None

    async def _too_large(self, send: Send, got: str) -> None:
        await _refuse(
            send,
            413,
            "PayloadTooLarge",
            "body",
            f"at most {self.max_bytes} bytes",
            got,
            message=f"the request body must be at most {self.max_bytes} bytes; got {got}.",
        )


async def _refuse(
    send: Send,
    status: int,
    error: str,
    field: str,
    expected: str,
    got: str,
    *,
    message: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {
            "error": error,
            "message": message or f"`{field}` must be {expected}; got {got}.",
            "problems": [{"field": field, "expected": expected, "got": got}],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
