"""Build a small C source file into a shared library once per machine and cache it.

The library's fast inference paths (e.g. the Hamming stage of hashed layers) are plain C files with
no dependency, compiled with the system's C compiler (``$CC``, else ``cc``) the first time they are
needed. The result is cached under ``$AIMC_LSH_CACHE/native`` (else ``~/.cache/aimc_lsh/native``)
with a name that hashes the source, the compiler's version, the flags and this CPU's model and feature
flags, so an edited source, another compiler or another machine sharing the home folder never loads a
stale or foreign binary. The file is written atomically (compiled to a temporary name, then moved).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from aimc_lsh.utils.io import atomic_path
from aimc_lsh.utils.locking import exclusive_lock

__all__ = ["NativeBuildError", "build_shared_library", "native_cache_dir"]

DEFAULT_FLAGS = ("-O3", "-march=native", "-std=c99", "-shared", "-fPIC")
"""Compiler flags: optimised for this CPU (the cache name includes the CPU, see the module docstring)."""


class NativeBuildError(RuntimeError):
    """No C compiler was found, or it failed on the source."""


def native_cache_dir() -> Path:
    """Folder of compiled libraries: ``$AIMC_LSH_CACHE/native`` or ``~/.cache/aimc_lsh/native``."""
    root = os.environ.get("AIMC_LSH_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "aimc_lsh") / "native"


def _compiler() -> list[str]:
    """The C compiler command: ``$CC`` split like a shell would, else ``cc``."""
    return shlex.split(os.environ.get("CC", "") or "cc")


def _compiler_version(compiler: Sequence[str]) -> str:
    """First line of ``<compiler> --version``; raises NativeBuildError if the compiler does not run."""
    try:
        result = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        message = f"C compiler {shlex.join(compiler)!r} could not be run ({error}); set CC"
        raise NativeBuildError(message) from None
    if result.returncode != 0:
        stderr = result.stderr.strip()
        raise NativeBuildError(f"C compiler {shlex.join(compiler)!r} --version failed: {stderr}")
    return (result.stdout.splitlines() or [""])[0]


def _cpu_identity() -> str:
    """This CPU's architecture, model name and feature flags (what -march=native compiles for)."""
    parts = [platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part"):
                    parts.append(line.strip())
                if line.strip() == "":  # the first processor's block is enough
                    break
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def build_shared_library(
    source: str | os.PathLike[str],
    *,
    flags: Sequence[str] = DEFAULT_FLAGS,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Compile ``source`` into a shared library, or return the cached build of the same inputs.

    Args:
        source: A C source file.
        flags: Compiler flags (the output ``-o`` is added here).
        cache_dir: Where libraries are cached (default :func:`native_cache_dir`).

    Returns:
        Path of the shared library.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        NativeBuildError: No working compiler, or the compilation failed (the message ends with the
            compiler's error output).

    """
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"C source {source} not found")
    compiler = _compiler()
    identity = hashlib.sha256()
    for part in (source.read_bytes(), _compiler_version(compiler).encode(), " ".join(flags).encode()):
        identity.update(part + b"\0")
    identity.update(_cpu_identity().encode())
    folder = Path(cache_dir) if cache_dir is not None else native_cache_dir()
    target = folder / f"{source.stem}-{identity.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.with_name(target.name + ".lock")):
        if target.is_file():  # another process built it while this one waited
            return target
        with atomic_path(target) as tmp:  # a failed or interrupted build leaves no library behind
            command = [*compiler, *flags, "-o", str(tmp), str(source)]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as error:
                message = f"compiling {source.name} failed ({shlex.join(command)}): {error}"
                raise NativeBuildError(message) from None
            if result.returncode != 0:
                raise NativeBuildError(
                    f"compiling {source.name} failed ({shlex.join(command)}): {result.stderr.strip()[-2000:]}"
                )
    return target
