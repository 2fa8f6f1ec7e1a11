"""Provenance recorded beside every study's results: package versions, git revision, machine, command.

Everything here is best effort and never raises: a missing package is reported as ``None``, a checkout
without git as ``{"revision": None, ...}``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "package_versions", "git_revision", "machine_info", "provenance"]

PACKAGES = ("aimc-lsh", "torch", "aihwkit", "numpy", "scipy", "pandas", "matplotlib", "ray", "tqdm", "PyYAML")
"""Distributions whose installed versions are recorded."""


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None when not installed), plus Python."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Git commit of the checkout holding ``path`` (default: this package) and whether it has changes.

    Returns:
        ``{"revision": sha or None, "dirty": bool or None}``.

    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def _git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """Platform, processor count and torch thread count of this process."""
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": cpus,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def provenance() -> dict[str, Any]:
    """Everything above plus the command line and the current UTC time."""
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else [],
        "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "git": git_revision(),
        "machine": machine_info(),
    }
