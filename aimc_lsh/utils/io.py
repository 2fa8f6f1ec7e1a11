"""Atomic file writes and file checksums shared by the whole package.

Everything that writes a results file, a downloaded archive or a cached checkpoint goes through
:func:`atomic_write_bytes` / :func:`atomic_write_text` (or :func:`atomic_path` for writers that need a
path), so a crash or Ctrl-C never leaves a half-written file under the final name: data is written to
a temporary file in the same directory, flushed and ``fsync``-ed, then moved over the target with
:func:`os.replace` (atomic on POSIX and Windows when source and target share a file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file", "file_digest"]

_CHUNK = 1 << 20


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds.

    Use it for writers that insist on a file name (``torch.save``, ``DataFrame.to_csv``,
    ``Figure.savefig``)::

        with atomic_path("results/table.csv") as tmp:
            frame.to_csv(tmp)

    The parent directory is created if missing. On an exception the temporary file is removed and
    the previous content of ``path`` (if any) is left untouched.

    Args:
        path: Final destination.

    Yields:
        An empty temporary file in the same directory (same suffix as ``path``) to overwrite.

    Raises:
        IsADirectoryError: If ``path`` is an existing folder (checked before the block runs).

    """
    final = Path(path)
    if final.is_dir():  # os.replace would fail only after the data was written
        raise IsADirectoryError(f"cannot write {final}: it is a folder; give a file name")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    Args:
        path: Destination file; its parent directory is created if missing.
        data: The complete file content.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        TypeError: If ``data`` is not bytes-like.

    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"atomic_write_bytes expects bytes, got {type(data).__name__}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`.

    Args:
        path: Destination file; its parent directory is created if missing.
        text: The complete file content.
        encoding: Text encoding (default UTF-8).

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        TypeError: If ``text`` is not a string.

    """
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text expects str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks.

    Args:
        path: File to hash.
        algorithm: Any name :func:`hashlib.new` accepts (``"sha256"``, ``"md5"``, ...).

    Returns:
        Lower-case hexadecimal digest.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If ``algorithm`` is unknown.

    """
    try:
        hasher = hashlib.new(algorithm)
    except ValueError as err:
        raise ValueError(
            f"unknown hash algorithm {algorithm!r}; allowed: {sorted(hashlib.algorithms_available)}"
        ) from err
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file (lower case); shorthand for ``file_digest(path, "sha256")``."""
    return file_digest(path, "sha256")
