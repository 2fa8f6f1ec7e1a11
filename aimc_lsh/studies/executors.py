"""Where sweep points run: in this process, in local worker processes, or on a Ray cluster.

Every backend runs the same wrapper, :func:`run_point`, which tunes the allocator (see
:func:`tune_allocator`), fixes the torch thread count, seeds
Python/NumPy/torch from the point's key and calls the study's point function. Results therefore depend
only on the point's parameters, never on the backend, the worker or the order of execution, which is why
``--workers N`` and ``--ray-address`` give the same CSV as a serial run.

Backends are context managers whose :meth:`Backend.run` yields ``(key, rows, seconds)`` as points finish
(in completion order). Leaving the context early (an exception, Ctrl-C, SIGTERM) cancels what has not
started and stops the workers this backend started.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from aimc_lsh.studies.grid import Params, point_key, point_seed
from aimc_lsh.utils import set_seed, tune_allocator

__all__ = [
    "PointFn",
    "PointError",
    "run_point",
    "tune_allocator",
    "Backend",
    "SerialBackend",
    "ProcessBackend",
    "RayBackend",
    "make_backend",
]

PointFn = Callable[[Params, dict[str, Any]], list[dict[str, Any]]]
"""A study's point function ``fn(params, context) -> rows``: the point's parameters and the sweep's
shared context (paths and other settings that do not change results) -> result rows (dicts of JSON
scalars). Must be importable (defined at module level) so worker processes can unpickle it."""

_SCALARS = (str, int, float, bool, type(None))


class PointError(RuntimeError):
    """A point function failed or returned malformed rows; the message names the point."""

    def __init__(self, message: str, key: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        """Key of the failed point."""
        self.reason = reason if reason is not None else message
        """What went wrong (``ExceptionType: message``), without the point's parameters."""

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.key, self.reason))


def _check_rows(rows: object, params: Params) -> list[dict[str, Any]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"a point function must return a list of dicts, got {type(rows).__name__}")
    for row in rows:
        for name, value in row.items():
            if not isinstance(name, str) or not isinstance(value, _SCALARS):
                raise TypeError(
                    f"result column {name!r} must be a string naming a str/int/float/bool/None value, "
                    f"got {type(value).__name__}"
                )
            if name in params:
                raise ValueError(f"result column {name!r} repeats a parameter of the point")
    return rows


def run_point(
    fn: PointFn, params: Params, context: dict[str, Any], threads: int
) -> tuple[str, list[dict[str, Any]], float]:
    """Run one point reproducibly: fixed torch threads, global RNGs seeded from the point key.

    Args:
        fn: The study's point function.
        params: The point's parameters.
        context: The sweep's shared context, passed to ``fn`` unchanged.
        threads: ``torch.set_num_threads`` value for the point.

    Returns:
        ``(key, rows, seconds)``.

    Raises:
        PointError: If ``fn`` raises or returns malformed rows (the original error is chained).

    """
    key = point_key(params)
    tune_allocator()
    torch.set_num_threads(threads)
    set_seed(point_seed(key))
    start = time.perf_counter()
    try:
        rows = _check_rows(fn(dict(params), context), params)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        raise PointError(f"point {params} failed: {reason}", key, reason) from err
    return key, rows, time.perf_counter() - start


class Backend:
    """Runs points; subclasses implement :meth:`run` and :meth:`close`."""

    name = "backend"

    def __init__(self, fn: PointFn, context: dict[str, Any] | None = None, threads: int = 1) -> None:
        """Store the point function, the shared context and the per-point torch thread count."""
        self.fn = fn
        self.context = dict(context or {})
        self.threads = threads

    def run(self, points: Sequence[Params]) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
        """Yield ``(key, rows, seconds)`` for every point as it finishes."""
        raise NotImplementedError

    def close(self, abort: bool = False) -> None:
        """Release what the backend started (idempotent); ``abort`` stops unfinished work at once."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


class SerialBackend(Backend):
    """Runs points one after another in this process, in grid order."""

    name = "serial"

    def run(self, points: Sequence[Params]) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
        """Yield each point's result right after computing it."""
        for params in points:
            yield run_point(self.fn, params, self.context, self.threads)


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: let only the parent react to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing semaphore; a worker terminated on interruption would
    # leak it (and the resource tracker would warn). Workers never draw progress bars: a thread lock.
    from tqdm.std import tqdm

    tqdm.set_lock(threading.RLock())


