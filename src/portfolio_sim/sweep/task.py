"""The unit of work of a sweep: one (point, replicate) -> a compact, plain-data result.

:func:`run_task` is a pure, top-level function of a plain dict (so process pools started with "spawn"
and Dask workers can import and call it by module path). It never raises for a failing run: the error
and traceback come back in the result, and the driver records the run as failed. Workers need no
database access; only the driver writes.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import traceback
from typing import Any

import numpy as np

MAX_ERROR_CHARS = 20_000


def make_task(experiment: str, point_index: int, replicate: int, seed: int, scenario: dict[str, Any],
              keep_schools: bool = False, keep_events: bool = False) -> dict[str, Any]:
    """The plain-data description of one run that executors ship to workers."""
    return {"experiment": experiment, "point": int(point_index), "replicate": int(replicate), "seed": int(seed),
            "scenario": scenario, "keep_schools": bool(keep_schools), "keep_events": bool(keep_events)}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; NaN -> None (stored as SQL NULL, read back as NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def frame_columns(frame: Any) -> dict[str, list[Any]]:
    """A DataFrame as {column: [plain values]} (compact to pickle, no pandas needed to read)."""
    return {str(c): [_plain(v) for v in frame[c].tolist()] for c in frame.columns}


def worker_name() -> str:
    if "distributed" in sys.modules:  # maybe inside a Dask worker: its address names machine and process
        try:
            from distributed import get_worker
            return f"dask:{get_worker().address}"
        except Exception:
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one (point, replicate) of an experiment; return its yearly metrics (and optional school panel
    and events) as plain columns, or its error. Same task, same result, in any process."""
    import portfolio_sim
    from portfolio_sim.kernel import single_run
    from portfolio_sim.scenario import Scenario

    out: dict[str, Any] = {key: task[key] for key in ("experiment", "point", "replicate", "seed")}
    out.update(worker=worker_name(), version=portfolio_sim.__version__)
    start = time.perf_counter()
    try:
        scenario = Scenario.model_validate(task["scenario"])
        result = single_run(scenario, int(task["seed"]))
        out["yearly"] = frame_columns(result.yearly)
        out["schools"] = frame_columns(result.schools) if task.get("keep_schools") else None
        out["events"] = frame_columns(result.events) if task.get("keep_events") else None
        out["status"] = "done"
        out["error"] = None
    except Exception as exc:  # recorded with the run; the sweep goes on
        tb = traceback.format_exc()
        out.update(status="failed", yearly=None, schools=None, events=None,
                   error=f"{type(exc).__name__}: {exc}\n\n{tb}"[:MAX_ERROR_CHARS])
    out["duration"] = time.perf_counter() - start
    return out


def failed_result(task: dict[str, Any], error: str, worker: str = "") -> dict[str, Any]:
    """A failure the driver observed itself (a worker process died, a task could not be shipped)."""
    out = {key: task[key] for key in ("experiment", "point", "replicate", "seed")}
    out.update(status="failed", error=error[:MAX_ERROR_CHARS], yearly=None, schools=None, events=None,
               duration=None, worker=worker, version=None)
    return out
