"""Signed bundles (OpenSSF model-signing, offline ECDSA keys): any edit anywhere fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import sidecar
from sidecar.bundle._signing import SIGNATURE, sign_bundle, verify_bundle
from sidecar.cli import main
from sidecar.monitoring import default_plan

pytest.importorskip("model_signing")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

CLI = [sys.executable, "-c", "import sys; from sidecar.cli import main; sys.exit(main())"]


def _keys(directory: Path, name: str, password: bytes | None = None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    return {"ours": _keys(directory, "ours"), "theirs": _keys(directory, "theirs")}


@pytest.fixture(scope="module")
def signed(keys: dict[str, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    records = [{"a": float(a), "b": float(b)} for a, b in X]
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name="a"), sidecar.NumericColumn(name="b")]
    )
    bundle = sidecar.wrap(
        LogisticRegression().fit(X[:70], y[:70]),
        task="classification",
        preprocessing=pre,
        train=(records[:70], y[:70]),
        reference=(records[70:], y[70:]),
    )
    path = bundle.save(tmp_path_factory.mktemp("signed") / "bundle")
    assert sign_bundle(path, keys["ours"][0]) == path / SIGNATURE
    return path


@pytest.fixture
def copy(signed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(signed, tmp_path / "bundle"))


def test_a_signed_bundle_verifies_and_loads(
    signed: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    verify_bundle(signed, keys["ours"][1])
    bundle = sidecar.load(signed, public_key=keys["ours"][1])
    assert bundle.version == sidecar.load(signed).version


def _files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != SIGNATURE
    )


def test_every_file_is_covered(
    signed: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """One changed byte in any file -- each file in turn -- fails verification."""
    files = _files(signed)
    assert "manifest.json" in files and "plan.json" in files and len(files) >= 6
    for i, name in enumerate(files):
        root = Path(shutil.copytree(signed, tmp_path / f"b{i}"))
        data = bytearray((root / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (root / name).write_bytes(bytes(data))
        with pytest.raises(sidecar.BundleError, match="signature does not verify"):
            verify_bundle(root, keys["ours"][1])
        with pytest.raises(sidecar.BundleError, match="signature does not verify"):
            sidecar.load(root, public_key=keys["ours"][1])


@pytest.mark.parametrize(
    "where",
    ["extra.txt", ".gitignore", "advanced/extra.bin", "reference/.git/config"],
    ids=["root", "gitignore", "in-a-part", "git-dir"],
)
def test_an_added_file_fails(copy: Path, keys: dict[str, tuple[Path, Path]], where: str) -> None:
    (copy / where).parent.mkdir(parents=True, exist_ok=True)
    (copy / where).write_bytes(b"x")
    with pytest.raises(sidecar.BundleError, match=r"signature does not verify.*Extra files"):
        verify_bundle(copy, keys["ours"][1])


def test_a_removed_or_renamed_file_fails(copy: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    (copy / "reference" / "reference.json").rename(copy / "reference" / "renamed.json")
    with pytest.raises(sidecar.BundleError, match="signature does not verify"):
        verify_bundle(copy, keys["ours"][1])


def test_a_resealed_manifest_fails(copy: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    """Integrity alone cannot catch a consistent rewrite; the signature does."""
    from sidecar.bundle._manifest import seal_manifest

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["name"] = "impostor"
    (copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    assert sidecar.load(copy).name == "impostor"  # consistent: integrity holds
    with pytest.raises(sidecar.BundleError, match="signature does not verify"):
        sidecar.load(copy, public_key=keys["ours"][1])


def test_another_key_fails(signed: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    with pytest.raises(sidecar.BundleError, match="signature does not verify"):
        verify_bundle(signed, keys["theirs"][1])


def test_a_signature_swapped_from_another_bundle_fails(
    copy: Path, signed: Path, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    other = sidecar.load(signed).with_plan(default_plan("classification", min_effect=0.2))
    other_path = other.save(tmp_path / "other")
    sign_bundle(other_path, keys["ours"][0])
    shutil.copyfile(other_path / SIGNATURE, copy / SIGNATURE)
    with pytest.raises(sidecar.BundleError, match="signature does not verify"):
        verify_bundle(copy, keys["ours"][1])


def test_an_unsigned_bundle_is_refused_when_a_signature_is_required(
    copy: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    (copy / SIGNATURE).unlink()
    assert sidecar.load(copy).version  # integrity alone still loads it
    with pytest.raises(sidecar.BundleError, match=r"is not signed.*sidecar sign"):
        sidecar.load(copy, public_key=keys["ours"][1])


def test_a_password_protected_key(copy: Path, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "locked", password=b"s3cret")
    with pytest.raises(sidecar.BundleError, match="cannot sign"):
        sign_bundle(copy, private)
    sign_bundle(copy, private, password="s3cret")
    verify_bundle(copy, public)


def test_a_damaged_bundle_is_never_signed(copy: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    (copy / "baseline" / "extra.bin").write_bytes(b"x")
    (copy / SIGNATURE).unlink()
    with pytest.raises(sidecar.BundleError, match="part 'baseline' failed its hash check"):
        sign_bundle(copy, keys["ours"][0])
    assert not (copy / SIGNATURE).exists()


def test_without_the_package_the_error_names_the_extra(
    signed: Path, keys: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing", None)
    with pytest.raises(sidecar.BundleError, match=r"model-sidecar\[sign\]"):
        verify_bundle(signed, keys["ours"][1])


def test_sign_and_verify_from_the_command_line(
    copy: Path, keys: dict[str, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / SIGNATURE).unlink()
    assert main(["sign", str(copy), "--key", str(keys["ours"][0])]) == 0
    assert main(["verify", str(copy), "--key", str(keys["ours"][1])]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["verify", str(copy), "--key", str(keys["theirs"][1])]) == 1
    assert "signature does not verify" in capsys.readouterr().err
    (copy / "plan.json").write_text((copy / "plan.json").read_text() + " ")
    assert main(["verify", str(copy), "--key", str(keys["ours"][1])]) == 1
    assert main(["verify", str(copy), "--key", str(copy / "no-such.pem")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_serve_requires_the_signature(copy: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    """``serve --require-signature`` refuses an edited bundle and exits, before BentoML starts."""
    (copy / "reference" / "reference.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        [*CLI, "serve", str(copy), "--require-signature", str(keys["ours"][1])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "signature does not verify" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_signed_bundle_is_served_with_the_key_required(
    signed: Path, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The workers check SIDECAR_PUBLIC_KEY themselves, and serve the signed bundle."""
    import urllib.request

    from tests.servers import serve_sidecar

    proc, port = serve_sidecar(
        signed,
        f"sqlite:///{tmp_path / 'records.db'}",
        tmp_path / "serve.log",
        SIDECAR_PUBLIC_KEY=str(keys["ours"][1]),
    )
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"records": [{"a": 1.0, "b": 0.0}]}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = json.loads(resp.read())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert body["bundle_version"] == sidecar.load(signed).version
    assert body["predictions"] == [1]
