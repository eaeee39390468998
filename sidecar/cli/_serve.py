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
    p.add_argument("bundle", help="the bundle directory, or a registry (serves its active version)")
    add_address(p)
    p.add_argument(
        "--workers", type=int, help="BentoML worker processes (sets SIDECAR_WORKERS; default 1)"
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="where to record predictions (sets SIDECAR_STORE; default: records.db beside the "
        "bundle)",
    )
    p.add_argument(
        "--candidate",
        metavar="DIR",
        help="a retrained candidate bundle to run in shadow, for `sidecar promote` (sets "
        "SIDECAR_CANDIDATE)",
    )
    p.add_argument(
        "--require-signature",
        metavar="PUBLIC_KEY",
        help="serve only a bundle signed with this key's private key (sets SIDECAR_PUBLIC_KEY)",
    )
    p.set_defaults(func=_serve)


def add_address(p: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port`` of the server."""
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=3000, help="the port to listen on (default: %(default)s)"
    )


def _serve(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    _check_servable(args)  # fail here, clearly, rather than in a worker
    return run_bentoml(Path(args.bundle), args.host, args.port, args.workers, args.store)


def check_port(host: str, port: int) -> None:
    """Refuse, before anything starts, a port that is taken or an address that is not ours."""
    import socket

    if not 0 < port < 65536:
        raise InputError(f"--port must be a TCP port in 1..65535; got {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(
            f"--host must be an address or a name this machine resolves; got {host!r} "
            f"({exc.strerror})."
        ) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server "
                "running there? Pick another with --port."
            ) from exc


def _check_servable(args: argparse.Namespace) -> None:
    """Load the bundle (and candidate) as the service will, so a refusal stops here, once."""
    from .._settings import settings_from_env
    from ..serving._shadow_process import load_bundle

    if getattr(args, "require_signature", None):
        key = Path(args.require_signature)
        if not key.is_file():
            raise InputError(
                f"--require-signature must name a PEM public key file; got {str(key)!r}."
            )
        os.environ["SIDECAR_PUBLIC_KEY"] = str(key.resolve())  # the workers check it too
    if getattr(args, "candidate", None):
        candidate = Path(args.candidate)
        if not candidate.is_dir():
            raise InputError(f"--candidate must be a bundle directory; got {str(candidate)!r}.")
        os.environ["SIDECAR_CANDIDATE"] = str(candidate.resolve())  # for the workers
    settings = settings_from_env().model_copy(update={"bundle": str(args.bundle)})
    # With a candidate (--candidate or SIDECAR_CANDIDATE) both load, and a candidate
    # the champion cannot run in shadow is refused here rather than by every worker.
    load_bundle(settings, candidate=True)


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
