"""An exclusive lock on a file, held for the length of a ``with`` block (POSIX ``flock``).

Used where two processes could otherwise do the same long job into the same file at once, e.g. two
sweeps that both need the same default checkpoint trained: the second waits for the first and then
finds the finished file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["exclusive_lock"]


@contextlib.contextmanager
def exclusive_lock(
    path: str | os.PathLike[str], *, on_wait: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if missing, left in place) until the block ends.

    Blocks while another process holds it; the lock goes with the process, so a killed holder never
    leaves it taken.

    Args:
        path: The lock file (e.g. ``<target>.lock``); its parent folder is created if needed.
        on_wait: Called once with ``path`` if the lock is taken and this call has to wait for it.

    Yields:
        ``path`` as a :class:`~pathlib.Path`.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
