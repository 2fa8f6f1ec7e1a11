"""The sweep runner shared by every study: resume, progress, CSV/JSON/PNG outputs, clean interruption.

A :class:`Sweep` is a list of independent points (parameter dicts), a module-level point function that
turns one point into result rows, the study's full configuration and an optional plot function.
:func:`run_sweep` then

1. checks the output folder is writable and opens (and locks) the journal ``<name>.journal.jsonl``;
2. skips every point already in the journal and runs the others on the chosen backend (serial, local
   processes or Ray; see :mod:`aimc_lsh.studies.executors`) behind a progress bar with an ETA;
3. appends each finished point to the journal and rewrites ``<name>.csv`` atomically from it (rows in
   grid order, so the CSV never depends on execution order or on interruptions);
4. on completion writes ``<name>.png`` and ``<name>.json`` (configuration, grid size, versions, git
   revision, timings); on SIGINT/SIGTERM stops the workers, records the state in the JSON and raises
   :class:`SweepInterrupted` -- rerunning the same command computes only the missing points.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from aimc_lsh.studies.executors import PointError, PointFn, make_backend
from aimc_lsh.studies.grid import Params, check_params, point_key
from aimc_lsh.studies.journal import Journal, PointRecord, materialise_rows
from aimc_lsh.studies.provenance import provenance
from aimc_lsh.utils import atomic_path, atomic_write_text

__all__ = [
    "Sweep",
    "SweepOutputs",
    "SweepResult",
    "SweepInterrupted",
    "check_output_dir",
    "check_output_file",
    "run_sweep",
    "results_frame",
]


class SweepInterrupted(BaseException):
    """The sweep was stopped by SIGINT/SIGTERM; finished points are saved and a rerun resumes."""

    def __init__(self, signum: int, done: int, total: int, csv: Path) -> None:
        self.signum, self.done, self.total, self.csv = signum, done, total, csv
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}: {done} of {total} points saved in {csv}; "
            "rerun the same command to compute only the missing points"
        )

    @property
    def exit_code(self) -> int:
        """Conventional shell exit status for death by this signal (128 + signal number)."""
        return 128 + self.signum


@dataclass(frozen=True)
class SweepOutputs:
    """Files a sweep writes, all in one folder and named after the sweep."""

    csv: Path
    """Tidy results, one row per point x result row, parameters as columns."""
    json: Path
    """Configuration, provenance (versions, git revision, machine, command) and timings."""
    png: Path
    """Plot of the results."""
    journal: Path
    """Append-only record of finished points (what resuming reads)."""

    @classmethod
    def in_folder(cls, folder: str | os.PathLike[str], name: str) -> SweepOutputs:
        """The outputs of sweep ``name`` in ``folder``."""
        base = Path(folder)
        return cls(
            csv=base / f"{name}.csv",
            json=base / f"{name}.json",
            png=base / f"{name}.png",
            journal=base / f"{name}.journal.jsonl",
        )


@dataclass
class Sweep:
    """A study's sweep: the points, how to compute one, and how to describe and plot the results."""

    name: str
    """File stem of the outputs (letters, digits, ``-``, ``_`` and ``.``)."""
    points: list[Params]
    """Points in grid order (this order is the CSV's row order)."""
    fn: PointFn
    """Module-level function ``fn(params, context) -> list[dict]`` computing one point's result rows."""
    context: dict[str, Any] = field(default_factory=dict)
    """Settings every point receives that do not change its results (data paths, ...): not part of
    the point keys or the CSV, recorded in the JSON output."""
    config: dict[str, Any] = field(default_factory=dict)
    """The study's full configuration (JSON-serialisable), recorded in the JSON output."""
    plot: Callable[[pd.DataFrame, Path], Any] | None = None
    """``plot(results, png_path)`` drawing the finished results; None for no plot."""

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(
                f"sweep name must be non-empty and use only letters, digits, -, _, .: {self.name!r}"
            )
        if not self.points:
            raise ValueError(f"sweep {self.name!r} has no points")
        self.points = [check_params(p) for p in self.points]
        keys = [point_key(p) for p in self.points]
        if len(set(keys)) != len(keys):
            raise ValueError(f"sweep {self.name!r} lists the same point more than once")


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` returns."""

    frame: pd.DataFrame
    """The results as written to the CSV."""
    outputs: SweepOutputs
    """Paths of the files written."""
    computed: int
    """Points computed in this run."""
    resumed: int
    """Points taken from an earlier (interrupted) run."""
    seconds: float
    """Wall time of this run."""


def check_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Check that a results file can be written at ``path``, before any computation (creates nothing).

    The file may exist (it will be replaced atomically); its folder may be missing (it will be created),
    but the nearest existing ancestor must be a writable folder.

    Args:
        path: The file a study will write.
        option: The command-line option that named it (quoted in the error).

    Returns:
        ``path`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        ValueError: With a one-line explanation naming ``option`` if ``path`` is a folder, a parent of it
            is a file, or the folder it would go into is not writable.

    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"{option} {target} is a folder; give a file name (a file in it, for example)")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{option} {target}: {ancestor} is a file, so no folder can be made there")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {target}: folder {ancestor} is not writable")
    return target


