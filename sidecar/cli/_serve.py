"""``sidecar serve``: check the bundle once, then run ``bentoml serve`` until it ends."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._errors import InputError

__all__ = ["register", "run_bentoml"]

SERVICE = "sidecar.serving.service:Sidecar"


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a bundle with `bentoml serve`")
    p.add_argument("bundle")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--workers", type=int)
    p.add_argument("--store", help="where to record predictions (sets SIDECAR_STORE)")
    p.add_argument(
        "--require-signature",
        metavar="PUBLIC_KEY",
        help="serve only a bundle signed with this key's private key (sets SIDECAR_PUBLIC_KEY)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    _check_servable(args)  # fail here, clearly, rather than in a worker
    return run_bentoml(Path(args.bundle), args.host, args.port, args.workers, args.store)


def _check_servable(args: argparse.Namespace) -> None:
    """Load the bundle as the service will (same settings), so a refusal stops here, once."""
    from .._settings import settings_from_env
    from ..serving._shadow_process import load_bundle

    if getattr(args, "require_signature", None):
        key = Path(args.require_signature)
        if not key.is_file():
            raise InputError(
                f"--require-signature must name a PEM public key file; got {str(key)!r}."
            )
        os.environ["SIDECAR_PUBLIC_KEY"] = str(key.resolve())  # the workers check it too
    settings = settings_from_env().model_copy(update={"bundle": str(args.bundle)})
    load_bundle(settings, candidate=False)


def run_bentoml(bundle: Path, host: str, port: int, workers: int | None, store: str | None) -> int:
    """Run ``bentoml serve`` until it ends; SIGTERM, SIGINT and SIGHUP are passed on to it.

    The command waits for BentoML's graceful shutdown (which writes every
    queued record) and returns its exit status. If the command itself is
    killed (even with SIGKILL), the kernel sends BentoML SIGTERM, and each
    worker ends with BentoML's arbiter the same way (see ``_lifetime``).
    """
    import signal

    from .._lifetime import die_with_parent

    env = dict(os.environ, SIDECAR_BUNDLE=str(bundle.resolve()), OMP_NUM_THREADS="1")
    if workers:
        env["SIDECAR_WORKERS"] = str(workers)
    if store:
        env["SIDECAR_STORE"] = store
    env.setdefault("SIDECAR_STORE", f"sqlite:///{(bundle.resolve().parent / 'records.db')}")
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # an exception here: do not leave the server behind
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Stopped by a signal we passed on: a clean stop, as with Ctrl+C before.
    return 0 if forwarded and code in (0, -signal.SIGTERM, -signal.SIGINT) else code
