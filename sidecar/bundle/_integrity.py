"""What a bundle's files may be, checked before any loader opens them.

A part directory holds plain files and directories only: a symbolic link, a
device, a FIFO or socket, and a file with more than one hard link (which may
be the same inode as a file outside the bundle) are refused. Every file is
hashed through a descriptor opened with ``O_NOFOLLOW``, so what is hashed is
what is there.

Resource limits, before anything is inflated: a part's files may hold at most
``max_part_bytes`` (512 MiB by default) -- counting a zip file (``.npz``,
``.skops``, a torch ``.pt``) by the sizes its entries *declare* once inflated,
not by its size on disk. Each ``.npy`` entry's header (dtype and shape) must
account for exactly the bytes its entry declares, so an array cannot claim
more memory than was counted. :mod:`zipfile` never inflates an entry past its
declared size (it stops there and checks the CRC), and deflate cannot
compress better than about 1032:1, so a small file that would inflate to
gigabytes is refused here, by its declared sizes, before it is read.
"""

from __future__ import annotations

import ast
import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .._errors import BundleError

__all__ = [
    "MAX_PART_BYTES",
    "PartFiles",
    "check_plain_file",
    "confined_file",
    "read_part",
    "scan_part",
]

#: the default most bytes one part may hold, inflated (``SIDECAR_MAX_PART_BYTES``)
MAX_PART_BYTES = 512 * 1024 * 1024

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PartFiles:
    """A part directory as it was checked: its sha256 and its files (relative POSIX paths)."""

    sha256: str
    files: frozenset[str]
    inflated_bytes: int
    #: What is wrong inside the files (an unreadable zip, a bad ``.npy`` header, too many
    #: bytes once inflated), raised by :meth:`check` *after* the hash is compared: a file
    #: changed after saving is reported as such, not as whatever its changed bytes now say.
    problem: str | None = None

    def check(self) -> None:
        """Raise :class:`BundleError` for :attr:`problem`, if any."""
        if self.problem is not None:
            raise BundleError(self.problem)


