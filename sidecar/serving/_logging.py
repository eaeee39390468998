"""Client errors in BentoML's own request handling: one log line, not a traceback.

BentoML refuses a body that is not JSON, or does not match the request model,
with a 400 -- and logs the exception with its full traceback at ERROR, as if
the server had failed. A sidecar on a busy endpoint would bury its real errors
under those. :class:`ClientErrorFilter` rewrites such records into one WARNING
line that names the path and the refusal; server errors (5xx) keep their
tracebacks.
"""

from __future__ import annotations

import logging

__all__ = ["BENTOML_HTTP_LOGGER", "ClientErrorFilter", "quiet_client_errors"]

#: The logger BentoML 1.4 reports request exceptions on.
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorFilter(logging.Filter):
    """Turn a logged 4xx refusal (pydantic validation, BentoML 4xx) into one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        status = _client_status(record.exc_info[1])
        if status is None:
            return True
        record.msg = "%s refused with %d: %s"
        record.args = (_path(record), status, _summary(record.exc_info[1]))
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorFilter` on BentoML's request logger (once)."""
    target = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in target.filters):
        target.addFilter(ClientErrorFilter())


def _client_status(exc: BaseException) -> int | None:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400  # what BentoML answers for it
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return code
    return None


def _path(record: logging.LogRecord) -> str:
    # BentoML logs "Exception on %s [%s]" with (path, method).
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) == 2:
        return f"{args[1]} {args[0]}"
    return "a request"


def _summary(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors(include_context=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first.get('msg', 'invalid')}{more}"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
