"""The results journal of a sweep: one JSON line per finished point, appended whole, read back on resume.

The journal (``<study>.journal.jsonl`` beside the CSV) is the source of truth of a sweep. Each finished
point is appended as a single line ``{"key", "params", "rows", "seconds"}`` with one ``write`` on a file
opened in append mode, then flushed and ``fsync``-ed, so a line is either complete or (if the process
dies inside that write) a torn tail without a newline. Reading drops such a torn tail (and truncates it
away before appending again); a damaged line anywhere else is an error. A point already in the journal is
never written twice. While a sweep runs it holds an exclusive ``flock`` on the journal so two sweeps
cannot interleave their writes in the same folder.

The CSV is always *materialised* from the journal (see :func:`materialise_rows`), never appended to, so
an interrupted and resumed sweep produces exactly the bytes an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimc_lsh.studies.grid import Params, check_params, point_key

__all__ = ["JournalError", "PointRecord", "Journal", "materialise_rows"]


class JournalError(RuntimeError):
    """The journal is damaged in a way resuming cannot repair, or another sweep holds it."""


@dataclass(frozen=True)
class PointRecord:
    """One finished point as stored in the journal."""

    key: str
    """Stable key of the point (:func:`aimc_lsh.studies.grid.point_key` of ``params``)."""
    params: Params
    """The point's parameters."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Result rows the point produced (result columns only; ``params`` are merged in when writing)."""
    seconds: float = 0.0
    """Wall time the point took (informational; never written to the CSV)."""

    def to_line(self) -> bytes:
        """The record as one JSON line (UTF-8, newline-terminated)."""
        payload = {"key": self.key, "params": self.params, "rows": self.rows, "seconds": self.seconds}
        # Key order is kept (not sorted): the CSV's column order comes from the rows' order.
        return (json.dumps(payload, separators=(",", ":"), allow_nan=True) + "\n").encode()


def _parse_line(line: bytes, path: Path, number: int) -> PointRecord:
    try:
        data = json.loads(line)
        record = PointRecord(
            key=str(data["key"]),
            params=check_params(data["params"]),
            rows=[dict(r) for r in data["rows"]],
            seconds=float(data.get("seconds", 0.0)),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise JournalError(
            f"{path}: line {number} is not a valid point record ({err}); move the file away to start over"
        ) from err
    if point_key(record.params) != record.key:
        raise JournalError(f"{path}: line {number} has a key that does not match its parameters")
    return record


class Journal:
    """Append-only JSON-lines store of finished points (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Bind the journal to ``path`` (not opened until :meth:`open` or :meth:`read`)."""
        self.path = Path(path)
        self._fd: int | None = None
        self._keys: set[str] = set()

    def read(self) -> dict[str, PointRecord]:
        """Return the complete records on disk by key (first record wins), ignoring a torn last line.

        Raises:
            JournalError: If a line other than a torn last one cannot be parsed.

        """
        records, _ = self._scan()
        return records

    def _scan(self) -> tuple[dict[str, PointRecord], int]:
        """Parse the file; return the records and the byte length of its complete lines."""
        if not self.path.exists():
            return {}, 0
        data = self.path.read_bytes()
        records: dict[str, PointRecord] = {}
        good = 0
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):  # every element but the last ended in \n
            if line.strip():
                record = _parse_line(line, self.path, number)
                records.setdefault(record.key, record)
            good += len(line) + 1
        return records, good

    def open(self, *, reset: bool = False) -> dict[str, PointRecord]:
        """Lock the journal for appending, cut a torn tail, and return the records already stored.

        Args:
            reset: Empty the journal (after taking the lock) instead of reading it: start over.

        Raises:
            JournalError: If another process holds the lock or the journal is damaged.

        """
        if self._fd is not None:
            raise JournalError(f"{self.path} is already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise JournalError(
                f"another sweep is writing to {self.path}; wait for it or use another output folder"
            ) from err
        try:
            if reset:
                os.ftruncate(fd, 0)
            records, good = self._scan()
            if good != os.fstat(fd).st_size:
                os.ftruncate(fd, good)  # drop the torn tail of a killed write
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._keys = set(records)
        return records

    def append(self, record: PointRecord) -> bool:
        """Append ``record`` as one line unless its key is already stored.

        Returns:
            True if the record was written, False if the key was already in the journal.

        Raises:
            JournalError: If the journal is not open.

        """
        if self._fd is None:
            raise JournalError(f"{self.path} is not open for appending")
        if record.key in self._keys:
            return False
        line = record.to_line()
        written = os.write(self._fd, line)
        if written != len(line):  # regular files write whole buffers; be loud if not
            raise JournalError(f"short write to {self.path} ({written} of {len(line)} bytes)")
        os.fsync(self._fd)
        self._keys.add(record.key)
        return True

    def close(self) -> None:
        """Release the lock and close the file (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[PointRecord]:
        return iter(self.read().values())


def materialise_rows(
    points: Sequence[Params], records: Mapping[str, PointRecord]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Tidy rows of the finished points, in grid order, and the column order.

    Each row is the point's parameters followed by one result row of that point. Points are taken in
    the order of ``points`` (the grid order, independent of execution order) and each point's rows in the
    order the point produced them; points without a record are skipped.

    Args:
        points: The sweep's points in grid order.
        records: Finished records by key (e.g. :meth:`Journal.read`).

    Returns:
        ``(rows, columns)``: rows as dicts and the column names (parameters first, then result columns,
        each in order of first appearance).

    """
    rows: list[dict[str, Any]] = []
    param_cols: dict[str, None] = {}
    result_cols: dict[str, None] = {}
    for params in points:
        record = records.get(point_key(params))
        if record is None:
            continue
        param_cols.update(dict.fromkeys(params))
        for result in record.rows:
            result_cols.update(dict.fromkeys(k for k in result if k not in params))
            rows.append({**params, **{k: v for k, v in result.items() if k not in params}})
    columns = list(param_cols) + [c for c in result_cols if c not in param_cols]
    return rows, columns
