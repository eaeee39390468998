"""``sidecar bento``: a bundle as a BentoML model, so that a Bento carries it.

``sidecar bento import BUNDLE`` checks the bundle and saves it in BentoML's
model store (``$BENTOML_HOME/models``); ``bentoml build`` then packs it into the
Bento and ``bentoml serve``/``bentoml containerize`` need no ``SIDECAR_BUNDLE``.
``sidecar bento list`` shows the bundle models in the store.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._json import dumps
from ._common import add_bundle, add_json

__all__ = ["register"]


def register(sub: Any) -> None:
    group = sub.add_parser(
        "bento",
        help="put a bundle in BentoML's model store, for `bentoml build` to pack",
        description="A bundle as a BentoML model, so that a Bento carries it: `sidecar bento "
        "import BUNDLE` checks the bundle and saves it in BentoML's model store; `bentoml "
        "build` then packs it and `bentoml serve`/`bentoml containerize` need no "
        "SIDECAR_BUNDLE. `sidecar bento list` shows the bundle models in the store.",
    )
    inner = group.add_subparsers(title="bento commands", metavar="ACTION")
    group.set_defaults(func=lambda _args: _usage(group))

    p = inner.add_parser(
        "import",
        help="check a bundle and save it as a BentoML model NAME:VERSION",
        description="Check the bundle (hashes, seal, and with --public-key its signature) and "
        "save it in BentoML's model store under the bundle's name and version. Then: "
        "`bentoml build` (the Bento declares the bundle imported last) and "
        "`bentoml serve model-sidecar:latest`.",
    )
    add_bundle(p)
    p.add_argument(
        "--name", help="the BentoML model name (default: the bundle's name, in lower case)"
    )
    p.add_argument(
        "--public-key",
        metavar="PEM",
        help="refuse the bundle unless its signature verifies with this public key",
    )
    add_json(p)
    p.set_defaults(func=_import)

    p = inner.add_parser("list", help="the bundle models in BentoML's model store, newest first")
    add_json(p)
    p.set_defaults(func=_list)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _import(args: argparse.Namespace) -> int:
    from ..serving._bentoml_model import import_bundle

    done = import_bundle(args.bundle, name=args.name, public_key=args.public_key)
    if args.json:
        out = {
            "tag": done.tag,
            "path": str(done.path),
            "bundle_name": done.bundle_name,
            "bundle_version": done.bundle_version,
            "created": done.created,
        }
        print(dumps(out, indent=2))
        return 0
    what = "imported" if done.created else "already in the model store:"
    print(f"{what} {done.tag}  ({done.path})")
    print("next: bentoml build && bentoml serve model-sidecar:latest --host 127.0.0.1")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..serving._bentoml_model import list_bundle_models

    rows = [
        {
            "tag": str(m.tag),
            "bundle_name": m.info.metadata.get("bundle_name"),
            "bundle_version": m.info.metadata.get("bundle_version"),
            "created": m.info.creation_time.isoformat(timespec="seconds"),
            "path": str(m.path),
        }
        for m in list_bundle_models()
    ]
    if args.json:
        print(dumps(rows, indent=2))
        return 0
    if not rows:
        print("no bundle in BentoML's model store: sidecar bento import BUNDLE")
    for row in rows:
        print(f"{row['tag']:<40} {row['created']}  {row['path']}")
    return 0