def check_output_dir(folder: str | os.PathLike[str]) -> Path:
    """Make sure ``folder`` exists (creating it) and is writable, before any computation.

    Raises:
        ValueError: With a one-line explanation if the folder cannot be created or written.

    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"output folder {path} exists and is not a folder; pass --out <folder>")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / ".write-test") as tmp:
            tmp.write_bytes(b"ok")
        (path / ".write-test").unlink()
    except OSError as err:
        raise ValueError(
            f"output folder {path} is not writable ({err.strerror or err}); pass --out <folder>"
        ) from err
    return path


def results_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The tidy results as a DataFrame with the given column order."""
    return pd.DataFrame(rows, columns=columns)


def _integer_columns(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Columns whose values are all integers or missing, with at least one of each.

    pandas stores such a column as float (missing = NaN), so its integers would be written ``256.0``;
    :func:`_write_csv` writes them as integers (missing = empty field) instead.
    """
    found = []
    for column in columns:
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        if present and len(present) < len(values) and all(_is_integer(v) for v in present):
            found.append(column)
    return found


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = results_frame(rows, columns)
    written = frame.astype(dict.fromkeys(_integer_columns(rows, columns), "Int64"))
    with atomic_path(path) as tmp:
        written.to_csv(tmp, index=False, lineterminator="\n")
    return frame


class _Signals:
    """SIGINT/SIGTERM -> :class:`SweepInterrupted`, deferred while a critical section runs."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.critical = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.critical:
            self.pending = signum
        else:
            raise KeyboardInterrupt(signum)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Run a block (journal append + CSV rewrite) without being cut by a signal."""
        self.critical = True
        try:
            yield
        finally:
            self.critical = False
        if self.pending is not None:
            raise KeyboardInterrupt(self.pending)


def _describe_failure(sweep: Sweep, err: PointError) -> str:
    """The failure with the point named by the parameters that vary across the sweep (short)."""
    params = next((p for p in sweep.points if point_key(p) == err.key), None)
    if params is None:
        return str(err)
    varying = [n for n in params if len({json.dumps(p.get(n)) for p in sweep.points}) > 1]
    named = ", ".join(f"{n}={params[n]}" for n in varying) or f"key {err.key}"
    return f"point {named} failed: {err.reason}"


def _write_json(outputs: SweepOutputs, sweep: Sweep, status: str, **extra: Any) -> None:
    document = {
        "study": sweep.name,
        "status": status,
        "config": sweep.config,
        "context": sweep.context,
        "n_points": len(sweep.points),
        **extra,
        "outputs": {k: str(getattr(outputs, k)) for k in ("csv", "json", "png", "journal")},
        "provenance": provenance(),
    }
    atomic_write_text(outputs.json, json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def run_sweep(
    sweep: Sweep,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    threads: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    fresh: bool = False,
) -> SweepResult:
    """Run (or resume) a sweep and write its CSV, JSON and PNG into ``out_dir``.

    Args:
        sweep: The sweep.
        out_dir: Output folder (created if missing).
        workers: Local worker processes (or CPUs of a local Ray instance); 1 runs serially.
        threads: torch threads per point (kept equal across backends so results match).
        ray_address: Run on Ray: ``"local"`` starts a local instance, anything else is a cluster address.
        progress: Show a progress bar with an ETA on stderr.
        fresh: Discard earlier results of this sweep (its journal) instead of resuming.

    Returns:
        A :class:`SweepResult`.

    Raises:
        ValueError: If the output folder is not writable.
        aimc_lsh.studies.journal.JournalError: If another sweep holds the journal or it is damaged.
        aimc_lsh.studies.executors.PointError: If a point fails (finished points stay saved).
        SweepInterrupted: On SIGINT/SIGTERM (finished points stay saved).

    """
    start = time.perf_counter()
    outputs = SweepOutputs.in_folder(check_output_dir(out_dir), sweep.name)
    journal = Journal(outputs.journal)
    records: dict[str, PointRecord] = {}
    with journal, _Signals() as signals:
        try:
            records = journal.open(reset=fresh)
            todo = [p for p in sweep.points if point_key(p) not in records]
            resumed = len(sweep.points) - len(todo)
            rows, columns = materialise_rows(sweep.points, records)
            if rows:
                _write_csv(outputs.csv, rows, columns)
            elif outputs.csv.exists():
                outputs.csv.unlink()  # left from a run whose journal is gone: stale
            _write_json(outputs, sweep, "running", resumed_points=resumed)
            backend = make_backend(
                sweep.fn,
                sweep.context,
                workers=workers,
                threads=threads,
                ray_address=ray_address,
                n_points=len(todo),
            )
            bar = tqdm(
                total=len(sweep.points),
                initial=resumed,
                desc=sweep.name,
                unit="pt",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            point_seconds: list[float] = []
            with bar, backend:
                bar.set_postfix_str(f"{backend.name}, {resumed} resumed", refresh=True)
                by_key = {point_key(p): p for p in todo}
                for key, result_rows, seconds in backend.run(todo):
                    with signals.hold():
                        record = PointRecord(key=key, params=by_key[key], rows=result_rows, seconds=seconds)
                        journal.append(record)
                        records[key] = record
                        rows, columns = materialise_rows(sweep.points, records)
                        _write_csv(outputs.csv, rows, columns)
                    point_seconds.append(seconds)
                    bar.update(1)
        except PointError as err:
            raise PointError(_describe_failure(sweep, err), err.key, err.reason) from err
        except KeyboardInterrupt as interrupt:
            signum = interrupt.args[0] if interrupt.args and isinstance(interrupt.args[0], int) else 2
            done = sum(point_key(p) in records for p in sweep.points)
            with contextlib.suppress(Exception):
                _write_json(outputs, sweep, "interrupted", done_points=done)
            raise SweepInterrupted(signum, done, len(sweep.points), outputs.csv) from None
    rows, columns = materialise_rows(sweep.points, records)
    frame = _write_csv(outputs.csv, rows, columns)
    if sweep.plot is not None:
        sweep.plot(frame, outputs.png)
    seconds = time.perf_counter() - start
    _write_json(
        outputs,
        sweep,
        "complete",
        resumed_points=resumed,
        computed_points=len(todo),
        backend={"kind": backend.name, "workers": workers, "threads": threads, "ray_address": ray_address},
        wall_seconds=round(seconds, 3),
        point_seconds_total=round(sum(point_seconds), 3),
    )
    return SweepResult(frame=frame, outputs=outputs, computed=len(todo), resumed=resumed, seconds=seconds)
