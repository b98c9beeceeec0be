"""The sweep driver: plan what is left, farm runs out to an executor, store results as they arrive.

:func:`run_sweep` is what ``portfolio-sim sweep`` calls:

1. load and validate the spec (every point a valid scenario);
2. register the experiment in the store, or check the stored one is the same experiment (fingerprint);
3. plan: every (point, replicate) not yet stored as done — failed runs too with ``retry_failed`` —
   replicate by replicate (the whole design with replicate 0 first, so partial results cover the design),
   at most ``limit`` of them;
4. claim the next runs a chunk at a time (a lease per run in the store: another driver on the same
   experiment takes other runs; ``skipped`` counts the runs left to it), submit them to the executor, a
   window at a time (for Dask the window follows the cluster as workers join and leave);
5. store finished results a batch per transaction (each run whole; the driver is the only writer). A run
   that raised is stored as failed with its error; a run over ``run_timeout`` is stored as failed with a
   TimeoutError; the sweep goes on.

Infrastructure is not the runs' fault: runs lost with the Dask scheduler connection go back in the queue
while the driver waits ``reconnect_timeout`` seconds for it; a database that refuses writes is retried with
backoff for ``db_retry`` seconds while finished results wait in memory (and no new runs are submitted past
``max_unwritten``). When either does not come back the sweep stops with :class:`SweepAborted`
(``exit_code`` 3): the unstored runs are simply not done and a rerun does them.

Stopping at any moment (Ctrl-C, SIGTERM, ``kill -9``, a power cut after the commit) loses no stored run and
leaves no half-written one; running the same command again continues where it stopped. Under
:class:`StopSignals` (the CLI's), Ctrl-C and SIGTERM are requests the loop honours at its next check, within
about a second, not exceptions raised wherever the main thread happens to be (inside a pool's lock, say).
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from portfolio_sim.sweep.executors import SchedulerLost, open_executor
from portfolio_sim.sweep.spec import Experiment, load_spec, run_seed
from portfolio_sim.sweep.store import DONE, FAILED, RunStates, Store, default_db_path, is_transient, normalize_url
from portfolio_sim.sweep.task import failed_result, make_task, run_task

MAX_POOL_RESTARTS = 3
DASK_START_POLL = 2.0        # seconds between checks of which Dask tasks workers are processing

# Exit codes of `portfolio-sim sweep` (docs/SWEEPS.md, "Exit codes").
EXIT_OK = 0                  # every planned run is stored as done
EXIT_RUNS_FAILED = 1         # some runs are stored as failed (or timed out): --retry-failed runs them
EXIT_BAD_INPUT = 2           # bad spec, arguments or database
EXIT_CANNOT_CONTINUE = 3     # infrastructure: scheduler lost, database unavailable, workers keep dying
EXIT_INTERRUPTED = 130       # Ctrl-C / SIGTERM

# Cost model for the default --run-timeout: a fixed set-up plus a per-student-year cost about 3x what the
# benchmark measures on this project's reference machine (a slower cluster node still fits), times a
# margin; never less than MIN_RUN_TIMEOUT.
RUN_SETUP_S = 2.0
RUN_S_PER_STUDENT_YEAR = 5e-6
RUN_TIMEOUT_MARGIN = 10.0
MIN_RUN_TIMEOUT = 60.0


class SweepAborted(RuntimeError):
    """The sweep cannot go on (workers keep dying, the scheduler or database is gone); stored runs are
    kept and the runs not stored are not done (a rerun does them)."""

    def __init__(self, message: str, exit_code: int = EXIT_CANNOT_CONTINUE, outcome: str = "could not continue"):
        super().__init__(message)
        self.exit_code = exit_code
        self.outcome = outcome


class DatabaseUnavailable(SweepAborted):
    def __init__(self, message: str):
        super().__init__(message, EXIT_CANNOT_CONTINUE, "database unavailable")


@dataclass
class SweepOptions:
    """How the driver copes with time and infrastructure (CLI flags of the same names)."""

    run_timeout: float | None = None     # seconds per run; None: derived from the design; 0: no limit
    reconnect_timeout: float = 120.0     # how long to wait for a lost Dask scheduler
    db_retry: float = 300.0              # how long to retry a database that refuses writes
    batch: int = 32                      # runs per write transaction at most
    batch_wait: float = 1.0              # ... or whatever has finished after this many seconds
    lease: float = 120.0                 # seconds a claim on a run lasts (renewed every lease/3)
    max_unwritten: int = 2_000           # finished results held in memory before submitting stops


def estimated_run_seconds(exp: Experiment) -> float:
    """A generous estimate of the slowest run of the design (students x years)."""
    return RUN_SETUP_S + RUN_S_PER_STUDENT_YEAR * exp.max_students * exp.years


def default_run_timeout(exp: Experiment) -> float:
    return max(MIN_RUN_TIMEOUT, RUN_TIMEOUT_MARGIN * estimated_run_seconds(exp))


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
    failed: int = 0                 # stored as failed by this invocation (timed-out runs included)
    timed_out: int = 0              # runs stopped after --run-timeout (stored as failed)
    duplicates: int = 0             # results another writer had already stored
    skipped: int = 0                # planned runs another driver had claimed (or stored) meanwhile
    requeued: int = 0               # runs lost to the infrastructure and put back in the queue
    max_in_flight: int = 0          # the most runs submitted at once (the window as the cluster grew)
    reconnects: int = 0             # Dask scheduler reconnections
    outages: int = 0                # database outages survived
    write_retries: int = 0
    executor: str = ""
    elapsed: float = 0.0
    interrupted: bool = False
    created: bool = False           # the experiment was registered by this invocation
    version_mismatch: int = 0       # results computed by a different portfolio_sim version
    session_id: int | None = None
    run_timeout: float | None = None
    outcome: str = ""
    workers_log: list[list[float]] = field(default_factory=list)   # [[seconds, worker threads], ...]
    stored_done: int | None = None      # after this invocation, from the store (other drivers included)
    stored_failed: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.done + self.failed + self.duplicates

    @property
    def remaining(self) -> int:
        """Runs of the experiment not stored as done after this invocation."""
        if self.stored_done is not None:
            return self.total - self.stored_done
        return self.total - self.done_before - self.done - self.duplicates

    @property
    def failed_left(self) -> int:
        """Runs stored as failed after this invocation (a plain rerun does not run them)."""
        if self.stored_failed is not None:
            return self.stored_failed
        return self.failed + self.failed_before

    @property
    def not_started(self) -> int:
        """Runs with no stored result at all (a plain rerun does them)."""
        return max(0, self.remaining - self.failed_left)

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


class Plan:
    """The (point index, replicate) pairs still to run, replicate-major (the whole design with replicate 0,
    then replicate 1, ...), generated as they are taken: a plan over millions of runs holds one byte per
    run (the stored states, :class:`RunStates`), never a list of every pair. ``len(plan)`` is the number
    planned."""

    def __init__(self, n_points: int, replicates: int, states: RunStates | dict[tuple[int, int], str],
                 retry_failed: bool = False, limit: int | None = None):
        self.n_points, self.replicates = n_points, replicates
        if not isinstance(states, RunStates):
            states = RunStates.of(states, n_points, replicates)
        self._settled = states.settled(retry_failed)
        left = n_points * replicates - int(np.count_nonzero(self._settled))
        self._len = left if limit is None else min(left, limit)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[int, int]]:
        taken = 0
        if not self._len:
            return
        for r in range(self.replicates):
            for i in np.flatnonzero(~self._settled[:, r]).tolist():
                yield (i, r)
                taken += 1
                if taken >= self._len:
                    return


def plan_runs(exp: Experiment, states: RunStates | dict[tuple[int, int], str], retry_failed: bool = False,
              limit: int | None = None) -> Plan:
    """(point index, replicate) pairs still to run, replicate-major (see :class:`Plan`)."""
    return Plan(len(exp.points), exp.replicates, states, retry_failed, limit)


def resolve_db(exp: Experiment, db: str | Path | None) -> str:
    return normalize_url(db if db is not None else default_db_path(exp.name))


def run_sweep(spec: Experiment | str | Path, db: str | Path | None = None, executor: str = "serial",
              workers: int = 1, scheduler: str | None = None, retry_failed: bool = False,
              limit: int | None = None, progress: ProgressSink | None = None,
              processes: bool = True, options: SweepOptions | None = None,
              stop: StopSignals | None = None) -> SweepReport:
    """Run (or continue) an experiment into a results database; see the module docstring.

    Args:
        spec: an :class:`Experiment`, or a spec file path / name under ``experiments/``.
        db: a SQLAlchemy URL or a SQLite file path (default ``results/<experiment>.db``).
        executor: ``serial``, ``process`` or ``dask``; ``workers`` processes (or Dask workers).
        scheduler: a Dask scheduler address (default: a LocalCluster); ``processes=False`` makes the
            LocalCluster use threads (quick to start; the model is not thread-parallel, so this is for tests).
        retry_failed: run failed runs again. ``limit``: at most this many runs now.
        options: timeouts, retries and batching (:class:`SweepOptions`).
        stop: a :class:`StopSignals` whose request the loop honours (the CLI passes one); without it a
            KeyboardInterrupt is raised wherever the signal lands, as Python does by default.
    """
    exp = spec if isinstance(spec, Experiment) else load_spec(spec)
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    progress = progress or _NoProgress()
    opts = options or SweepOptions()
    if opts.run_timeout is None:
        opts = SweepOptions(**{**opts.__dict__, "run_timeout": default_run_timeout(exp)})
    store = Store(resolve_db(exp, db))
    report = SweepReport(experiment=exp.name, db=store.display_url, db_url=store.url, total=exp.n_runs, points=len(exp.points),
                         replicates=exp.replicates)
    try:
        reg = store.register(exp)
        report.created = reg.created
        states = store.run_states(reg.id, len(exp.points), exp.replicates)
        report.done_before, report.failed_before = states.done, states.failed
        report.stored_done, report.stored_failed = report.done_before, report.failed_before
        todo = plan_runs(exp, states, retry_failed, limit)
        report.planned = len(todo)
        if not todo:
            progress.start(report)
            progress.finish(report)
            return report
        try:
            _execute(exp, store, reg.id, reg.point_ids, todo, report, progress, executor, workers, scheduler,
                     retry_failed, processes, opts, stop or StopSignals())
        finally:
            try:
                counts = store.counts(reg.id)
                report.stored_done, report.stored_failed = counts.get(DONE, 0), counts.get(FAILED, 0)
            except Exception:
                pass
        return report
    finally:
        store.close()


def _execute(exp: Experiment, store: Store, exp_id: int, point_ids: Any, todo: Plan,
             report: SweepReport, progress: ProgressSink, executor: str, workers: int, scheduler: str | None,
             retry_failed: bool, processes: bool, opts: SweepOptions, stop: StopSignals) -> None:
    import portfolio_sim

    points = exp.points                    # built from the index on demand (a few cached)
    candidates = _Peekable(iter(todo))     # planned, not yet claimed
    pending: deque[tuple[int, int]] = deque()   # claimed by this session, not yet submitted
    in_flight: dict[cf.Future, _Flight] = {}
    unwritten: list[tuple[dict[str, Any], dict[str, Any]]] = []    # finished, waiting to be stored
    ex = open_executor(executor, workers, scheduler, processes)
    stop.immediate = ex.kind == "serial"   # runs execute in the driver itself, holding no pool lock
    report.executor = ex.description
    report.run_timeout = opts.run_timeout
    session = _retrying(lambda: store.start_session(
        exp_id, host=socket.gethostname(), executor=ex.description, workers=ex.workers, spec_text=exp.text,
        retry_failed=retry_failed, planned=len(todo)), opts.db_retry, report, what="start the session", stop=stop)
    report.session_id = session
    start = time.monotonic()
    restarts = 0
    pool_results = 0          # results returned by the current pool (a broken pool that never returned
    progress.start(report)    # one cannot start its workers: that aborts rather than failing runs)
    last_renew = time.monotonic()
    outage_since: float | None = None      # the database has refused writes since then
    next_write = 0.0
    last_threads = -1
    last_seen_check = 0.0

    def elapsed() -> float:
        return time.monotonic() - start

    def note_workers() -> None:
        nonlocal last_threads
        threads = ex.current_threads()
        if threads != last_threads:
            report.workers_log.append([round(elapsed(), 1), threads])
            last_threads = threads

    def check(task: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        if (result.get("point"), result.get("replicate"), result.get("seed")) != (
                task["point"], task["replicate"], task["seed"]):
            result = failed_result(task, f"worker returned the result of another task: {result.get('point')}, "
                                         f"{result.get('replicate')}, {result.get('seed')}")
        if result.get("version") and result["version"] != portfolio_sim.__version__:
            report.version_mismatch += 1
        return result

    def count(status: str) -> None:
        if status == DONE:
            report.done += 1
        elif status == FAILED:
            report.failed += 1
        else:
            report.duplicates += 1
        report.elapsed = elapsed()
        progress.advance(status, report)

    def flush(force: bool = False) -> None:
        """Store finished results, a batch per transaction; on an outage keep them and retry with backoff."""
        nonlocal outage_since, next_write
        now = time.monotonic()
        if not unwritten or now < next_write:
            return
        if not force and outage_since is None and len(unwritten) < opts.batch and now - flush.last < opts.batch_wait:
            return
        batch = unwritten[:opts.batch]
        items = [(point_ids[t["point"]], points[t["point"]].params, res) for t, res in batch]
        try:
            statuses = store.write_results(exp_id, items, session)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if outage_since is None:
                outage_since = now
                report.outages += 1
                report.warnings.append(f"the database refused writes ({_short(exc)}); retrying for up to "
                                       f"{opts.db_retry:g}s with the finished results kept in memory")
            if now - outage_since > opts.db_retry:
                raise DatabaseUnavailable(
                    f"the database {store.display_url} stayed unavailable for {now - outage_since:.0f}s "
                    f"(--db-retry {opts.db_retry:g}s; last error: {_short(exc)}). {len(unwritten)} finished "
                    "results could not be stored and will be computed again; stored runs are kept") from None
            wait = min(opts.db_retry / 4, 0.2 * 2 ** min(report.write_retries, 6))
            report.write_retries += 1
            next_write = now + wait
            return
        if outage_since is not None:
            report.warnings.append(f"the database accepted writes again after {now - outage_since:.1f}s")
            outage_since = None
            report.write_retries = 0
        del unwritten[:len(batch)]
        flush.last = time.monotonic()
        for (task, result), status in zip(batch, statuses, strict=True):
            if isinstance(status, Exception):     # this run's rows broke a constraint: record it failed
                status = store.write_result(exp_id, point_ids[task["point"]], points[task["point"]].params,
                                            failed_result(task, f"the result could not be stored: {status}",
                                                          result.get("worker") or ""), session)
            count(status)

    flush.last = time.monotonic()  # type: ignore[attr-defined]

    def requeue(tasks: list[dict[str, Any]]) -> None:
        """Runs lost to the infrastructure (not their fault) go back to the front of the queue."""
        for task in reversed(tasks):
            pending.appendleft((task["point"], task["replicate"]))
        report.requeued += len(tasks)

    def refill() -> None:
        """Claim the next runs (a lease per run) so another driver on the same experiment takes others."""
        want = max(ex.window, opts.batch) * 2
        while len(pending) < ex.window and candidates:
            chunk = candidates.take(want)
            claimed, skipped = _retrying(lambda: store.claim(exp_id, session, chunk, opts.lease, retry_failed),
                                         opts.db_retry, report, what="claim runs", stop=stop)
            pending.extend(claimed)
            report.skipped += len(skipped)

    def new_task(pi: int, r: int) -> dict[str, Any]:
        p = points[pi]
        return make_task(exp.name, pi, r, run_seed(p.seed, r), p.scenario, exp.keep_schools, exp.keep_events)

    try:
        note_workers()
        while candidates or pending or in_flight or unwritten:
            stop.check()
            now = time.monotonic()
            if now - last_renew > opts.lease / 3:
                try:
                    store.renew_claims(session, opts.lease)
                    last_renew = now
                except Exception as exc:
                    if not is_transient(exc):
                        raise
            note_workers()
            # 1. The Dask scheduler: a lost connection cancels every task; they are not done, not failed.
            if not ex.alive():
                lost_tasks = [f.task for f in in_flight.values()]
                in_flight.clear()
                requeue(lost_tasks)
                report.warnings.append(f"lost the Dask scheduler; {len(lost_tasks)} runs in flight put back in "
                                       f"the queue; waiting up to {opts.reconnect_timeout:g}s for it")
                flush(force=True)
                try:
                    took = ex.reconnect(opts.reconnect_timeout, should_stop=lambda: stop.requested is not None)
                except SchedulerLost as exc:
                    raise SweepAborted(f"{exc}. Stored runs are kept; the runs in flight were not stored "
                                       "and are not failures: rerun the same command to continue",
                                       exit_code=EXIT_CANNOT_CONTINUE, outcome="scheduler lost") from None
                report.reconnects += 1
                report.warnings.append(f"reconnected to the Dask scheduler after {took:.1f}s")
                continue
            # 2. Submit up to the window (which follows the cluster), unless results wait to be stored.
            broken: BaseException | None = None
            if len(unwritten) < opts.max_unwritten:
                refill()
                while pending and len(in_flight) < ex.window:
                    pi, r = pending[0]
                    task = new_task(pi, r)
                    try:
                        future = ex.submit(run_task, task)
                    except ex.recoverable_errors as exc:
                        broken = exc
                        break
                    pending.popleft()
                    in_flight[future] = _Flight(task, time.monotonic())
                report.max_in_flight = max(report.max_in_flight, len(in_flight))
            # 3. Wait for results (bounded, so timeouts, the scheduler and the database are checked).
            lost: list[dict[str, Any]] = []        # tasks whose future says the pool broke
            cancelled: list[dict[str, Any]] = []   # tasks the cluster dropped (scheduler or worker lost)
            if in_flight and broken is None:
                finished, _ = cf.wait(list(in_flight), timeout=_wait_time(in_flight, opts, unwritten),
                                      return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    flight = in_flight.pop(future)
                    task = flight.task
                    try:
                        result = future.result()
                        pool_results += 1
                    except ex.recoverable_errors as exc:
                        broken = exc
                        lost.append(task)
                        continue
                    except cf.CancelledError:
                        cancelled.append(task)
                        continue
                    except Exception as exc:  # the cluster gave up on it (e.g. it killed several workers)
                        if ex.kind == "dask" and not ex.alive():
                            cancelled.append(task)
                            continue
                        result = failed_result(task, f"the executor could not run this task: "
                                                     f"{type(exc).__name__}: {exc}")
                    unwritten.append((task, check(task, result)))
                requeue(cancelled)
                # 4. Runs over --run-timeout: recorded as timed out; their worker is stopped.
                if opts.run_timeout and broken is None:
                    now = time.monotonic()
                    if ex.kind == "process":
                        waiting = [f for f, fl in in_flight.items() if fl.started_at is None]
                        for f, started_at in ex.start_times(waiting).items():
                            in_flight[f].started_at = started_at
                    if ex.kind == "dask" and now - last_seen_check > DASK_START_POLL:
                        # A Dask task's clock starts when a worker is seen processing it (not at submission:
                        # on an empty or busy cluster it waits in the queue first).
                        last_seen_check = now
                        waiting = [f for f, fl in in_flight.items() if fl.started_at is None]
                        for f in ex.on_workers(waiting):
                            in_flight[f].started_at = now
                    hung = [f for f, fl in in_flight.items()
                            if fl.started_at is not None and now - fl.started_at > opts.run_timeout]
                    for future in hung:
                        flight = in_flight.pop(future)
                        report.timed_out += 1
                        unwritten.append((flight.task, failed_result(
                            flight.task, f"TimeoutError: the run took longer than --run-timeout "
                                         f"{opts.run_timeout:g}s and was stopped")))
                        ex.cancel_hung(future)
                    if hung and ex.kind == "process":
                        # A process pool cannot stop one task: kill it; the other runs in flight go back
                        # to the queue (not their fault) and a fresh pool starts.
                        requeue([fl.task for fl in in_flight.values()])
                        in_flight.clear()
                        ex.kill()
                        ex.restart()
                        pool_results = 0
            elif not in_flight:
                time.sleep(0.05 if unwritten else 0)
            flush(force=not in_flight and not pending and not candidates)
            if broken is not None:
                stop.check()          # SIGTERM to the whole job kills the workers too: not the runs' fault
                lost.extend(fl.task for fl in in_flight.values())
                in_flight.clear()
                if not pool_results:
                    # Not one result from this pool: the workers cannot start (or die at once), which says
                    # nothing about the runs. Stop without recording them as failed.
                    raise SweepAborted(f"worker processes failed before returning any result "
                                       f"({type(broken).__name__}: {broken}); stored runs are kept",
                                       exit_code=EXIT_CANNOT_CONTINUE)
                # A worker process died: the pool is unusable and every run in flight is lost with it. One of
                # them may have killed it (out of memory): they are recorded failed, --retry-failed reruns.
                for task in lost:
                    unwritten.append((task, failed_result(task, _died(broken))))
                restarts += 1
                if restarts > MAX_POOL_RESTARTS:
                    flush(force=True)
                    raise SweepAborted(f"worker processes died {restarts} times (out of memory?); stored runs "
                                       "are kept, rerun to continue", exit_code=EXIT_CANNOT_CONTINUE)
                report.warnings.append(f"a worker process died ({type(broken).__name__}); pool restarted")
                ex.restart()
                pool_results = 0
        report.outcome = "complete"
    except KeyboardInterrupt:
        report.interrupted = True
        report.outcome = "interrupted"
        raise
    except DatabaseUnavailable:
        report.outcome = "database unavailable"
        raise
    except SweepAborted as exc:
        report.outcome = exc.outcome
        raise
    finally:
        report.elapsed = elapsed()
        if report.interrupted or in_flight:
            ex.kill()                       # end the workers now: Ctrl-C / SIGTERM end within seconds
        else:
            ex.close(wait=True)
        if report.interrupted and unwritten and outage_since is None:
            try:                            # results already computed are worth a last write
                flush(force=True)
            except Exception:
                pass
        try:
            store.finish_session(session, report.done, report.failed, report.interrupted,
                                 outcome=report.outcome, skipped=report.skipped, timed_out=report.timed_out,
                                 workers_log=report.workers_log)
            store.release_claims(session)
        except Exception:
            pass
        progress.finish(report)


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM as a request to stop that the driver's loop checks, within a second.

    Raising KeyboardInterrupt from a signal handler lands wherever the main thread is: inside a
    ``concurrent.futures`` lock or a worker's spawn, it can leave the pool unable to shut down and the driver
    running long after it was told to stop. The handler only records the request; the loop raises
    KeyboardInterrupt at a point it knows (and then ends the workers). A second signal interrupts at once,
    as does any signal while ``immediate`` is set: until the driver starts its executor (no pool yet), and
    throughout with the serial executor (a whole run executes in the driver, where nothing holds a pool's
    lock). Handlers are installed on entry (main thread only) and restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None     # the signal received, if any
        self.immediate = True                 # until the driver has an executor
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.requested is None
        self.requested = signum
        if self.immediate or not first:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt when a stop was asked for."""
        if self.requested is not None:
            raise KeyboardInterrupt


