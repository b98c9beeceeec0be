"""Runs for the dashboard: replicate models stepped year by year, off the UI thread, cancellable.

:class:`Simulation` holds one scenario's K replicate runs (seeds derived from `run.seed` exactly as
the CLI derives them, so an exported scenario reproduces the dashboard's numbers). It can

- *step*: advance every seed by one year (all K models stay in memory, so it is limited by district
  size x seeds; see :data:`LIVE_STUDENT_BUDGET`), or
- *run to the end*: seed after seed, each model released as soon as its years are done (memory for one
  model at a time); a stepped simulation continues from where it is.

On the server both go to the worker pool (:func:`run_in_workers`, :func:`step_in_workers`): a worker
replays a stepped seed from year 0 with the decisions taken so far, so the server holds frames, not models.

Workshop decisions (`portfolio_sim.decisions`) are taken with a step and apply to that year in every
seed; they are kept by year, so a seed that catches up later, or a run to the end, replays them; years
nobody decided follow the scenario's rules.

Both check a stop flag between years. :meth:`Simulation.snapshot` turns the state into an immutable
:class:`RunSnapshot` (yearly metrics with bands, school panel, events) for the page.

:class:`RunController` runs one job at a time in a worker thread, reports progress and can cancel.
Nothing here imports Solara: the page passes callbacks.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from portfolio_sim.decisions import RULES, Decisions
from portfolio_sim.kernel import Run, derive_seeds, stack_seeds, summarize
from portfolio_sim.model import PortfolioModel
from portfolio_sim.scenario import Scenario

log = logging.getLogger("portfolio_sim.dashboard")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# What one browser session may run (a workshop server is shared). The CLI has no such limits.
MAX_STUDENTS = _env_int("PORTFOLIO_SIM_DASHBOARD_MAX_STUDENTS", 700_000)
MAX_SEEDS = _env_int("PORTFOLIO_SIM_DASHBOARD_MAX_SEEDS", 50)
# Stepping keeps every seed's model alive: students x seeds must stay under this (~0.9 KB per student).
LIVE_STUDENT_BUDGET = _env_int("PORTFOLIO_SIM_DASHBOARD_LIVE_STUDENTS", 1_500_000)

_ids = itertools.count(1)


class SimulationLimit(ValueError):
    """A run the dashboard declines (too large for a shared server); the message says what to do."""


def check_limits(scenario: Scenario) -> None:
    d, r = scenario.district, scenario.run
    if d.schools_csv or d.neighbourhoods_csv:
        raise SimulationLimit("District CSV files cannot be used from the dashboard; run this scenario with "
                              "`portfolio-sim run`.")
    if d.students > MAX_STUDENTS:
        raise SimulationLimit(f"{d.students:,} students is more than this dashboard runs "
                              f"({MAX_STUDENTS:,}); use `portfolio-sim run` for larger districts.")
    if r.seeds > MAX_SEEDS:
        raise SimulationLimit(f"{r.seeds} seeds is more than this dashboard runs ({MAX_SEEDS}); use "
                              "`portfolio-sim run` for large replicate sets.")


# Pace of a run for the "about N s" estimates, before this session has run anything: measured on a loaded
# 2-core machine (Denver-size: 0.07 s per seed-year for 92,000 students; setting a district up: about
# 10 s for LA's 600,000 students). Each finished run recalibrates its session's per-year pace.
ESTIMATE_SECONDS_PER_STUDENT_YEAR = 0.9e-6
ESTIMATE_SETUP_SECONDS_PER_STUDENT = 1.6e-5


def estimate_seconds(scenario: Scenario, per_student_year: float = ESTIMATE_SECONDS_PER_STUDENT_YEAR) -> float:
    """Seconds a run of `scenario` (every seed to the last year, from scratch) is expected to take."""
    d, r = scenario.district, scenario.run
    return d.students * r.seeds * (r.years * per_student_year + ESTIMATE_SETUP_SECONDS_PER_STUDENT)


def max_step_seeds(scenario: Scenario) -> int:
    """How many seeds can be stepped together (all in memory) for this district size."""
    return max(1, LIVE_STUDENT_BUDGET // max(scenario.district.students, 1))


@dataclass(frozen=True, eq=False)
class RunSnapshot:
    """What the page shows of a simulation at one moment (immutable; data frames are not shared).
    Compared by identity (`id`), so the page never compares data frames."""

    id: int
    label: str
    scenario: Scenario
    seeds: tuple[int, ...]          # seeds in the frames
    all_seeds: tuple[int, ...]      # every seed of the run
    years: int                      # the run's target years
    year: int                       # the last year in the frames
    complete: bool
    yearly: pd.DataFrame            # one row per seed and year (column `seed` first)
    summary: pd.DataFrame           # p10 / median / p90 per metric and year across `seeds`
    schools: pd.DataFrame           # school panel, with `seed`
    events: pd.DataFrame            # event log, with `seed`
    neighbourhoods: pd.DataFrame    # seed, x, y, low_income_share (each seed draws its own district)
    step_seconds: float | None = None   # wall time of the last year step (all seeds)
    elapsed: float = 0.0
    decisions: tuple[tuple[int, Decisions], ...] = ()   # workshop decisions taken, by year (not "rule")

    @property
    def start_year(self) -> int:
        return self.scenario.run.start_year

    @property
    def progress_note(self) -> str:
        if self.complete:
            return f"{len(self.seeds)} seed(s) x {self.years} years"
        if len(self.seeds) < len(self.all_seeds) and self.year >= self.years:
            return f"{len(self.seeds)} of {len(self.all_seeds)} seeds done"
        return f"year {self.year} of {self.years}, {len(self.seeds)} of {len(self.all_seeds)} seed(s)"


@dataclass
class SeedRun:
    seed: int
    model: PortfolioModel | None = None
    year: int = 0
    frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None   # once frozen

    def current_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        if self.model is not None:
            m = self.model
            return m.yearly_frame(), m.schools_frame(), m.events_frame()
        assert self.frames is not None
        return self.frames

    def freeze(self) -> None:
        if self.model is not None:
            self.frames = self.current_frames()
            self.model.release()
            self.model = None

    @property
    def started(self) -> bool:
        return self.model is not None or self.frames is not None


class Simulation:
    """K replicate models of one scenario, advanced year by year."""

    def __init__(self, scenario: Scenario, label: str | None = None):
        check_limits(scenario)
        self.scenario = scenario.model_copy(deep=True)
        self.key = self.scenario.to_toml()
        self.label = label or self.scenario.name
        self.years = self.scenario.run.years
        self.seeds = derive_seeds(self.scenario.run.seed, self.scenario.run.seeds)
        self.runs = [SeedRun(s) for s in self.seeds]
        self.decisions: dict[int, Decisions] = {}     # workshop decisions by year (every seed)
        self.neighbourhoods: dict[int, pd.DataFrame] = {}   # by seed: the map's background
        self.last_step_seconds: float | None = None
        self.elapsed = 0.0

    # -- state -------------------------------------------------------------------------------------
    @property
    def year(self) -> int:
        """The year every seed has reached."""
        return min(r.year for r in self.runs)

    @property
    def done(self) -> bool:
        return all(r.year >= self.years for r in self.runs)

    @property
    def started(self) -> bool:
        return any(r.started for r in self.runs)

    def progress(self) -> tuple[int, int]:
        """(seed-years done, seed-years in all)."""
        return sum(min(r.year, self.years) for r in self.runs), len(self.runs) * self.years

    def can_step(self) -> tuple[bool, str]:
        if self.done:
            return False, f"All {self.years} years are done; raise Years to go further."
        live = sum(1 for r in self.runs if r.year < self.years)
        if live > max_step_seeds(self.scenario):
            return False, (f"Stepping keeps every seed's district in memory: with "
                           f"{self.scenario.district.students:,} students use at most "
                           f"{max_step_seeds(self.scenario)} seed(s), or Run to the end.")
        return True, ""

    # -- advancing -----------------------------------------------------------------------------------
    def _model(self, run: SeedRun) -> PortfolioModel:
        if run.model is None:
            if run.frames is not None:
                raise RuntimeError("this seed's run is finished and released")
            run.model = PortfolioModel(self.scenario, run.seed)
            m = run.model
            self.neighbourhoods[run.seed] = pd.DataFrame({
                "seed": run.seed, "x": m.nb_xy[:, 0], "y": m.nb_xy[:, 1],
                "low_income_share": np.asarray(m.nb_low_income, float)})
        return run.model

    def _advance(self, run: SeedRun, model: PortfolioModel) -> None:
        """One year of one seed, with the players' decisions for that year (the rules otherwise)."""
        run.year = Run.of(model).advance(self.decisions.get(run.year + 1, RULES))

    def next_step(self, decisions: Decisions) -> int:
        """The year the next step simulates, with the players' `decisions` recorded for it (checked)."""
        ok, why = self.can_step()
        if not ok:
            raise SimulationLimit(why)
        target = self.year + 1
        if not decisions.by_rule:
            self.decisions[target] = decisions
        else:
            self.decisions.pop(target, None)
        return target

    def step_year(self, should_stop: Callable[[], bool] = lambda: False,
                  on_progress: Callable[[int, int, str], None] | None = None,
                  decisions: Decisions = RULES) -> bool:
        """Advance every seed to the next year, with the workshop players' `decisions` for that year;
        False if stopped part-way (seeds stay consistent per seed, and a later step or run continues)."""
        target = self.next_step(decisions)
        t0 = time.perf_counter()
        for i, run in enumerate(self.runs):
            if should_stop():
                return False
            if run.year >= target:
                continue
            if on_progress:
                on_progress(*self.progress(), f"year {target}: seed {i + 1} of {len(self.runs)}")
            model = self._model(run)
            while run.year < target:
                self._advance(run, model)
        self.last_step_seconds = time.perf_counter() - t0
        self.elapsed += self.last_step_seconds
        if on_progress:
            on_progress(*self.progress(), f"year {target} done")
        if self.done:
            self.release()
        return True

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            on_progress: Callable[[int, int, str], None] | None = None,
            on_seed_done: Callable[[], None] | None = None,
            on_year: Callable[[], None] | None = None) -> bool:
        """Run every seed to the last year, seed after seed; False if stopped (resumable)."""
        for i, run in enumerate(self.runs):
            if run.year >= self.years:
                run.freeze()
                continue
            msg = f"seed {i + 1} of {len(self.runs)}"
            if on_progress:
                on_progress(*self.progress(), f"{msg}: setting up the district" if not run.started else msg)
            model = self._model(run)
            while run.year < self.years:
                if should_stop():
                    return False
                t0 = time.perf_counter()
                self._advance(run, model)
                dt = time.perf_counter() - t0
                self.elapsed += dt
                if on_progress:
                    on_progress(*self.progress(), f"{msg}, year {run.year} of {self.years}")
                if on_year:
                    on_year()
            run.freeze()
            if on_seed_done:
                on_seed_done()
        return True

    def release(self) -> None:
        """Free every model (frames are kept)."""
        for run in self.runs:
            if run.year >= self.years or run.model is None:
                run.freeze()

    def discard(self) -> None:
        """Free everything, finished or not."""
        for run in self.runs:
            if run.model is not None:
                run.model.release()
                run.model = None

    # -- what the page shows ---------------------------------------------------------------------------
    def snapshot(self) -> RunSnapshot | None:
        """The seeds that got furthest (complete seeds first), as data frames; None before year 0."""
        started = [r for r in self.runs if r.started]
        if not started:
            return None
        top = max(r.year for r in started)
        shown = [r for r in started if r.year == top]
        frames = [(r.seed, r.current_frames()) for r in shown]
        yearly_df = stack_seeds((seed, f[0]) for seed, f in frames)
        return RunSnapshot(
            id=next(_ids), label=self.label, scenario=self.scenario, seeds=tuple(r.seed for r in shown),
            all_seeds=tuple(self.seeds), years=self.years, year=top, complete=self.done,
            yearly=yearly_df, summary=summarize(yearly_df), schools=stack_seeds((s, f[1]) for s, f in frames),
            events=stack_seeds((s, f[2]) for s, f in frames),
            neighbourhoods=pd.concat([self.neighbourhoods[r.seed] for r in shown if r.seed in self.neighbourhoods]
                                     or [pd.DataFrame()], ignore_index=True),
            step_seconds=self.last_step_seconds, elapsed=self.elapsed,
            decisions=tuple(sorted(self.decisions.items())))


