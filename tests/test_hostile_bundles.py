"""Hostile bundles: loading one runs no payload, and each refusal names the part and the field.

Every attack is written as an attacker would write it: after the edit, every
part's sha256 and the manifest's seal are recomputed, so the bundle is
internally consistent -- only trust by name, path confinement, the file checks
and the size limits stand in the way. Each payload would create a marker file;
the tests assert that it never exists. The attacks go through ``sidecar.load``,
``sidecar info`` (a real subprocess) and ``sidecar serve``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import sidecar
from sidecar.bundle._manifest import seal_manifest
from tests import models
from tests.servers import alive, descendants, free_port

FACTORY = "tests.models:make_mlp_classifier"
CLI = [sys.executable, "-c", "import sys; from sidecar.cli import main; sys.exit(main())"]
Edit = Callable[[Path, dict[str, Any], Path], None]


# -- bundles to attack ------------------------------------------------------------------------


def _data(seed: int = 0) -> tuple[list[dict[str, float]], np.ndarray, list[dict[str, float]], Any]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    records = [{"a": float(a), "b": float(b)} for a, b in X]
    return records[:80], y[:80], records[80:], y[80:]


@pytest.fixture(scope="module")
def sklearn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn model behind a ``kind: sklearn`` preprocessing part (both skops files)."""
    train, y_train, ref, y_ref = _data()
    scaler = StandardScaler().fit([[r["a"], r["b"]] for r in train])
    model = LogisticRegression().fit(scaler.transform([[r["a"], r["b"]] for r in train]), y_train)
    bundle = sidecar.wrap(
        model, task="classification", preprocessing=scaler, train=(train, y_train),
        reference=(ref, y_ref),
    )  # fmt: skip
    assert bundle.manifest["parts"]["preprocessing"]["kind"] == "sklearn"
    return bundle.save(tmp_path_factory.mktemp("sk") / "bundle")


