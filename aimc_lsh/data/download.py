"""Checksum-verified, atomic downloads (http, https, file URLs) and safe tar extraction.

:func:`download_file` streams a URL into a temporary file next to the destination while hashing it,
verifies the digest and only then moves the file into place, so the destination either holds the
verified file or is untouched. :func:`safe_extract_tar` unpacks only regular files and directories that
stay inside the target folder (no absolute paths, ``..``, links or device files).
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from aimc_lsh.utils import atomic_path, file_digest

__all__ = ["ChecksumError", "Checksum", "verify_checksum", "download_file", "safe_extract_tar"]

ALLOWED_SCHEMES = ("http", "https", "file")
_CHUNK = 1 << 16
_HEX = re.compile(r"^[0-9a-f]+$")


class ChecksumError(ValueError):
    """A file's digest differs from the expected one (corrupt, truncated or wrong file)."""


@dataclass(frozen=True)
class Checksum:
    """Expected digests of a file; at least one field must be set and every set field is checked."""

    sha256: str | None = None
    """Full SHA-256 hex digest (64 characters)."""
    sha256_prefix: str | None = None
    """Leading hex digits of the SHA-256 digest (at least 8), for files published only with the
    torch-hub convention of putting the first 8 digits in the file name. Weaker than ``sha256``."""
    md5: str | None = None
    """Full MD5 hex digest (32 characters), e.g. the digests the CIFAR page publishes."""

    def __post_init__(self) -> None:
        for name, value, lengths in (
            ("sha256", self.sha256, (64, 64)),
            ("sha256_prefix", self.sha256_prefix, (8, 64)),
            ("md5", self.md5, (32, 32)),
        ):
            if value is None:
                continue
            if not isinstance(value, str) or not _HEX.match(value.lower()):
                raise ValueError(f"{name} must be a hexadecimal string, got {value!r}")
            if not lengths[0] <= len(value) <= lengths[1]:
                raise ValueError(f"{name} must have {lengths[0]}..{lengths[1]} hex digits, got {len(value)}")
            object.__setattr__(self, name, value.lower())
        if self.sha256 is None and self.sha256_prefix is None and self.md5 is None:
            raise ValueError("a Checksum needs at least one of sha256, sha256_prefix or md5")

    def check_digests(self, sha256: str | None, md5: str | None, what: str) -> None:
        """Compare computed digests with the expected ones.

        Args:
            sha256: Computed SHA-256 hex digest (may be None if no SHA-256 is expected).
            md5: Computed MD5 hex digest (may be None if no MD5 is expected).
            what: Name of the file or URL for the error message.

        Raises:
            ChecksumError: Naming the file, the expected and the actual digest.

        """
        if self.sha256 is not None and sha256 != self.sha256:
            raise ChecksumError(f"sha256 mismatch for {what}: expected {self.sha256}, got {sha256}")
        if self.sha256_prefix is not None and not (sha256 or "").startswith(self.sha256_prefix):
            raise ChecksumError(
                f"sha256 mismatch for {what}: expected a digest starting with "
                f"{self.sha256_prefix}, got {sha256}"
            )
        if self.md5 is not None and md5 != self.md5:
            raise ChecksumError(f"md5 mismatch for {what}: expected {self.md5}, got {md5}")

    def verify_bytes(self, data: bytes, what: str) -> None:
        """Check in-memory bytes (e.g. a checkpoint read once, hashed, then parsed)."""
        sha = hashlib.sha256(data).hexdigest() if (self.sha256 or self.sha256_prefix) else None
        md5 = hashlib.md5(data).hexdigest() if self.md5 else None
        self.check_digests(sha, md5, what)


def verify_checksum(path: str | os.PathLike[str], checksum: Checksum) -> Path:
    """Verify a file on disk against ``checksum``.

    Args:
        path: File to check.
        checksum: Expected digests.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: If the file does not exist.
        ChecksumError: If a digest differs.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot verify {path}: no such file")
    sha = file_digest(path, "sha256") if (checksum.sha256 or checksum.sha256_prefix) else None
    md5 = file_digest(path, "md5") if checksum.md5 else None
    checksum.check_digests(sha, md5, str(path))
    return path


def _checksum_from_args(sha256: str | None, sha256_prefix: str | None, md5: str | None) -> Checksum:
    try:
        return Checksum(sha256=sha256, sha256_prefix=sha256_prefix, md5=md5)
    except ValueError as err:
        raise ValueError(f"download_file: {err} (unverified downloads are not allowed)") from err


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    sha256_prefix: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its checksum.

    If ``dest`` already exists and matches the checksum, nothing is downloaded. Otherwise the body is
    streamed into a temporary file in ``dest``'s folder while being hashed; the file is moved to
    ``dest`` only when every given digest matches, so a failed or interrupted download never leaves a
    file under the final name.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: Destination file; its folder is created if missing.
        sha256: Expected full SHA-256 hex digest.
        sha256_prefix: Expected leading SHA-256 hex digits (>= 8), when only a prefix is published.
        md5: Expected MD5 hex digest.
        progress: Show a tqdm progress bar (bytes).
        timeout: Socket timeout in seconds for network URLs.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If no checksum is given or the URL scheme is not http, https or file.
        ChecksumError: If the downloaded bytes do not match; ``dest`` is left untouched.
        OSError: If the URL cannot be opened (the message names the URL).

    """
    checksum = _checksum_from_args(sha256, sha256_prefix, md5)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {scheme!r} in {url!r}; allowed: {', '.join(ALLOWED_SCHEMES)}"
        )
    dest = Path(dest)
    if dest.is_file():
        try:
            return verify_checksum(dest, checksum)
        except ChecksumError:
            pass  # stale or corrupt copy: download again and replace it atomically
    request = urllib.request.Request(url, headers={"User-Agent": "aimc-lsh"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - scheme checked above
    except (urllib.error.URLError, OSError) as err:
        raise OSError(f"cannot download {url}: {err}") from err
    sha_hasher, md5_hasher = hashlib.sha256(), hashlib.md5()
    with response, atomic_path(dest) as tmp:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with (
            open(tmp, "wb") as handle,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                handle.write(chunk)
                sha_hasher.update(chunk)
                md5_hasher.update(chunk)
                bar.update(len(chunk))
        checksum.check_digests(
            sha_hasher.hexdigest(), md5_hasher.hexdigest(), f"{url} (downloaded to {dest})"
        )
    return dest


def safe_extract_tar(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract a (possibly compressed) tar archive, refusing anything that could escape ``dest``.

    Every member must be a regular file or a directory whose normalised path stays inside ``dest``;
    absolute paths, ``..`` components, symbolic/hard links and device files are rejected before
    anything is written.

    Args:
        archive: Path of the ``.tar``/``.tar.gz`` file.
        dest: Folder to extract into (created if missing).

    Returns:
        The extracted file paths.

    Raises:
        ValueError: If the archive contains an unsafe member (the message names it).
        tarfile.TarError: If the archive is not a readable tar file.

    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"unsafe member {member.name!r} in {archive}: only files and folders are allowed"
                )
            target = (dest / member.name).resolve()
            if (
                os.path.isabs(member.name)
                or ".." in Path(member.name).parts
                or not target.is_relative_to(dest)
            ):
                raise ValueError(f"unsafe member {member.name!r} in {archive}: path escapes {dest}")
        tar.extractall(dest, members=members, filter="data")
    return [dest / m.name for m in members if m.isfile()]
