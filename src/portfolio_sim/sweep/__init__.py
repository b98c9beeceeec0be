"""Research sweeps: experiment specs, designs, a SQL results store, executors, resume, analysis.

The pieces, each importable on its own (nothing heavy is imported here, so worker processes that only
need :func:`portfolio_sim.sweep.task.run_task` stay light):

- :mod:`~portfolio_sim.sweep.spec`       experiment specs (TOML) and their validation
- :mod:`~portfolio_sim.sweep.design`     grid / list / LHS / Sobol / Morris points and their seeds
- :mod:`~portfolio_sim.sweep.task`       the pure function that runs one (point, replicate)
- :mod:`~portfolio_sim.sweep.store`      SQLAlchemy 2 tables and the single-writer store
- :mod:`~portfolio_sim.sweep.executors`  serial, process-pool and Dask executors (concurrent.futures)
- :mod:`~portfolio_sim.sweep.runner`     `run_sweep`: resume, failures, retries, progress
- :mod:`~portfolio_sim.sweep.analysis`   pandas API over a results database, sensitivity indices
- :mod:`~portfolio_sim.sweep.plots`      plotly helpers for sweeps
- :mod:`~portfolio_sim.sweep.batch`      a model class for `mesa.batch_run`

See docs/SWEEPS.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_spec", "run_sweep", "Results", "BatchModel"]


def __getattr__(name: str) -> Any:  # lazy re-exports
    if name == "load_spec":
        from portfolio_sim.sweep.spec import load_spec
        return load_spec
    if name == "run_sweep":
        from portfolio_sim.sweep.runner import run_sweep
        return run_sweep
    if name == "Results":
        from portfolio_sim.sweep.analysis import Results
        return Results
    if name == "BatchModel":
        from portfolio_sim.sweep.batch import BatchModel
        return BatchModel
    raise AttributeError(f"module 'portfolio_sim.sweep' has no attribute {name!r}")