# ------------------------------------------------------------------------------------------------
# The worker thread
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunStatus:
    """What the page shows about the current or last job."""

    state: str = "idle"          # idle | running | cancelling | done | cancelled | error
    kind: str = ""               # run | step | compare
    done: int = 0
    total: int = 0
    message: str = ""
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    queued: int = 0              # > 0: waiting for a worker, this many runs ahead

    @property
    def seconds_left(self) -> float | None:
        """Time left at the pace so far (None until there is a pace to go by)."""
        if not self.busy or not self.total or self.done <= 0 or self.queued:
            return None
        return self.seconds * (self.total - self.done) / self.done

    @property
    def busy(self) -> bool:
        return self.state in ("running", "cancelling")

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def seconds(self) -> float:
        end = self.finished if self.finished else time.time()
        return max(0.0, end - self.started) if self.started else 0.0


class Cancelled(Exception):
    """A job may raise this to stop at once (jobs normally return when `handle.stopped()`)."""


@dataclass
class JobHandle:
    """What a job sees: a stop flag, progress reporting and (throttled) publishing of results."""

    controller: RunController
    job_id: int
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # set (under the controller's lock) just before the job's last status goes out: see RunController.busy
    finished: bool = False
    min_interval: float = 0.8
    progress_interval: float = 0.4
    _next_publish: float = 0.0
    _next_progress: float = 0.0
    _last_published: float = 0.0

    def stopped(self) -> bool:
        return self.cancel_event.is_set()

    def progress(self, done: int, total: int, message: str) -> None:
        """Report progress; the page hears of it at most every `progress_interval` seconds."""
        now = time.perf_counter()
        if now < self._next_progress and done < total:
            return
        self.controller._update(self, done=done, total=total, message=message)
        took = time.perf_counter() - now
        self._next_progress = time.perf_counter() + max(self.progress_interval, 4 * took)

    def queued(self, ahead: int) -> None:
        """Report the job's place in the worker queue (0: running)."""
        self.controller._update(self, queued=ahead)

    def publish(self, value: Any, force: bool = False, interval: float | None = None) -> bool:
        """Hand results to the page (`value`, or what `value()` returns). The first publish of a job
        always goes through (first results as soon as possible); later ones, unless forced, not within
        `interval` seconds of the last, leaving the simulation at least twice the time the page took to
        re-render."""
        now = time.perf_counter()
        if not force and self._last_published and (
                now < self._next_publish or now - self._last_published < (interval or 0.0)):
            return False
        if not self.controller._is_current(self):
            return False
        try:
            self.controller.on_result(value() if callable(value) else value)
        except Exception:  # noqa: BLE001
            log.exception("result callback failed")
        # The page re-renders in this thread: leave the simulation at least as much time as that took.
        took = time.perf_counter() - now
        log.debug("publish took %.3f s", took)
        self._last_published = time.perf_counter()
        self._next_publish = time.perf_counter() + max(self.min_interval, 2 * took)
        return True