class _Peekable:
    """An iterator that knows whether it has more (``bool``) and hands out chunks."""

    _END = object()

    def __init__(self, it: Iterator[tuple[int, int]]):
        self._it = it
        self._next: Any = next(it, self._END)

    def __bool__(self) -> bool:
        return self._next is not self._END

    def take(self, n: int) -> list[tuple[int, int]]:
        out = []
        while len(out) < n and self._next is not self._END:
            out.append(self._next)
            self._next = next(self._it, self._END)
        return out


@dataclass
class _Flight:
    """A submitted run. ``started_at``: when a worker began it (a process-pool worker's own record, or when a
    Dask worker was first seen processing it, polled every DASK_START_POLL seconds); None while it waits in
    a queue or its worker starts up, which --run-timeout does not count."""
    task: dict[str, Any]
    submitted: float
    started_at: float | None = None


def _wait_time(in_flight: dict[cf.Future, _Flight], opts: SweepOptions, unwritten: list[Any]) -> float:
    wait = 0.5 if unwritten else 1.0
    if opts.run_timeout:
        now = time.monotonic()
        for future, flight in in_flight.items():
            if flight.started_at is not None:
                wait = min(wait, max(0.05, flight.started_at + opts.run_timeout - now))
    return wait


def _retrying(fn: Callable[[], Any], limit: float, report: SweepReport, what: str,
              stop: StopSignals | None = None) -> Any:
    """Call ``fn`` and retry it with backoff while the database is unavailable, for up to ``limit`` s."""
    start = time.monotonic()
    delay = 0.2
    while True:
        if stop is not None:
            stop.check()
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() - start > limit:
                raise DatabaseUnavailable(f"could not {what}: the database stayed unavailable for "
                                          f"{time.monotonic() - start:.0f}s (--db-retry {limit:g}s; last error: "
                                          f"{_short(exc)}); stored runs are kept") from None
            until = time.monotonic() + delay
            while time.monotonic() < until and (stop is None or stop.requested is None):
                time.sleep(0.1)
            delay = min(delay * 2, 5.0)


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"[:300]


def _died(exc: BaseException) -> str:
    return (f"a worker process died while this run was in flight ({type(exc).__name__}: {exc}). It may "
            "have been another run in flight at the same time; --retry-failed runs it again")
