"""Experiments: the resumable, parallel sweep runner and the studies built on it.

Public API:
    Sweep(name, points, fn, context, config, plot), run_sweep(sweep, out_dir, *, workers, threads,
        ray_address, progress, fresh) -> SweepResult, SweepOutputs, SweepInterrupted, check_output_dir,
        check_output_file
    product_grid(axes, base, where), point_key(params), point_seed(key), canonical_json(params)
    Journal, PointRecord, JournalError, materialise_rows
    make_backend, SerialBackend, ProcessBackend, RayBackend, run_point, PointError
    plot_bands(frame, x, y, path, ...), summarise(frame, x, y, group_by)
    provenance(), package_versions(), git_revision()
The study definitions (what a point computes) live in :mod:`aimc_lsh.studies.drift`,
:mod:`aimc_lsh.studies.noise`, :mod:`aimc_lsh.studies.ksweep` and :mod:`aimc_lsh.studies.adc`; the
command-line scripts in ``studies/`` wrap them with :mod:`aimc_lsh.studies.cli`.
"""

from aimc_lsh.studies.executors import (
    Backend,
    PointError,
    ProcessBackend,
    RayBackend,
    SerialBackend,
    make_backend,
    run_point,
)
from aimc_lsh.studies.grid import canonical_json, check_params, point_key, point_seed, product_grid
from aimc_lsh.studies.journal import Journal, JournalError, PointRecord, materialise_rows
from aimc_lsh.studies.plotting import plot_bands, summarise
from aimc_lsh.studies.provenance import git_revision, package_versions, provenance
from aimc_lsh.studies.runner import (
    Sweep,
    SweepInterrupted,
    SweepOutputs,
    SweepResult,
    check_output_dir,
    check_output_file,
    run_sweep,
)

__all__ = [
    "Backend",
    "Journal",
    "JournalError",
    "PointError",
    "PointRecord",
    "ProcessBackend",
    "RayBackend",
    "SerialBackend",
    "Sweep",
    "SweepInterrupted",
    "SweepOutputs",
    "SweepResult",
    "canonical_json",
    "check_output_dir",
    "check_output_file",
    "check_params",
    "git_revision",
    "make_backend",
    "materialise_rows",
    "package_versions",
    "plot_bands",
    "point_key",
    "point_seed",
    "product_grid",
    "provenance",
    "run_point",
    "run_sweep",
    "summarise",
]