def check_plain_file(path: Path, *, what: str) -> None:
    """Refuse ``path`` unless it is a regular file with one link (not a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # the caller reports a missing file in its own words
    _check_stat(st, path, what)


def _check_stat(st: os.stat_result, path: Path, what: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise BundleError(
            f"{what}: {path} is a symbolic link; a bundle holds its own files only (links are "
            "never followed). Replace the link with a copy of the file."
        )
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(
            f"{what}: {path} must be a regular file; got a {_kind(st.st_mode)}. A bundle holds "
            "plain files only."
        )
    if st.st_nlink > 1:
        raise BundleError(
            f"{what}: {path} has {st.st_nlink} hard links, so it may be a file outside the "
            "bundle; a bundle holds files of its own only. Copy the bundle (cp -r) instead of "
            "linking it."
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return "special file"


def scan_part(
    directory: Path, part: str, *, max_part_bytes: int = MAX_PART_BYTES, framed: bool = True
) -> PartFiles:
    """Check and hash a part directory: sha256 over each file's relative path and bytes.

    Files in sorted order; each is framed by its path, a NUL and its size (8
    bytes, big-endian), so no two different sets of files hash alike. Without
    ``framed`` (bundle format 1) the size is left out -- which let the bytes of
    one file be read as the end of one file and the start of another.
    """
    where = f"part {part!r}"
    files = _part_files(directory, part)
    digest = hashlib.sha256()
    total = 0
    problem: str | None = None
    for rel in files:
        size, inside = _hash_file(directory, rel, digest, where, f"{part}/{rel}", framed)
        total += size
        problem = problem or inside
        if total > max_part_bytes and problem is None:
            problem = (
                f"{where}: its files hold more than {max_part_bytes} bytes once inflated "
                f"(reached at {part}/{rel}); the most a part may hold is max_part_bytes="
                f"{max_part_bytes} (SIDECAR_MAX_PART_BYTES). Raise it only for a bundle you "
                "trust."
            )
    return PartFiles(digest.hexdigest(), frozenset(files), total, problem)


def _part_files(directory: Path, part: str) -> list[str]:
    """The part directory's files (relative POSIX paths) in hashing order, all checked plain."""
    where = f"part {part!r}"
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise BundleError(f"{directory.parent} is missing its {part!r} part.") from None
    if stat.S_ISLNK(st.st_mode):
        raise BundleError(
            f"{where}: {directory} is a symbolic link; a part must be a directory of the bundle "
            "itself (links are never followed)."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise BundleError(f"{where}: {directory} must be a directory; got a {_kind(st.st_mode)}.")
    return sorted(_walk(directory, where), key=lambda rel: rel.split("/"))


def read_part(directory: Path, part: str, *, framed: bool = True) -> tuple[str, dict[str, bytes]]:
    """A part's files read into memory, and their sha256 as :func:`scan_part` computes it.

    For loading a part after its check (:class:`sidecar.runtimes._lazy.LazyPredictor`): the
    caller compares the hash with the manifest's and deserialises these very bytes,
    so nothing changed on disk in between can be what is loaded.
    """
    where = f"part {part!r}"
    digest = hashlib.sha256()
    out: dict[str, bytes] = {}
    for rel in _part_files(directory, part):
        path = directory / rel
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            _check_stat(os.fstat(fh.fileno()), path, where)
            data = fh.read()
        _frame(digest, rel, len(data), framed)
        digest.update(data)
        _end(digest, framed)
        out[rel] = data
    return digest.hexdigest(), out


def _walk(directory: Path, where: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                out.extend(_walk(Path(entry.path), where, rel + "/"))
            else:
                _check_stat(st, Path(entry.path), where)
                out.append(rel)
    return out


def _frame(digest: hashlib._Hash, rel: str, size: int, framed: bool) -> None:
    """What precedes a file's bytes in its part's hash: its path, a NUL and (framed) its size."""
    digest.update(rel.encode() + b"\0")
    if framed:
        digest.update(size.to_bytes(8, "big"))


def _end(digest: hashlib._Hash, framed: bool) -> None:
    """What follows a file's bytes in its part's hash: a NUL, in format 1 (no size frame)."""
    if not framed:
        digest.update(b"\0")


def _hash_file(
    directory: Path, rel: str, digest: hashlib._Hash, where: str, name: str, framed: bool
) -> tuple[int, str | None]:
    """Feed the file ``rel``, framed (:func:`_frame`), to ``digest``; return the bytes it holds
    inflated and what is wrong inside it (a zip that cannot be read), if anything."""
    path = directory / rel
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BundleError(f"{where}: {path} cannot be opened as a plain file: {exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        _check_stat(st, path, where)  # the file opened is the one checked
        _frame(digest, rel, st.st_size, framed)
        head = fh.read(4)
        digest.update(head)
        size = len(head)
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
        _end(digest, framed)
    if framed and size != st.st_size:
        raise BundleError(f"{where}: {path} changed while it was read; refusing it.")
    if head == _ZIP_MAGIC:
        try:
            return max(size, _zip_inflated_bytes(path, where, name)), None
        except BundleError as exc:
            return size, str(exc)
    return size, None


def _zip_inflated_bytes(path: Path, where: str, name: str) -> int:
    """The bytes a zip's entries declare once inflated; every ``.npy`` header must agree."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():
                total += info.file_size
                if info.filename.endswith(".npy"):
                    _check_npy_entry(archive, info, where, f"{name}:{info.filename}")
            return total
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{where}: {name} is not a readable zip file: {exc}") from exc


def _check_npy_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, name: str
) -> None:
    """The array's header (dtype, shape) must account for exactly the entry's declared size."""
    with archive.open(info) as fh:
        head = fh.read(10)
        if len(head) < 10 or not head.startswith(_NPY_MAGIC):
            raise BundleError(f"{where}: {name} is not a .npy array (bad magic).")
        major = head[6]
        if major == 1:
            header_len, start = int.from_bytes(head[8:10], "little"), 10
        else:
            head += fh.read(2)
            header_len, start = int.from_bytes(head[8:12], "little"), 12
        if header_len > 65535:
            raise BundleError(f"{where}: {name} has a header of {header_len} bytes (too long).")
        header = fh.read(header_len)
    try:
        meta = ast.literal_eval(header.decode("latin1"))
        descr, shape = meta["descr"], tuple(int(n) for n in meta["shape"])
        import numpy as np

        itemsize = np.dtype(descr).itemsize
    except Exception as exc:  # a malformed header: literal_eval, dtype and int all raise
        raise BundleError(f"{where}: {name} has an unreadable .npy header: {exc}") from exc
    if any(n < 0 for n in shape):
        raise BundleError(f"{where}: {name} declares a negative shape {shape}.")
    nbytes = itemsize
    for n in shape:
        nbytes *= n
    declared = info.file_size - start - header_len
    if nbytes != declared:
        raise BundleError(
            f"{where}: {name} declares an array of shape {shape} and dtype {descr!r} "
            f"({nbytes} bytes) in an entry of {declared} bytes; the header does not match the "
            "data, so the array is refused before it is inflated."
        )


def confined_file(directory: Path, value: object, *, part: str, field: str) -> Path:
    """``directory / value`` for a manifest field naming a file of the part, checked.

    The name must be a relative, normalised POSIX path inside the part (no
    ``..``, no absolute path, no backslash) naming a plain file there.
    """
    expected = f"a relative file name inside {part}/"
    if not isinstance(value, str) or not value:
        raise BundleError(f"part {part!r} field `{field}` must be {expected}; got {value!r}.")
    pure = PurePosixPath(value)
    if (
        pure.is_absolute()
        or "\\" in value
        or "\0" in value
        or value.startswith("/")
        or any(p in ("..", ".", "") for p in value.split("/"))
    ):
        raise BundleError(
            f"part {part!r} field `{field}` must be {expected} (no '..', no absolute path); "
            f"got {value!r}."
        )
    path = directory / value
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(
            f"part {part!r} field `{field}` names {value!r}, which is not a file in {part}/."
        ) from None
    _check_stat(st, path, f"part {part!r} field `{field}`")
    return path