class ProcessBackend(Backend):
    """Runs points in ``workers`` local processes (``spawn`` start method: safe with torch threads)."""

    name = "processes"

    def __init__(
        self, fn: PointFn, context: dict[str, Any] | None = None, threads: int = 1, workers: int = 2
    ) -> None:
        """Create the pool lazily on :meth:`run`."""
        super().__init__(fn, context, threads)
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def run(self, points: Sequence[Params]) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
        """Submit every point and yield results in completion order."""
        if not points:
            return
        ctx = mp.get_context("spawn")
        self._pool = cf.ProcessPoolExecutor(
            max_workers=min(self.workers, len(points)), mp_context=ctx, initializer=_worker_init
        )
        futures = [self._pool.submit(run_point, self.fn, p, self.context, self.threads) for p in points]
        for future in cf.as_completed(futures):
            yield future.result()

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; with ``abort``, cancel queued points and terminate the workers at once."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not abort:
            pool.shutdown(wait=True)
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)


def _package_parent() -> str:
    import aimc_lsh

    return str(Path(aimc_lsh.__file__).resolve().parent.parent)


class RayBackend(Backend):
    """Runs points as Ray tasks (one CPU each) on a local instance or an existing cluster.

    ``address="local"`` starts a private local Ray instance with ``workers`` CPUs (shut down afterwards);
    any other address (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) connects to a running
    cluster. Workers import this package through ``PYTHONPATH`` (set to the folder holding ``aimc_lsh``)
    and, for a remote cluster, also receive the package itself as a Ray ``py_modules`` entry.
    """

    name = "ray"

    def __init__(
        self,
        fn: PointFn,
        context: dict[str, Any] | None = None,
        threads: int = 1,
        *,
        address: str = "local",
        workers: int = 2,
        object_store_mb: int = 100,
    ) -> None:
        """Remember the connection settings; Ray is started on :meth:`run`."""
        super().__init__(fn, context, threads)
        self.address = address
        self.workers = workers
        self.object_store_mb = object_store_mb
        self._pending: list[Any] = []
        self._started = False

    def _init(self) -> Any:
        import ray

        import aimc_lsh

        parent = _package_parent()
        pythonpath = os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH", "")) if p)
        runtime_env: dict[str, Any] = {"env_vars": {"PYTHONPATH": pythonpath}}
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address == "local":
            kwargs.update(
                num_cpus=self.workers,
                object_store_memory=self.object_store_mb * 1024 * 1024,
            )
        else:
            runtime_env["py_modules"] = [str(Path(aimc_lsh.__file__).resolve().parent)]
        ray.init(address=self.address, runtime_env=runtime_env, **kwargs)
        self._started = True
        return ray

    def run(self, points: Sequence[Params]) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
        """Submit every point as a task and yield results in completion order."""
        if not points:
            return
        ray = self._init()
        task = ray.remote(num_cpus=1, max_retries=0)(run_point)
        self._pending = [task.remote(self.fn, p, self.context, self.threads) for p in points]
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if isinstance(err.cause, PointError) else PointError(str(err))
                raise cause from err

    def close(self, abort: bool = False) -> None:
        """Cancel unfinished tasks and disconnect (stopping the instance when it was started here)."""
        if not self._started:
            return
        import ray

        for ref in self._pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass
        self._pending = []
        ray.shutdown()
        self._started = False


def auto_workers() -> int:
    """Default worker count: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_backend(
    fn: PointFn,
    context: dict[str, Any] | None = None,
    *,
    workers: int = 1,
    threads: int = 1,
    ray_address: str | None = None,
    n_points: int | None = None,
) -> Backend:
    """Pick the backend for the options: Ray if ``ray_address``, processes if ``workers > 1``, else serial.

    Args:
        fn: The study's point function.
        context: The sweep's shared context.
        workers: Local processes (or CPUs of a local Ray instance).
        threads: torch threads per point.
        ray_address: ``"local"`` or a Ray cluster address; None for no Ray.
        n_points: Points still to run; a single point always runs serially without Ray.

    Returns:
        An unstarted backend (use it as a context manager).

    Raises:
        ValueError: If ``workers`` or ``threads`` is not a positive integer.

    """
    for name, value in (("workers", workers), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ray_address:
        return RayBackend(fn, context, threads, address=ray_address, workers=workers)
    if workers > 1 and (n_points is None or n_points > 1):
        return ProcessBackend(fn, context, threads, workers=workers)
    return SerialBackend(fn, context, threads)
