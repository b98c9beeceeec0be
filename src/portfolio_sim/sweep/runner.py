"""The sweep driver: plan what is left, farm runs out to an executor, store each result as it arrives.

:func:`run_sweep` is what ``portfolio-sim sweep`` calls:

1. load and validate the spec (every point a valid scenario);
2. register the experiment in the store, or check the stored one is the same experiment (fingerprint);
3. plan: every (point, replicate) not yet stored as done — failed runs too with ``retry_failed`` —
   replicate by replicate (the whole design with replicate 0 first, so partial results cover the design),
   at most ``limit`` of them;
4. submit them to the executor, a bounded window at a time; as each finishes, write it in ONE transaction
   (the driver is the only writer). A run that raised is stored as failed, with its error, and the sweep
   goes on. A worker process that dies marks the runs in flight failed and the pool is restarted.

Stopping at any moment (Ctrl-C, SIGTERM, ``kill -9``, a power cut after the commit) loses no stored run and
leaves no half-written one; running the same command again continues where it stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import DataError, IntegrityError

from portfolio_sim.sweep.executors import open_executor
from portfolio_sim.sweep.spec import Experiment, load_spec, run_seed
from portfolio_sim.sweep.store import DONE, FAILED, Store, default_db_path, normalize_url
from portfolio_sim.sweep.task import failed_result, make_task, run_task

MAX_POOL_RESTARTS = 3


class SweepAborted(RuntimeError):
    """The sweep cannot go on (e.g. worker processes keep dying); stored runs are kept."""


@dataclass
class SweepReport:
    """What a sweep invocation found, did and left."""

    experiment: str
    db: str                         # the database for display (SQLite path, or URL without password)
    db_url: str = ""                # the SQLAlchemy URL
    total: int = 0                  # runs in the experiment (points x replicates)
    points: int = 0
    replicates: int = 0
    done_before: int = 0            # stored as done before this invocation
    failed_before: int = 0          # stored as failed before this invocation
    planned: int = 0                # runs this invocation set out to do
    done: int = 0                   # stored as done by this invocation
    failed: int = 0                 # stored as failed by this invocation
    duplicates: int = 0             # results another writer had already stored
    executor: str = ""
    elapsed: float = 0.0
    interrupted: bool = False
    created: bool = False           # the experiment was registered by this invocation
    version_mismatch: int = 0       # results computed by a different portfolio_sim version
    session_id: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.done + self.failed + self.duplicates

    @property
    def remaining(self) -> int:
        """Runs of the experiment not stored as done after this invocation."""
        return self.total - self.done_before - self.done - self.duplicates

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


class ProgressSink(Protocol):
    def start(self, report: SweepReport) -> None: ...
    def advance(self, status: str, report: SweepReport) -> None: ...
    def finish(self, report: SweepReport) -> None: ...


class _NoProgress:
    def start(self, report: SweepReport) -> None:
        pass

    def advance(self, status: str, report: SweepReport) -> None:
        pass

    def finish(self, report: SweepReport) -> None:
        pass


def plan_runs(exp: Experiment, states: dict[tuple[int, int], str], retry_failed: bool = False,
              limit: int | None = None) -> list[tuple[int, int]]:
    """(point index, replicate) pairs still to run, replicate-major: the whole design with replicate 0,
    then replicate 1, ..."""
    todo = []
    for r in range(exp.replicates):
        for p in exp.points:
            state = states.get((p.index, r))
            if state == DONE or (state == FAILED and not retry_failed):
                continue
            todo.append((p.index, r))
    return todo[:limit] if limit is not None else todo


def resolve_db(exp: Experiment, db: str | Path | None) -> str:
    return normalize_url(db if db is not None else default_db_path(exp.name))


def run_sweep(spec: Experiment | str | Path, db: str | Path | None = None, executor: str = "serial",
              workers: int = 1, scheduler: str | None = None, retry_failed: bool = False,
              limit: int | None = None, progress: ProgressSink | None = None,
              processes: bool = True) -> SweepReport:
    """Run (or continue) an experiment into a results database; see the module docstring.

    Args:
        spec: an :class:`Experiment`, or a spec file path / name under ``experiments/``.
        db: a SQLAlchemy URL or a SQLite file path (default ``results/<experiment>.db``).
        executor: ``serial``, ``process`` or ``dask``; ``workers`` processes (or Dask workers).
        scheduler: a Dask scheduler address (default: a LocalCluster); ``processes=False`` makes the
            LocalCluster use threads (quick to start; the model is not thread-parallel, so this is for tests).
        retry_failed: run failed runs again. ``limit``: at most this many runs now.
    """
    exp = spec if isinstance(spec, Experiment) else load_spec(spec)
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    progress = progress or _NoProgress()
    store = Store(resolve_db(exp, db))
    report = SweepReport(experiment=exp.name, db=store.display_url, db_url=store.url, total=exp.n_runs, points=len(exp.points),
                         replicates=exp.replicates)
    try:
        reg = store.register(exp)
        report.created = reg.created
        states = store.run_states(reg.id)
        report.done_before = sum(1 for s in states.values() if s == DONE)
        report.failed_before = sum(1 for s in states.values() if s == FAILED)
        todo = plan_runs(exp, states, retry_failed, limit)
        report.planned = len(todo)
        if not todo:
            progress.start(report)
            progress.finish(report)
            return report
        _execute(exp, store, reg.id, reg.point_ids, todo, report, progress, executor, workers, scheduler,
                 retry_failed, processes)
        return report
    finally:
        store.close()


def _execute(exp: Experiment, store: Store, exp_id: int, point_ids: dict[int, int], todo: list[tuple[int, int]],
             report: SweepReport, progress: ProgressSink, executor: str, workers: int, scheduler: str | None,
             retry_failed: bool, processes: bool) -> None:
    import portfolio_sim

    points = {p.index: p for p in exp.points}
    pending = deque(todo)
    in_flight: dict[cf.Future, dict[str, Any]] = {}
    ex = open_executor(executor, workers, scheduler, processes)
    report.executor = ex.description
    report.session_id = store.start_session(exp_id, host=socket.gethostname(), executor=ex.description,
                                            workers=ex.workers, spec_text=exp.text, retry_failed=retry_failed,
                                            planned=len(todo))
    start = time.perf_counter()
    restarts = 0
    pool_results = 0          # results returned by the current pool (a broken pool that never returned
    progress.start(report)    # one cannot start its workers: that aborts rather than failing runs)

    def record(task: dict[str, Any], result: dict[str, Any]) -> None:
        if (result.get("point"), result.get("replicate"), result.get("seed")) != (
                task["point"], task["replicate"], task["seed"]):
            result = failed_result(task, f"worker returned the result of another task: {result.get('point')}, "
                                         f"{result.get('replicate')}, {result.get('seed')}")
        if result.get("version") and result["version"] != portfolio_sim.__version__:
            report.version_mismatch += 1
        params = points[task["point"]].params
        try:
            status = store.write_result(exp_id, point_ids[task["point"]], params, result, report.session_id)
        except (IntegrityError, DataError) as exc:
            if result.get("status") != DONE:
                raise
            # The result could not be stored (its rows broke a constraint): record the run as failed with
            # the reason, and go on. A lost connection (OperationalError) still stops the sweep.
            status = store.write_result(exp_id, point_ids[task["point"]], params,
                                        failed_result(task, f"the result could not be stored: {exc}",
                                                      result.get("worker") or ""), report.session_id)
        if status == DONE:
            report.done += 1
        elif status == FAILED:
            report.failed += 1
        else:
            report.duplicates += 1
        report.elapsed = time.perf_counter() - start
        progress.advance(status, report)

    def new_task(pi: int, r: int) -> dict[str, Any]:
        p = points[pi]
        return make_task(exp.name, pi, r, run_seed(p.seed, r), p.scenario, exp.keep_schools, exp.keep_events)

    try:
        while pending or in_flight:
            broken: BaseException | None = None
            while pending and len(in_flight) < ex.window and broken is None:
                pi, r = pending[0]
                task = new_task(pi, r)
                try:
                    future = ex.submit(run_task, task)
                except ex.recoverable_errors as exc:
                    broken = exc
                    break
                pending.popleft()
                in_flight[future] = task
            lost: list[dict[str, Any]] = []       # tasks whose future says the pool broke
            if in_flight and broken is None:
                finished, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    task = in_flight.pop(future)
                    try:
                        result = future.result()
                        pool_results += 1
                    except ex.recoverable_errors as exc:
                        broken = exc
                        lost.append(task)
                        continue
                    except Exception as exc:  # the executor could not run it (e.g. a Dask worker was lost)
                        result = failed_result(task, f"the executor could not run this task: "
                                                     f"{type(exc).__name__}: {exc}")
                    record(task, result)
            if broken is not None:
                lost.extend(in_flight.values())
                in_flight.clear()
                if not pool_results:
                    # Not one result from this pool: the workers cannot start (or die at once), which says
                    # nothing about the runs. Stop without recording them as failed.
                    raise SweepAborted(f"worker processes failed before returning any result "
                                       f"({type(broken).__name__}: {broken}); stored runs are kept")
                # A worker process died: the pool is unusable and every run in flight is lost with it.
                for task in lost:
                    record(task, failed_result(task, _died(broken)))
                restarts += 1
                if restarts > MAX_POOL_RESTARTS:
                    raise SweepAborted(f"worker processes died {restarts} times (out of memory?); stored runs "
                                       "are kept, rerun to continue")
                report.warnings.append(f"a worker process died ({type(broken).__name__}); pool restarted")
                ex.restart()
                pool_results = 0
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.elapsed = time.perf_counter() - start
        ex.close(wait=not report.interrupted)
        try:
            store.finish_session(report.session_id, report.done, report.failed, report.interrupted)
        except Exception:
            pass
        progress.finish(report)


def _died(exc: BaseException) -> str:
    return (f"a worker process died while this run was in flight ({type(exc).__name__}: {exc}). It may "
            "have been another run in flight at the same time; --retry-failed runs it again")