@pytest.fixture(scope="module")
def torch_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch state dict with its factory, the genuine article a factory attack edits."""
    import torch

    torch.manual_seed(0)
    train, y_train, ref, y_ref = _data(1)
    kwargs = {"n_features": 2, "n_classes": 2}
    bundle = sidecar.wrap(
        models.make_mlp_classifier(**kwargs),
        task="classification",
        preprocessing=sidecar.TabularPreprocessor(
            columns=[sidecar.NumericColumn(name="a"), sidecar.NumericColumn(name="b")]
        ),
        train=(train, y_train),
        reference=(ref, y_ref),
        model_options={"factory": FACTORY, "factory_kwargs": kwargs},
    )
    return bundle.save(tmp_path_factory.mktemp("torch") / "bundle")


def _attacker_hash(directory: Path) -> str:
    """The part hash as the loader computes it, but following links (as the old one did)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = file.read_bytes()
        digest.update(file.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def reseal(root: Path) -> None:
    """Recompute every hash and the seal, as any bundle author can."""
    manifest = json.loads((root / "manifest.json").read_text())
    for part, meta in manifest["parts"].items():
        meta["sha256"] = _attacker_hash(root / part)
    manifest["plan_sha256"] = hashlib.sha256((root / "plan.json").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(seal_manifest(manifest), indent=1))


def hostile(source: Path, tmp_path: Path, edit: Edit) -> tuple[Path, Path]:
    """A copy of ``source`` with ``edit(root, manifest, marker)`` applied and resealed."""
    root = Path(shutil.copytree(source, tmp_path / "hostile"))
    marker = tmp_path / "PWNED"
    manifest = json.loads((root / "manifest.json").read_text())
    edit(root, manifest, marker)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    reseal(root)
    return root, marker


def runstring_skops(marker: Path) -> bytes:
    """A skops file that ``exec``s through ``numpy.testing._private.utils.runstring``."""
    import skops.io as sio

    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    tmp = marker.with_name("args.skops")
    sio.dump((code, {}), tmp)
    with zipfile.ZipFile(tmp) as src:
        args = json.loads(src.read("schema.json"))
    tmp.unlink()
    payload = {
        "__class__": "runstring",
        "__module__": "numpy.testing._private.utils",
        "__loader__": "ConstructorFromReduceNode",
        "content": {k: v for k, v in args.items() if k not in ("protocol", "_skops_version")},
        "protocol": args["protocol"],
        "_skops_version": args["_skops_version"],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        out.writestr("schema.json", json.dumps(payload))
    return buf.getvalue()


# -- the attacks ------------------------------------------------------------------------------


def _factory_subprocess(root: Path, m: dict[str, Any], marker: Path) -> None:
    m["parts"]["advanced"]["factory"] = "subprocess:run"
    m["parts"]["advanced"]["factory_kwargs"] = {"args": ["touch", str(marker)]}


def _factory_runstring(root: Path, m: dict[str, Any], marker: Path) -> None:
    m["parts"]["advanced"]["factory"] = "numpy.testing._private.utils:runstring"
    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    m["parts"]["advanced"]["factory_kwargs"] = {"astr": code, "dict": {}}


def _callable_constant(root: Path, m: dict[str, Any], marker: Path) -> None:
    adv = m["parts"]["advanced"]
    for key in ("file", "format"):
        adv.pop(key, None)
    adv.update(framework="callable", format="import-path", path="numpy:zeros_like")
    for file in (root / "advanced").iterdir():
        file.unlink()


def _runstring_advanced(root: Path, m: dict[str, Any], marker: Path) -> None:
    (root / "advanced" / "model.skops").write_bytes(runstring_skops(marker))


def _runstring_preprocessing(root: Path, m: dict[str, Any], marker: Path) -> None:
    (root / "preprocessing" / "transformer.skops").write_bytes(runstring_skops(marker))


def _file_dotdot(root: Path, m: dict[str, Any], marker: Path) -> None:
    m["parts"]["advanced"]["file"] = "../baseline/model.skops"


def _file_absolute(root: Path, m: dict[str, Any], marker: Path) -> None:
    m["parts"]["advanced"]["file"] = str((root / "baseline" / "model.skops").resolve())


def _file_etc_passwd(root: Path, m: dict[str, Any], marker: Path) -> None:
    m["parts"]["advanced"]["file"] = "/etc/passwd"


def _symlinked_part(root: Path, m: dict[str, Any], marker: Path) -> None:
    elsewhere = shutil.copytree(root / "baseline", marker.parent / "elsewhere")
    shutil.rmtree(root / "advanced")
    (root / "advanced").symlink_to(elsewhere, target_is_directory=True)


def _symlinked_file(root: Path, m: dict[str, Any], marker: Path) -> None:
    (root / "advanced" / "model.skops").unlink()
    (root / "advanced" / "model.skops").symlink_to(root / "baseline" / "model.skops")


def _symlink_etc_passwd(root: Path, m: dict[str, Any], marker: Path) -> None:
    (root / "reference" / "passwd").symlink_to("/etc/passwd")


def _symlinked_subdirectory(root: Path, m: dict[str, Any], marker: Path) -> None:
    (root / "reference" / "etc").symlink_to("/etc/ssl", target_is_directory=True)


def _hard_link_outside(root: Path, m: dict[str, Any], marker: Path) -> None:
    outside = marker.parent / "outside.skops"
    shutil.copyfile(root / "advanced" / "model.skops", outside)
    (root / "advanced" / "model.skops").unlink()
    os.link(outside, root / "advanced" / "model.skops")


ATTACKS: list[tuple[str, str, Edit, str]] = [
    # id, bundle, edit, what the refusal must say (part and field)
    ("factory-subprocess-run", "torch", _factory_subprocess,
     r"part 'advanced' field `factory` is the import path 'subprocess:run'"),
    ("factory-runstring", "torch", _factory_runstring,
     r"part 'advanced' field `factory` is the import path 'numpy\.testing"),
    ("callable-numpy-zeros_like", "sklearn", _callable_constant,
     r"part 'advanced' field `path` is the import path 'numpy:zeros_like'"),
    ("skops-runstring-advanced", "sklearn", _runstring_advanced,
     r"part 'advanced' file 'model\.skops' holds types that are not trusted: "
     r"\['numpy\.testing\._private\.utils\.runstring'\]"),
    ("skops-runstring-preprocessing", "sklearn", _runstring_preprocessing,
     r"part 'preprocessing' file 'transformer\.skops' holds types that are not trusted: "
     r"\['numpy\.testing\._private\.utils\.runstring'\]"),
    ("file-dotdot", "sklearn", _file_dotdot,
     r"part 'advanced' field `file` must be a relative file name inside advanced/ .*"
     r"'\.\./baseline/model\.skops'"),
    ("file-absolute", "sklearn", _file_absolute,
     r"part 'advanced' field `file` must be a relative file name inside advanced/ .*no absolute"),
    ("file-etc-passwd", "sklearn", _file_etc_passwd,
     r"part 'advanced' field `file` .*'/etc/passwd'"),
    ("symlinked-part-directory", "sklearn", _symlinked_part,
     r"part 'advanced': .*advanced is a symbolic link"),
    ("symlinked-file", "sklearn", _symlinked_file,
     r"part 'advanced': .*model\.skops is a symbolic link"),
    ("symlink-to-etc-passwd", "sklearn", _symlink_etc_passwd,
     r"part 'reference': .*passwd is a symbolic link"),
    ("symlinked-subdirectory", "sklearn", _symlinked_subdirectory,
     r"part 'reference': .*etc is a symbolic link"),
    ("hard-link-outside", "sklearn", _hard_link_outside,
     r"part 'advanced': .*model\.skops has 2 hard links"),
]  # fmt: skip


@pytest.fixture
def bundles(sklearn_bundle: Path, torch_bundle: Path) -> dict[str, Path]:
    return {"sklearn": sklearn_bundle, "torch": torch_bundle}


@pytest.mark.parametrize(
    ("kind", "edit", "message"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_load_refuses_and_runs_nothing(
    bundles: dict[str, Path], tmp_path: Path, kind: str, edit: Edit, message: str
) -> None:
    root, marker = hostile(bundles[kind], tmp_path, edit)
    with pytest.raises(sidecar.BundleError, match=message):
        sidecar.load(root)
    # trusting some other name is not trust, and neither is a prefix
    with pytest.raises(sidecar.BundleError, match=message):
        sidecar.load(root, trusted=["numpy", "numpy.", "subprocess", "tests.models:other"])
    assert not marker.exists()


def test_the_attacks_are_real(bundles: dict[str, Path], tmp_path: Path) -> None:
    """Trusted by name, the payloads do run: the refusals above are what stops them."""
    root, marker = hostile(bundles["torch"], tmp_path, _factory_subprocess)
    with pytest.raises(sidecar.BundleError):  # subprocess.run returns no nn.Module
        sidecar.load(root, trusted=["subprocess:run"])
    assert marker.exists()
    marker.unlink()
    root = tmp_path / "hostile"
    shutil.rmtree(root)
    root, marker = hostile(bundles["sklearn"], tmp_path, _runstring_advanced)
    with pytest.raises(sidecar.BundleError):  # runstring returns None, not an estimator
        sidecar.load(root, trusted=["numpy.testing._private.utils.runstring"])
    assert marker.exists()


# -- edits without resealing are named --------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        *head, last = path.split(".")
        target = m
        for key in head:
            target = target[key]
        target[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        part, key = path.split(".")[1:]
        del m["parts"][part][key]

    return edit


UNSEALED = [
    ("parts.advanced.factory", _set("parts.advanced.factory", "subprocess:run")),
    ("parts.advanced.factory_kwargs", _set("parts.advanced.factory_kwargs", {"args": ["id"]})),
    ("parts.advanced.file", _set("parts.advanced.file", "model.torchscript.pt")),
    ("parts.advanced.output", _set("parts.advanced.output", "probabilities")),
    ("parts.advanced.classes", _set("parts.advanced.classes", [1, 0])),
    ("parts.advanced.framework", _set("parts.advanced.framework", "callable")),
    ("parts.baseline.format", _set("parts.baseline.format", "pickle")),
    ("parts.preprocessing.kind", _set("parts.preprocessing.kind", "sklearn")),
    ("parts.preprocessing.version", _set("parts.preprocessing.version", "v2")),
    ("classes", _set("classes", [1, 0])),
    ("name", _set("name", "other")),
    ("created_at", _set("created_at", "2020-01-01T00:00:00+00:00")),
    ("parent", _set("parent", "0123456789ab")),
    ("parts.advanced.path", _set("parts.advanced.path", "numpy:zeros_like")),
    ("parts.advanced.task", _drop("parts.advanced.task")),
]


@pytest.mark.parametrize(("field", "edit"), UNSEALED, ids=[u[0] for u in UNSEALED])
def test_an_unsealed_edit_is_refused_by_field(
    torch_bundle: Path, tmp_path: Path, field: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    root = Path(shutil.copytree(torch_bundle, tmp_path / "edited"))
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    if field == "parts.advanced.task":
        expected = "field `parts.advanced.task` must be the bundle's task"
    elif field == "parts.advanced.path":
        expected = "field `parts.advanced.path` is not in the manifest's seal"
    else:
        expected = f"field `{field}` was changed after the bundle was saved"
    with pytest.raises(sidecar.BundleError, match=expected):
        sidecar.load(root, trusted=[FACTORY, "subprocess:run"])


def test_the_version_and_the_seal_are_checked(torch_bundle: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(torch_bundle, tmp_path / "edited"))
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": "0" * 12}))
    with pytest.raises(sidecar.BundleError, match="field `version` '000000000000' does not"):
        sidecar.load(root, trusted=[FACTORY])
    seal = dict(manifest["seal"], name="0" * 64)
    (root / "manifest.json").write_text(json.dumps({**manifest, "seal": seal}))
    with pytest.raises(sidecar.BundleError, match="field `name` was changed"):
        sidecar.load(root, trusted=[FACTORY])
    del manifest["seal"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(sidecar.BundleError, match="field `seal` must map"):
        sidecar.load(root, trusted=[FACTORY])


def test_device_files_and_fifos_are_refused(sklearn_bundle: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(sklearn_bundle, tmp_path / "b"))
    os.mkfifo(root / "reference" / "pipe")  # hashing it would block forever
    with pytest.raises(sidecar.BundleError, match=r"part 'reference': .*pipe must be a regular"):
        sidecar.load(root)
    (root / "reference" / "pipe").unlink()
    (root / "plan.json").rename(root / "plan.real")
    (root / "plan.json").symlink_to(root / "plan.real")
    with pytest.raises(sidecar.BundleError, match=r"plan\.json: .* is a symbolic link"):
        sidecar.load(root)


def test_a_registry_cannot_point_outside_itself(sklearn_bundle: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    version = sidecar.load(sklearn_bundle).version
    shutil.copytree(sklearn_bundle, registry / "versions" / version)
    (registry / "ACTIVE").write_text("../../../etc\n")
    with pytest.raises(sidecar.BundleError, match="must name a version"):
        sidecar.load(registry)
    (registry / "versions" / version).rename(registry / "versions" / "abcdef012345")
    (registry / "ACTIVE").write_text("abcdef012345\n")
    with pytest.raises(sidecar.BundleError, match="not the version the registry keeps"):
        sidecar.load(registry)


# -- resource limits --------------------------------------------------------------------------


class _ZeroBlocks:
    """A raw-deflate compressor that compresses each 64 MiB zero block only once.

    After a full flush deflate starts afresh, so every zero block compresses to
    the same bytes; the file is the one zlib would write, in a fraction of the time.
    """

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, -15)
        self._block: bytes | None = None

    def compress(self, data: bytes) -> bytes:
        zero = len(data) == 64 << 20 and not any(data[:: 1 << 16])
        if zero and self._block is not None:
            return self._block
        out = self._z.compress(data) + self._z.flush(zlib.Z_FULL_FLUSH)
        if zero:
            self._block = out
        return out

    def flush(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _bomb(path: Path, inflated: int) -> None:
    """An npz whose one array, all zeros, inflates to ``inflated`` bytes."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("features.npy", "w", force_zip64=True) as fh,
    ):
        fh._compressor = _ZeroBlocks()  # type: ignore[attr-defined]
        fh.write(_npy_header((inflated // 8,)))
        zero = bytes(64 << 20)
        for _ in range(inflated // len(zero)):
            fh.write(zero)


def test_a_zip_bomb_is_refused_before_it_is_inflated(sklearn_bundle: Path, tmp_path: Path) -> None:
    def edit(root: Path, m: dict[str, Any], marker: Path) -> None:
        _bomb(root / "reference" / "arrays.npz", 3 << 30)

    root, _ = hostile(sklearn_bundle, tmp_path, edit)
    npz = root / "reference" / "arrays.npz"
    assert npz.stat().st_size < 4 << 20  # about 3 MB on disk...
    with zipfile.ZipFile(npz) as archive:  # ...declaring 3 GiB once inflated
        assert archive.getinfo("features.npy").file_size > 3 << 30
    with pytest.raises(
        sidecar.BundleError, match=r"part 'reference': its files hold more than 536870912 bytes"
    ):
        sidecar.load(root)


def test_an_array_header_claiming_8_tib_is_refused(sklearn_bundle: Path, tmp_path: Path) -> None:
    def edit(root: Path, m: dict[str, Any], marker: Path) -> None:
        with zipfile.ZipFile(root / "reference" / "arrays.npz", "w") as archive:
            archive.writestr("features.npy", _npy_header((1 << 40,)) + bytes(64))

    root, _ = hostile(sklearn_bundle, tmp_path, edit)
    with pytest.raises(
        sidecar.BundleError,
        match=r"part 'reference': reference/arrays\.npz:features\.npy declares an array of shape "
        r"\(1099511627776,\) .*8796093022208 bytes\) in an entry of 64 bytes",
    ):
        sidecar.load(root)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}", "unreadable .npy header"),
        (b"not an array at all", r"is not a \.npy array"),
        (_npy_header((-1,)), "unreadable .npy header|negative shape"),
    ],
    ids=["bad-dict", "bad-magic", "negative-shape"],
)
def test_a_malformed_array_header_is_refused(
    sklearn_bundle: Path, tmp_path: Path, header: bytes, message: str
) -> None:
    def edit(root: Path, m: dict[str, Any], marker: Path) -> None:
        with zipfile.ZipFile(root / "reference" / "arrays.npz", "w") as archive:
            archive.writestr("y.npy", header)

    root, _ = hostile(sklearn_bundle, tmp_path, edit)
    with pytest.raises(sidecar.BundleError, match=rf"part 'reference': .*y\.npy.*({message})"):
        sidecar.load(root)


def test_the_part_limit_is_configurable(sklearn_bundle: Path) -> None:
    with pytest.raises(sidecar.BundleError, match=r"part '\w+': its files hold more than 1000"):
        sidecar.load(sklearn_bundle, max_part_bytes=1000)
    assert sidecar.load(sklearn_bundle, max_part_bytes=64 << 20).version


# -- through the command line and the server --------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "edit", "message"),
    [(k, e, m) for i, k, e, m in ATTACKS if i in ("factory-subprocess-run",
                                                  "skops-runstring-advanced", "file-dotdot")],
    ids=["factory-subprocess-run", "skops-runstring-advanced", "file-dotdot"],
)  # fmt: skip
def test_sidecar_info_refuses_and_runs_nothing(
    bundles: dict[str, Path], tmp_path: Path, kind: str, edit: Edit, message: str
) -> None:
    root, marker = hostile(bundles[kind], tmp_path, edit)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        [*CLI, "info", str(root)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("sidecar: error: ")
    assert "Traceback" not in done.stderr
    import re

    assert re.search(message, done.stderr), done.stderr
    assert not marker.exists()


def _serve(bundle: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    environ.update(OMP_NUM_THREADS="1", BENTOML_DO_NOT_TRACK="1", **env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", str(bundle), "--port", str(port),
             "--store", f"sqlite:///{tmp_path / 'records.db'}"],
            env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return proc, port, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    family = descendants(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in alive(family):
        os.kill(pid, signal.SIGKILL)


def test_sidecar_serve_refuses_a_hostile_bundle_and_exits(
    torch_bundle: Path, tmp_path: Path
) -> None:
    root, marker = hostile(torch_bundle, tmp_path, _factory_subprocess)
    proc, _, log = _serve(root, tmp_path, SIDECAR_TRUSTED=FACTORY)
    try:
        code = proc.wait(timeout=120)  # exits once, no restart loop
    finally:
        _stop(proc)
    text = log.read_text()
    assert code == 1, text
    assert "field `factory` is the import path 'subprocess:run'" in text
    assert "Traceback" not in text
    assert not marker.exists()


def test_allow_pickle_serves_a_pickled_bundle(tmp_path: Path) -> None:
    train, y_train, ref, y_ref = _data(2)
    bundle = sidecar.wrap(
        models.FixedLinearClassifier(classes=(0, 1)),
        task="classification",
        framework="pickle",
        preprocessing=sidecar.TabularPreprocessor(
            columns=[sidecar.NumericColumn(name="a"), sidecar.NumericColumn(name="b")]
        ),
        train=(train, y_train),
        reference=(ref, y_ref),
    )
    path = bundle.save(tmp_path / "pickled")
    refused, _, log = _serve(path, tmp_path)
    try:
        assert refused.wait(timeout=120) == 1
    finally:
        _stop(refused)
    assert "SIDECAR_ALLOW_PICKLE=1" in log.read_text()

    proc, port, log = _serve(path, tmp_path, SIDECAR_ALLOW_PICKLE="1")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"records": ref[:5]}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = json.loads(resp.read())
    finally:
        _stop(proc)
    expected = bundle.predict(ref[:5]).predictions.tolist()
    assert body["predictions"] == expected
    assert body["bundle_version"] == bundle.version


def test_bentoml_serve_stops_instead_of_restarting_a_refusing_worker(
    sklearn_bundle: Path, tmp_path: Path
) -> None:
    """Started by ``bentoml serve`` directly, a refused bundle stops the server: no restart loop."""
    root, marker = hostile(sklearn_bundle, tmp_path, _runstring_advanced)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    environ.update(
        SIDECAR_BUNDLE=str(root),
        SIDECAR_STORE=f"sqlite:///{tmp_path / 'records.db'}",
        OMP_NUM_THREADS="1",
        BENTOML_DO_NOT_TRACK="1",
    )
    command = [sys.executable, "-m", "bentoml", "serve", "sidecar.serving.service:Sidecar"]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(free_port())],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    text = out.decode(errors="replace")
    assert text.count("refusing to serve") == 1, text[-3000:]
    assert "numpy.testing._private.utils.runstring" in text
    assert not marker.exists()


def test_the_skops_allow_list_is_exact_type_names() -> None:
    """No prefix, no function: every allowed name imports to a class."""
    import importlib

    from sidecar.bundle._safe import ALLOWED_TYPES

    for name in sorted(ALLOWED_TYPES):
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
    assert not any(name.endswith(".") for name in ALLOWED_TYPES)


def test_a_scikit_learn_bundle_loads_without_importing_torch(
    sklearn_bundle: Path, torch_bundle: Path
) -> None:
    """Fast start: no framework the bundle does not need; torch still loads afterwards."""
    script = f"""
import sys
import sidecar
bundle = sidecar.load({str(sklearn_bundle)!r})
assert "torch" not in sys.modules, "torch was imported for a scikit-learn bundle"
assert "pytest" not in sys.modules, "pytest was imported for a scikit-learn bundle"
bundle.predict([{{"a": 0.5, "b": -1.0}}])
net = sidecar.load({str(torch_bundle)!r}, trusted=[{FACTORY!r}])
assert "torch" in sys.modules
print(net.predict([{{"a": 0.5, "b": -1.0}}]).predictions.tolist())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[0]", "[1]")


def test_skops_imports_first_thing_in_a_fresh_process() -> None:
    """The torch and pytest markers set while skops imports trip nothing imported under them
    (SciPy's array-API helpers look torch up), whatever was imported before."""
    script = """
import sys
from sidecar.bundle._safe import _skops_io
assert _skops_io().get_untrusted_types is not None
assert "torch" not in sys.modules and "pytest" not in sys.modules
import pytest
print(pytest.__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pytest"


def test_a_registry_never_copies_a_link_into_a_file(sklearn_bundle: Path, tmp_path: Path) -> None:
    from sidecar import Registry

    root, _ = hostile(sklearn_bundle, tmp_path, _symlink_etc_passwd)
    registry = Registry.open(Path(shutil.copytree(sklearn_bundle, tmp_path / "reg")), create=True)
    with pytest.raises(sidecar.BundleError, match=r"part 'reference': .*passwd is a symbolic"):
        registry.register(root)
    assert registry.versions() == [sidecar.load(tmp_path / "reg").version]


def test_splitting_a_file_in_two_changes_the_part_hash(tmp_path: Path) -> None:
    """Files are framed by their size: bytes cannot move from one file to the next unseen."""
    from sidecar.bundle._integrity import scan_part

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "a").write_bytes(b"x\0b\0y")
    (two / "a").write_bytes(b"x")
    (two / "b").write_bytes(b"y")
    assert scan_part(one, "p", framed=False).sha256 == scan_part(two, "p", framed=False).sha256
    assert scan_part(one, "p").sha256 != scan_part(two, "p").sha256


@pytest.mark.parametrize("framed", [True, False])
def test_a_part_hash_is_the_documented_framing_when_checked_and_when_read(
    tmp_path: Path, framed: bool
) -> None:
    """The check at load (scan_part) and the read of a lazily loaded part (read_part) hash
    alike, and both are the framing the manifest documents, computed here by hand."""
    from sidecar.bundle._integrity import read_part, scan_part

    (tmp_path / "p" / "sub").mkdir(parents=True)
    files = {"a": b"x\0b", "sub/c": b"", "z": bytes(range(256)) * 300}
    for rel, data in files.items():
        (tmp_path / "p" / rel).write_bytes(data)
    digest = hashlib.sha256()
    for rel in sorted(files, key=lambda r: r.split("/")):
        digest.update(rel.encode() + b"\0")
        if framed:
            digest.update(len(files[rel]).to_bytes(8, "big"))
        digest.update(files[rel])
        if not framed:
            digest.update(b"\0")
    sha, read = read_part(tmp_path / "p", "p", framed=framed)
    assert scan_part(tmp_path / "p", "p", framed=framed).sha256 == sha == digest.hexdigest()
    assert read == files


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_a_flipped_byte_anywhere_in_a_model_file_is_a_hash_failure(
    sklearn_bundle: Path, tmp_path: Path, where: float
) -> None:
    """The part's hash is compared before its zip entries are read: a file changed after
    saving is named as such, not as whatever its changed bytes now say (a bad CRC, say)."""
    root = tmp_path / "bundle"
    shutil.copytree(sklearn_bundle, root)
    model = next(p for p in (root / "advanced").iterdir() if p.is_file())
    data = bytearray(model.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    model.write_bytes(data)
    with pytest.raises(sidecar.BundleError, match=r"part 'advanced' failed its hash check"):
        sidecar.load(root)