class RunController:
    """Runs one job at a time in a worker thread.

    `on_status(RunStatus)` is called on every change (from the worker thread); `on_result(value)` when a
    job publishes. A job is `fn(handle) -> message`; it checks `handle.stopped()` between years.
    Starting a job while one runs cancels the running one first (`replace=True`), or is refused.
    Updates from a replaced job are dropped, so the page only ever sees the current job.
    """

    def __init__(self, on_status: Callable[[RunStatus], None], on_result: Callable[[Any], None]):
        self.on_status = on_status
        self.on_result = on_result
        self.status = RunStatus()
        self._thread: threading.Thread | None = None
        self._handle: JobHandle | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    @property
    def busy(self) -> bool:
        """A job runs (or waits for the previous one to stop): from start() until its last status (done,
        cancelled, error) is set. Not the thread's life: after that status the thread goes on re-rendering
        the page with it (seconds on a loaded machine), and the page already shows the buttons enabled;
        a Step or Run clicked then must start, not be refused as "busy"."""
        handle = self._handle
        return handle is not None and not handle.finished

    def _is_current(self, handle: JobHandle) -> bool:
        return self._handle is handle

    def _set(self, status: RunStatus) -> None:
        self.status = status
        t0 = time.perf_counter()
        try:
            self.on_status(status)
            log.debug("status update took %.3f s", time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - a page that went away must not kill the worker
            log.exception("status callback failed")

    def _update(self, handle: JobHandle, **changes: Any) -> None:
        with self._lock:
            if not self._is_current(handle):
                return
            if self.status.state == "cancelling" and "state" not in changes:
                changes.pop("message", None)    # keep saying "cancelling" until the worker stops
            self._set(replace(self.status, **changes))

    def _finish(self, handle: JobHandle, **changes: Any) -> None:
        """The job's last status: not busy any more from before the page hears of it."""
        with self._lock:
            handle.finished = True
            self._update(handle, finished=time.time(), **changes)

    def start(self, kind: str, fn: Callable[[JobHandle], str], message: str = "starting",
              replace_running: bool = False) -> bool:
        """Start `fn` in the worker thread. If a job runs: cancel it and start after it stops
        (`replace_running`), else refuse (False)."""
        with self._lock:
            if self.busy:
                if not replace_running:
                    return False
                assert self._handle is not None
                self._handle.cancel_event.set()
            # the previous job's thread, still stopping or re-rendering the page with its last status:
            # the new job starts after it (one job thread at a time)
            previous = self._thread if self._thread is not None and self._thread.is_alive() else None
            handle = JobHandle(self, next(self._ids))
            self._handle = handle
            self._set(RunStatus(state="running", kind=kind, message=message, started=time.time()))

            def work() -> None:
                try:
                    if previous is not None:
                        previous.join()
                    if handle.stopped():      # replaced (no status: not current) or cancelled while waiting
                        self._finish(handle, state="cancelled", message="Cancelled.")
                        return
                    result = fn(handle)
                    if handle.stopped():
                        self._finish(handle, state="cancelled", message="Cancelled; Run or Step continues from here.")
                    else:
                        self._finish(handle, state="done", message=result or "done")
                except Cancelled:
                    self._finish(handle, state="cancelled", message="Cancelled.")
                except SimulationLimit as exc:
                    self._finish(handle, state="error", error=str(exc), message="")
                except Exception as exc:  # noqa: BLE001 - shown on the page, traceback to the server log
                    log.exception("dashboard job failed")
                    self._finish(handle, state="error", error=f"The run failed: {type(exc).__name__}: {exc}",
                                 message="")
                finally:
                    handle.finished = True    # whatever happened, the controller is free again

            self._thread = threading.Thread(target=work, name=f"portfolio-sim-{kind}", daemon=True)
            self._thread.start()
            return True

    def cancel(self) -> bool:
        with self._lock:
            if not self.busy or self._handle is None:
                return False
            self._handle.cancel_event.set()
            self._update(self._handle, state="cancelling", message="Cancelling after the current year...")
            return True

    def join(self, timeout: float | None = None) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True


# ------------------------------------------------------------------------------------------------
# Worker processes: runs off the server's process (a bounded pool shared by every session)
# ------------------------------------------------------------------------------------------------

WORKERS = _env_int("PORTFOLIO_SIM_DASHBOARD_WORKERS", max(1, (os.cpu_count() or 2) - 1))
# A worker is replaced after this many seeds, so the memory a big district left behind goes back to the OS.
TASKS_PER_WORKER = _env_int("PORTFOLIO_SIM_DASHBOARD_TASKS_PER_WORKER", 25)


_CANCELLED = None     # in a worker: the shared ring of cancelled job tokens (WorkerPool's initializer)


def _init_worker(cancelled, server: int) -> None:
    from portfolio_sim.sweep.executors import _exit_with_parent
    _exit_with_parent(server, deathsig=False)   # never outlive the server, even one killed with kill -9
    global _CANCELLED
    _CANCELLED = cancelled


def _is_cancelled(token: int) -> bool:
    return bool(token) and _CANCELLED is not None and token in _CANCELLED[:]


def run_seed(scenario_data: dict, seed: int, decisions: dict[int, Decisions], token: int = 0,
             until: int | None = None):
    """One seed to the last year (or to year `until`), exactly as :meth:`Simulation.run` does in process
    (same model, same decisions by year): ((yearly, schools, events), neighbourhoods). Runs in a worker
    process; the scenario comes as its validated data (pydantic's dump), as plain as a pickle can carry."""
    scenario = Scenario.model_validate(scenario_data)
    last = scenario.run.years if until is None else min(until, scenario.run.years)
    with Run(scenario, seed) as run:
        model = run.model
        nb = pd.DataFrame({"seed": seed, "x": model.nb_xy[:, 0], "y": model.nb_xy[:, 1],
                           "low_income_share": np.asarray(model.nb_low_income, float)})
        while run.year < last:
            if _is_cancelled(token):      # Cancel stops a running seed after the current year, too
                return None
            run.advance(decisions.get(run.year + 1, RULES))
        result = run.result()
    return (result.yearly, result.schools, result.events), nb


class WorkerPool:
    """A bounded pool of 'spawn' worker processes with a queue the page can see into.

    At most `workers` seeds run at once (one per process); the rest wait here in submission order, so a
    job's position is known ("2 runs ahead of yours"). Workers are replaced after about TASKS_PER_WORKER
    seeds each (memory goes back to the OS) and stop with the server, even one killed with kill -9
    (a watchdog thread polls the parent, as in sweep pool workers).

    Workers are replaced here, a whole executor at a time, not with the executor's own
    `max_tasks_per_child`: on Python 3.11 to 3.13 that can fail to replace a worker that exited at its
    limit (its idle-worker semaphore keeps stale tokens), leaving queued tasks with no worker (CPython
    gh-115634, fixed in later releases). The retired executor finishes the runs it has, then its
    processes exit; the next task starts a fresh one."""

    def __init__(self, workers: int = WORKERS):  # noqa: D107
        self.workers = max(1, workers)
        self._executor = None
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, Callable, tuple, Any]] = []    # (token, fn, args, future)
        self._running: dict[Any, int] = {}                            # executor future -> token
        self._cancelled = None          # shared with the workers: the last 64 cancelled tokens
        self._next_slot = 0
        self._submitted = 0             # tasks given to the current executor (it is replaced after enough)
        self._retired: list = []        # replaced executors still finishing their runs

    def _ensure(self):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        if self._executor is not None and self._submitted >= TASKS_PER_WORKER * self.workers:
            self._executor.shutdown(wait=False)         # finishes what it has, then its workers exit
            self._retired.append(self._executor)
            self._executor = None
        # Replaced executors are kept until they are done, so that shutdown() stops them too.
        self._retired = [e for e in self._retired
                         if e._executor_manager_thread is not None and e._executor_manager_thread.is_alive()]
        if self._cancelled is None:
            self._cancelled = ctx.Array("q", 64, lock=False)
        if self._executor is None:
            from concurrent.futures import ProcessPoolExecutor
            self._executor = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                                 initargs=(self._cancelled, os.getpid()))
            self._submitted = 0
        self._submitted += 1
        return self._executor

    def submit(self, token: int, fn: Callable, *args: Any):
        from concurrent.futures import Future
        fut: Future = Future()
        with self._lock:
            self._waiting.append((token, fn, args, fut))
        self._dispatch()
        return fut

    def _dispatch(self) -> None:
        with self._lock:
            while self._waiting and len(self._running) < self.workers:
                token, fn, args, fut = self._waiting.pop(0)
                if not fut.set_running_or_notify_cancel():
                    continue
                inner = self._ensure().submit(fn, *args)
                self._running[inner] = token
                inner.add_done_callback(lambda f, outer=fut: self._done(f, outer))

    def _done(self, inner, outer) -> None:
        with self._lock:
            self._running.pop(inner, None)
        try:
            outer.set_result(inner.result())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            outer.set_exception(exc)
        self._dispatch()

    def ahead_of(self, token: int) -> int:
        """How many other jobs are before `token`'s first waiting seed (0: it runs or is next)."""
        with self._lock:
            if token in self._running.values():
                return 0
            seen: list[int] = []
            for t, *_ in self._waiting:
                if t == token:
                    break
                if t not in seen:
                    seen.append(t)
            running = {t for t in self._running.values() if t != token}
            return len(set(seen) | running)

    def cancel(self, token: int) -> None:
        """Drop `token`'s waiting seeds and tell its running ones to stop after their current year."""
        with self._lock:
            if self._cancelled is not None and token in self._running.values():
                self._cancelled[self._next_slot % len(self._cancelled)] = token
                self._next_slot += 1
            keep = []
            for item in self._waiting:
                if item[0] == token:
                    item[3].cancel()
                else:
                    keep.append(item)
            self._waiting = keep

    def shutdown(self) -> None:
        for e in self._retired:
            e.shutdown(wait=False, cancel_futures=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()
_tokens = itertools.count(1)


def worker_pool() -> WorkerPool | None:
    """The server's one pool (None with PORTFOLIO_SIM_DASHBOARD_WORKERS=0: runs stay in process)."""
    global _POOL
    if WORKERS <= 0:
        return None
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool(WORKERS)
        return _POOL


def run_in_workers(sim: Simulation, pool: WorkerPool, should_stop: Callable[[], bool] = lambda: False,
                   on_progress: Callable[[int, int, str], None] | None = None,
                   on_queue: Callable[[int], None] | None = None,
                   on_seed_done: Callable[[], None] | None = None) -> bool:
    """`sim.run()` with the seeds not yet started run in worker processes (seeds a Step left in memory
    continue here). Same seeds, same code: the results are the in-process run's. False if stopped:
    waiting seeds are dropped, seeds running in a worker finish there and are kept."""
    token = next(_tokens)
    # seeds with no model here start (again) from year 0 in a worker: never started, or stepped in workers
    fresh = [r for r in sim.runs if r.model is None and r.year < sim.years]
    futures = {r.seed: pool.submit(token, run_seed, sim.scenario.model_dump(), r.seed, dict(sim.decisions), token) for r in fresh}
    t0 = time.perf_counter()
    try:
        live = [r for r in sim.runs if r.model is not None and r.year < sim.years]
        if live:
            ok = Simulation.run(_Only(sim, live), should_stop, on_progress)
            if not ok:
                return False
        def seed_done(left: int) -> None:
            if on_progress:
                on_progress(*sim.progress(), f"{len(sim.runs) - left} of {len(sim.runs)} seeds done")
            if on_seed_done:
                on_seed_done()

        if not _collect(sim, pool, token, futures, sim.years, should_stop, on_queue, seed_done):
            return False
        for r in sim.runs:
            r.freeze()
        return True
    finally:
        pool.cancel(token)
        sim.elapsed += time.perf_counter() - t0


def _collect(sim: Simulation, pool: WorkerPool, token: int, futures: dict, year: int,
             should_stop: Callable[[], bool], on_queue: Callable[[int], None] | None,
             on_seed: Callable[[int], None]) -> bool:
    """Wait for the workers' seeds (`futures` by seed), keeping each one's frames as of `year`, telling
    `on_queue` the queue position and `on_seed(seeds left)` after each; False if stopped."""
    pending, last_queue = dict(futures), -1
    while pending:
        if should_stop():
            return False
        ahead = pool.ahead_of(token)
        if on_queue and ahead != last_queue:
            on_queue(ahead)
            last_queue = ahead
        for seed, fut in list(pending.items()):
            if fut.done():
                out = fut.result()
                if out is None:       # stopped in the worker
                    return False
                frames, nb = out
                run = next(r for r in sim.runs if r.seed == seed)
                run.frames, run.year = frames, year
                sim.neighbourhoods[seed] = nb
                del pending[seed]
                on_seed(len(pending))
        if pending:
            time.sleep(0.03)
    return True


def step_in_workers(sim: Simulation, pool: WorkerPool, should_stop: Callable[[], bool] = lambda: False,
                    on_progress: Callable[[int, int, str], None] | None = None,
                    on_queue: Callable[[int], None] | None = None, decisions: Decisions = RULES) -> bool:
    """:meth:`Simulation.step_year` with every seed advanced in a worker process, as full runs are: a
    worker replays the seed from year 0 to the next year with the decisions taken so far (same seed, same
    decisions: the in-process step's numbers) and sends back its frames; the server keeps no model. A
    step costs the years so far (fine for the districts Step allows, see max_step_seeds). False if
    stopped: seeds keep the year they had."""
    target = sim.next_step(decisions)
    token = next(_tokens)
    t0 = time.perf_counter()
    todo = [r for r in sim.runs if r.year < target]
    for r in todo:                   # a model left by an in-process step is not needed any more
        if r.model is not None:
            r.model.release()
            r.model = None
    futures = {r.seed: pool.submit(token, run_seed, sim.scenario.model_dump(), r.seed, dict(sim.decisions), token,
                                   target) for r in todo}
    try:
        if on_progress:
            on_progress(*sim.progress(), f"year {target}: {len(todo)} seed(s) in the workers")

        def seed_done(left: int) -> None:
            if on_progress:
                on_progress(*sim.progress(), f"year {target}: seed {len(todo) - left} of {len(todo)}")

        if not _collect(sim, pool, token, futures, target, should_stop, on_queue, seed_done):
            return False
        sim.last_step_seconds = time.perf_counter() - t0
        sim.elapsed += sim.last_step_seconds
        if on_progress:
            on_progress(*sim.progress(), f"year {target} done")
        return True
    finally:
        pool.cancel(token)


class _Only:
    """A view of a Simulation restricted to some of its seeds (for Simulation.run on those)."""

    def __init__(self, sim: Simulation, runs: list[SeedRun]):
        self._sim, self.runs = sim, runs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)

    def progress(self) -> tuple[int, int]:
        return self._sim.progress()
